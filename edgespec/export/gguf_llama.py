"""Write llama-architecture GGUF files from numpy weights.

OpenVINO GenAI reads such a file straight into a stateful OpenVINO model with
tokenizer/detokenizer IR, without torch. The tests build their tiny random models
this way, and FastDraft writes its trained drafts this way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np

# Tokenizer keys copied verbatim from a reference GGUF, with the writer call for each.
_TOKENIZER_WRITERS = {
    "tokenizer.ggml.model": "add_tokenizer_model",
    "tokenizer.ggml.pre": "add_tokenizer_pre",
    "tokenizer.ggml.tokens": "add_token_list",
    "tokenizer.ggml.token_type": "add_token_types",
    "tokenizer.ggml.merges": "add_token_merges",
    "tokenizer.ggml.bos_token_id": "add_bos_token_id",
    "tokenizer.ggml.eos_token_id": "add_eos_token_id",
    "tokenizer.ggml.unknown_token_id": "add_unk_token_id",
    "tokenizer.ggml.padding_token_id": "add_pad_token_id",
    "tokenizer.ggml.add_bos_token": "add_add_bos_token",
    "tokenizer.ggml.add_space_prefix": "add_add_space_prefix",
    "tokenizer.chat_template": "add_chat_template",
}


@dataclass(frozen=True)
class LlamaShape:
    vocab_size: int
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    ffn: int
    context: int = 2048
    rope_theta: float = 10000.0
    rms_eps: float = 1e-5
    arch: str = "llama"  # or "qwen2": the same decoder with Q/K/V biases and NeoX-style RoPE

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


def read_tokenizer_fields(reference_gguf: str | Path) -> dict:
    """The tokenizer.* metadata of a GGUF file, as plain Python values."""
    reader = gguf.GGUFReader(str(reference_gguf))
    return {key: field.contents() for key, field in reader.fields.items() if key in _TOKENIZER_WRITERS}


def random_llama_weights(shape: LlamaShape, seed: int, scale: float = 0.2) -> dict[str, np.ndarray]:
    """Random weights in GGUF tensor naming; the output projection is tied to the embedding."""
    rng = np.random.default_rng(seed)
    h, kv = shape.hidden, shape.kv_heads * shape.head_dim

    def mat(rows: int, cols: int, s: float = scale) -> np.ndarray:
        return (rng.standard_normal((rows, cols)) * s).astype(np.float32)

    weights = {"token_embd.weight": mat(shape.vocab_size, h, 0.5), "output_norm.weight": np.ones(h, np.float32)}
    for i in range(shape.layers):
        weights |= {
            f"blk.{i}.attn_norm.weight": np.ones(h, np.float32),
            f"blk.{i}.ffn_norm.weight": np.ones(h, np.float32),
            f"blk.{i}.attn_q.weight": mat(h, h),
            f"blk.{i}.attn_k.weight": mat(kv, h),
            f"blk.{i}.attn_v.weight": mat(kv, h),
            f"blk.{i}.attn_output.weight": mat(h, h),
            f"blk.{i}.ffn_gate.weight": mat(shape.ffn, h),
            f"blk.{i}.ffn_up.weight": mat(shape.ffn, h),
            f"blk.{i}.ffn_down.weight": mat(h, shape.ffn),
        }
        if shape.arch == "qwen2":
            weights |= {f"blk.{i}.attn_q.bias": mat(1, h)[0], f"blk.{i}.attn_k.bias": mat(1, kv)[0],
                        f"blk.{i}.attn_v.bias": mat(1, kv)[0]}
    return weights


def write_llama_gguf(path: str | Path, shape: LlamaShape, weights: dict[str, np.ndarray], tokenizer_fields: dict,
                     name: str = "edgespec-llama") -> Path:
    """Write a llama (or qwen2) GGUF: matrices as F16 (GenAI's reader rejects F32 matrices), norms and biases as F32.

    Keys of `weights` follow GGUF naming (token_embd.weight, blk.N.attn_q.weight, output.weight...),
    with each matrix stored as [out_features, in_features] like a torch Linear weight.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), shape.arch)
    writer.add_name(name)
    writer.add_block_count(shape.layers)
    writer.add_context_length(shape.context)
    writer.add_embedding_length(shape.hidden)
    writer.add_feed_forward_length(shape.ffn)
    writer.add_head_count(shape.heads)
    writer.add_head_count_kv(shape.kv_heads)
    writer.add_rope_freq_base(shape.rope_theta)
    writer.add_layer_norm_rms_eps(shape.rms_eps)
    writer.add_vocab_size(shape.vocab_size)
    writer.add_rope_dimension_count(shape.head_dim)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    for key, value in tokenizer_fields.items():
        getattr(writer, _TOKENIZER_WRITERS[key])(value)
    for tensor_name, tensor in weights.items():
        tensor = np.ascontiguousarray(tensor)
        writer.add_tensor(tensor_name, tensor.astype(np.float32 if tensor.ndim == 1 else np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
