"""Export one model or a target/draft pair into the edgespec pair folder layout (edgespec/manifest.py).

Routes, by source:
  GGUF whose matrices GenAI reads, weights "keep"  -> GenAI's GGUF reader, quantization as GenAI reads it.
  GGUF of a GenAI architecture, weights int4/int8/fp16 (or a tensor type GenAI rejects, such as Q5_0)
      -> every matrix dequantized to F16 in numpy (gguf-py), read by GenAI, compressed by NNCF. Torch-free.
  HF id / HF folder / GGUF of another architecture -> transformers + optimum-intel (the `export` extra).
  An OpenVINO IR folder (such as a shipped FastDraft draft) -> copied, compressed by NNCF if asked.
`via` forces a route ("genai" or "transformers"); "auto" picks as above.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from edgespec.runtime.errors import EdgespecError
from edgespec.runtime.manifest import DRAFT_VOCAB, MANIFEST, MODEL_INFO, TOKENIZER_FILES, write_manifest, write_model_info

from .compress import check_weight_format, compress_ir, require_nncf
from .gguf_convert import convert_gguf
from .gguf_tools import GENAI_ARCHITECTURES, GgufInfo, read_gguf_info, rewrite_gguf
from .tokenizer_info import check_same_tokenizer, eos_token_ids, model_vocab_size

ROUTES = ("auto", "genai", "transformers")
_HF_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class Source:
    kind: str       # "gguf" | "hf_dir" | "hf_id" | "ir"
    location: str   # a path, or a Hugging Face id
    label: str      # what edgespec.json records as the source

    @property
    def path(self) -> Path:
        return Path(self.location)


@dataclass
class ExportedModel:
    dir: Path
    source: str
    weights: str
    eos_token_ids: list[int]
    context_length: int
    vocab_size: int
    seconds: float


def resolve_source(value: str, label: str | None = None) -> Source:
    """Classify a --target/--draft value: .gguf file, IR folder, HF folder, or HF id."""
    path = Path(value).expanduser()
    if path.is_file():
        with open(path, "rb") as f:
            if f.read(4) != b"GGUF":
                raise EdgespecError(f"{path} is not a GGUF file (expected a .gguf file, a model folder or a "
                                    f"Hugging Face id)")
        return Source("gguf", str(path.resolve()), label or path.name)
    if path.is_dir():
        if (path / "openvino_model.xml").is_file():
            return Source("ir", str(path.resolve()), label or str(path))
        if (path / "config.json").is_file():
            return Source("hf_dir", str(path.resolve()), label or str(path))
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:
            return Source("gguf", str(ggufs[0].resolve()), label or ggufs[0].name)
        raise EdgespecError(f"{path} holds no model (no openvino_model.xml, config.json or single .gguf file)")
    looks_like_path = value.startswith((".", "/", "~")) or value.endswith(".gguf") or os.sep * 2 in value
    if _HF_ID.match(value) and not looks_like_path:
        return Source("hf_id", value, label or value)
    raise EdgespecError(f"model not found: {value} (no such file or folder, and not a Hugging Face id)")


def _hf_stack_installed() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("torch", "transformers", "optimum", "accelerate"))


def _wants_genai(info: GgufInfo, via: str) -> bool:
    if via == "genai":
        if info.architecture not in GENAI_ARCHITECTURES:
            raise EdgespecError(f"OpenVINO GenAI cannot read {info.architecture} GGUF files "
                                f"(it reads {', '.join(sorted(GENAI_ARCHITECTURES))}); use --via transformers")
        return True
    return via == "auto" and info.architecture in GENAI_ARCHITECTURES


def _convert(gguf_path: Path, out_dir: Path) -> None:
    """convert_gguf, leaving no scratch files behind when GenAI fails."""
    try:
        convert_gguf(gguf_path, out_dir)
    except BaseException:
        shutil.rmtree(out_dir / ".gguf-convert", ignore_errors=True)
        raise


def _export_gguf_genai(info: GgufInfo, out_dir: Path, weights: str, console: Console) -> str:
    if weights == "keep" and info.genai_readable:
        with console.status(f"GenAI: reading {info.path.name} (weights as in the GGUF)"):
            _convert(info.path, out_dir)
        return "gguf"
    if weights == "keep":
        console.print(f"[yellow]note:[/] GenAI cannot keep {', '.join(sorted(info.matrix_types))} weights; "
                      "exporting them as fp16")
        weights = "fp16"
    # For int4/int8 GenAI reads a Q8_0 copy (about half the peak memory of reading F16: 14.5 -> 8 GB for
    # a 1.5B model); compress_ir folds its blocks back to f16 before compressing. fp16 reads F16.
    inter = "F16" if weights == "fp16" else "Q8_0"
    if inter == "Q8_0" and info.matrix_types == {"Q8_0"}:
        with console.status(f"GenAI: reading {info.path.name}"):
            _convert(info.path, out_dir)
    else:
        scratch = out_dir / f".{inter.lower()}.gguf"
        try:
            rewrite_gguf(info.path, scratch, inter, console)
            with console.status(f"GenAI: reading the {inter} copy of {info.path.name}"):
                _convert(scratch, out_dir)
        finally:
            scratch.unlink(missing_ok=True)
    if weights != "fp16":
        with console.status(f"NNCF: compressing weights to {weights}"):
            compress_ir(out_dir, weights)
    return weights


def _copy_ir(src: Path, out_dir: Path, weights: str, console: Console) -> str:
    names = ("openvino_model.xml", "openvino_model.bin") + TOKENIZER_FILES + (MODEL_INFO, DRAFT_VOCAB)
    for name in names:
        if (src / name).is_file():
            shutil.copyfile(src / name, out_dir / name)
    if weights in ("int4", "int8"):
        with console.status(f"NNCF: compressing weights to {weights}"):
            compress_ir(out_dir, weights)
        return weights
    return _recorded_weights(src) or "keep"


def _recorded_weights(ir_dir: Path) -> str | None:
    """The weight format a pair manifest next to (or above) an IR folder recorded for it."""
    for manifest in (ir_dir / MANIFEST, ir_dir.parent / MANIFEST):
        if manifest.is_file():
            try:
                data = json.loads(manifest.read_text())
            except (OSError, json.JSONDecodeError):
                return None
            for role in ("target", "draft"):
                entry = data.get(role) or {}
                if isinstance(entry, dict) and (manifest.parent / entry.get("dir", "?")).resolve() == ir_dir.resolve():
                    return entry.get("weights")
    return None


def _existing_info(ir_dir: Path) -> dict:
    try:
        return json.loads((ir_dir / MODEL_INFO).read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def export_model(source: Source, out_dir: str | Path, weights: str, via: str = "auto",
                 console: Console | None = None) -> ExportedModel:
    """Export one model into `out_dir` (IR + tokenizer/detokenizer IR + edgespec_model.json)."""
    from .hf_export import export_hf, hf_context_length

    console = console or Console(stderr=True)
    weights = check_weight_format(weights)
    if via not in ROUTES:
        raise EdgespecError(f"unknown export route {via!r} (choose from {', '.join(ROUTES)})")
    if weights == "int4" and source.kind in ("gguf", "ir"):
        require_nncf()  # fail before minutes of conversion, not after
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    hf_dir, context, extra_eos = None, None, []
    if source.kind == "gguf":
        info = read_gguf_info(source.path)
        context = info.context_length
        extra_eos = [info.eos_token_id] if info.eos_token_id is not None else []
        genai_error = None
        if _wants_genai(info, via):
            try:
                applied = _export_gguf_genai(info, out_dir, weights, console)
            except EdgespecError as exc:
                if via == "genai" or not _hf_stack_installed():
                    raise
                genai_error = exc  # auto: transformers may still read it
                console.print(f"[yellow]note:[/] {exc}; trying transformers instead")
        if not _wants_genai(info, via) or genai_error is not None:
            applied = "fp16" if weights == "keep" else weights
            hf_dir = export_hf(source.location, out_dir, applied, console, gguf_path=source.path,
                               gguf_eos=info.eos_token_id, gguf_add_bos=info.add_bos)
    elif source.kind in ("hf_dir", "hf_id"):
        if via == "genai":
            raise EdgespecError(f"{source.label} is not a GGUF file: OpenVINO GenAI's reader cannot export it")
        applied = "fp16" if weights == "keep" else weights
        hf_dir = export_hf(source.location, out_dir, applied, console)
        context = hf_context_length(hf_dir)
    elif source.kind == "ir":
        applied = _copy_ir(source.path, out_dir, weights, console)
        context = _existing_info(source.path).get("context_length")
        extra_eos = _existing_info(source.path).get("eos_token_ids", [])
    else:
        raise ValueError(source.kind)
    has_tokenizer = (out_dir / "openvino_tokenizer.xml").is_file()
    eos = sorted(set(eos_token_ids(out_dir, hf_dir) if has_tokenizer else []) | set(int(e) for e in extra_eos))
    vocab = model_vocab_size(out_dir)
    context = int(context or 2048)
    write_model_info(out_dir, eos, context, vocab)
    if hf_dir is not None:
        shutil.rmtree(hf_dir, ignore_errors=True)
    return ExportedModel(dir=out_dir, source=source.label, weights=applied, eos_token_ids=eos,
                         context_length=context, vocab_size=vocab, seconds=time.perf_counter() - start)


def check_gguf_tokenizers(target: Source, draft: Source) -> None:
    """Early, cheap check for a GGUF pair: compare the token lists before spending minutes exporting."""
    if target.kind != "gguf" or draft.kind != "gguf":
        return
    t_tokens = read_gguf_info(target.path).tokens
    d_tokens = read_gguf_info(draft.path).tokens
    for i, (a, b) in enumerate(zip(t_tokens, d_tokens)):
        if a != b:
            raise EdgespecError(f"target and draft tokenizers differ at token id {i} "
                                f"(target {a!r}, draft {b!r})")


def _entry(model: ExportedModel, dirname: str, source: Source, device: str = "CPU") -> dict:
    entry = {"dir": dirname, "source": model.source, "weights": model.weights, "device": device}
    if source.kind == "gguf":
        entry["gguf"] = str(source.path.resolve())  # what the llama.cpp engine loads (--engine llamacpp)
    return entry


def _check_out(out: Path) -> None:
    """Only an empty folder or an earlier pair folder may be replaced by an export."""
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MANIFEST).is_file())):
        raise EdgespecError(f"{out} exists and is not an edgespec pair folder; choose another --out")


def _replace_dir(staging: Path, out: Path) -> None:
    """Move a finished export into place; an existing pair folder there is replaced."""
    if out.exists():
        _check_out(out)
        trash = out.with_name(f".{out.name}.old-{os.getpid()}")
        out.rename(trash)
        staging.rename(out)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        staging.rename(out)


def export_pair(target: Source, draft: Source | None, out: str | Path, target_weights: str = "int4",
                draft_weights: str = "int8", name: str | None = None, via: str = "auto",
                console: Console | None = None) -> Path:
    """Export target (and draft) into the pair folder `out`.

    Everything is written into a hidden staging folder beside `out` and renamed at the end, so an
    interrupted export never leaves a half-written pair that looks complete.
    """
    console = console or Console(stderr=True)
    target_weights = check_weight_format(target_weights, "target weights")
    draft_weights = check_weight_format(draft_weights, "draft weights")
    out = Path(out).expanduser().resolve()
    _check_out(out)
    if draft is not None:
        check_gguf_tokenizers(target, draft)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        exported_draft = None
        if draft is not None:
            console.rule(f"draft: {draft.label}")
            exported_draft = export_model(draft, staging / "draft", draft_weights, via, console)
            _report(console, exported_draft)
        console.rule(f"target: {target.label}")
        exported_target = export_model(target, staging / "target", target_weights, via, console)
        _report(console, exported_target)
        if exported_draft is not None:
            check_same_tokenizer(staging / "target", staging / "draft", exported_target.eos_token_ids,
                                 exported_draft.eos_token_ids)
            # A FastDraft draft ships without tokenizer IR; OpenVINO GenAI's draft_model refuses a folder
            # without one, and the draft shares the target's vocabulary, so the target's is copied in.
            for tokenizer_file in TOKENIZER_FILES:
                if not (staging / "draft" / tokenizer_file).is_file():
                    shutil.copyfile(staging / "target" / tokenizer_file, staging / "draft" / tokenizer_file)
        write_manifest(staging, name or out.name, _entry(exported_target, "target", target),
                       _entry(exported_draft, "draft", draft) if exported_draft else None)
        _replace_dir(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def _report(console: Console, model: ExportedModel) -> None:
    size = sum(f.stat().st_size for f in model.dir.glob("openvino_model.bin")) / 1e6
    console.print(f"[green]done[/] {model.source}: {model.weights} weights, {size:.0f} MB, vocab {model.vocab_size}, "
                  f"context {model.context_length}, eos {model.eos_token_ids} ({model.seconds:.0f} s)")
