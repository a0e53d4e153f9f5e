"""The runtime: load a pair, run the speculative loop. Imports nothing from export, draft or bench."""

from edgespec.runtime.config import CollabConfig, GenerationConfig, GenerationStats
from edgespec.runtime.errors import EdgespecError
from edgespec.runtime.npu import NPUConfig
from edgespec.runtime.pipeline import GenerationResult, SpeculativePipeline

__all__ = ["CollabConfig", "EdgespecError", "GenerationConfig", "GenerationResult", "GenerationStats", "NPUConfig",
           "SpeculativePipeline"]
