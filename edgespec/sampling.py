"""Token choice: greedy, warped sampling, and the lossless speculative acceptance rule.

Speculative sampling (Leviathan et al. 2023; Chen et al. 2023): a drafted token x ~ q is kept
with probability min(1, p(x)/q(x)); on rejection the replacement is drawn from
norm(max(0, p - q)). The kept tokens are then distributed exactly as p, whatever q is.
Here p and q are the target's and draft's distributions after the same temperature/top-k/top-p.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Warp:
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0


def probabilities(logits: np.ndarray, warp: Warp) -> np.ndarray:
    """Softmax of logits [..., V] after temperature, top-k and top-p, as float64 rows summing to 1."""
    scaled = logits.astype(np.float64) / max(warp.temperature, 1e-6)
    if warp.top_k and warp.top_k < scaled.shape[-1]:
        kth = np.partition(scaled, -warp.top_k, axis=-1)[..., -warp.top_k, None]
        scaled = np.where(scaled < kth, -np.inf, scaled)
    scaled -= scaled.max(axis=-1, keepdims=True)
    probs = np.exp(scaled)
    probs /= probs.sum(axis=-1, keepdims=True)
    if warp.top_p < 1.0:
        probs = _top_p(probs, warp.top_p)
    return probs


def _top_p(probs: np.ndarray, top_p: float) -> np.ndarray:
    order = np.argsort(-probs, axis=-1)
    sorted_probs = np.take_along_axis(probs, order, axis=-1)
    # Keep the smallest prefix whose mass reaches top_p (the token crossing the line stays).
    before = np.cumsum(sorted_probs, axis=-1) - sorted_probs
    sorted_probs = np.where(before < top_p, sorted_probs, 0.0)
    kept = np.zeros_like(probs)
    np.put_along_axis(kept, order, sorted_probs, axis=-1)
    return kept / kept.sum(axis=-1, keepdims=True)


def sample(probs: np.ndarray, rng: np.random.Generator) -> int:
    """One draw from a probability row, by inverse CDF (robust to rounding in the last bin)."""
    cdf = np.cumsum(probs)
    return int(min(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"), len(probs) - 1))


def accept_drafted(target_probs: np.ndarray, draft_probs: np.ndarray, drafted: list[int],
                   rng: np.random.Generator) -> tuple[int, int]:
    """Rejection-sample the drafted tokens against the target.

    target_probs: [k+1, V] (row i is the target's distribution after drafted[:i]);
    draft_probs: [k, V]. Returns (number accepted, the next token: a residual draw at the
    first rejection, or a draw from the last target row when all k were accepted).
    """
    for i, token in enumerate(drafted):
        p, q = target_probs[i, token], draft_probs[i, token]
        if q > 0 and rng.random() * q < p:
            continue
        residual = np.maximum(target_probs[i] - draft_probs[i], 0.0)
        total = residual.sum()
        # total == 0 only when p == q exactly, in which case rejection cannot happen; guard anyway.
        return i, sample(residual / total if total > 0 else target_probs[i], rng)
    return len(drafted), sample(target_probs[len(drafted)], rng)


def accept_greedy(target_logits: np.ndarray, drafted: list[int]) -> tuple[int, int]:
    """Keep drafted tokens while they equal the target's argmax; then the target's own next token."""
    choices = target_logits.argmax(axis=-1)
    for i, token in enumerate(drafted):
        if choices[i] != token:
            return i, int(choices[i])
    return len(drafted), int(choices[len(drafted)])
