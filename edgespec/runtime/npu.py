"""Device "NPU": OpenVINO's NPUW LLM pipeline, on a real NPU or emulated on the CPU (NPUW_DEVICES=CPU).

NPUW turns the stateful model into two static models: a prefill model padded to `max_prompt_len`
tokens and a generate model that takes `max_generation_tokens` new tokens per call (padded, aligned
to 8 when above 1) over a KV cache of `max_prompt_len + min_response_len` slots. It keeps the KV
cache itself (no OpenVINO states), so a rollback is expressed purely through the next call's
position ids and attention mask (see StatefulLM's "position" mode).

Models converted from GGUF by OpenVINO GenAI (2026.4) need three repairs before NPUW accepts
them (`make_npuw_compatible`); each was seen failing on this machine without it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import numpy as np
import openvino as ov
import openvino.opset13 as ops

from edgespec.runtime.errors import EdgespecError

log = logging.getLogger(__name__)

EMULATE_ENV = "EDGESPEC_NPU_EMULATE"


@dataclass
class NPUConfig:
    """Static shapes NPUW compiles for; every limit is enforced with a clear error or handled.

    max_prompt_len: the longest first call (the prompt); NPUW refuses longer prompts.
    min_response_len: KV slots kept for generation beyond the prompt (context = the sum of both).
    max_generation_tokens: tokens one target call may feed after the prefill; verification feeds
      k + 1, so this caps the useful draft length (longer feeds are split into several calls).
    draft_generation_tokens: the same for the draft, which feeds one token per call (1 keeps its
      generate model as small as it can be).
    emulate: run through NPUW on the CPU; None: only when no NPU is present, or as EDGESPEC_NPU_EMULATE says.
    properties: extra NPU/NPUW properties, passed last (they win).
    """

    max_prompt_len: int = 1024
    min_response_len: int = 128
    max_generation_tokens: int = 8
    draft_generation_tokens: int = 1
    emulate: bool | None = None
    properties: dict = field(default_factory=dict)

    def __post_init__(self):
        for name in ("max_prompt_len", "min_response_len", "max_generation_tokens", "draft_generation_tokens"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise EdgespecError(f"NPU {name} must be a positive integer, got {value!r}")

    @property
    def context_length(self) -> int:
        return self.max_prompt_len + self.min_response_len


def npu_present(core: ov.Core) -> bool:
    return any(d.split(".")[0] == "NPU" for d in core.available_devices)


def should_emulate(core: ov.Core, config: NPUConfig | None = None) -> bool:
    """A real NPU when there is one; emulation on the CPU only when asked for (config.emulate, or
    EDGESPEC_NPU_EMULATE=1), since it runs many times slower than the CPU itself and would surprise a user."""
    if config is not None and config.emulate is not None:
        return config.emulate
    env = os.environ.get(EMULATE_ENV, "").strip().lower()
    if env in ("1", "yes", "true", "on"):
        return True
    if not npu_present(core):
        raise EdgespecError(f"device NPU is not present on this machine (available: "
                            f"{', '.join(core.available_devices)}); set {EMULATE_ENV}=1 to emulate it on the CPU")
    return False


def npuw_properties(config: NPUConfig, generation_tokens: int, emulate: bool) -> dict:
    props = {
        "NPU_USE_NPUW": "YES",
        "NPUW_LLM": "YES",
        "NPUW_LLM_MAX_PROMPT_LEN": config.max_prompt_len,
        "NPUW_LLM_MIN_RESPONSE_LEN": config.min_response_len,
        "NPUW_LLM_MAX_GENERATION_TOKEN_LEN": generation_tokens,
    }
    if emulate:
        props["NPUW_DEVICES"] = "CPU"
    return props | config.properties


def compile_npu(core: ov.Core, model: ov.Model, config: NPUConfig, generation_tokens: int) -> ov.CompiledModel:
    """Compile a stateful LLM for NPU (emulated on the CPU when there is none). Changes `model` in place."""
    emulate = should_emulate(core, config)
    repairs = make_npuw_compatible(model)
    if repairs:
        log.info("NPUW repairs: %s", "; ".join(repairs))
    if emulate:
        log.warning("NPU: emulated on the CPU through NPUW (NPUW_DEVICES=CPU); timings are not NPU timings")
        # NPUW compiles its pieces with this core's CPU defaults; on bf16/VNNI CPUs those are bf16 math and
        # int8 activations, which would make the emulation diverge from the CPU path far more than an NPU's
        # f16 does. The emulation stands in for the device's numerics, so keep the CPU part in f32, on a core of
        # its own (properties are per core): a CPU model compiled beside it keeps the CPU's defaults.
        core = ov.Core()
        core.set_property("CPU", {"INFERENCE_PRECISION_HINT": "f32", "DYNAMIC_QUANTIZATION_GROUP_SIZE": "0"})
    try:
        return core.compile_model(model, "NPU", npuw_properties(config, generation_tokens, emulate))
    except RuntimeError as exc:
        lines = [line for line in str(exc).splitlines() if line.strip()]
        raise EdgespecError(f"could not compile for NPU{' (emulated)' if emulate else ''}: "
                            f"{lines[-1] if lines else exc}") from None


# --- repairs for GenAI's GGUF-converted models ---------------------------------------------------

def make_npuw_compatible(model: ov.Model) -> list[str]:
    """Apply the repairs NPUW needs; returns what was changed (empty for an already compatible model)."""
    notes = []
    if n := fix_zero_broadcast_dims(model):
        notes.append(f"{n} GQA broadcast dims 0 -> 1")
    if n := fix_value_state_names(model):
        notes.append(f"{n} value states renamed")
    if n := decompress_small_groups(model):
        notes.append(f"{n} weights with quantization groups under 64 decompressed to f16")
    if notes:
        model.validate_nodes_and_infer_types()
    return notes


def fix_zero_broadcast_dims(model: ov.Model) -> int:
    """The GQA KV repeat is Broadcast(bidirectional) to [batch, kv, rep, 0, head]: a 0 where "keep" was meant.

    With dynamic shapes the CPU plugin never checks it; once NPUW makes the sequence static (64)
    shape inference fails ("Broadcast incorrect target shape. Expecting either 1 or 64. Got 0").
    In bidirectional mode a 1 keeps the input's dimension, which is what the model means.
    """
    fixed = 0
    for node in model.get_ordered_ops():
        if node.get_type_name() != "Broadcast" or node.get_attributes().get("mode") != "bidirectional":
            continue
        shape = node.input_value(1).get_node()
        if shape.get_type_name() != "Concat":
            continue
        for port in shape.inputs():
            source = port.get_source_output().get_node()
            if source.get_type_name() == "Constant" and source.get_vector().tolist() == [0]:
                port.replace_source_output(ops.constant(np.array([1], dtype=source.get_vector().dtype)).output(0))
                fixed += 1
    return fixed


def fix_value_state_names(model: ov.Model) -> int:
    """GenAI names the value state of layer i "past_key_values.i.valuepresent.i.key" (sic).

    NPUW derives its present/past tensor names from the variable ids, so every layer's key and value
    collide ("Duplicate generate output tensor name across ports: present.0.key", or a f16/f32
    ParameterMismatch when the KV cache tensors get paired up wrongly).
    """
    renamed = 0
    for variable in model.get_variables():
        info = variable.get_info()
        name = info.variable_id
        if ".valuepresent." in name and name.endswith(".key"):
            info.variable_id = name[: -len("key")] + "value"
            variable.update(info)
            renamed += 1
    return renamed


_DECOMPRESSION_OPS = ("Convert", "Subtract", "Multiply", "Reshape")


def _constant_subgraph(node, depth: int = 0) -> bool:
    if node.get_type_name() == "Constant":
        return True
    if node.get_type_name() not in _DECOMPRESSION_OPS or depth > 6:
        return False
    return all(_constant_subgraph(port.get_source_output().get_node(), depth + 1) for port in node.inputs())


def _evaluate(node) -> np.ndarray:
    """Evaluate a weight decompression subgraph in numpy (f32 math, rounded to each node's type)."""
    kind = node.get_type_name()
    if kind == "Constant":
        return node.get_vector().reshape(node.get_output_shape(0)).astype(np.float32)
    args = [_evaluate(port.get_source_output().get_node()) for port in node.inputs()]
    if kind == "Reshape":
        return args[0].reshape(node.get_output_shape(0))
    value = {"Convert": lambda: args[0], "Subtract": lambda: args[0] - args[1],
             "Multiply": lambda: args[0] * args[1]}[kind]()
    if node.get_output_element_type(0) == ov.Type.f16:
        value = value.astype(np.float16).astype(np.float32)  # the graph computes in f16: round as it would
    return value


def decompress_small_groups(model: ov.Model, align: int = 64) -> int:
    """Replace group-quantized weights whose groups are not a multiple of `align` by f16 constants.

    GGUF blocks hold 32 weights (Q4_0, Q4_1, Q8_0): NPUW's host-side weight unpacking asserts
    `from_shape.back() % 64 == 0` when the infer request is created. Decompressing is exact (up to
    the f16 rounding the graph does anyway) and costs memory (2 bytes per weight).
    """
    replaced = 0
    for node in model.get_ordered_ops():
        if node.get_type_name() != "Reshape":
            continue
        source = node.input_value(0).get_node()
        if source.get_type_name() != "Multiply" or not source.get_output_partial_shape(0).is_static:
            continue
        shape = source.get_output_shape(0)
        if len(shape) != 3 or shape[-1] % align == 0 or not _constant_subgraph(node):
            continue
        weights = ops.constant(_evaluate(node).astype(np.float16))
        for target in list(node.output(0).get_target_inputs()):
            target.replace_source_output(weights.output(0))
        replaced += 1
    return replaced
