"""Collaborative decoding of the target and the draft: weighted ensemble and contrastive decoding, either naive
(both models on every token) or made fast by speculation (CoS: Fu et al., ICML 2025, "Fast Large Language Model
Collaborative Decoding via Speculation"; reference code Kamichanw/CoS).

Every token comes from r, a combination of the target's next-token distribution p (logits z_t) and the draft's
q (logits z_d):
  ensemble     r = (1 - w) p + w q, p and q each warped (temperature, top-k, top-p) first, as the reference does;
  contrastive  r = warp(z_t - a z_d), the combined logits warped (the reference's "raw-logits" target, a = 0.1).
Greedy decoding picks argmax r of the unwarped distributions (temperature, top-k and top-p are sampling settings).

A draft with a reduced output head (draft_vocab.npy) has q = 0 outside its rows. For contrastive decoding its
logit there is taken as the lowest logit of its head: the draft ranks those tokens below all of its own, and a
finite value bounds their bonus (-inf would make every one of them win; 0 would depend on the logits' offset).

CoS: the draft proposes k tokens from q; one target call gives p at each of them and one past them; a drafted
token x stays with probability min(1, r(x)/q(x)), the first rejected one is replaced by a draw from
norm(max(0, r - q)): the speculative-sampling rule with r in place of p, so the output follows r exactly
(greedy: drafted tokens stay while they equal argmax r). After k kept tokens the next position needs q as well,
which the draft has not computed. Two ways (CollabConfig.bonus):
  extra-call (the default): one more draft call on the last drafted token gives q there; the token is drawn
    from r;
  alternate (CoS's alternate proposal): the target's own draw y ~ p there is a proposal; the draft's next call
    feeds the last drafted token and y, which gives q at y's position (and after it, where drafting goes on),
    and y stays with probability min(1, r(y)/p(y)), else a draw from norm(max(0, r - p)) replaces it.
    It saves a draft call whenever y stays, but its 2-token draft call and the 1-token call after it cost
    about as much more on a CPU (a change of call shape), so it measured no faster here (docs/collab.md).
The draft's logits enter the output, so greedy CoS equals naive collaborative decoding token for token only
when both models compute logits that do not depend on how many tokens a call feeds (exact kernels; the pipeline
compiles an exact draft for collaborative decoding unless exact=False).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import numpy as np

from edgespec.runtime.config import CollabConfig, GenerationConfig, GenerationStats
from edgespec.runtime.draft_length import DraftLength
from edgespec.runtime.errors import EdgespecError
from edgespec.runtime.model import StatefulLM
from edgespec.runtime.sampling import Warp, probabilities, sample
from edgespec.runtime.speculative import cut_at_eos


class Combination:
    """r from one row of target logits and one row of draft logits, and the choices made from them.

    warp None: greedy (argmax r, the draft proposes its argmax); else sampling with that warp."""

    def __init__(self, collab: CollabConfig, warp: Warp | None, vocab_map: np.ndarray | None, vocab_size: int):
        self.collab = collab
        self.sampling = warp is not None
        self.warp = warp if warp is not None else Warp()
        self.vocab_map = vocab_map
        self.vocab_size = vocab_size

    def draft_token(self, index: int) -> int:
        return int(self.vocab_map[index]) if self.vocab_map is not None else index

    def draft_probs(self, draft_logits: np.ndarray) -> np.ndarray:
        """q over the target's vocabulary (zero outside a reduced head)."""
        probs = probabilities(draft_logits, self.warp)
        if self.vocab_map is None:
            return probs
        full = np.zeros(self.vocab_size, dtype=probs.dtype)
        full[self.vocab_map] = probs
        return full

    def draft_logits(self, draft_logits: np.ndarray) -> np.ndarray:
        """z_draft over the target's vocabulary: outside a reduced head, the head's lowest logit (module doc)."""
        logits = draft_logits.astype(np.float64)
        if self.vocab_map is None:
            return logits
        full = np.full(self.vocab_size, logits.min())
        full[self.vocab_map] = logits
        return full

    def combined(self, target_logits: np.ndarray, draft_logits: np.ndarray) -> np.ndarray:
        """r as float64 probabilities over the target's vocabulary."""
        if self.collab.method == "ensemble":
            w = self.collab.weight
            return (1.0 - w) * probabilities(target_logits, self.warp) + w * self.draft_probs(draft_logits)
        return probabilities(self.contrast(target_logits, draft_logits), self.warp)

    def contrast(self, target_logits: np.ndarray, draft_logits: np.ndarray) -> np.ndarray:
        return target_logits.astype(np.float64) - self.collab.alpha * self.draft_logits(draft_logits)

    def best(self, target_logits: np.ndarray, draft_logits: np.ndarray) -> int:
        """argmax r (greedy), of the unwarped distributions: the same in naive decoding and CoS."""
        if self.collab.method == "contrastive":
            return int(self.contrast(target_logits, draft_logits).argmax())
        # (1 - w) softmax(z_t) + w softmax(z_d), in float64 without probabilities()' warping (half the time)
        w = self.collab.weight
        mix = np.exp(target_logits.astype(np.float64) - float(target_logits.max()))
        mix *= (1.0 - w) / mix.sum()
        q = np.exp(draft_logits.astype(np.float64) - float(draft_logits.max()))
        q *= w / q.sum()
        if self.vocab_map is None:
            mix += q
        else:
            mix[self.vocab_map] += q
        return int(mix.argmax())

    def draw(self, target_logits: np.ndarray, draft_logits: np.ndarray, rng: np.random.Generator) -> int:
        """A token from r: naive decoding, the prefill and the extra-call bonus position."""
        if not self.sampling:
            return self.best(target_logits, draft_logits)
        return sample(self.combined(target_logits, draft_logits), rng)

    def propose(self, draft_logits: np.ndarray, rng: np.random.Generator) -> tuple[int, np.ndarray | None]:
        """The draft's pick from q, with q over the target's vocabulary when sampling."""
        if not self.sampling:
            return self.draft_token(int(draft_logits.argmax())), None
        probs = probabilities(draft_logits, self.warp)
        token = self.draft_token(sample(probs, rng))
        if self.vocab_map is None:
            return token, probs
        full = np.zeros(self.vocab_size, dtype=probs.dtype)
        full[self.vocab_map] = probs
        return token, full

    def own(self, target_logits: np.ndarray, rng: np.random.Generator) -> tuple[int, np.ndarray | None]:
        """The target's own pick from p: its alternate proposal, with p when sampling."""
        if not self.sampling:
            return int(target_logits.argmax()), None
        probs = probabilities(target_logits, self.warp)
        return sample(probs, rng), probs

    def check(self, target_logits: np.ndarray, draft_logits: np.ndarray, token: int, target_probs: np.ndarray | None,
              rng: np.random.Generator) -> int:
        """The target's proposal `token` (drawn from target_probs) verified against r: it, or its replacement."""
        if not self.sampling:
            return self.best(target_logits, draft_logits)  # equal to `token` exactly when it stays
        return accept_proposal(self.combined(target_logits, draft_logits), target_probs, token, rng)

    def verify(self, target_logits: np.ndarray, draft_logits: list[np.ndarray], drafted: list[int],
               draft_probs: list[np.ndarray | None], rng: np.random.Generator) -> tuple[int, int | None]:
        """Drafted tokens against r, row by row (r is computed up to the first rejection only).
        Returns (tokens kept, the replacement of the first rejected one or None when all stay)."""
        if not self.sampling:
            for i, token in enumerate(drafted):
                choice = self.best(target_logits[i], draft_logits[i])
                if choice != token:
                    return i, choice
            return len(drafted), None
        return accept_collab(lambda i: self.combined(target_logits[i], draft_logits[i]), draft_probs, drafted, rng)


def accept_collab(combined: Callable[[int], np.ndarray], draft_probs: list[np.ndarray], drafted: list[int],
                  rng: np.random.Generator) -> tuple[int, int | None]:
    """Rejection-sample drafted tokens x_i ~ q_i against r_i = combined(i): kept with probability
    min(1, r(x)/q(x)), the first rejected one replaced by a draw from norm(max(0, r - q)). Draws from `rng`
    exactly as acceptance.accept_drafted does (one uniform per verified token), so r = p gives plain
    speculative sampling token for token. Returns (kept, replacement or None when all stay)."""
    for i, token in enumerate(drafted):
        r, q = combined(i), draft_probs[i]
        if q[token] > 0 and rng.random() * q[token] < r[token]:
            continue
        residual = np.maximum(r - q, 0.0)
        total = residual.sum()
        # total == 0 only when r == q, where rejection cannot happen; guard anyway.
        return i, sample(residual / total if total > 0 else r, rng)
    return len(drafted), None


def accept_proposal(combined: np.ndarray, proposal_probs: np.ndarray, token: int, rng: np.random.Generator) -> int:
    """One token y drawn from `proposal_probs` (the target's p: CoS's alternate proposal), verified against r:
    kept with probability min(1, r(y)/p(y)) (no uniform drawn when r(y) >= p(y)), else replaced by a draw from
    norm(max(0, r - p)). The result follows r."""
    p, r = proposal_probs[token], combined[token]
    if r >= p or rng.random() * p < r:
        return token
    residual = np.maximum(combined - proposal_probs, 0.0)
    total = residual.sum()
    return sample(residual / total if total > 0 else combined, rng)


def collab_decode(target: StatefulLM, draft: StatefulLM, prompt: list[int], config: GenerationConfig,
                  eos_ids: set[int], stats: GenerationStats, policy: DraftLength | None = None) -> Iterator[list[int]]:
    """Yield new tokens of collaborative decoding (config.collab) as they are settled; naive or CoS."""
    if config.collab is None:
        raise EdgespecError("collab_decode needs GenerationConfig.collab")
    context = min(target.context_length, draft.context_length)
    if len(prompt) >= context:
        raise EdgespecError(f"prompt has {len(prompt)} tokens but the draft's context holds {draft.context_length}: "
                            "collaborative decoding needs both models to read all of it")
    if config.collab.naive:
        return _naive(target, draft, prompt, config, eos_ids, stats, context)
    return _cos(target, draft, prompt, config, eos_ids, stats, context, policy)


class _Output:
    """The settled sequence and the stats that follow it (eos cut, time to first token)."""

    def __init__(self, prompt: list[int], config: GenerationConfig, eos_ids: set[int], stats: GenerationStats):
        self.sequence = list(prompt)
        self.config, self.eos_ids, self.stats = config, eos_ids, stats
        self.start = time.perf_counter()
        stats.prompt_tokens = len(prompt)

    def take(self, tokens: list[int]) -> tuple[list[int], bool]:
        ended = False
        if not self.config.ignore_eos:
            tokens, ended = cut_at_eos(tokens, self.eos_ids)
        if tokens and self.stats.new_tokens == 0:
            self.stats.ttft_s = time.perf_counter() - self.start
        self.sequence.extend(tokens)
        self.stats.new_tokens += len(tokens)
        if ended:
            self.stats.stop_reason = "eos"
        return tokens, ended

    @property
    def remaining(self) -> int:
        return self.config.max_new_tokens - self.stats.new_tokens

    def finish(self) -> None:
        if not self.stats.stop_reason:
            self.stats.stop_reason = "stopped"
        self.stats.finish(self.start)


def _timed(lm: StatefulLM, tokens: list[int], last: int) -> tuple[np.ndarray, float]:
    t0 = time.perf_counter()
    logits = lm.forward(tokens, last=last)
    return logits, time.perf_counter() - t0


def _naive(target: StatefulLM, draft: StatefulLM, prompt: list[int], config: GenerationConfig, eos_ids: set[int],
           stats: GenerationStats, context: int) -> Iterator[list[int]]:
    """Both models on every token: the baseline, and the reference CoS is tested against."""
    rng = np.random.default_rng(config.seed)
    combo = Combination(config.collab, config.warp if config.do_sample else None, draft.vocab_map, target.vocab_size)
    out = _Output(prompt, config, eos_ids, stats)
    try:
        while out.remaining > 0:
            if len(out.sequence) >= context:
                stats.stop_reason = "context"
                return
            target_logits, target_s = _timed(target, target.pending(out.sequence), 1)
            draft_logits, draft_s = _timed(draft, draft.pending(out.sequence), 1)
            stats.target_calls += 1
            stats.draft_calls += 1
            stats.target_s += target_s
            stats.draft_s += draft_s
            new, ended = out.take([combo.draw(target_logits[0], draft_logits[0], rng)])
            yield new
            if ended:
                return
        stats.stop_reason = "length"
    finally:
        out.finish()


def _cos(target: StatefulLM, draft: StatefulLM, prompt: list[int], config: GenerationConfig, eos_ids: set[int],
         stats: GenerationStats, context: int, policy: DraftLength | None) -> Iterator[list[int]]:
    """CoS: the draft proposes, every proposal is verified against r (module doc)."""
    rng = np.random.default_rng(config.seed)
    combo = Combination(config.collab, config.warp if config.do_sample else None, draft.vocab_map, target.vocab_size)
    alternate = config.collab.bonus == "alternate"
    longest = config.max_draft_length
    if target.max_feed:
        longest = min(longest, target.max_feed - 1)  # NPU: a longer verify call would be split in two
    if policy is None:
        policy = DraftLength(min(config.draft_length, longest), longest, config.adaptive_draft, always_drafts=True)
    else:
        policy.restart(min(config.draft_length, longest), longest, config.adaptive_draft)
    out = _Output(prompt, config, eos_ids, stats)
    pending: tuple[int, np.ndarray, np.ndarray | None] | None = None  # the target's proposal, its logits and p
    try:
        # Prefill: the target reads the prompt. With the alternate proposal its own pick is a proposal the draft
        # verifies in its first call (which reads the prompt too); otherwise the draft reads the prompt now.
        target_logits, target_s = _timed(target, target.pending(out.sequence), 1)
        stats.target_calls += 1
        stats.target_s += target_s
        if alternate:
            token, p = combo.own(target_logits[0], rng)
            pending = (token, target_logits[0], p)
        else:
            draft_logits, draft_s = _timed(draft, draft.pending(out.sequence), 1)
            stats.draft_calls += 1
            stats.draft_s += draft_s
            new, ended = out.take([combo.draw(target_logits[0], draft_logits[0], rng)])
            yield new
            if ended:
                return
        while out.remaining > 0:
            draft_s = 0.0
            first = None  # the draft's logits at the next position, when a call already gave them
            if pending is not None:
                token, proposal_logits, proposal_probs = pending
                pending = None
                sequence = out.sequence
                logits, seconds = _timed(draft, draft.pending(sequence) + [token], 2)
                stats.draft_calls += 1
                draft_s += seconds
                settled = combo.check(proposal_logits, logits[0], token, proposal_probs, rng)
                stats.alternate_tokens += 1
                if settled == token:
                    stats.alternate_accepted += 1
                    first = logits[1]
                else:
                    draft.rollback(len(sequence))
                new, ended = out.take([settled])
                yield new
                if ended or out.remaining <= 0:
                    stats.draft_s += draft_s
                    if not ended:
                        stats.stop_reason = "length"
                    return
            sequence = out.sequence
            if len(sequence) >= context:
                stats.draft_s += draft_s
                stats.stop_reason = "context"
                return
            # A step settles at most k + 1 tokens; the target reads up to len + k positions, the draft's next
            # call up to len + k + 1.
            k = max(0, min(policy.next(), out.remaining - 1, context - len(sequence) - 1))
            if first is None and (k > 0 or not alternate):
                logits, seconds = _timed(draft, draft.pending(sequence), 1)
                stats.draft_calls += 1
                draft_s += seconds
                first = logits[0]
            rows = [first]
            drafted: list[int] = []
            probs: list[np.ndarray | None] = []
            for i in range(k):
                token, q = combo.propose(rows[i], rng)
                drafted.append(token)
                probs.append(q)
                if i + 1 < k:
                    logits, seconds = _timed(draft, [token], 1)
                    stats.draft_calls += 1
                    draft_s += seconds
                    rows.append(logits[0])
            target_logits, target_s = _timed(target, target.pending(sequence) + drafted, k + 1)
            stats.target_calls += 1
            kept, replacement = combo.verify(target_logits, rows, drafted, probs, rng)
            if replacement is not None:
                settled = drafted[:kept] + [replacement]
                target.rollback(len(sequence) + kept)
                draft.rollback(min(draft.cached, len(sequence) + kept))
            elif alternate:
                settled = drafted
                token, p = combo.own(target_logits[k], rng)
                pending = (token, target_logits[k], p)
            else:
                if k:  # the extra call: the draft reads its last drafted token for q past it
                    logits, seconds = _timed(draft, [drafted[-1]], 1)
                    stats.draft_calls += 1
                    draft_s += seconds
                    rows.append(logits[0])
                settled = drafted + [combo.draw(target_logits[k], rows[k], rng)]
            stats.target_s += target_s
            stats.draft_s += draft_s
            stats.draft_lengths.append(k)
            stats.drafted_tokens += k
            stats.accepted_tokens += kept
            stats.rejected_steps += kept < k
            policy.record(k, kept, target_s, draft_s)
            if settled:
                new, ended = out.take(settled)
                yield new
                if ended:
                    return
        stats.stop_reason = "length"  # a proposal still pending at the limit is dropped: it was never settled
    finally:
        out.finish()
