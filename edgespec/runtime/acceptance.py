"""Acceptance rules: how the draft picks its tokens and which of them the target keeps.

A rule has two halves that must agree: `choose` (the draft's pick from its logits, with the
distribution it drew from when sampling) and `verify` (given the target's logits for every drafted
position plus one, how many drafted tokens stay and which token the target adds). The loop in
speculative.py does not know which rule it runs; tree and collaborative rules plug in here.

Speculative sampling (Leviathan et al. 2023; Chen et al. 2023): a drafted token x ~ q is kept
with probability min(1, p(x)/q(x)); on rejection the replacement is drawn from
norm(max(0, p - q)). The kept tokens are then distributed exactly as p, whatever q is, including
a q that puts all its mass on one token (a prompt-lookup proposal).
"""

from __future__ import annotations

import numpy as np

from edgespec.runtime.sampling import Warp, probabilities, sample


class GreedyRule:
    """Keep drafted tokens while they equal the target's argmax; the output is exactly target-only greedy."""

    sampling = False

    def choose(self, logits: np.ndarray, rng: np.random.Generator) -> tuple[int, None]:
        return int(logits.argmax()), None

    def first(self, logits: np.ndarray, rng: np.random.Generator) -> int:
        """The target's own pick where nothing was drafted (after the prompt)."""
        return int(logits.argmax())

    def verify(self, target_logits: np.ndarray, drafted: list[int], draft_probs: np.ndarray | None,
               rng: np.random.Generator) -> tuple[int, int]:
        choices = target_logits.argmax(axis=-1)
        for i, token in enumerate(drafted):
            if choices[i] != token:
                return i, int(choices[i])
        return len(drafted), int(choices[len(drafted)])


class SamplingRule:
    """Lossless speculative sampling: the output is distributed as the target's warped distribution."""

    sampling = True

    def __init__(self, warp: Warp):
        self.warp = warp

    def choose(self, logits: np.ndarray, rng: np.random.Generator) -> tuple[int, np.ndarray]:
        probs = probabilities(logits, self.warp)
        return sample(probs, rng), probs

    def first(self, logits: np.ndarray, rng: np.random.Generator) -> int:
        return sample(probabilities(logits[-1], self.warp), rng)

    def verify(self, target_logits: np.ndarray, drafted: list[int], draft_probs: np.ndarray | None,
               rng: np.random.Generator) -> tuple[int, int]:
        return accept_drafted(WarpedRows(target_logits, self.warp), draft_probs, drafted, rng)


class WarpedRows:
    """The target's warped distributions, row by row as accept_drafted reads them: a step rejected at token i never
    warps the rows after it (each row costs a float64 softmax over the vocabulary, about 0.25 ms for SmolLM2's)."""

    def __init__(self, logits: np.ndarray, warp: Warp):
        self.logits, self.warp, self.rows = logits, warp, {}

    def __getitem__(self, index):
        i, *token = index if isinstance(index, tuple) else (index,)
        if i not in self.rows:
            self.rows[i] = probabilities(self.logits[i], self.warp)
        return self.rows[i][token[0]] if token else self.rows[i]


def accept_drafted(target_probs: np.ndarray, draft_probs: np.ndarray | None, drafted: list[int],
                   rng: np.random.Generator) -> tuple[int, int]:
    """Rejection-sample the drafted tokens against the target.

    target_probs: [k+1, V] (row i is the target's distribution after drafted[:i]), or WarpedRows;
    draft_probs: [k, V], or None for deterministic proposals (all mass on the drafted token).
    Returns (number accepted, the next token: a residual draw at the first rejection, or a draw
    from the last target row when all k were accepted).
    """
    for i, token in enumerate(drafted):
        p = target_probs[i, token]
        q = 1.0 if draft_probs is None else draft_probs[i, token]
        if q > 0 and rng.random() * q < p:
            continue
        if draft_probs is None:
            residual = target_probs[i].copy()
            residual[token] = 0.0
        else:
            residual = np.maximum(target_probs[i] - draft_probs[i], 0.0)
        # sample() scales by the row's total, so the residual needs no normalising; its total is 0 only when p == q
        # exactly, in which case rejection cannot happen (guarded anyway).
        return i, sample(residual if residual.sum() > 0 else target_probs[i], rng)
    return len(drafted), sample(target_probs[len(drafted)], rng)


def rule_for(do_sample: bool, warp: Warp) -> GreedyRule | SamplingRule:
    return SamplingRule(warp) if do_sample else GreedyRule()
