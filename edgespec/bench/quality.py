"""How likely the target finds each sampled run's text, a check that a speculative sampler is lossless.

With sampling, outputs cannot be compared token for token; but a lossless speculative sampler's text is a sample of
the target's own distribution, so its mean log-probability per token under the target (warped as generation warped
it) matches target-only sampling's, up to sampling noise. A sampler that keeps tokens the target would not have
drawn scores far lower (GenAI's speculative sampling in some bench runs: about -4.4 nats a token against -1.0 for its
own target-only text; docs/results.md). Greedy runs are checked token for token instead (metrics.output_match).
"""

from __future__ import annotations

import numpy as np

from edgespec.runtime.sampling import Warp, probabilities

# A mode's mean more than this many nats a token below its target-only baseline's is flagged in the report
# (the per-set spread of target-only sampling itself, 3 prompts x 2 seeds, was within 0.3 here).
FLAG_NATS = 0.5


def mean_logprob(target, prompt_ids: list[int], tokens: list[int], warp: Warp) -> float | None:
    """Mean log-probability per token of `tokens` after `prompt_ids` under `target` (an LM with forward/reset)
    with `warp` applied; None for an empty output or one past the target's context."""
    if not tokens or len(prompt_ids) + len(tokens) > target.context_length:
        return None
    target.reset()
    probs = probabilities(target.forward(list(prompt_ids) + list(tokens[:-1]), last=len(tokens)), warp)
    target.reset()
    return float(np.log(np.maximum(probs[np.arange(len(tokens)), tokens], 1e-300)).mean())


def score_runs(records: list, prompt_ids: dict[str, list[int]], target, warp: Warp) -> None:
    """Set `target_logprob` on every main-phase record (RunRecord) whose prompt is known; an output seen before
    (repeats with the same seed give the same text) is scored once."""
    scored: dict[tuple, float | None] = {}
    for rec in records:
        if rec.phase == "main" and rec.prompt in prompt_ids:
            key = (rec.prompt, tuple(rec.token_ids))
            if key not in scored:
                scored[key] = mean_logprob(target, prompt_ids[rec.prompt], rec.token_ids, warp)
            rec.target_logprob = scored[key]


def flagged(row_logprob: float | None, base_logprob: float | None) -> bool:
    """Whether a mode's text scores far below its baseline's (not a sample of the target's distribution)."""
    return row_logprob is not None and base_logprob is not None and row_logprob < base_logprob - FLAG_NATS
