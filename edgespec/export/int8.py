"""INT8 weight compression without NNCF: asymmetric, one scale and zero point per output channel.

It writes the same decompression subgraph NNCF's INT8_ASYM writes (u8 Constant -> Convert(f16) ->
Subtract(zero point) -> Multiply(scale) -> Convert(f32)), which the CPU plugin recognises and runs
with the weights kept in u8. The default SmolLM2 pair uses it so that preparing it needs only the
runtime (no NNCF, no torch). `edgespec export --target-weights int8` still uses NNCF.
"""

from __future__ import annotations

import numpy as np


def _quantize_rows(w: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """u8 weights, u8 zero points and f16 scales for asymmetric quantization along `axis`."""
    w = w.astype(np.float32)
    lo = np.minimum(w.min(axis=axis, keepdims=True), 0.0)  # keep 0 representable exactly
    hi = np.maximum(w.max(axis=axis, keepdims=True), 0.0)
    scale = (hi - lo) / 255.0
    scale[scale == 0] = 1.0
    scale = scale.astype(np.float16).astype(np.float32)  # quantize against the scale actually stored
    zp = np.clip(np.round(-lo / scale), 0, 255)
    q = np.clip(np.round(w / scale) + zp, 0, 255)
    return q.astype(np.uint8), zp.astype(np.uint8), scale.astype(np.float16)


def _decompressed(const_node, axis: int):
    import openvino as ov
    from openvino import opset13 as ops

    q, zp, scale = _quantize_rows(np.array(const_node.get_data()), axis)
    weights = ops.convert(ops.constant(ov.Tensor(q), shared_memory=False), "f16")
    shifted = ops.subtract(weights, ops.convert(ops.constant(ov.Tensor(zp), shared_memory=False), "f16"))
    return ops.convert(ops.multiply(shifted, ops.constant(ov.Tensor(scale), shared_memory=False)), "f32")


def _weight_source(node):
    """The f16 2-D Constant behind a Convert(f32) weight input, else None."""
    if node.get_type_name() != "Convert":
        return None
    const = node.input_value(0).get_node()
    if const.get_type_name() != "Constant" or const.get_output_element_type(0).get_type_name() != "f16":
        return None
    return const if len(const.get_output_partial_shape(0)) == 2 else None


def compress_int8(model) -> int:
    """Compress in place every f16 matrix feeding a MatMul (weights) or a Gather (embeddings).
    Returns how many constants were compressed."""
    done: dict[tuple[str, int], object] = {}
    count = 0
    for op in model.get_ordered_ops():
        kind = op.get_type_name()
        if kind == "MatMul":
            port = 1
            axis = 1 if op.get_attributes().get("transpose_b") else 0  # reduce over the input features
        elif kind == "Gather":
            port, axis = 0, 1                                          # one scale per embedding row
        else:
            continue
        convert = op.input_value(port).get_node()
        const = _weight_source(convert)
        if const is None:
            continue
        key = (const.get_name(), axis)
        if key not in done:
            done[key] = _decompressed(const, axis)
            count += 1
        convert.output(0).replace(done[key].output(0))
    return count
