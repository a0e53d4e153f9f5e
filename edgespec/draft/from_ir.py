"""A draft IR folder back into a training checkpoint.

A shipped draft is kept as INT8 (or INT4) IR only; its float weights live in a training run that may be
gone by the time someone wants to train it further (new prompts, another device). This rebuilds the
float model from the IR: each weight's decompression subgraph is folded to float32, matched to its
GGUF name through the names GenAI's GGUF reader gives the projections, and loaded into a DraftLM whose
remaining settings (heads, RoPE, norm epsilon) come from the target's GGUF. `edgespec draft import-ir`
checks the result against the IR's own logits (export.verify_export), so a layout mistake cannot pass.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from edgespec.runtime.errors import EdgespecError
from edgespec.runtime.manifest import DRAFT_VOCAB

# GenAI's GGUF reader names each projection's weight after the Hugging Face module it stands for.
PROJECTIONS = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
               "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
               "mlp.down_proj": "ffn_down"}
# The RMSNorm whose output feeds a projection carries that norm's weight.
NORM_BEFORE = {"attn_q": "attn_norm", "ffn_gate": "ffn_norm"}


def _weight_name(node) -> str | None:
    """The GGUF-reader name of the weight that `node` (a MatMul's or Gather's weight input) decompresses."""
    seen = 0
    while node is not None and seen < 8:
        name = node.get_friendly_name()
        for suffix in ("/fq_weights_1", "/zero_point/subtract"):
            if name.endswith(suffix):
                return name[: -len(suffix)]
        if name.startswith(("model.", "lm_head.")) and node.get_type_name() == "Constant":
            return name
        inputs = node.inputs()
        node = inputs[0].get_source_output().get_node() if inputs else None
        seen += 1
    return None


def _gguf_name(ir_name: str) -> str | None:
    if ir_name == "lm_head.weight":
        return "output.weight"
    if ir_name == "model.embed_tokens.weight":
        return "token_embd.weight"
    if ir_name.startswith("model.layers["):
        index, rest = ir_name[len("model.layers["):].split("].", 1)
        module = rest.rsplit(".", 1)[0]
        if module in PROJECTIONS:
            return f"blk.{int(index)}.{PROJECTIONS[module]}.weight"
    return None


def _constant_input(node) -> np.ndarray | None:
    for port in node.inputs():
        source = port.get_source_output().get_node()
        if source.get_type_name() == "Constant":
            return source.get_data().astype(np.float32)
    return None


def ir_weights(xml: Path) -> dict[str, np.ndarray]:
    """Float32 weights of a llama/qwen2 IR written by GenAI's GGUF reader, in GGUF naming."""
    import openvino as ov
    from openvino import passes

    model = ov.Core().read_model(xml)
    users = {}  # op name -> GGUF weight name it multiplies by
    for op in model.get_ops():
        if op.get_type_name() in ("MatMul", "Gather"):
            index = 1 if op.get_type_name() == "MatMul" else 0
            name = _gguf_name(_weight_name(op.input_value(index).get_node()) or "")
            if name:
                users[op.get_friendly_name()] = name
    manager = passes.Manager()
    manager.register_pass(passes.ConstantFolding())  # decompression subgraphs -> float constants
    manager.run_passes(model)
    weights = {}
    for op in model.get_ops():
        name = users.get(op.get_friendly_name())
        if name is None:
            continue
        if op.get_type_name() == "Gather":
            weights[name] = op.input_value(0).get_node().get_data().astype(np.float32)
            continue
        matrix = op.input_value(1).get_node()
        if matrix.get_type_name() != "Constant":
            raise EdgespecError(f"{xml}: the weight of {name} did not fold to a constant")
        transposed = op.get_attributes()["transpose_b"]
        data = matrix.get_data().astype(np.float32)
        weights[name] = data if transposed else data.T
        consumers = [port.get_node() for port in op.output(0).get_target_inputs()]
        bias = [_constant_input(c) for c in consumers if c.get_type_name() == "Add"]
        if bias and bias[0] is not None:
            weights[name.replace(".weight", ".bias")] = bias[0].reshape(-1)
        # The norm before q (attention), gate (FFN) and the head (final) scales its input: x * w.
        projection = name.split(".")[-2]
        norm_name = (name.rsplit(".", 2)[0] + "." + NORM_BEFORE[projection] + ".weight" if projection in NORM_BEFORE
                     else "output_norm.weight" if name == "output.weight" else None)
        if norm_name:
            # A norm weight of all ones leaves no Multiply behind; import-ir's logit check catches a wrong guess.
            scale = op.input_value(0).get_node()
            w = _constant_input(scale) if scale.get_type_name() == "Multiply" else None
            weights[norm_name] = w.reshape(-1) if w is not None else np.ones(weights[name].shape[1], np.float32)
    for required in ("token_embd.weight", "output.weight", "output_norm.weight"):
        if required not in weights:
            raise EdgespecError(f"{xml}: no {required} found (not an IR written from a llama/qwen2 GGUF)")
    return weights


def llama_rope_rows(matrix: np.ndarray, heads: int) -> np.ndarray:
    """Q/K rows from the half-split RoPE layout GenAI's reader gives llama weights back to llama.cpp's
    interleaved layout, which the draft (like the GGUF) uses (convert_hf_to_gguf's permute)."""
    return (matrix.reshape(heads, 2, matrix.shape[0] // heads // 2, *matrix.shape[1:])
            .swapaxes(1, 2).reshape(matrix.shape))


def draft_from_ir(folder: Path, target_gguf: Path):
    """A DraftLM with the IR's weights (float32) and its vocab map; settings the IR does not spell out
    (heads, RoPE theta, norm epsilon, architecture) are the target GGUF's, as for a draft made from it."""
    from edgespec.draft.model import DraftConfig, DraftLM, read_gguf_config, read_gguf_tensor

    xml = Path(folder) / "openvino_model.xml"
    if not xml.is_file():
        raise EdgespecError(f"no openvino_model.xml in {folder}")
    target_cfg = read_gguf_config(target_gguf)
    weights = ir_weights(xml)
    layers = sorted({int(n.split(".")[1]) for n in weights if n.startswith("blk.")})
    if layers != list(range(len(layers))) or not layers:
        raise EdgespecError(f"{xml}: layers {layers} are not numbered 0..n-1")
    vocab_map_path = Path(folder) / DRAFT_VOCAB
    vocab_map = np.load(vocab_map_path) if vocab_map_path.is_file() else None
    info_path = Path(folder) / "edgespec_model.json"
    context = json.loads(info_path.read_text()).get("context_length") if info_path.is_file() else None
    embedding = weights["token_embd.weight"]
    if embedding.shape[1] != target_cfg.hidden or embedding.shape[0] != target_cfg.target_vocab:
        raise EdgespecError(f"{xml}: embedding {embedding.shape} does not fit the target "
                            f"({target_cfg.target_vocab} x {target_cfg.hidden})")
    # FastDraft drafts keep the target's input embedding frozen: where the IR's is the target's up to INT8
    # rounding, training goes on from the exact values it started with.
    target_embedding = read_gguf_tensor(target_gguf, "token_embd.weight")
    row_range = target_embedding.max(1) - target_embedding.min(1)
    if (np.abs(embedding - target_embedding).max(1) <= row_range / 255 + 1e-6).all():
        weights["token_embd.weight"] = target_embedding
    head_rows = weights["output.weight"].shape[0]
    if (vocab_map is None) != (head_rows == target_cfg.target_vocab) or (
            vocab_map is not None and len(vocab_map) != head_rows):
        raise EdgespecError(f"{xml}: head has {head_rows} rows; {DRAFT_VOCAB} "
                            f"{'is missing' if vocab_map is None else f'maps {len(vocab_map)}'}")
    cfg = DraftConfig(**{**asdict(target_cfg), "layers": len(layers), "head_vocab": head_rows,
                         "ffn": weights["blk.0.ffn_gate.weight"].shape[0],
                         "context": int(context or target_cfg.context), "init_layers": [],
                         "init_source": f"{Path(folder).name} (IR)"})
    if not cfg.rope_neox:
        for i in layers:
            for name, heads in ((f"blk.{i}.attn_q", cfg.heads), (f"blk.{i}.attn_k", cfg.kv_heads)):
                weights[f"{name}.weight"] = llama_rope_rows(weights[f"{name}.weight"], heads)
                if f"{name}.bias" in weights:
                    weights[f"{name}.bias"] = llama_rope_rows(weights[f"{name}.bias"], heads)
    model = DraftLM(cfg)
    model.load_gguf_weights(weights)
    return model, vocab_map
