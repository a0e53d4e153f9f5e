"""An OpenVINO IR that GenAI's GGUF reader wrote (llama/qwen2) back to GGUF: its weights, and a draft as a GGUF
that llama.cpp loads.

Each weight's decompression subgraph (INT8/INT4 with scales) is folded to float32 and named after the GGUF tensor
it came from, through the names GenAI's reader gives the projections (ir_weights). `edgespec draft import-ir`
rebuilds a trainable draft from them; `edgespec draft gguf` writes a shipped draft as a GGUF (draft_gguf), so the
draft can run on the llama.cpp engine (`--draft-engine llamacpp`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from edgespec.export.gguf_tools import llama_settings, open_gguf, rewrite_gguf
from edgespec.runtime.errors import EdgespecError
from edgespec.runtime.manifest import DRAFT_VOCAB, MODEL_INFO

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


def interleave_llama_rope(weights: dict[str, np.ndarray], layers: list[int], heads: int, kv_heads: int) -> None:
    """In place: every layer's Q/K weights (and biases) from GenAI's half-split layout to llama.cpp's interleaved
    one (llama only; qwen2 uses NeoX RoPE, stored as it is)."""
    for i in layers:
        for name, n in ((f"blk.{i}.attn_q", heads), (f"blk.{i}.attn_k", kv_heads)):
            for suffix in (".weight", ".bias"):
                if name + suffix in weights:
                    weights[name + suffix] = llama_rope_rows(weights[name + suffix], n)


DRAFT_GGUF = "draft-llamacpp.gguf"  # written beside the draft's IR by `edgespec draft gguf`


def _target_settings(target_gguf: Path) -> dict:
    """What a draft's GGUF takes from its target's: architecture, heads, RoPE base, norm epsilon, vocabulary."""
    settings = llama_settings(open_gguf(target_gguf))
    if settings["arch"] not in ("llama", "qwen2"):
        raise EdgespecError(f"{target_gguf}: a {settings['arch']} target (a draft GGUF is written for llama and qwen2)")
    return settings


def draft_gguf(draft_dir: Path, target_gguf: Path, out: Path, weight_type: str = "Q8_0") -> Path:
    """Write the draft IR in `draft_dir` as a llama.cpp GGUF at `out` (matrices as `weight_type`).

    A reduced (FR-Spec) head becomes a full-vocabulary one whose rows outside draft_vocab.npy are zero: llama.cpp
    needs as many head rows as tokens, and the llama.cpp engine reads the logits at the mapped ids only, so the
    zero rows are never looked at (they cost llama.cpp their share of the head's product)."""
    from edgespec.export.gguf_llama import LlamaShape, read_tokenizer_fields, write_llama_gguf  # needs `gguf`

    draft_dir, target_gguf, out = Path(draft_dir), Path(target_gguf), Path(out)
    xml = draft_dir / "openvino_model.xml"
    if not xml.is_file():
        raise EdgespecError(f"no openvino_model.xml in {draft_dir}")
    if not target_gguf.is_file():
        raise EdgespecError(f"the target's GGUF is missing: {target_gguf}")
    settings = _target_settings(target_gguf)
    weights = ir_weights(xml)
    layers = sorted({int(n.split(".")[1]) for n in weights if n.startswith("blk.")})
    if not layers or layers != list(range(len(layers))):
        raise EdgespecError(f"{xml}: layers {layers} are not numbered 0..n-1")
    vocab, hidden = weights["token_embd.weight"].shape
    if vocab != settings["vocab"]:
        raise EdgespecError(f"{xml}: a vocabulary of {vocab} tokens, the target's GGUF {settings['vocab']}")
    head = weights["output.weight"]
    vocab_map_path = draft_dir / DRAFT_VOCAB
    if head.shape[0] != vocab:
        if not vocab_map_path.is_file():
            raise EdgespecError(f"{xml}: a {head.shape[0]}-row head and no {DRAFT_VOCAB}")
        vocab_map = np.load(vocab_map_path)
        if len(vocab_map) != head.shape[0]:
            raise EdgespecError(f"{vocab_map_path} maps {len(vocab_map)} rows, the head has {head.shape[0]}")
        full = np.zeros((vocab, hidden), dtype=np.float32)
        full[vocab_map] = head
        weights["output.weight"] = full
    if settings["arch"] == "llama":
        interleave_llama_rope(weights, layers, settings["heads"], settings["kv_heads"])
    info = json.loads((draft_dir / MODEL_INFO).read_text()) if (draft_dir / MODEL_INFO).is_file() else {}
    shape = LlamaShape(vocab_size=vocab, hidden=hidden, layers=len(layers), heads=settings["heads"],
                       kv_heads=settings["kv_heads"], ffn=weights["blk.0.ffn_gate.weight"].shape[0],
                       context=int(info.get("context_length", 2048)), rope_theta=settings["rope_theta"],
                       rms_eps=settings["rms_eps"], arch=settings["arch"])
    out.parent.mkdir(parents=True, exist_ok=True)
    f16 = out.with_name(f".{out.name}.f16-{os.getpid()}")
    try:
        write_llama_gguf(f16, shape, weights, read_tokenizer_fields(target_gguf), name=f"{draft_dir.name} draft")
        if weight_type.upper() == "F16":
            os.replace(f16, out)
        else:
            rewrite_gguf(f16, out, weight_type.upper())
    finally:
        f16.unlink(missing_ok=True)
    return out


def compare_draft_engines(ov_draft, llama_draft, ids: list[int]) -> dict:
    """How closely the llama.cpp draft's logits follow the OpenVINO draft's on `ids` (one call each, every
    position): the argmax agreement (also where OpenVINO's top two differ by 1 or more: the positions where rounding
    cannot decide) and the largest logit difference, over the draft's own head columns."""
    ov_draft.reset()
    llama_draft.reset()
    a = ov_draft.forward(ids, last=len(ids))
    b = llama_draft.forward(ids, last=len(ids))
    ov_draft.reset()
    llama_draft.reset()
    same = a.argmax(-1) == b.argmax(-1)
    top2 = np.sort(a, axis=-1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] >= 1.0
    return {"positions": len(ids), "argmax_agreement": float(same.mean()),
            "argmax_agreement_clear": float(same[clear].mean()) if clear.any() else 1.0,
            "max_abs_diff": float(np.abs(a - b).max()), "logit_scale": float(np.abs(a).max())}
