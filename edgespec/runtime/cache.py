"""Where edgespec keeps what it prepares or measures once per machine (pairs, GGUF downloads, engine probes)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """~/.cache/edgespec unless EDGESPEC_CACHE or XDG_CACHE_HOME say otherwise."""
    if cache_dir:
        return Path(cache_dir).expanduser()
    if os.environ.get("EDGESPEC_CACHE"):
        return Path(os.environ["EDGESPEC_CACHE"]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "edgespec"
