"""Exact verification on a CPU's fast kernels: calls of two or more tokens.

Greedy speculative output equals target-only output only if a token's logits do not depend on how many tokens the
call that computed them fed. OpenVINO's CPU defaults (bf16 math where the CPU has it, int8 dynamic quantization of
activations, a rounded KV cache) run a 1-token call through other kernels than a wider one, so speculation drifts
from one-token decoding (docs/exactness.md). Across calls of 2 or more tokens the paged model's logits are bitwise
the same on a VNNI CPU: activations are quantized per token and summed in int32, and attention reads the in-call
keys from the cache it just wrote. So a target whose every call feeds at least two tokens (a one-token step feeds
the last cached token again: PagedLM.min_feed) is exact on the fast kernels, and its verify calls cost about what a
step costs.

Whether that holds is a property of the CPU's kernels, not promised by OpenVINO: `bitwise_same_across_widths` checks
it on the loaded model, and the caller falls back to the exact f32 kernels where it does not hold.
"""

from __future__ import annotations

import numpy as np

PAST = 40  # tokens read before the checked ones
CHECKED = 24  # positions whose logits are compared
# Call widths compared with two-token calls, each dividing CHECKED (no 1-token call): up to a longest chain (13) and
# a 15-node tree with its pending token; prompts are wider, but both loops read a prompt in calls of the same width.
WIDTHS = (3, 4, 6, 12, 24)


def _ids(vocab_size: int, count: int) -> np.ndarray:
    """Token ids spread over the vocabulary (any ids do: the kernels, not the text, are checked)."""
    vocab = vocab_size or 1000
    return (np.arange(count, dtype=np.int64) * 7919 + 1000) % vocab


def bitwise_same_across_widths(lm) -> bool:
    """Feed CHECKED tokens after PAST ones in two-token calls, then in calls of each of WIDTHS (and as a tree call
    with a chain mask where the model takes one); True when every call gave every token exactly the same logits.
    `lm` is a PagedLM with min_feed = 2; its cache is left empty."""
    ids = _ids(lm.vocab_size, PAST + CHECKED)
    try:
        lm.reset()
        lm.forward(ids[:PAST], last=1)
        reference = np.concatenate([lm.forward(ids[i:i + 1]) for i in range(PAST, PAST + CHECKED)])
        for width in WIDTHS:
            lm.rollback(PAST)
            rows = np.concatenate([lm.forward(ids[i:i + width]) for i in range(PAST, PAST + CHECKED, width)])
            if not np.array_equal(rows, reference):
                return False
        if lm.tree:
            lm.rollback(PAST)
            chain = np.tril(np.ones((CHECKED, CHECKED), np.uint8))
            rows = lm.forward_tree(ids[PAST:], np.arange(PAST, PAST + CHECKED), chain)
            if not np.array_equal(rows, reference):
                return False
        return True
    finally:
        lm.reset()
