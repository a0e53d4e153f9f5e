"""The decoding loop: prefill, draft k tokens, verify them in one target call, keep what the target agrees with.

Target-only decoding is the same loop with no draft (k = 0), so both modes share every line
that touches the target. Each model's KV cache always holds a prefix of `sequence`; a model
is fed `sequence[cached:]` plus whatever is being proposed or verified.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import numpy as np

from edgespec.model import StatefulLM
from edgespec.sampling import Warp, accept_drafted, accept_greedy, probabilities, sample


@dataclass
class GenerationConfig:
    max_new_tokens: int = 128
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int | None = None
    draft_length: int = 3
    adaptive_draft: bool = True
    max_draft_length: int = 12
    stop_strings: tuple[str, ...] = ()
    ignore_eos: bool = False

    @property
    def warp(self) -> Warp:
        return Warp(self.temperature, self.top_k, self.top_p)


@dataclass
class GenerationStats:
    prompt_tokens: int = 0
    new_tokens: int = 0
    wall_s: float = 0.0
    ttft_s: float = 0.0
    tpot_s: float = 0.0
    target_calls: int = 0
    draft_calls: int = 0
    drafted_tokens: int = 0
    accepted_tokens: int = 0
    acceptance_rate: float = 0.0
    tokens_per_target_call: float = 0.0
    stop_reason: str = ""
    target_s: float = 0.0  # time inside target calls
    draft_s: float = 0.0  # time inside draft calls
    draft_lengths: list[int] = field(default_factory=list)

    def finish(self, start: float) -> None:
        self.wall_s = time.perf_counter() - start
        if self.new_tokens > 1:
            self.tpot_s = (self.wall_s - self.ttft_s) / (self.new_tokens - 1)
        self.acceptance_rate = self.accepted_tokens / self.drafted_tokens if self.drafted_tokens else 0.0
        # Block efficiency: tokens per verification call; the prefill call that made token 1 is left out.
        if self.target_calls > 1:
            self.tokens_per_target_call = (self.new_tokens - 1) / (self.target_calls - 1)

    def as_dict(self) -> dict:
        return asdict(self)


def expected_tokens(acceptance: float, k: int) -> float:
    """Mean tokens per target call with k drafted tokens, each kept with probability `acceptance`."""
    if acceptance >= 1.0:
        return k + 1.0
    return (1.0 - acceptance ** (k + 1)) / (1.0 - acceptance)


class DraftLength:
    """Chooses k to maximise expected tokens per second, from acceptance and costs measured as we go."""

    def __init__(self, initial: int, maximum: int, adaptive: bool, decay: float = 0.9, hold: int = 16,
                 probe: int = 4):
        self.decay = decay
        # On the CPU a call whose token count differs from the previous call's costs ~5 ms more (SmolLM2:
        # 1-token calls 17 ms in a row, 22 ms when alternating with 2-token calls). A chosen k is therefore
        # kept for `hold` steps, and k is chosen on steady costs (calls of the same shape as the one before);
        # costs measured right after a change would make every k look as slow as switching to it.
        self.steady_cost: dict[int, float] = {}
        self.switch_cost: dict[int, float] = {}
        self.draft_cost: float | None = None
        self.hold, self.probe = hold, probe
        self.restart(initial, maximum, adaptive)
        self.hold_left = 0  # nothing is measured yet: the first decision comes once the draft has a cost

    def restart(self, initial: int, maximum: int, adaptive: bool) -> None:
        """A new generation: acceptance starts over (another prompt) and is first measured over `probe` steps
        at the initial k; the measured costs are kept (the same models on the same devices), so a short
        generation does not spend its few decisions re-learning them."""
        self.initial, self.maximum, self.adaptive = initial, max(maximum, initial), adaptive
        self.kept = self.seen = 0.0  # decayed counts of kept tokens and of accept/reject trials
        self.last_feed = 0
        self.current, self.hold_left = initial, self.probe

    def record(self, drafted: int, kept: int, target_seconds: float, draft_seconds: float) -> None:
        if drafted:  # a step without a draft says nothing about acceptance (and must not fade it to the prior)
            self.kept = self.decay * self.kept + kept
            self.seen = self.decay * self.seen + kept + (1 if kept < drafted else 0)
        n = drafted + 1
        costs = self.steady_cost if n == self.last_feed else self.switch_cost
        old = costs.get(n)
        costs[n] = target_seconds if old is None else 0.8 * old + 0.2 * target_seconds
        self.last_feed = n
        if drafted:
            per_token = draft_seconds / drafted
            self.draft_cost = per_token if self.draft_cost is None else 0.8 * self.draft_cost + 0.2 * per_token

    @property
    def acceptance(self) -> float:
        # Two pseudo-trials at 0.7: a 4-step probe whose every draft was kept reads as 0.9, not as certainty
        # (which priced the longest k as free tokens and held it for a whole block).
        return (self.kept + 1.4) / (self.seen + 2.0)

    def target_seconds(self, n: int) -> float:
        """Cost of an n-token target call in a run of equal calls. Shapes run steadily are priced by those runs
        (straight lines between them: CPU costs are flat up to a few tokens, then jump); switch costs only stand
        in until a first steady run. A shape outside them continues the nearest segment, which is optimistic where
        costs jump (the policy then tries it for a held block and measures it); from a single point each token is
        priced at ~5% of a call, below the 7-11% measured on CPUs, for the same reason."""
        points = self.steady_cost or self.switch_cost
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
        a, d = self.acceptance, self.draft_cost
        # k grows by at most one token past the longest call measured: an optimistic guess for a long call
        # (a 13-token verify priced like a 4-token one) would otherwise be held for a whole block.
        longest = max(self.steady_cost or self.switch_cost, default=1)
        top = min(self.maximum, longest)
        rates = {k: expected_tokens(a, k) / (self.target_seconds(k + 1) + k * d) for k in range(0, top + 1)}
        return max(rates, key=rates.get)

    def next(self) -> int:
        if not self.adaptive or self.draft_cost is None:
            return self.initial
        if self.hold_left > 0:
            self.hold_left -= 1
            return self.current
        k = self.best()
        if k == 0 and self.current == 0:
            # The draft sat out a whole block: let it draft one token for a few steps, so a draft that starts
            # agreeing again (code after prose, say) is noticed.
            k, self.hold_left = 1, self.probe - 1
        else:
            self.hold_left = self.hold - 1
        self.current = k
        return k


def propose(draft: StatefulLM, sequence: list[int], k: int, warp: Warp | None, rng: np.random.Generator,
            vocab_size: int) -> tuple[list[int], np.ndarray | None]:
    """Draft k tokens one by one; with sampling also return the draft's distributions [k, V_target]."""
    drafted: list[int] = []
    dists = []
    feed = draft.pending(sequence)
    for _ in range(k):
        logits = draft.forward(feed, last=1)[0]
        if warp is None:
            index = int(logits.argmax())
        else:
            probs = probabilities(logits, warp)
            index = sample(probs, rng)
            dists.append(probs)
        token = int(draft.vocab_map[index]) if draft.vocab_map is not None else index
        drafted.append(token)
        feed = [token]
    if warp is None:
        return drafted, None
    probs = np.stack(dists)
    if draft.vocab_map is None:
        return drafted, probs
    # A reduced draft head puts zero probability outside its subset; the acceptance rule stays exact.
    full = np.zeros((k, vocab_size), dtype=probs.dtype)
    full[:, draft.vocab_map] = probs
    return drafted, full


def decode(target: StatefulLM, draft: StatefulLM | None, prompt: list[int], config: GenerationConfig,
           eos_ids: set[int], stats: GenerationStats, policy: DraftLength | None = None) -> Iterator[list[int]]:
    """Yield new tokens as the target confirms them. The caller stops the generator to end early.
    `policy` carries call costs measured in earlier generations with the same models (it is restarted)."""
    rng = np.random.default_rng(config.seed)
    warp = config.warp if config.do_sample else None
    longest = config.max_draft_length
    if target.max_feed:
        # NPU: a verify call longer than the compiled generation length would be split in two.
        longest = min(longest, target.max_feed - 1)
    if policy is None:
        policy = DraftLength(min(config.draft_length, longest), longest, config.adaptive_draft)
    else:
        policy.restart(min(config.draft_length, longest), longest, config.adaptive_draft)
    start = time.perf_counter()
    stats.prompt_tokens = len(prompt)
    sequence = list(prompt)
    produced = 0
    context = min(target.context_length, draft.context_length) if draft else target.context_length
    try:
        while produced < config.max_new_tokens:
            # Each step yields at most k + 1 tokens and places k + 1 tokens from position len(sequence) - 1.
            room = min(config.max_new_tokens - produced - 1, context - len(sequence))
            if room < 0:
                stats.stop_reason = "context"
                return
            k = 0 if draft is None or produced == 0 else min(policy.next(), room)  # k = 0: the draft sits out
            t0 = time.perf_counter()
            drafted, draft_probs = propose(draft, sequence, k, warp, rng, target.vocab_size) if k else ([], None)
            t1 = time.perf_counter()
            logits = target.forward(target.pending(sequence) + drafted, last=k + 1)
            t2 = time.perf_counter()
            if warp is None:
                kept, next_token = accept_greedy(logits, drafted)
            else:
                target_probs = probabilities(logits, warp)
                kept, next_token = accept_drafted(target_probs, draft_probs, drafted, rng) if k else (
                    0, sample(target_probs[0], rng))
            new_tokens = drafted[:kept] + [next_token]
            # The verified prefix stays cached; rejected drafts leave both caches.
            target.rollback(len(sequence) + kept)
            if draft is not None:
                draft.rollback(min(draft.cached, len(sequence) + kept))
            stats.target_calls += 1
            stats.target_s += t2 - t1
            stats.draft_s += t1 - t0
            if k:
                stats.draft_calls += k
                stats.drafted_tokens += k
                stats.accepted_tokens += kept
            if draft is not None and produced > 0:
                stats.draft_lengths.append(k)
                policy.record(k, kept, t2 - t1, t1 - t0)
            if produced == 0:
                stats.ttft_s = time.perf_counter() - start
            if not config.ignore_eos:
                for i, token in enumerate(new_tokens):
                    if token in eos_ids:
                        new_tokens = new_tokens[:i + 1]
                        stats.stop_reason = "eos"
                        break
            sequence.extend(new_tokens)
            produced += len(new_tokens)
            stats.new_tokens = produced
            yield new_tokens
            if stats.stop_reason:
                return
        stats.stop_reason = "length"
    finally:
        if not stats.stop_reason:
            stats.stop_reason = "stopped"
        stats.finish(start)
