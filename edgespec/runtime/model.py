"""One stateful OpenVINO LLM: feed tokens, get logits, roll the KV cache back.

The KV cache lives inside the infer request as OpenVINO "states". We track how many
positions it holds (`cached`) and cut it back after rejected draft tokens.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import openvino as ov
import openvino.opset13 as ops
from openvino.frontend import FrontEndManager

from edgespec.runtime.bound_inputs import BoundInputs
from edgespec.runtime.errors import EdgespecError

IR_DATA = re.compile(rb'offset="(\d+)"\s+size="(\d+)"')

SEQ_AXIS = 2  # states are [batch, kv_heads, seq, head_dim]
LOGITS_COUNT = "logits_count"


def read_ir(xml: str | Path) -> ov.Model:
    """Read an OpenVINO IR through the IR frontend alone, naming the damaged file in one line.

    Core.read_model would also try every other frontend on a damaged .xml, and TensorFlow's prints
    absl log lines to stderr; a .bin shorter than the weights the .xml points into is caught here too.
    """
    xml = Path(xml)
    weights = xml.with_suffix(".bin")
    try:
        text = xml.read_bytes()
    except OSError as exc:
        raise EdgespecError(f"cannot read {xml}: {exc.strerror}") from None
    needed = max((int(o) + int(n) for o, n in IR_DATA.findall(text)), default=0)
    if needed and (not weights.is_file() or weights.stat().st_size < needed):
        have = weights.stat().st_size if weights.is_file() else 0
        raise EdgespecError(f"{weights} is truncated or missing ({have} bytes; {xml.name} needs {needed})")
    frontend = FrontEndManager().load_by_framework("ir")
    try:
        return frontend.convert(frontend.load(str(xml)))
    except (RuntimeError, OSError, ov.frontend.GeneralFailure) as exc:
        lines = [line for line in str(exc).splitlines() if line.strip()]
        raise EdgespecError(f"{xml} is corrupted or unreadable: {lines[-1] if lines else exc}") from None


def head_matmul(model: ov.Model):
    """The MatMul of the output head (under any soft-capping or scaling after it), or None."""
    node = model.output("logits").get_node().input_value(0).get_node()
    while node.get_type_name() in ("Convert", "Multiply", "Divide", "Tanh", "Add"):
        node = node.input_value(0).get_node()
    return node if node.get_type_name() == "MatMul" else None


def slice_logits(model: ov.Model) -> bool:
    """Make the output head compute only the last `logits_count` positions.

    A prefill of P tokens would otherwise multiply P hidden states by the whole vocabulary
    (49152 x 576 for SmolLM2) only to read the last row; verification reads k + 1 rows.
    Returns False (model unchanged) when the head is not a MatMul on [batch, seq, hidden].
    """
    if LOGITS_COUNT in {port.any_name for port in model.inputs}:
        return True
    node = head_matmul(model)
    if node is None or node.input_value(0).get_partial_shape().rank.get_length() != 3:
        return False
    slice_head_input(model, node, axis=1)
    model.validate_nodes_and_infer_types()
    return True


def slice_head_input(model: ov.Model, head, axis: int) -> None:
    """Feed the head only the last `logits_count` hidden states along `axis` (a new model input)."""
    count = ops.parameter([1], ov.Type.i64, name=LOGITS_COUNT)
    count.output(0).get_tensor().set_names({LOGITS_COUNT})
    sliced = ops.slice(head.input_value(0), ops.negative(count), np.array([np.iinfo(np.int64).max]), np.array([1]),
                       np.array([axis]))
    head.input(0).replace_source_output(sliced.output(0))
    model.add_parameters([count])


def common_prefix(cached: list[int], sequence: list[int]) -> int:
    """How many positions a cache holding `cached` can keep for `sequence`: their common prefix, leaving the last
    token of `sequence` to be fed (its logits are needed)."""
    common = min(len(cached), len(sequence))
    if cached[:common] != sequence[:common]:  # the usual case (a cache that is a prefix) compared in C, once a step
        common = next(i for i, (cached_token, token) in enumerate(zip(cached, sequence)) if cached_token != token)
    return min(common, len(sequence) - 1)


def warm_up(lm) -> None:
    """One two-token call through each compiled copy of `lm`, then an empty cache and its call count as it was. The
    CPU plugin prepares a model's weights at its first inference (Qwen2.5-Coder-1.5B INT4: 4.6 s, SmolLM2: 0.14 s
    here): at load rather than inside the first prompt's time to first token, and before `--engine auto` times
    that prompt's prefill."""
    calls = lm.calls
    lm.reset()
    lm.forward([0, 0], last=1)
    if getattr(lm, "prefill_request", None) is not None:  # PagedLM's faster prompt copy runs on an empty cache
        lm.reset()
        lm.prefill([0, 0], last=1)
    lm.reset()
    lm.calls = calls


class StatefulLM:
    """A compiled stateful causal LM with an explicit, rollback-able KV cache.

    Three ways to forget rejected tokens:
    - "trim": cut every state back with an ROI tensor (a copy of all states per rollback);
    - "mask": leave the rejected slots in the cache and hide them with attention_mask zeros,
      feeding explicit position ids; the dead slots are compacted away once `max_dead` pile up.
    - "position": for NPUW (device NPU), which keeps the KV cache itself: a rollback only forgets
      the tokens here; the next call starts its position ids at the kept length and NPUW writes over
      the rejected slots. Its first call after a reset is the prefill (at most `max_prompt_len`
      tokens), every later call feeds at most `max_feed` tokens (longer feeds are split).
    """

    def __init__(self, compiled: ov.CompiledModel, context_length: int, vocab_map: np.ndarray | None = None,
                 rollback_mode: str = "mask", max_dead: int = 64, max_prompt_len: int | None = None,
                 max_feed: int | None = None):
        if rollback_mode not in ("mask", "trim", "position"):
            raise EdgespecError(f"unknown rollback mode {rollback_mode!r} (mask, trim or position)")
        if rollback_mode == "position" and not (max_prompt_len and max_feed):
            raise EdgespecError("rollback mode 'position' needs max_prompt_len and max_feed (the NPUW shapes)")
        self.compiled = compiled
        self.request = compiled.create_infer_request()
        self.inputs = BoundInputs()  # each call's inputs written into tensors bound to the request
        self.context_length = context_length
        # A draft with a reduced output head predicts indices into vocab_map, which holds target token ids.
        self.vocab_map = vocab_map
        self.rollback_mode = rollback_mode
        self.max_dead = max_dead
        self.max_prompt_len = max_prompt_len
        self.max_feed = max_feed
        # NPUW's own attention mask may still hold ones over slots [0, npuw_dirty) from earlier calls;
        # the next call must zero those past the kept length (see _forward_position).
        self.npuw_dirty = 0
        # NPUW copies the prefill's KV into its generate model lazily, at the first generate call, and
        # copies the *last* `position` slots: a rollback between the two would keep the wrong ones.
        self.npuw_fresh_prefill = False
        self.npuw_refill = False
        self.input_names = {port.any_name for port in compiled.inputs}
        vocab_dim = compiled.output("logits").get_partial_shape()[-1]
        self.vocab_size = vocab_dim.get_length() if vocab_dim.is_static else 0
        self.calls = 0
        self.reset()

    @property
    def cached(self) -> int:
        return len(self.tokens)

    def reset(self) -> None:
        self.request.reset_state()
        self.tokens: list[int] = []  # what the KV cache holds, position by position
        self.slots: list[int] = []  # the physical cache slot of each of those positions
        self.alive = np.zeros(0, dtype=np.int64)  # attention mask over physical slots

    def pending(self, sequence: list[int]) -> list[int]:
        """Roll back to the longest cached prefix of `sequence`; return the tokens still to feed."""
        common = common_prefix(self.tokens, sequence)
        self.rollback(common)
        return sequence[common:]

    def prefill(self, tokens: np.ndarray | list[int], last: int | None = None) -> np.ndarray:
        """A prompt's feed: `forward` (PagedLM may run it on faster kernels)."""
        return self.forward(tokens, last)

    def forward(self, tokens: np.ndarray | list[int], last: int | None = None) -> np.ndarray:
        """Append `tokens` to the cache; return the logits of the last `last` of them (all by default)."""
        tokens = np.asarray(tokens, dtype=np.int64).reshape(1, -1)
        n = tokens.shape[1]
        if self.cached + n > self.context_length:
            raise EdgespecError(f"context length {self.context_length} reached "
                                f"({self.cached} cached + {n} new tokens)")
        used = len(self.alive)
        alive = np.concatenate([self.alive, np.ones(n, dtype=np.int64)])
        rows = n if last is None else min(last, n)
        if self.rollback_mode == "position":
            return self._forward_position([int(t) for t in tokens[0]], rows)
        inputs = {
            "input_ids": tokens,
            "attention_mask": alive.reshape(1, -1),
            "position_ids": np.arange(self.cached, self.cached + n, dtype=np.int64).reshape(1, -1),
        }
        if "beam_idx" in self.input_names:
            inputs["beam_idx"] = np.zeros(1, dtype=np.int32)
        if LOGITS_COUNT in self.input_names:
            inputs[LOGITS_COUNT] = np.array([rows], dtype=np.int64)
        try:
            # start_async runs on the plugin's own pinned stream thread (faster than infer() here: docs/performance.md)
            self.inputs.feed(self.request, inputs)
            self.request.start_async()
            self.request.wait()
        except BaseException:
            # An interrupted or failed call leaves the cache in an unknown state: start clean next time.
            self.reset()
            raise
        self.alive = alive
        self.tokens.extend(int(t) for t in tokens[0])
        self.slots.extend(range(used, used + n))
        self.calls += 1
        return np.array(self.request.get_tensor("logits").data[0, -rows:], dtype=np.float32)

    def rollback(self, keep: int) -> None:
        """Forget every cached position from `keep` on, as if those tokens were never fed."""
        if keep >= self.cached:
            return
        if keep <= 0:
            self.reset()
            return
        if self.rollback_mode == "position":
            del self.tokens[keep:]
            self.npuw_refill = self.npuw_refill or self.npuw_fresh_prefill
            return
        if self.rollback_mode == "trim":
            self._trim(keep)
            return
        self.alive[self.slots[keep:]] = 0
        del self.tokens[keep:], self.slots[keep:]
        if len(self.alive) - len(self.slots) > self.max_dead:
            self.compact()

    def _forward_position(self, tokens: list[int], rows: int) -> np.ndarray:
        """Feed tokens the NPUW way: one prefill after a reset, then calls of at most max_feed tokens."""
        calls = []
        if self.npuw_refill or (self.cached and len(tokens) > 4 * self.max_feed):
            # Prefill the whole sequence again: after a rollback into a fresh prefill (see __init__),
            # or for a long feed (a new chat turn), where one prefill beats many small generate calls.
            if self.cached + len(tokens) <= self.max_prompt_len:
                tokens, self.tokens = self.tokens + tokens, []
            elif self.npuw_refill:
                kept, self.tokens = self.tokens, []  # kept <= the last prefill, so it fits
                calls.append(kept)
        self.npuw_refill = False
        if not self.cached and not calls:
            if len(tokens) > self.max_prompt_len:
                raise EdgespecError(f"prompt has {len(tokens)} tokens but the NPU model was compiled for at most "
                                    f"{self.max_prompt_len} (raise max_prompt_len in the NPU config)")
            # The prefill returns the last row(s) only: feed the rows wanted beyond the last one afterwards.
            head = max(1, len(tokens) - (rows - 1))
            calls.append(tokens[:head])
            tokens = tokens[head:]
        calls += [tokens[i:i + self.max_feed] for i in range(0, len(tokens), self.max_feed)]
        out = []
        for chunk in calls:
            logits = self._infer_position(chunk)
            out.append(logits[-len(chunk):])  # NPUW pads the generate model's output on the left
        return np.concatenate(out)[-rows:]

    def _infer_position(self, tokens: list[int]) -> np.ndarray:
        start, n = self.cached, len(tokens)
        prefill = start == 0 and n > 1  # how NPUW tells a prefill from a generate call
        # NPUW copies the mask's past part into its own and never clears it: zero the rejected slots.
        dead = 0 if prefill else max(0, self.npuw_dirty - start)
        mask = np.concatenate([np.ones(start, np.int64), np.zeros(dead, np.int64), np.ones(n, np.int64)])
        inputs = {
            "input_ids": np.array([tokens], dtype=np.int64),
            "attention_mask": mask.reshape(1, -1),
            "position_ids": np.arange(start, start + n, dtype=np.int64).reshape(1, -1),
        }
        try:
            self.inputs.feed(self.request, inputs)
            self.request.infer()
        except BaseException:
            self.npuw_dirty = max(self.npuw_dirty, start + n)
            self.reset()
            raise
        # After a prefill NPUW clears its generate mask before the next generate call.
        self.npuw_dirty = 0 if prefill else max(self.npuw_dirty, start)
        self.npuw_fresh_prefill = prefill
        self.tokens.extend(tokens)
        self.calls += 1
        logits = self.request.get_tensor("logits").data[0]
        return np.array(logits[-min(n, logits.shape[0]):], dtype=np.float32)

    def compact(self) -> None:
        """Move the live slots to the front of the cache and drop the dead ones."""
        if len(self.slots) == len(self.alive):
            return
        live = np.array(self.slots)
        if self.slots == list(range(len(self.slots))):
            self._trim(len(self.slots))
            return
        for state in self.request.query_state():
            state.state = ov.Tensor(np.ascontiguousarray(np.take(state.state.data, live, axis=SEQ_AXIS)))
        self.slots = list(range(len(live)))
        self.alive = np.ones(len(live), dtype=np.int64)

    def _trim(self, keep: int) -> None:
        # Live positions are a prefix of the physical slots here, so cutting the tail is exact.
        cut = self.slots[keep - 1] + 1 if self.slots[:keep] == list(range(keep)) else None
        if cut is None:
            self.compact()
            cut = keep
        for state in self.request.query_state():
            # A contiguous copy, not an ROI view: a u8 or f16 cache is handed out as a converted f32 copy,
            # and setting an ROI of that back reads it as if it were dense (logits off by ~25 with u8).
            state.state = ov.Tensor(np.take(state.state.data, np.arange(cut), axis=SEQ_AXIS))
        del self.tokens[keep:], self.slots[keep:]
        self.alive = np.ones(cut, dtype=np.int64)

    def kv_snapshot(self) -> list[np.ndarray]:
        """Copies of the live KV entries of all states, for tests and debugging."""
        live = np.array(self.slots, dtype=np.int64)
        return [np.take(np.array(state.state.data), live, axis=SEQ_AXIS) for state in self.request.query_state()]
