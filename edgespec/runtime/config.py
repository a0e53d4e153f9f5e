"""What a generation is asked to do, and what it measured: plain data, no OpenVINO."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

from edgespec.runtime.errors import EdgespecError
from edgespec.runtime.sampling import Warp

COLLAB_METHODS = ("ensemble", "contrastive")
COLLAB_BONUS = ("extra-call", "alternate")


@dataclass(frozen=True)
class CollabConfig:
    """Collaborative decoding: every token is drawn from r, a combination of the target's and the draft's
    next-token distributions (edgespec/runtime/collab.py).

    method: "ensemble", r = (1 - weight) p + weight q (each model's distribution warped first), or
      "contrastive", r = warp(z_target - alpha z_draft) (the combined logits warped).
    naive: run both models on every token (the baseline); otherwise CoS (Fu et al., ICML 2025): the draft
      proposes tokens from q and each is verified against r, so r comes at the cost of speculative decoding.
    bonus: how CoS gets the draft's distribution at the position after the last drafted token: "extra-call"
      (one more draft call, then a draw from r) or "alternate" (CoS's alternate proposal: the target's own token
      there is a proposal the draft's next call verifies; fewer draft calls, no faster on a CPU: docs/collab.md).
    """
    method: str = "ensemble"
    weight: float = 0.5
    alpha: float = 0.1
    naive: bool = False
    bonus: str = "extra-call"

    def __post_init__(self):
        if self.method not in COLLAB_METHODS:
            raise EdgespecError(f"unknown collaborative method {self.method!r} (ensemble or contrastive)")
        if not 0.0 <= self.weight <= 1.0:
            raise EdgespecError(f"ensemble weight must be between 0 and 1, got {self.weight}")
        if self.alpha < 0.0:
            raise EdgespecError(f"contrastive alpha must be 0 or more, got {self.alpha}")
        if self.bonus not in COLLAB_BONUS:
            raise EdgespecError(f"unknown bonus handling {self.bonus!r} (extra-call or alternate)")

    def describe(self) -> str:
        what = f"weight {self.weight:g}" if self.method == "ensemble" else f"alpha {self.alpha:g}"
        how = "naive: both models every token" if self.naive else f"CoS, {self.bonus}"
        return f"{self.method} ({what}; {how})"


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
    collab: CollabConfig | None = None  # collaborative decoding of target and draft (None: the target's output)
    draft_window: int = 256  # the draft reads at most this many prompt tokens (its head and tail; 0: all)
    tree: str | int = "off"  # tree speculation (tree.py): "off", "auto" (tuned budget, or chain), or a node budget

    def __post_init__(self):
        from edgespec.runtime.tree_shape import parse_tree

        self.tree = parse_tree(self.tree)
        if isinstance(self.collab, dict):  # a config read back from JSON (asdict flattens the nested one)
            self.collab = CollabConfig(**self.collab)

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
    rejected_steps: int = 0  # steps whose proposal was cut short by a rejection (per-token acceptance's trials)
    lookup_tokens: int = 0  # proposed by prompt lookup (no draft call), part of drafted_tokens
    lookup_accepted: int = 0
    chain_accepted: int = 0  # of the draft model's chain proposals (lookup and trees apart): kept tokens
    chain_rejected: int = 0  # and chain steps cut short by a rejection
    alternate_tokens: int = 0  # CoS alternate proposal: the target's own tokens, checked against r by the draft
    alternate_accepted: int = 0
    acceptance_rate: float = 0.0
    tokens_per_target_call: float = 0.0
    stop_reason: str = ""
    draft_stopped_at: int | None = None  # prompt + text reached the draft's context: the target went on alone
    target_s: float = 0.0  # time inside target calls
    draft_s: float = 0.0  # time inside draft calls
    draft_lengths: list[int] = field(default_factory=list)
    tree_steps: int = 0  # steps that verified a drafted tree (their node counts are in draft_lengths)
    tree_choice: str = ""  # --tree auto: what the tuner chose last and why
    engine: str = ""  # the target's engine for this generation (auto may choose per generation)
    engine_expected_s: dict[str, float] = field(default_factory=dict)  # auto: each engine's expected seconds
    draft_check_s: float = 0.0  # auto, after a generation that did not draft: the draft reading the answer

    def finish(self, start: float) -> None:
        self.wall_s = time.perf_counter() - start
        if self.new_tokens > 1:
            self.tpot_s = (self.wall_s - self.ttft_s) / (self.new_tokens - 1)
        self.acceptance_rate = self.accepted_tokens / self.drafted_tokens if self.drafted_tokens else 0.0
        self.tokens_per_target_call = tokens_per_target_call(self.new_tokens, self.target_calls)

    def token_acceptance(self) -> float | None:
        """Per-token acceptance (kept tokens over kept + rejected ones; a chain's tokens after a rejection are never
        tried): what the expected-tokens formula takes. None when nothing was proposed."""
        trials = self.accepted_tokens + self.rejected_steps
        return self.accepted_tokens / trials if self.drafted_tokens and trials else None

    def chain_acceptance(self, min_trials: int = 8) -> float | None:
        """Per-token acceptance of the draft model's own chains (prompt lookup's copies, accepted far more often,
        left out): what the draft would give the next text like this one. None below `min_trials`."""
        trials = self.chain_accepted + self.chain_rejected
        return self.chain_accepted / trials if trials >= min_trials else None

    def as_dict(self) -> dict:
        return asdict(self)
