"""One LLM in OpenVINO's paged-attention (PA) form, driven directly: the form GenAI's LLMPipeline runs on CPU.

The PA model takes its KV cache as block tensors the caller owns, and `past_lens` says how many positions
of them are valid. So rolling back is free (the next call writes over the forgotten tail: no copies, no
dead slots to mask), and its CPU kernels prefill long prompts and attend over long contexts faster than the
stateful SDPA form (measured in docs/performance.md). Same interface as StatefulLM.
"""

from __future__ import annotations

import numpy as np
import openvino as ov
from openvino._offline_transformations import paged_attention_transformation

from edgespec.runtime.bound_inputs import BoundInputs
from edgespec.runtime.errors import EdgespecError
from edgespec.runtime.model import LOGITS_COUNT, common_prefix, head_matmul, slice_head_input

CACHE_INPUTS = ("key_cache.", "value_cache.")
TREE_INPUTS = ("qq_bias", "qq_bias_begins")  # the PA op's query-to-query mask: tree verification (tree.py)
NO_TREE = {"qq_bias": np.zeros(0, np.uint8), "qq_bias_begins": np.zeros(0, np.int32)}  # empty: plain causal


def to_paged(model: ov.Model) -> bool:
    """Turn a stateful LLM into the PA form, its output head computing only the last `logits_count` tokens.
    Returns False (model unchanged) when the model is not a stateful LLM the transformation knows."""
    if not model.get_sinks():
        return False
    # qq_bias: an [n, n] mask between the tokens of one call, so a call can verify a tree (empty for a chain).
    paged_attention_transformation(model, allow_qq_bias=True)
    node = head_matmul(model)
    if node is not None:
        # PA models put all tokens of a call on one axis: the first, or the second of [tokens, 1, hidden].
        shape = node.input_value(0).get_partial_shape()
        axis = 0 if shape.rank.get_length() == 3 and shape[1].is_static and shape[1].get_length() == 1 else 1
        slice_head_input(model, node, axis)
    model.validate_nodes_and_infer_types()
    return True


class PagedLM:
    """A compiled PA model holding one sequence in blocks 0..n-1 of its own cache tensors."""

    rollback_mode = "paged"
    max_feed = None  # NPU only (StatefulLM's "position" mode)

    def __init__(self, compiled: ov.CompiledModel, context_length: int, vocab_map: np.ndarray | None = None,
                 capacity: int = 512, prefill_compiled: ov.CompiledModel | None = None, min_feed: int = 1):
        """prefill_compiled: the same model compiled with faster kernels for `prefill` calls, writing the same cache
        tensors (its cache inputs must match this one's; else it is not used).
        min_feed: every call feeds at least this many tokens, the last cached ones fed again where a call has fewer
        (two: OpenVINO's CPU defaults give a token bitwise the same logits in every call of 2 or more tokens, not in a
        1-token call; call_width.py)."""
        self.compiled = compiled
        self.min_feed = min_feed
        self.request = compiled.create_infer_request()
        self.context_length = context_length
        self.vocab_map = vocab_map  # a reduced draft head predicts indices into this map of target ids
        self.input_names = {port.any_name for port in compiled.inputs}
        self.cache_ports = [port for port in compiled.inputs if port.any_name.startswith(CACHE_INPUTS)]
        # CPU cache layout: [blocks, kv_heads, block_size, head_size (+ scales for u8)]. A u8 key cache quantized by
        # channel holds its scales as extra rows of each block ([..., 32 + 8, head] for Qwen2.5 on the CPU defaults),
        # so the block size is read from a value cache: read from the key cache (40), a call listed too few blocks and
        # the kernel read the block table past them (right only while that table was a view of a longer arange).
        values = [port for port in self.cache_ports if port.any_name.startswith("value_cache.")]
        self.block_size = (values or self.cache_ports)[0].get_partial_shape()[2].get_length()
        # A tree's kept path is moved slot by slot (keep_slots): only where a block's rows are its tokens.
        self.plain_cache = all(port.get_partial_shape()[2].get_length() == self.block_size for port in self.cache_ports)
        self.tree_inputs = set(TREE_INPUTS) <= self.input_names  # the PA op takes a query-to-query mask
        self.tree = self.tree_inputs and self.plain_cache  # can a call verify a tree (forward_tree)
        vocab_dim = compiled.output("logits").get_partial_shape()[-1]
        self.vocab_size = vocab_dim.get_length() if vocab_dim.is_static else 0
        self.prefill_request = None
        if prefill_compiled is not None and self._same_cache(prefill_compiled):
            self.prefill_request = prefill_compiled.create_infer_request()
        self.blocks = 0
        self.calls = 0
        self.inputs = BoundInputs()  # each call's inputs written into tensors bound to the request
        self.block_ids = np.zeros(0, np.int32)
        self.grow(min(capacity, context_length))
        self.reset()

    @property
    def cached(self) -> int:
        return len(self.tokens)

    def _same_cache(self, other: ov.CompiledModel) -> bool:
        theirs = {port.any_name: (port.get_element_type(), port.get_partial_shape()) for port in other.inputs}
        return all(theirs.get(port.any_name) == (port.get_element_type(), port.get_partial_shape())
                   for port in self.cache_ports)

    def reset(self) -> None:
        self.tokens: list[int] = []  # what the cache holds, position by position

    def grow(self, positions: int) -> None:
        """Make room for `positions` cached positions, doubling the block tensors (their contents copied)."""
        need = -(-positions // self.block_size)
        if need <= self.blocks:
            return
        need = max(need, 2 * self.blocks)
        for port in self.cache_ports:
            dims = [d.get_length() for d in list(port.get_partial_shape())[1:]]
            grown = ov.Tensor(port.get_element_type(), [need, *dims])
            if self.blocks:
                np.copyto(grown.data[:self.blocks], self.request.get_tensor(port.any_name).data)
            self.request.set_tensor(port.any_name, grown)
            if self.prefill_request is not None:
                self.prefill_request.set_tensor(port.any_name, grown)  # one cache, written by both
        self.blocks = need
        self.block_ids = np.arange(need, dtype=np.int32)

    def pending(self, sequence: list[int]) -> list[int]:
        """Roll back to the longest cached prefix of `sequence`; return the tokens still to feed."""
        common = common_prefix(self.tokens, sequence)
        self.rollback(common)
        return sequence[common:]

    def rollback(self, keep: int) -> None:
        """Forget every cached position from `keep` on: the next call writes over them."""
        del self.tokens[max(keep, 0):]

    def forward(self, tokens: np.ndarray | list[int], last: int | None = None) -> np.ndarray:
        """Append `tokens` to the cache; return the logits of the last `last` of them (all by default)."""
        tokens = np.asarray(tokens, dtype=np.int64).reshape(-1)
        return self._run(tokens, np.arange(self.cached, self.cached + len(tokens), dtype=np.int64), None, last)

    def prefill(self, tokens: np.ndarray | list[int], last: int | None = None) -> np.ndarray:
        """`forward` for a prompt: on the prefill model where there is one and the cache is empty (every later call
        runs the exact one). A prompt that extends a cache (a chat's next turn) is read exactly: where the cached
        part ends depends on what the loop fed before (a speculative step may have cached one token more than
        target-only decoding), and a boundary read on other kernels moved the next turn's output."""
        if self.prefill_request is None or self.cached:
            return self.forward(tokens, last)
        tokens = np.asarray(tokens, dtype=np.int64).reshape(-1)
        positions = np.arange(self.cached, self.cached + len(tokens), dtype=np.int64)
        return self._run(tokens, positions, None, last, self.prefill_request)

    def forward_tree(self, tokens: list[int], positions: np.ndarray, mask: np.ndarray,
                     last: int | None = None) -> np.ndarray:
        """Feed `tokens` into the next cache slots with their own position ids and an [n, n] mask of which of them
        each one sees (every token also sees all cached ones); return the logits of the last `last`. The cache then
        holds them in slot order: `keep_slots` makes it a sequence again."""
        if not self.tree:
            raise EdgespecError("this model cannot verify a tree (its paged-attention op has no qq_bias input, or its "
                                "KV cache is quantized by channel)")
        tokens = np.asarray(tokens, dtype=np.int64).reshape(-1)
        return self._run(tokens, np.asarray(positions, dtype=np.int64), mask, last)

    def keep_slots(self, keep: int, slots: list[int]) -> None:
        """Keep the first `keep` cached positions, then the given slots (ascending, all >= keep) moved to follow
        them: a verified tree path becomes a plain sequence in the cache."""
        moved = [(s, keep + i) for i, s in enumerate(slots) if s != keep + i]
        if moved:
            src, dst = np.array(moved).T
            for port in self.cache_ports:
                data = self.request.get_tensor(port.any_name).data  # [blocks, kv_heads, block, size]: a view
                data[dst // self.block_size, :, dst % self.block_size] = \
                    data[src // self.block_size, :, src % self.block_size]
        self.tokens = self.tokens[:keep] + [self.tokens[s] for s in slots]

    def _run(self, tokens: np.ndarray, positions: np.ndarray, mask: np.ndarray | None,
             last: int | None, request: ov.InferRequest | None = None) -> np.ndarray:
        refeed = min(self.min_feed - len(tokens), self.cached)
        if refeed > 0:
            last = len(tokens) if last is None else min(last, len(tokens))  # the re-fed rows are not returned
            tokens, positions, mask = self._with_refed(refeed, tokens, positions, mask)
        n, past = len(tokens), self.cached
        if past + n > self.context_length:
            raise EdgespecError(f"context length {self.context_length} reached ({past} cached + {n} new tokens)")
        self.grow(past + n)
        rows = n if last is None else min(last, n)
        blocks = -(-(past + n) // self.block_size)
        inputs = {
            "input_ids": tokens,
            "position_ids": positions,
            "past_lens": np.array([past], np.int32),
            "subsequence_begins": np.array([0, n], np.int32),
            "block_indices": self.block_ids[:blocks],
            "block_indices_begins": np.array([0, blocks], np.int32),
            "max_context_len": np.array(past + n, np.int32),
        }
        if LOGITS_COUNT in self.input_names:
            inputs[LOGITS_COUNT] = np.array([rows], np.int64)
        if self.tree_inputs:
            inputs |= NO_TREE if mask is None else {
                "qq_bias": np.ascontiguousarray(mask, dtype=np.uint8).reshape(-1),
                "qq_bias_begins": np.array([0, n * n], np.int32)}
        request = self.request if request is None else request
        try:
            self.inputs.feed(request, inputs)
            request.start_async()
            request.wait()
        except BaseException:
            self.reset()  # an interrupted call leaves the tail of the cache unknown: start clean next time
            raise
        self.tokens.extend(int(t) for t in tokens)
        self.calls += 1
        logits = request.get_tensor("logits").data
        return np.array(logits.reshape(-1, logits.shape[-1])[-rows:], dtype=np.float32)

    def _with_refed(self, refeed: int, tokens: np.ndarray, positions: np.ndarray,
                    mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """The call with the last `refeed` cached tokens fed again in front (their cache slots written over with the
        same values): they leave the cache here and come back with the call."""
        keep = self.cached - refeed
        tokens = np.concatenate([np.asarray(self.tokens[keep:], dtype=np.int64), tokens])
        positions = np.concatenate([np.arange(keep, keep + refeed, dtype=np.int64), positions])
        if mask is not None:
            n = len(tokens)
            grown = np.zeros((n, n), np.uint8)
            grown[:refeed, :refeed] = np.tril(np.ones((refeed, refeed), np.uint8))
            grown[refeed:, :refeed] = 1  # they precede every token of the call
            grown[refeed:, refeed:] = mask
            mask = grown
        self.rollback(keep)
        return tokens, positions, mask

    def kv_snapshot(self) -> list[np.ndarray]:
        """Copies of the cached positions of every cache input, [kv_heads, positions, head_size], for tests."""
        out = []
        for port in self.cache_ports:
            data = np.array(self.request.get_tensor(port.any_name).data)  # [blocks, heads, block, size]
            flat = data.transpose(1, 0, 2, 3).reshape(data.shape[1], -1, data.shape[3])
            out.append(flat[:, :self.cached])
        return out
