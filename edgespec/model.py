"""One stateful OpenVINO LLM: feed tokens, get logits, roll the KV cache back.

The KV cache lives inside the infer request as OpenVINO "states". We track how many
positions it holds (`cached`) and cut it back after rejected draft tokens.
"""

from __future__ import annotations

import numpy as np
import openvino as ov

from edgespec.errors import EdgespecError

SEQ_AXIS = 2  # states are [batch, kv_heads, seq, head_dim]


class StatefulLM:
    """A compiled stateful causal LM with an explicit, rollback-able KV cache."""

    def __init__(self, compiled: ov.CompiledModel, context_length: int, vocab_map: np.ndarray | None = None,
                 static_logits: bool = False):
        self.compiled = compiled
        self.request = compiled.create_infer_request()
        self.context_length = context_length
        # A draft with a reduced output head predicts indices into vocab_map, which holds target token ids.
        self.vocab_map = vocab_map
        # NPUW returns logits padded to a fixed length; the real rows are the last n of them.
        self.static_logits = static_logits
        self.input_names = {port.any_name for port in compiled.inputs}
        vocab_dim = compiled.output("logits").get_partial_shape()[-1]
        self.vocab_size = vocab_dim.get_length() if vocab_dim.is_static else 0
        self.tokens: list[int] = []  # what the KV cache holds, position by position
        self.calls = 0

    @property
    def cached(self) -> int:
        return len(self.tokens)

    def reset(self) -> None:
        self.request.reset_state()
        self.tokens = []

    def pending(self, sequence: list[int]) -> list[int]:
        """Roll back to the longest cached prefix of `sequence`; return the tokens still to feed."""
        common = 0
        for cached_token, token in zip(self.tokens, sequence):
            if cached_token != token:
                break
            common += 1
        common = min(common, len(sequence) - 1)  # the last token is always fed: its logits are needed
        self.rollback(common)
        return sequence[common:]

    def forward(self, tokens: np.ndarray | list[int], all_logits: bool = True) -> np.ndarray:
        """Append `tokens` to the cache and return logits [n, vocab] (or [1, vocab] for the last token)."""
        tokens = np.asarray(tokens, dtype=np.int64).reshape(1, -1)
        n = tokens.shape[1]
        if self.cached + n > self.context_length:
            raise EdgespecError(f"context length {self.context_length} reached "
                                f"({self.cached} cached + {n} new tokens)")
        inputs = {
            "input_ids": tokens,
            "attention_mask": np.ones((1, self.cached + n), dtype=np.int64),
            "position_ids": np.arange(self.cached, self.cached + n, dtype=np.int64).reshape(1, -1),
        }
        if "beam_idx" in self.input_names:
            inputs["beam_idx"] = np.zeros(1, dtype=np.int32)
        try:
            self.request.infer(inputs, share_inputs=True)
        except BaseException:
            # An interrupted or failed call leaves the cache in an unknown state: start clean next time.
            self.reset()
            raise
        self.tokens.extend(int(t) for t in tokens[0])
        self.calls += 1
        logits = self.request.get_tensor("logits").data[0]
        logits = logits[-n:] if all_logits else logits[-1:]
        return np.array(logits, dtype=np.float32)

    def rollback(self, keep: int) -> None:
        """Drop every cached position from `keep` on, as if those tokens were never fed."""
        if keep >= self.cached:
            return
        if keep <= 0:
            self.reset()
            return
        for state in self.request.query_state():
            full = state.state
            begin = [0] * len(full.shape)
            end = list(full.shape)
            end[SEQ_AXIS] = keep
            state.state = ov.Tensor(full, ov.Coordinate(begin), ov.Coordinate(end))
        del self.tokens[keep:]

    def kv_snapshot(self) -> list[np.ndarray]:
        """Copies of all KV states, for tests and debugging."""
        return [np.array(state.state.data) for state in self.request.query_state()]
