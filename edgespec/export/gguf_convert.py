"""GGUF -> OpenVINO IR through OpenVINO GenAI's own GGUF reader (no torch needed)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from edgespec.runtime.errors import EdgespecError

IR_FILES = ("openvino_model.xml", "openvino_model.bin", "openvino_tokenizer.xml", "openvino_tokenizer.bin",
            "openvino_detokenizer.xml", "openvino_detokenizer.bin")


def convert_gguf(gguf_path: str | Path, out_dir: str | Path) -> Path:
    """Write model, tokenizer and detokenizer IR for `gguf_path` into `out_dir`.

    GenAI writes the IR beside the GGUF it reads, so the GGUF is linked (or copied) into
    a scratch folder inside out_dir first and removed afterwards.
    """
    import openvino_genai

    gguf_path = Path(gguf_path).resolve()
    if not gguf_path.is_file():
        raise EdgespecError(f"GGUF file not found: {gguf_path}")
    out_dir = Path(out_dir)
    scratch = out_dir / ".gguf-convert"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    staged = scratch / gguf_path.name
    try:
        os.link(gguf_path, staged)
    except OSError:
        shutil.copyfile(gguf_path, staged)
    try:
        openvino_genai.LLMPipeline(str(staged), "CPU", enable_save_ov_model=True)
    except RuntimeError as exc:
        first_line = str(exc).strip().splitlines()[-1] if str(exc).strip() else repr(exc)
        raise EdgespecError(f"OpenVINO GenAI could not read {gguf_path.name}: {first_line}") from None
    for name in IR_FILES:
        if not (scratch / name).exists():
            raise EdgespecError(f"converting {gguf_path.name} produced no {name}")
        shutil.move(str(scratch / name), out_dir / name)
    shutil.rmtree(scratch, ignore_errors=True)
    return out_dir
