"""A draft IR folder back into a training checkpoint.

A shipped draft is kept as INT8 (or INT4) IR only; its float weights live in a training run that may be
gone by the time someone wants to train it further (new prompts, another device). This rebuilds the
float model from the IR (export.ir_to_gguf.ir_weights: float32 weights in GGUF naming) and loads it into a DraftLM whose
remaining settings (heads, RoPE, norm epsilon) come from the target's GGUF. `edgespec draft import-ir`
checks the result against the IR's own logits (export.verify_export), so a layout mistake cannot pass.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from edgespec.export.ir_to_gguf import interleave_llama_rope, ir_weights
from edgespec.runtime.errors import EdgespecError
from edgespec.runtime.manifest import DRAFT_VOCAB


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
        interleave_llama_rope(weights, layers, cfg.heads, cfg.kv_heads)
    model = DraftLM(cfg)
    model.load_gguf_weights(weights)
    return model, vocab_map
