"""The on-disk layout of an exported pair, and its validation.

A pair folder holds `edgespec.json` and one sub-folder per model:

    pair/
      edgespec.json            {"format": 1, "name": ..., "target": {...}, "draft": {...} | null}
      target/                  openvino_model.xml/.bin, openvino_tokenizer.xml/.bin,
                               openvino_detokenizer.xml/.bin, edgespec_model.json
      draft/                   the same; a draft with a reduced output head adds draft_vocab.npy

Each model entry in edgespec.json: {"dir": "target", "source": "<where it came from>",
"weights": "int4|int8|fp16|gguf", "device": "CPU"}, and "gguf": the GGUF file the model was exported from
(absolute, or relative to the pair folder) when there is one: the llama.cpp engine loads that file.
edgespec_model.json: {"eos_token_ids": [...], "context_length": N, "vocab_size": N}.
A bare model folder (no edgespec.json) is accepted as a target-only pair.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgespec.runtime.errors import EdgespecError

MANIFEST = "edgespec.json"
MODEL_INFO = "edgespec_model.json"
DRAFT_VOCAB = "draft_vocab.npy"
MODEL_FILES = ("openvino_model.xml", "openvino_model.bin")
TOKENIZER_FILES = ("openvino_tokenizer.xml", "openvino_tokenizer.bin",
                   "openvino_detokenizer.xml", "openvino_detokenizer.bin")
FORMAT = 1


@dataclass
class ModelEntry:
    dir: Path
    source: str = ""
    weights: str = ""
    device: str = "CPU"
    eos_token_ids: list[int] = field(default_factory=list)
    context_length: int = 2048
    vocab_size: int = 0
    gguf: Path | None = None  # the GGUF this model was exported from (what the llama.cpp engine loads)

    @property
    def xml(self) -> Path:
        return self.dir / "openvino_model.xml"

    def vocab_map(self) -> np.ndarray | None:
        path = self.dir / DRAFT_VOCAB
        if not path.exists():
            return None
        try:
            return np.load(path).astype(np.int64)
        except (ValueError, OSError) as exc:
            raise EdgespecError(f"{path} is unreadable ({exc})") from None


@dataclass
class Pair:
    root: Path
    name: str
    target: ModelEntry
    draft: ModelEntry | None


def _check_files(folder: Path, names: tuple[str, ...]) -> None:
    for name in names:
        path = folder / name
        if not path.is_file():
            raise EdgespecError(f"missing model file: {path}")
        if path.stat().st_size == 0:
            raise EdgespecError(f"empty model file: {path}")


def read_model_entry(folder: Path, entry: dict | None = None, need_tokenizer: bool = True,
                     root: Path | None = None) -> ModelEntry:
    folder = folder.resolve()
    if not folder.is_dir():
        raise EdgespecError(f"model folder not found: {folder}")
    _check_files(folder, MODEL_FILES + (TOKENIZER_FILES if need_tokenizer else ()))
    info = {}
    if (folder / MODEL_INFO).exists():
        info = _read_json(folder / MODEL_INFO)
    entry = entry or {}
    return ModelEntry(
        dir=folder,
        source=entry.get("source", ""),
        weights=entry.get("weights", ""),
        device=entry.get("device", "CPU"),
        eos_token_ids=[int(i) for i in info.get("eos_token_ids", [])],
        context_length=int(info.get("context_length", 2048)),
        vocab_size=int(info.get("vocab_size", 0)),
        gguf=(Path(root or folder) / Path(entry["gguf"]).expanduser()) if entry.get("gguf") else None,
    )


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EdgespecError(f"{path} is corrupted ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(data, dict):
        raise EdgespecError(f"{path} is corrupted (expected a JSON object)")
    return data


def load_pair(path: str | Path) -> Pair:
    """Read a pair folder (with edgespec.json) or a bare model folder (target only)."""
    root = Path(path).expanduser()
    if not root.exists():
        raise EdgespecError(f"model path not found: {root}")
    if root.is_file() and root.name == MANIFEST:
        root = root.parent
    manifest_path = root / MANIFEST
    if not manifest_path.exists():
        return Pair(root=root, name=root.name, target=read_model_entry(root), draft=None)
    manifest = _read_json(manifest_path)
    if manifest.get("format") != FORMAT:
        raise EdgespecError(f"{manifest_path}: unsupported manifest format {manifest.get('format')!r}")
    if not isinstance(manifest.get("target"), dict) or "dir" not in manifest["target"]:
        raise EdgespecError(f"{manifest_path}: no target entry")
    target = read_model_entry(root / manifest["target"]["dir"], manifest["target"], root=root)
    draft = None
    if manifest.get("draft"):
        draft = read_model_entry(root / manifest["draft"]["dir"], manifest["draft"], need_tokenizer=False, root=root)
    return Pair(root=root, name=manifest.get("name", root.name), target=target, draft=draft)


def write_manifest(root: str | Path, name: str, target: dict, draft: dict | None) -> Path:
    """Write (or replace) a pair's edgespec.json; written aside and renamed, so a reader never sees half of one."""
    root = Path(root)
    data = {"format": FORMAT, "name": name, "target": target, "draft": draft}
    tmp = root / f".{MANIFEST}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, root / MANIFEST)
    return root / MANIFEST


def write_model_info(folder: str | Path, eos_token_ids: list[int], context_length: int, vocab_size: int) -> None:
    info = {"eos_token_ids": sorted(set(int(i) for i in eos_token_ids)), "context_length": int(context_length),
            "vocab_size": int(vocab_size)}
    (Path(folder) / MODEL_INFO).write_text(json.dumps(info, indent=2) + "\n")
