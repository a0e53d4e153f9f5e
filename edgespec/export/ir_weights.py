"""Turn GenAI's block-quantized weights back into plain f16 constants inside an ov.Model.

Why: GenAI reading an F16 GGUF peaks at about 4x the file in memory (the pipeline it builds compiles
the model, expanding f16 weights), about 14.5 GB for Qwen2.5-Coder-1.5B. Reading a Q8_0 GGUF instead
peaks at about 2x of a file half the size. The Q8_0 weights arrive as a decompression subgraph
(u8 Constant -> Convert -> Subtract(zero point) -> Multiply(scale) -> Reshape -> Convert(f32)); folding it
here, one weight at a time, gives the plain f16 weights NNCF compresses to INT4/INT8. Q8_0's own
rounding is far below INT8/INT4 error (SmolLM2 NLL: F16 2.346, Q8_0 2.343).
"""

from __future__ import annotations

import numpy as np

_FOLDABLE = {"Constant", "Convert", "Subtract", "Multiply", "Add", "Reshape"}
_NUMPY_TYPES = {"u8": np.uint8, "i8": np.int8, "f16": np.float16, "f32": np.float32, "i32": np.int32,
                "i64": np.int64}


def _evaluate(node) -> np.ndarray | None:
    """Value of a constant-only subgraph of the op types above, else None."""
    kind = node.get_type_name()
    if kind not in _FOLDABLE:
        return None
    if kind == "Constant":
        etype = node.get_output_element_type(0).get_type_name()
        return np.array(node.get_data()) if etype in _NUMPY_TYPES else None
    args = [_evaluate(node.input_value(i).get_node()) for i in range(node.get_input_size())]
    if any(a is None for a in args):
        return None
    if kind == "Convert":
        dtype = _NUMPY_TYPES.get(node.get_output_element_type(0).get_type_name())
        # u8/i8 -> float stays exact in float32; keep intermediate math in float32
        return None if dtype is None else args[0].astype(np.float32 if dtype == np.float16 else dtype)
    if kind == "Reshape":
        return args[0].reshape([int(d) for d in node.get_output_shape(0)])
    a, b = (x.astype(np.float32) for x in args)
    return {"Subtract": np.subtract, "Multiply": np.multiply, "Add": np.add}[kind](a, b)


def fold_weights_to_f16(model) -> int:
    """Replace each decompression subgraph feeding a MatMul weight or an embedding Gather by an f16
    Constant (+ Convert to f32, the form GenAI uses for F16 weights). Returns how many were folded."""
    import openvino as ov
    from openvino import opset13 as ops

    folded = {}
    for op in model.get_ordered_ops():
        kind = op.get_type_name()
        if kind not in ("MatMul", "Gather"):
            continue
        convert = op.input_value(1 if kind == "MatMul" else 0).get_node()
        if convert.get_type_name() != "Convert" or convert.get_output_element_type(0).get_type_name() != "f32":
            continue
        source = convert.input_value(0).get_node()
        if source.get_type_name() == "Constant" or len(source.get_output_partial_shape(0)) != 2:
            continue  # already plain, or not a weight matrix
        key = convert.get_name()
        if key not in folded:
            value = _evaluate(source)
            if value is None:
                continue
            const = ops.constant(ov.Tensor(value.astype(np.float16)), shared_memory=False)
            folded[key] = ops.convert(const, "f32")
        convert.output(0).replace(folded[key].output(0))
    return len(folded)
