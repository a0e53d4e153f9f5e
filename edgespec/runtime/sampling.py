"""Token distributions: temperature, top-k and top-p warping, and one draw from a distribution."""

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
