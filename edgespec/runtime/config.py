"""What a generation is asked to do, and what it measured: plain data, no OpenVINO."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

from edgespec.runtime.sampling import Warp


@dataclass
class GenerationConfig:
    max_new_tokens: int = 128
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int | None = None
    draft_length: int = 3
    adaptive_draft: bool = True
    max_draft_length: int = 12
    stop_strings: tuple[str, ...] = ()
    ignore_eos: bool = False
    prompt_lookup: bool = True  # copy n-grams from the prompt and the text so far when they match

    @property
    def warp(self) -> Warp:
        return Warp(self.temperature, self.top_k, self.top_p)


def tokens_per_target_call(new_tokens: int, target_calls: int) -> float:
    """Block efficiency: new tokens per target call, the prefill call that produced token 1 left out
    (it verifies nothing). The one definition used by the runtime, the bench and draft measurements."""
    if target_calls <= 1:
        return float(new_tokens)
    return (new_tokens - 1) / (target_calls - 1)


@dataclass
class GenerationStats:
    prompt_tokens: int = 0
    new_tokens: int = 0
    wall_s: float = 0.0
    ttft_s: float = 0.0
    tpot_s: float = 0.0
    target_calls: int = 0
    draft_calls: int = 0
    drafted_tokens: int = 0
    accepted_tokens: int = 0
    lookup_tokens: int = 0  # proposed by prompt lookup (no draft call), part of drafted_tokens
    lookup_accepted: int = 0
    acceptance_rate: float = 0.0
    tokens_per_target_call: float = 0.0
    stop_reason: str = ""
    draft_stopped_at: int | None = None  # prompt + text reached the draft's context: the target went on alone
    target_s: float = 0.0  # time inside target calls
    draft_s: float = 0.0  # time inside draft calls
    draft_lengths: list[int] = field(default_factory=list)

    def finish(self, start: float) -> None:
        self.wall_s = time.perf_counter() - start
        if self.new_tokens > 1:
            self.tpot_s = (self.wall_s - self.ttft_s) / (self.new_tokens - 1)
        self.acceptance_rate = self.accepted_tokens / self.drafted_tokens if self.drafted_tokens else 0.0
        self.tokens_per_target_call = tokens_per_target_call(self.new_tokens, self.target_calls)

    def as_dict(self) -> dict:
        return asdict(self)
