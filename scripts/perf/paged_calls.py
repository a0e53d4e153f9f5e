"""Calls on a PagedLM built by hand (split_calls.py, dummy_step.py): each token of a call as its own one-token
subsequence over the same cache blocks, and one inference with given inputs."""
import numpy as np

from edgespec.runtime.model import LOGITS_COUNT
from edgespec.runtime.paged import NO_TREE


def split_inputs(lm, tokens, positions) -> dict:
    """Inputs feeding token i as a one-token subsequence with past_lens = cached + i (every token's keys are written
    before any attends)."""
    n, past = len(tokens), lm.cached
    blocks = -(-np.arange(past + 1, past + n + 1) // lm.block_size)
    return {"input_ids": tokens, "position_ids": positions, "max_context_len": np.array(past + n, np.int32),
            "past_lens": np.arange(past, past + n, dtype=np.int32),
            "subsequence_begins": np.arange(n + 1, dtype=np.int32),
            "block_indices": np.concatenate([lm.block_ids[:b] for b in blocks]).astype(np.int32),
            "block_indices_begins": np.concatenate([[0], np.cumsum(blocks)]).astype(np.int32)}


def run(lm, inputs: dict, fed, rows: int) -> np.ndarray:
    """One inference; `fed` joins the cache's token list; the logits of the last `rows` tokens."""
    if LOGITS_COUNT in lm.input_names:
        inputs[LOGITS_COUNT] = np.array([rows], np.int64)
    if lm.tree_inputs:  # the PA op takes the mask inputs (a u8 by-channel cache: no tree, still the inputs)
        inputs |= NO_TREE
    lm.inputs.feed(lm.request, inputs)  # the tensors PagedLM's own calls write into (runtime/bound_inputs.py)
    lm.request.start_async()
    lm.request.wait()
    lm.tokens.extend(int(t) for t in fed)
    logits = lm.request.get_tensor("logits").data
    return np.array(logits.reshape(-1, logits.shape[-1])[-rows:], dtype=np.float32)
