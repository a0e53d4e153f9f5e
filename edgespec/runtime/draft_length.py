"""How many tokens to draft: the k that maximises expected tokens per second, from measured acceptance and costs.

Why each rule is there (hold, probe, steady costs, the prior) is measured in docs/draft-length.md.
"""

from __future__ import annotations

import statistics
from collections import deque

import numpy as np


def expected_tokens(acceptance: float, k: float) -> float:
    """Mean tokens per target call with k drafted tokens, each kept with probability `acceptance` (Leviathan et al.;
    k may be a mean draft length)."""
    if acceptance >= 1.0:
        return k + 1.0
    return (1.0 - acceptance ** (k + 1)) / (1.0 - acceptance)


def decayed_length(mean: float | None, new_tokens: int) -> float:
    """The running (decayed) mean length of finished answers, after one more of `new_tokens`."""
    return float(new_tokens) if mean is None else 0.7 * mean + 0.3 * new_tokens


class RealizedRate:
    """Seconds per generated token that steps of one kind really took (wall time of their calls; decayed, so the
    latest steps weigh most). decay 1.0: a plain sum (one block's)."""

    def __init__(self, decay: float = 0.9):
        self.decay = decay
        self.seconds = self.tokens = 0.0

    def add(self, seconds: float, tokens: int) -> None:
        self.seconds = self.decay * self.seconds + seconds
        self.tokens = self.decay * self.tokens + tokens

    def fade(self, factor: float) -> None:
        self.seconds *= factor
        self.tokens *= factor

    def per_token(self) -> float:
        return self.seconds / self.tokens if self.tokens else float("inf")


class RecentCost:
    """A cost per token as the median of its last `window` measurements, kept at load 1.0 and read at today's load:
    one slow measurement (a stall, a new shape's first call) does not move it, and a cost the loop stops measuring
    still follows the machine's load."""

    def __init__(self, window: int):
        self.values: deque[float] = deque(maxlen=window)
        self.median: float | None = None

    def add(self, seconds: float, load: float) -> None:
        self.values.append(seconds / load)
        self.median = statistics.median(self.values)

    def reset(self, seconds: float | None, load: float) -> None:
        """Forget what was measured; start from `seconds` (None: unmeasured)."""
        self.values.clear()
        self.median = None
        if seconds is not None:
            self.add(seconds, load)

    def at(self, load: float) -> float | None:
        return None if self.median is None else self.median * load


# Tokens of evidence before realized rates overrule the cost model (about four steps of a mediocre draft), and how
# much slower than plain steps proposals must run to be stopped: near break-even the model's choice stands (noise,
# and OpenVINO's shape switches, made a tighter rule cut drafts that paid: docs/draft-length.md).
EVIDENCE = 6.0
MARGIN = 1.05

# An acceptance above any the shipped drafts reach on a whole prompt set (0.5-0.85): where even a draft this good
# would not win PROBE_GAIN on the measured costs, a sat-out draft is not probed at all (on llama.cpp's SmolLM2 curve
# a k = 1 draft wins 3-5% at 0.9, and probes every 16-64 steps cost shortqa and math 12-15%: SmolLM2 v8, v9).
CEILING = 0.9
PROBE_GAIN = 1.10
DRAFT_WINDOW = 16  # drafting steps (or reads) the draft's costs are the median of
# Steps a "the catch-up does not pay" stands for before it is priced again: pricing it every step cost 0.03-0.1 ms of
# a 10 ms llama.cpp step where the draft never read the prompt, and an answer's prices hardly move in 8 tokens.
CATCH_UP_RECHECK = 8


class DraftLength:
    """Chooses k to maximise expected tokens per second, from acceptance and costs measured as we go."""

    def __init__(self, initial: int, maximum: int, adaptive: bool, decay: float = 0.9, hold: int = 16,
                 probe: int = 4, always_drafts: bool = False, realized_guard: bool = False):
        self.decay = decay
        # Whether realized rates may stop proposals the model prices as paying. The pipeline turns it on for
        # llama.cpp targets only: there proposals lost 19-46% (mispriced verifies on a steep curve), while on
        # OpenVINO the model's costs hold and the guard's noisy rates cut drafts that paid (docs/draft-length.md).
        self.realized_guard = realized_guard
        # Collaborative decoding calls the draft once per step even at k = 0 (its logits enter the output).
        self.base_draft_calls = 1 if always_drafts else 0
        # A call whose token count differs from the last one's costs more (docs/draft-length.md), so a chosen k is
        # held for `hold` steps and chosen on steady costs (calls of the same shape as the one before).
        self.steady_cost: dict[int, float] = {}
        self.switch_cost: dict[int, float] = {}
        self.recent_draft = RecentCost(DRAFT_WINDOW)  # per drafted token (see draft_cost)
        self.recent_catch_up = RecentCost(DRAFT_WINDOW)  # per token the draft reads to catch up (its prefill)
        self.skip_first_catch_up = False  # set by seed(): the process's first read pays one-time costs
        # How much slower every call runs now than when each cost was last measured (other processes on the cores):
        # a width not verified for a while is priced at its measured cost times the load's move since.
        self.load = 1.0
        self.load_at: dict[tuple[str, int], float] = {}
        self.fed_widths: set[int] = set()
        self.answer_tokens: float | None = None  # decayed mean length of finished answers
        self.last_answer = 0
        self.hold, self.probe = hold, probe
        self.sit_out = hold  # steps the draft sits out after a failed probe: doubles while probes keep failing
        self.kept = self.seen = 0.0  # decayed counts of kept tokens and of accept/reject trials
        # What steps really took per token, by who proposed: the cost model prices calls from steady runs, but a
        # real step also pays what the model leaves out (llama.cpp's 2-token verify of Qwen 1.5B ran at 100 ms in
        # the loop against 86 timed beforehand; Python). Where proposals realize a slower rate than
        # plain steps, they stop, whatever the model predicts (docs/draft-length.md).
        self.realized = {"plain": RealizedRate(), "draft": RealizedRate(), "lookup": RealizedRate()}
        self.cuts = 0  # drafting blocks ended early in a row
        self.restart(initial, maximum, adaptive)
        self.hold_left = 0  # nothing is measured yet: the first decision comes once the draft has a cost

    def restart(self, initial: int, maximum: int, adaptive: bool) -> None:
        """A new generation: acceptance is first measured over `probe` steps; the last generation's counts stay
        as a weak prior (a quarter of their weight), so the probe runs at a k they support, not always the
        initial one. Measured costs are kept (the same models on the same devices)."""
        self.initial, self.maximum, self.adaptive = initial, max(maximum, initial), adaptive
        self.kept, self.seen = 0.25 * self.kept, 0.25 * self.seen
        self.lookup_kept = self.lookup_seen = 0.0  # the same counts for prompt-lookup proposals
        self.catch_up_wait = 0  # steps the last "does not pay" still stands for (catch_up_now)
        self.last_feed = 0
        self.block = RealizedRate(decay=1.0)  # the held block's draft steps, to end a losing block early
        if self.realized_guard and adaptive and getattr(self, "current", None) == 0 and self.hold_left > 0:
            # A draft sitting out (its probes lost) stays out for the rest of its sit-out: on llama.cpp's steep
            # curve a probe at every answer's start cost short answers 10-15% (SmolLM2 v9, v10).
            return
        probe_k = initial if self.draft_cost is None or not adaptive else max(1, min(initial, self.best()))
        if adaptive and self.draft_cost is not None and not self.could_pay():
            probe_k = 0
        self.current, self.hold_left, self.sit_out = probe_k, self.probe, self.hold

    def record(self, drafted: int, kept: int, target_seconds: float, draft_seconds: float) -> None:
        if drafted:  # a step without a draft says nothing about acceptance (and must not fade it to the prior)
            self.kept = self.decay * self.kept + kept
            self.seen = self.decay * self.seen + kept + (1 if kept < drafted else 0)
            # Steady steps only (a call as wide as the last): the first step of a block pays the shape switch, which
            # the model prices apart. A catch-up is left out too: a one-time read of the prompt, priced over the
            # answer by catch_up_pays (in the step after it, it cut drafting that paid at every answer's start).
            if drafted + 1 == self.last_feed:
                self.realized["draft"].add(target_seconds + draft_seconds, kept + 1)
                self.block.add(target_seconds + draft_seconds, kept + 1)
        elif self.last_feed == 1:
            # kept: a looked-up token verified in the slot a padded call has free (speculative.free_slot), priced
            # as the plain step it is and credited with what it gave
            self.realized["plain"].add(target_seconds, kept + 1)
        self.record_target(drafted + 1, target_seconds)
        if drafted:
            self.recent_draft.add(draft_seconds / drafted, self.load)

    @property
    def draft_cost(self) -> float | None:
        """Seconds per drafted token: the median of the last drafting steps, at today's load. A mean let one slow
        step (a stall, a new shape's first call: 14 ms among 3-5 ms ones) price the draft out, and a draft that no
        longer drafts is never timed again: in a bench on an AVX-512 EPYC the warm-up left it at over 6 ms, and
        four prompts ran without a draft call at 0.68x of GenAI's speculative pipeline."""
        return self.recent_draft.at(self.load)

    @draft_cost.setter
    def draft_cost(self, seconds: float | None) -> None:
        self.recent_draft.reset(seconds, self.load)

    def seed(self, call_s: dict[int, float], draft_token_s: float | None = None,
             catch_up_token_s: float | None = None) -> None:
        """Steady call costs timed before decoding (calls of each width in a row): without them the cost of a width
        the loop never runs steadily is a guess, and a one-token step priced 25% too dear (extrapolated from the
        held k's calls) kept a losing k = 3 drafting through whole answers. Costs measured in the loop win.
        draft_token_s: a draft step timed beforehand (the engine probe's), so the first generation does not open
        with a probe at the initial k where no draft could pay."""
        for n, seconds in call_s.items():
            if n not in self.steady_cost:
                self.steady_cost[n] = seconds
                self.load_at[("steady", n)] = self.load
        if self.draft_cost is None and draft_token_s:
            self.draft_cost = draft_token_s
        if self.catch_up_cost is None and catch_up_token_s:
            # A read timed beforehand (warm), so the first read in the loop, which pays one-time costs, is not priced.
            self.catch_up_cost = catch_up_token_s
            self.skip_first_catch_up = True

    def record_catch_up(self, tokens: int, seconds: float) -> None:
        """The draft read `tokens` tokens of text it had not seen (a prompt, or text verified without it)."""
        if self.skip_first_catch_up:
            # Its first long read in the process (OpenVINO's first inference of a new shape): 58 ms for 125
            # tokens against 16 ms after; priced, it refused every later read on HumanEval, never to be timed again.
            self.skip_first_catch_up = False
            return
        self.recent_catch_up.add(seconds / tokens, self.load)

    @property
    def catch_up_cost(self) -> float | None:
        """Seconds per token of the draft's reads: the median of the last ones (or the seed), at today's load."""
        return self.recent_catch_up.at(self.load)

    @catch_up_cost.setter
    def catch_up_cost(self, seconds: float | None) -> None:
        self.recent_catch_up.reset(seconds, self.load)

    def gain_per_token(self) -> float:
        """Seconds the draft would save per generated token at its best k, at no less than the prior's acceptance
        (0.7): before the draft has read this prompt its acceptance here is unknown, and the last answer's (carried
        over) must not keep it from ever trying; the probe after it reads measures the real one."""
        if self.draft_cost is None:
            return 0.0
        return max(0.0, self.step_seconds(0) - self.drafting_seconds_per_token(max(self.acceptance, 0.7)))

    def step_seconds(self, k: int, points: dict[int, float] | None = None) -> float:
        """A step with k drafted tokens: the (k + 1)-token target call and the draft calls it needs (points: the
        prices, when the caller already has them)."""
        return self.target_seconds(k + 1, points) + (k + self.base_draft_calls) * (self.draft_cost or 0.0)

    def longest_draft(self) -> int:
        """The longest k worth pricing: one past the longest call measured (and at most the maximum)."""
        return max(1, min(self.maximum, max(self.steady_cost or self.switch_cost, default=1)))

    def drafting_seconds_per_token(self, acceptance: float) -> float:
        """Seconds per generated token at the best k >= 1, at this per-token acceptance."""
        points = self.prices()
        return min(self.step_seconds(k, points) / expected_tokens(acceptance, k)
                   for k in range(1, self.longest_draft() + 1))

    def catch_up_pays(self, tokens: int, generated: int, room: int | None = None) -> bool:
        """Whether the draft should read `tokens` unseen tokens now, `generated` tokens into the answer, `room`
        tokens before the length limit. What is left of the answer is taken to be as long as the answers before
        ran (less what came so far), and at least as long as what came so far: the catch-up is paid when that
        many tokens at the draft's gain pay for it. Short answers after long prompts (a retrieval answer of 10
        tokens) then never pay the draft's prefill; long answers read it at once."""
        if not self.adaptive or self.catch_up_cost is None or self.draft_cost is None:
            return True  # nothing measured yet: draft, and measure
        expected = self.expected_answer()
        left = generated if expected is None else max(generated, expected - generated)
        if room is not None:
            left = min(left, room)
        return left * self.gain_per_token() >= tokens * self.catch_up_cost

    def catch_up_now(self, tokens: int, generated: int, room: int | None = None) -> bool:
        """catch_up_pays, for the decoding loop: a "no" stands for the next CATCH_UP_RECHECK - 1 steps unpriced."""
        if self.catch_up_wait > 0:
            self.catch_up_wait -= 1
            return False
        pays = self.catch_up_pays(tokens, generated, room)
        self.catch_up_wait = 0 if pays else CATCH_UP_RECHECK - 1
        return pays

    def record_lookup(self, proposed: int, kept: int, target_seconds: float) -> None:
        """A step verified prompt-lookup tokens: its acceptance is the lookup's, its call cost the target's."""
        self.lookup_kept = self.decay * self.lookup_kept + kept
        self.lookup_seen = self.decay * self.lookup_seen + kept + (1 if kept < proposed else 0)
        self.realized["lookup"].add(target_seconds, kept + 1)
        self.record_target(proposed + 1, target_seconds)

    def record_target(self, n: int, target_seconds: float) -> None:
        if n not in self.fed_widths:
            # A width's first call seen by this policy (the pipeline keeps one per engine for the process) pays
            # one-time costs (OpenVINO: a new shape's first inference, 30-90 ms against 3-5 ms for a later switch):
            # priced as a switch it stayed in the mean switch cost for good, and prompt lookup (two switches a step)
            # stopped on code edits (SmolLM2 v13, v14).
            self.fed_widths.add(n)
            self.last_feed = n
            return
        kind = "steady" if n == self.last_feed else "switch"
        costs = self.steady_cost if kind == "steady" else self.switch_cost
        if n in costs:
            expected = costs[n] * self.load / self.load_at.get((kind, n), self.load)
            # A stall (another process took the cores) counts as at most twice the expected cost: one 170 ms
            # call among 25 ms ones must not price a width out for good.
            ratio = min(max(target_seconds / expected, 0.5), 2.0)
            # Geometric steps, the same for the load and the width's own price: an arithmetic mean of the price
            # (0.8 + 0.2 ratio) rose against the load with every jittery call, so the width that ran most got
            # dear against those that did not (llama.cpp, Qwen: 2 tokens priced below 1 after 30 answers), and
            # probes looked like wins. Shape switches (answer starts among them) say nothing of the load.
            if kind == "steady":
                self.load *= ratio ** 0.2
            costs[n] = expected * ratio ** (0.22 if kind == "steady" else 0.2)
        else:
            costs[n] = target_seconds
        self.load_at[(kind, n)] = self.load
        self.last_feed = n

    def scaled(self, kind: str) -> dict[int, float]:
        """Measured costs of one kind ("steady" or "switch") as they would be at today's load."""
        costs = self.steady_cost if kind == "steady" else self.switch_cost
        return {n: c * self.load / self.load_at.get((kind, n), self.load) for n, c in costs.items()}

    def finish(self, new_tokens: int) -> None:
        """An answer ended after `new_tokens` tokens: the next one is expected to run about as long."""
        self.answer_tokens = decayed_length(self.answer_tokens, new_tokens)
        self.last_answer = new_tokens

    def expected_answer(self) -> float | None:
        """The next answer's expected length: the shorter of the last one and the decayed mean. Guessing short
        costs little (a long answer's draft reads the prompt a few tokens late, once the answer so far pays it),
        guessing long costs a short answer the draft's prefill and probes (retrieval answers of 8-12 tokens after
        summaries of 128 ran at 0.93x of target-only while the mean took five answers to come down)."""
        if self.answer_tokens is None:
            return None
        return min(self.answer_tokens, float(self.last_answer))

    @property
    def lookup_acceptance(self) -> float:
        # Two pseudo-trials at 0.5: a first match is tried, a lookup that keeps failing is soon left alone, and one
        # kept token is not read as 0.75 (on llama.cpp's steep curve that priced a 3-token lookup as a win: math).
        return (self.lookup_kept + 1.0) / (self.lookup_seen + 2.0)

    def lookup_tokens(self, k: int, available: int) -> int:
        """How many of `available` prompt-lookup tokens to verify in place of k drafted ones (0: draft instead).
        Lookup tokens cost no draft call; they win where their expected tokens per second is higher."""
        if available <= 0:
            return 0
        if k == 0 and self.loses("lookup"):
            # Refused; the evidence fades with each refusal (half-life about 23 steps), so lookup is tried again
            # (the draft's decisions may not come at all while it waits to catch up on a long prompt).
            self.realized["lookup"].fade(0.97)
            return 0
        points = self.prices()
        draft_rate = expected_tokens(self.acceptance, k) / self.step_seconds(k, points)
        longest = max(self.steady_cost or self.switch_cost, default=1)
        top = min(available, self.maximum, longest) if k == 0 else min(available, k)
        best, best_rate = 0, draft_rate
        switch = self.switch_seconds()
        for m in range(1, top + 1):
            # A call of another width than the held one pays the shape switch twice: there and back.
            switches = 2 * switch if m != k else 0.0
            rate = expected_tokens(self.lookup_acceptance, m) / (self.target_seconds(m + 1, points) + switches)
            if rate > best_rate:
                best, best_rate = m, rate
        return best

    def switch_seconds(self) -> float:
        """What a call whose width differs from the last one's costs more than the same call in a steady run
        (the mean over widths measured both ways; 0 until there are such pairs)."""
        steady, switch = self.scaled("steady"), self.scaled("switch")
        extra = [switch[n] - steady[n] for n in switch if n in steady]
        return max(0.0, sum(extra) / len(extra)) if extra else 0.0

    @property
    def acceptance(self) -> float:
        # Two pseudo-trials at 0.7: a 4-step probe whose every draft was kept reads as 0.9, not as certainty
        # (which priced the longest k as free tokens and held it for a whole block).
        return (self.kept + 1.4) / (self.seen + 2.0)

    def prices(self) -> dict[int, float]:
        """The measured call costs target_seconds works from: steady ones, or shape-switch ones before any."""
        return self.scaled("steady") or self.scaled("switch")

    def target_seconds(self, n: int, points: dict[int, float] | None = None) -> float:
        """Cost of an n-token target call in a run of equal calls: measured shapes as they are, straight lines
        between them, the nearest segment carried on outside them (never falling with more tokens)."""
        points = self.prices() if points is None else points
        if n in points:
            return points[n]
        if not points:
            return 1.0 + 0.05 * (n - 1)
        shapes = sorted(points)
        costs = [points[m] for m in shapes]
        if len(shapes) == 1:
            return costs[0] * (1 + 0.05 * (n - 1)) / (1 + 0.05 * (shapes[0] - 1))
        if shapes[0] < n < shapes[-1]:
            return float(np.interp(n, shapes, costs))
        # Outside the measured shapes: the nearest segment, carried on (never falling with more tokens).
        (x0, y0), (x1, y1) = zip(shapes[:2], costs[:2]) if n < shapes[0] else zip(shapes[-2:], costs[-2:])
        slope = max(0.0, (y1 - y0) / (x1 - x0))
        x, y = (x0, y0) if n < shapes[0] else (x1, y1)
        return max(y + slope * (n - x), 1e-6)

    def best(self) -> int:
        a = self.acceptance
        # k grows by at most one token past the longest call measured: an optimistic guess for a long call
        # (a 13-token verify priced like a 4-token one) would otherwise be held for a whole block.
        longest = max(self.steady_cost or self.switch_cost, default=1)
        top = min(self.maximum, longest)
        # Another width than the current one pays the shape switch into it and back out, once per held block.
        moving = 2 * self.switch_seconds() / self.hold
        points = self.prices()
        rates = {k: expected_tokens(a, k) / (self.step_seconds(k, points) + (moving if k != self.current else 0))
                 for k in range(0, top + 1)}
        return max(rates, key=rates.get)

    def plain_seconds(self) -> float:
        """Seconds per token of plain (k = 0) steps: as they ran, or as priced until a few have run."""
        plain = self.realized["plain"]
        return plain.per_token() if plain.tokens >= EVIDENCE else self.step_seconds(0)

    def loses(self, kind: str) -> bool:
        """Whether steps proposed by `kind` ("draft" or "lookup") really ran slower per token than plain steps."""
        rate = self.realized[kind]
        return (self.adaptive and self.realized_guard and rate.tokens >= EVIDENCE
                and rate.per_token() > MARGIN * self.plain_seconds())

    def could_pay(self) -> bool:
        """Whether some k would beat the target alone by PROBE_GAIN at an acceptance of CEILING (measured costs)."""
        return PROBE_GAIN * self.drafting_seconds_per_token(CEILING) < self.step_seconds(0)

    def sitting_out(self) -> bool:
        """Whether next() will return 0 without weighing anything (the draft sits out a held block)."""
        return self.adaptive and self.draft_cost is not None and self.current == 0 and self.hold_left > 0

    def next(self) -> int:
        if not self.adaptive or self.draft_cost is None:
            return self.initial
        # A drafting block whose steps run slower per token than plain ones ends early (a few steps in, not 16).
        losing = (self.realized_guard and bool(self.current) and self.block.tokens >= EVIDENCE
                  and self.block.per_token() > MARGIN * self.plain_seconds())
        if self.hold_left > 0 and not losing:
            self.hold_left -= 1
            return self.current
        cut = self.hold_left > 0  # ended early; a block that ran its length is judged by best() as before
        if cut:  # each cut in a row doubles the sit-out after it; a drafting block that holds its own resets it
            self.cuts += 1
            self.sit_out = min(4 * self.hold, self.hold * 2 ** self.cuts)
        elif self.current:
            self.cuts = 0
        self.block = RealizedRate(decay=1.0)
        k = 0 if cut else self.best()
        lost = self.loses("draft")
        if k and lost:
            k = 0  # the model says drafting pays, the steps it ran say it does not: sit out
        if k == 0:
            # Evidence against the draft fades while it sits out, so it is tried again now and then.
            self.realized["draft"].fade(0.5)
        if k == 0 and self.current == 0:
            # No probe while the draft's steps still say it loses (the model's prices drift: on llama.cpp a 2-token
            # verify was priced at 1.1x a 1-token step against 1.4-1.6x measured, and probes came every block).
            if self.could_pay() and not lost:
                # The draft sat out a whole block: let it draft one token for a few steps, so a draft that starts
                # agreeing again (code after prose, say) is noticed.
                k, self.hold_left = 1, self.probe - 1
            else:
                # Not even a draft right 9 times in 10 pays on these costs (llama.cpp's steep curve here): no probes.
                self.hold_left = self.hold - 1
        elif k == 0:
            # Sit out; each probe in a row that fails doubles the wait before the next (probes cost switches).
            self.hold_left = self.sit_out - 1
            self.sit_out = min(4 * self.hold, 2 * self.sit_out)
        else:
            self.hold_left = self.hold - 1
            if not self.cuts:
                self.sit_out = self.hold
        self.current = k
        return k
