"""PagedLM: the target run in OpenVINO's paged-attention (PA) form, driven directly from Python.

Same interface as edgespec.model.StatefulLM (forward(tokens, last), rollback(keep), reset(), cached,
pending(sequence), tokens, calls, vocab_map, vocab_size, context_length).

Why: the PA form (what GenAI's LLMPipeline runs on CPU) keeps the KV cache in caller-owned block tensors.
- rollback is free: the cache holds whatever positions past_lens says; the next call overwrites the tail.
  No ROI copies, no attention-mask dead slots, no compaction.
- the CPU PA kernels are faster than the stateful SDPA ones on long prompts (see FINDINGS.md).
"""
from __future__ import annotations

import numpy as np
import openvino as ov
import openvino.opset13 as ops
from openvino._offline_transformations import paged_attention_transformation

LOGITS_COUNT = "logits_count"


def slice_logits_pa(model: ov.Model) -> bool:
    """Compute the LM head only for the last `logits_count` tokens (PA models put tokens on axis 0)."""
    node = model.output("logits").get_node().input_value(0).get_node()
    while node.get_type_name() in ("Convert", "Multiply", "Divide", "Tanh", "Add"):
        node = node.input_value(0).get_node()
    if node.get_type_name() != "MatMul":
        return False
    hidden = node.input_value(0)
    shape = hidden.get_partial_shape()
    axis = 0 if (shape.rank.get_length() == 3 and shape[1].is_static and shape[1].get_length() == 1) else 1
    count = ops.parameter([1], ov.Type.i64, name=LOGITS_COUNT)
    count.output(0).get_tensor().set_names({LOGITS_COUNT})
    sliced = ops.slice(hidden, ops.negative(count), np.array([np.iinfo(np.int64).max]), np.array([1]),
                       np.array([axis]))
    node.input(0).replace_source_output(sliced.output(0))
    model.add_parameters([count])
    model.validate_nodes_and_infer_types()
    return True


def to_paged(model: ov.Model) -> ov.Model:
    paged_attention_transformation(model)
    slice_logits_pa(model)
    return model


class PagedLM:
    def __init__(self, compiled: ov.CompiledModel, context_length: int, vocab_map: np.ndarray | None = None,
                 capacity: int = 1024):
        self.compiled = compiled
        self.request = compiled.create_infer_request()
        self.context_length = context_length
        self.vocab_map = vocab_map
        self.max_feed = None  # (NPU-only attribute of StatefulLM; the loop reads it)
        self.rollback_mode = "paged"
        self.input_names = {p.any_name for p in compiled.inputs}
        self.cache_ports = [p for p in compiled.inputs if p.any_name.startswith(("key_cache.", "value_cache."))]
        shape = self.cache_ports[0].get_partial_shape()
        self.block = shape[2].get_length()  # CPU: [blocks, kv_heads, block_size, head_size(+scales)]
        vocab_dim = compiled.output("logits").get_partial_shape()[-1]
        self.vocab_size = vocab_dim.get_length() if vocab_dim.is_static else 0
        self.blocks = 0
        self._grow(capacity)
        self.calls = 0
        # Fixed small inputs, reused every call.
        self._past = np.zeros(1, np.int32)
        self._begins = np.zeros(2, np.int32)
        self._bbegins = np.zeros(2, np.int32)
        self._maxctx = np.zeros((), np.int32)
        self._count = np.zeros(1, np.int64)
        self._block_ids = np.arange(self.blocks, dtype=np.int32)
        self.reset()

    def _grow(self, tokens: int) -> None:
        """Make room for `tokens` positions (one sequence, blocks 0..n-1 in order)."""
        need = -(-tokens // self.block)
        if need <= self.blocks:
            return
        need = max(need, 2 * self.blocks)
        for port in self.cache_ports:
            dims = [d.get_length() for d in list(port.get_partial_shape())[1:]]
            new = ov.Tensor(port.get_element_type(), [need] + dims)
            if self.blocks:
                old = self.request.get_tensor(port.any_name)
                np.copyto(new.data[:self.blocks], old.data)  # same element type, so a raw copy is exact
            self.request.set_tensor(port.any_name, new)
        self.blocks = need
        self._block_ids = np.arange(need, dtype=np.int32)

    @property
    def cached(self) -> int:
        return len(self.tokens)

    def reset(self) -> None:
        self.tokens: list[int] = []

    def pending(self, sequence: list[int]) -> list[int]:
        common = 0
        for a, b in zip(self.tokens, sequence):
            if a != b:
                break
            common += 1
        common = min(common, len(sequence) - 1)
        self.rollback(common)
        return sequence[common:]

    def rollback(self, keep: int) -> None:
        """Forget positions keep.. : nothing to copy, the next call writes over them."""
        if keep < self.cached:
            del self.tokens[max(keep, 0):]

    def forward(self, tokens, last: int | None = None) -> np.ndarray:
        tokens = np.asarray(tokens, dtype=np.int64).reshape(-1)
        n = tokens.shape[0]
        past = self.cached
        if past + n > self.context_length:
            raise RuntimeError(f"context length {self.context_length} reached ({past} cached + {n} new tokens)")
        self._grow(past + n)
        rows = n if last is None else min(last, n)
        nb = -(-(past + n) // self.block)
        self._past[0] = past
        self._begins[1] = n
        self._bbegins[1] = nb
        self._maxctx[...] = past + n
        self._count[0] = rows
        inputs = {
            "input_ids": tokens,
            "position_ids": np.arange(past, past + n, dtype=np.int64),
            "past_lens": self._past,
            "subsequence_begins": self._begins,
            "block_indices": self._block_ids[:nb],
            "block_indices_begins": self._bbegins,
            "max_context_len": self._maxctx,
            LOGITS_COUNT: self._count,
        }
        self.request.start_async(inputs, share_inputs=True)
        self.request.wait()
        self.tokens.extend(int(t) for t in tokens)
        self.calls += 1
        return np.array(self.request.get_tensor("logits").data[-rows:, 0], dtype=np.float32)


def load_paged(core: ov.Core, xml: str, props: dict, context_length: int = 8192, vocab_map=None,
               capacity: int = 1024) -> PagedLM:
    model = to_paged(core.read_model(xml))
    return PagedLM(core.compile_model(model, "CPU", props), context_length, vocab_map, capacity)
