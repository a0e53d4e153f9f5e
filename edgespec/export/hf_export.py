"""Export through transformers + optimum-intel: Hugging Face ids, local HF folders, and GGUF files that
OpenVINO GenAI cannot read (transformers dequantizes them to float).

Needs the `export` extra (torch, transformers, accelerate, optimum-intel, nncf); every import is
lazy so that `edgespec export` on a GGUF that GenAI reads never touches torch.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from rich.console import Console

from edgespec.runtime.errors import EdgespecError

from .compress import INT4_GROUP_SIZE

KEEP_FILES = ("openvino_model.xml", "openvino_model.bin", "config.json", "generation_config.json")


def require_hf_stack() -> None:
    missing = []
    for module in ("torch", "transformers", "optimum.intel", "nncf", "accelerate"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module.split(".")[0])
    if missing:
        raise EdgespecError(f"this export goes through transformers and needs {', '.join(missing)}: "
                            "pip install 'edgespec[export]'")


def quantization_kwargs(weights: str) -> dict:
    """optimum-intel arguments for a weight format (same recipes as the NNCF path)."""
    from optimum.intel import OVWeightQuantizationConfig

    if weights == "int4":
        return {"quantization_config": OVWeightQuantizationConfig(bits=4, sym=True, group_size=INT4_GROUP_SIZE,
                                                                  ratio=1.0)}
    if weights == "int8":
        return {"quantization_config": OVWeightQuantizationConfig(bits=8, sym=False)}
    return {"load_in_8bit": False}  # fp16/keep: optimum would otherwise INT8-compress models over 1B


def fix_gguf_tokenizer(tokenizer, eos_token_id: int | None, add_bos: bool = False):
    """A correct fast tokenizer from what transformers builds out of a byte-level BPE GGUF.

    transformers makes it a CodeLlamaTokenizer whose decoder chain is ByteFallback/Fuse/Replace/ByteLevel
    (decoded text keeps the byte-level symbols: Ġ for space, Ċ for newline), whose post-processor adds
    <|im_start|> as BOS to every text, and whose eos is wrong (<|im_start|> for SmolLM2). The fix: a plain
    ByteLevel decoder, no BOS unless the GGUF asks for one, the GGUF's own eos, wrapped as a plain fast
    tokenizer so no CodeLlama-specific behaviour comes back when it is saved and reloaded.
    """
    from tokenizers import decoders, processors
    from transformers import PreTrainedTokenizerFast

    backend = tokenizer.backend_tokenizer
    pre = json.loads(backend.to_str()).get("pre_tokenizer") or {}
    if "ByteLevel" not in json.dumps(pre):
        return tokenizer  # not byte-level BPE (sentencepiece-style GGUF): left as transformers built it
    backend.decoder = decoders.ByteLevel()
    if not add_bos:
        backend.post_processor = processors.ByteLevel(trim_offsets=False)
    eos = tokenizer.convert_ids_to_tokens(int(eos_token_id)) if eos_token_id is not None else tokenizer.eos_token
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=tokenizer.bos_token, eos_token=eos,
                                   unk_token=tokenizer.unk_token, pad_token=tokenizer.pad_token,
                                   chat_template=tokenizer.chat_template)


def _stage_gguf_as_hf(gguf_path: Path, stage: Path, eos_token_id: int | None, add_bos: bool,
                      console: Console) -> Path:
    """Dequantize a GGUF with transformers and save it as a float HF folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with console.status(f"transformers: dequantizing {gguf_path.name}"):
        try:
            tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
            model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name,
                                                         dtype=torch.float32)
        except Exception as exc:  # transformers raises many types for unsupported GGUF content
            raise EdgespecError(f"transformers could not load {gguf_path.name}: "
                                f"{str(exc).strip().splitlines()[0] if str(exc).strip() else exc!r}") from None
        tokenizer = fix_gguf_tokenizer(tokenizer, eos_token_id, add_bos)
        if eos_token_id is not None:
            model.generation_config.eos_token_id = int(eos_token_id)
        stage.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(stage)
        tokenizer.save_pretrained(stage)
        del model
    return stage


def export_tokenizer(tokenizer, out_dir: Path) -> None:
    import openvino as ov
    from openvino_tokenizers import convert_tokenizer

    ov_tokenizer, ov_detokenizer = convert_tokenizer(tokenizer, with_detokenizer=True)
    ov.save_model(ov_tokenizer, out_dir / "openvino_tokenizer.xml")
    ov.save_model(ov_detokenizer, out_dir / "openvino_detokenizer.xml")


def export_hf(source: str, out_dir: Path, weights: str, console: Console, gguf_path: Path | None = None,
              gguf_eos: int | None = None, gguf_add_bos: bool = False) -> Path:
    """Export an HF id/folder (or a GGUF via transformers) into `out_dir`; returns the HF folder used
    (for its generation_config.json and config.json)."""
    require_hf_stack()
    from optimum.intel import OVModelForCausalLM
    from transformers import AutoConfig, AutoTokenizer

    out_dir.mkdir(parents=True, exist_ok=True)
    stage = None
    if gguf_path is not None:
        stage = out_dir / ".hf-stage"
        source = str(_stage_gguf_as_hf(gguf_path, stage, gguf_eos, gguf_add_bos, console))
    try:
        with console.status(f"optimum-intel: exporting {source} ({weights} weights)"):
            try:
                AutoConfig.from_pretrained(source)
                model = OVModelForCausalLM.from_pretrained(source, export=True, compile=False, stateful=True,
                                                           **quantization_kwargs(weights))
            except OSError as exc:
                raise EdgespecError(f"cannot load {source} as a Hugging Face model: "
                                    f"{str(exc).strip().splitlines()[0]}") from None
            model.save_pretrained(out_dir)
            del model
        with console.status("openvino-tokenizers: converting the tokenizer"):
            export_tokenizer(AutoTokenizer.from_pretrained(source), out_dir)
        hf_files = out_dir / ".hf-config"
        hf_files.mkdir(exist_ok=True)
        for name in ("config.json", "generation_config.json"):
            if (Path(source) / name).is_file():
                shutil.copyfile(Path(source) / name, hf_files / name)
            elif (out_dir / name).is_file():
                shutil.copyfile(out_dir / name, hf_files / name)
    finally:
        if stage is not None:
            shutil.rmtree(stage, ignore_errors=True)
    return hf_files


def hf_context_length(hf_dir: Path | None, default: int = 2048) -> int:
    if hf_dir is None or not (hf_dir / "config.json").is_file():
        return default
    config = json.loads((hf_dir / "config.json").read_text())
    config = config.get("text_config", config)
    return int(config.get("max_position_embeddings") or default)
