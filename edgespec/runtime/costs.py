"""Verification cost curve and the draft length it predicts.

On a memory-bound device, verifying k drafted tokens costs about one decode step; on this kind of
CPU it does not (see FIELD_NOTES). So we measure: the target's time for one call that appends n
tokens to a fixed past, the draft's time per token between target calls, and the cost of a KV rollback. With a
per-token acceptance rate a, a call with k drafted tokens yields (1 - a^(k+1)) / (1 - a) tokens
on average, and costs T(k+1) plus the draft's k calls (dearer right after the target's, and when the first
catches up on a block accepted whole), which predicts tokens/s for every k.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from edgespec.runtime.draft_length import expected_tokens

DEFAULT_NS = (1, 2, 4, 8, 16, 32, 64)


def curve_points(draft_lengths: list[int], max_n: int = 64) -> list[int]:
    """Powers of two up to max_n plus every k+1 the sweep verifies, so no predicted point is extrapolated."""
    return sorted({n for n in DEFAULT_NS if n <= max_n} | {k + 1 for k in draft_lengths})


def _past_tokens(seed_ids: list[int], past: int) -> np.ndarray:
    reps = -(-past // max(1, len(seed_ids)))
    return np.asarray((list(seed_ids) * reps)[:past], dtype=np.int64)


def time_calls(lm, past_ids: np.ndarray, ns: list[int], repeats: int, progress=None) -> dict:
    """Median seconds of one forward of n new tokens after `past_ids` (all n rows of logits, as a
    verification reads them), and mean seconds of the rollback after it: mean, because a rollback
    now and then also compacts the cache, a cost every step pays on average."""
    vocab_ids = past_ids  # real token ids, so embeddings are realistic; values do not change the cost
    lm.reset()
    lm.forward(past_ids, last=1)
    keep = lm.cached
    calls, rollbacks = {}, {}
    for n in ns:
        new = np.resize(vocab_ids, n)
        times, rb = [], []
        for _ in range(repeats + 1):  # the first is a warm-up for this shape
            t = time.perf_counter()
            lm.forward(new)
            mid = time.perf_counter()
            lm.rollback(keep)
            end = time.perf_counter()
            times.append(mid - t)
            rb.append(end - mid)
        calls[n] = statistics.median(times[1:])
        rollbacks[n] = statistics.fmean(rb[1:])
        if progress is not None:
            progress()
    lm.reset()
    return {"call_s": calls, "rollback_s": rollbacks, "past_tokens": int(len(past_ids))}


def time_prefills(lm, ids: np.ndarray, repeats: int, then=None) -> tuple[float, list]:
    """Median seconds of `repeats` prefills of `ids` into an empty cache after a warm-up one (a process's first read
    pays one-time costs: 3.6x a later one for SmolLM2's draft), and what `then(lm)` returned after each timed one
    (run untimed, the prompt still cached); the cache is left empty."""
    times, after = [], []
    for i in range(repeats + 1):
        lm.reset()
        start = time.perf_counter()
        lm.prefill(ids, last=1)
        times.append(time.perf_counter() - start)
        if then is not None and i:
            after.append(then(lm))
    lm.reset()
    return statistics.median(times[1:]), after


def measure(target, draft, seed_ids: list[int], ns: list[int], past: int = 200, repeats: int = 5,
            progress=None, draft2=None) -> dict:
    """target/draft/draft2: edgespec.runtime.model.StatefulLM (the drafts may be None)."""
    past_ids = _past_tokens(seed_ids, past)
    out = {"target": time_calls(target, past_ids, ns, repeats, progress), "draft": None}
    if draft is not None:
        out["draft"] = time_calls(draft, past_ids, [1], repeats, progress)  # back to back
        out["draft_token_s"] = time_draft_between(target, draft, past_ids, repeats)
        out["draft_calls_s"] = {"plain": time_draft_calls(target, draft, past_ids, repeats, CALLS_AFTER_TARGET),
                                "catch_up": time_draft_calls(target, draft, past_ids, repeats, CATCH_UP_CALLS)}
    if draft2 is not None:
        out["draft2_token_s"] = time_draft_between(target, draft2, past_ids, repeats)
    return out


# The draft's calls in one step of decoding: one token each; the first also feeds the token the draft missed
# when the previous block was accepted whole (the last drafted token was never fed to it).
CALLS_AFTER_TARGET = (1, 1, 1, 1)
CATCH_UP_CALLS = (2, 1, 1, 1)


def _draft_call_times(target, draft, past_ids: np.ndarray, repeats: int, feeds: tuple[int, ...]) -> list[list[float]]:
    """Seconds of each draft call of `feeds` tokens, the run of them right after a target call, per repeat."""
    target.reset()
    draft.reset()
    target.forward(past_ids, last=1)
    draft.forward(past_ids, last=1)
    target_keep, draft_keep = target.cached, draft.cached
    runs = []
    for _ in range(repeats + 1):  # the first round is a warm-up
        target.forward(past_ids[:1], last=1)
        target.rollback(target_keep)
        times = []
        for n in feeds:
            t = time.perf_counter()
            draft.forward(past_ids[:n], last=1)
            times.append(time.perf_counter() - t)
        runs.append(times)
        draft.rollback(draft_keep)
    target.reset()
    draft.reset()
    return runs[1:]


def time_draft_between(target, draft, past_ids: np.ndarray, repeats: int, draft_tokens: int = 2) -> float:
    """Median seconds of a draft token fed right after a target call, as decoding feeds it: back-to-back draft
    calls underprice it. A step after a pause runs slow and the next few speed up again: the Qwen2.5-Coder
    FastDraft draft took 2.9 ms back to back, and 5.4, 5.0, 4.4, 3.8 ... 3.0 ms over the 8 steps after a target
    step (after 50 ms of sleep alike, so not only the target's weights evicting the draft's)."""
    runs = _draft_call_times(target, draft, past_ids, repeats, (1,) * draft_tokens)
    return statistics.median(t for run in runs for t in run)


def time_draft_calls(target, draft, past_ids: np.ndarray, repeats: int, feeds: tuple[int, ...]) -> list[float]:
    """Median seconds of the i-th draft call after a target call, for each i. A call whose token count differs
    from the previous call's costs more, and so does the call after it (SmolLM2's draft: 1.45 ms back to back;
    2.24 / 1.89 / 1.54 ms as the first three after a target call; 3.25 / 2.60 / 1.59 when the first feeds 2)."""
    runs = _draft_call_times(target, draft, past_ids, repeats, feeds)
    return [statistics.median(run[i] for run in runs) for i in range(len(feeds))]


def draft_calls_cost(per_call_s: list[float], k: int) -> float:
    """Seconds of k one-token draft calls after a target call, call i priced per_call_s[i] (the last from there on)."""
    return sum(per_call_s[min(i, len(per_call_s) - 1)] for i in range(k))


def draft_step_cost(curve: dict, k: int, a: float) -> float:
    """Expected draft seconds of a step with k drafted tokens: it catches up when the previous block was accepted
    whole (probability a^k at steady k). Older curves have one per-token figure."""
    calls = curve.get("draft_calls_s")
    if not calls:
        return k * (curve.get("draft_token_s") or 0.0)
    whole = min(1.0, a) ** k
    return (1 - whole) * draft_calls_cost(calls["plain"], k) + whole * draft_calls_cost(calls["catch_up"], k)


def interp_call(call_s: dict, n: int) -> float:
    """Target time for n new tokens, linear between measured points (keys may be str after JSON)."""
    pts = sorted((int(k), float(v)) for k, v in call_s.items())
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    return float(np.interp(n, xs, ys))


def acceptance_from_block(tau: float, k: float) -> float | None:
    """Invert expected_tokens: the per-token acceptance a that yields tau tokens per call at length k."""
    if tau is None or k is None or k <= 0:
        return None
    tau = min(max(tau, 1.0), k + 1.0)
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if expected_tokens(mid, k) < tau:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def predict(curve: dict, a: float, draft_lengths: list[int], overhead_s: float = 0.0) -> dict:
    """Predicted tokens/s and speedup over target-only decoding for each draft length.

    overhead_s: time per forward call spent outside the model (the decoding loop's own work), added
    once per draft and target call; the target-only rate it is compared with pays it once per token.
    """
    call_s = curve["target"]["call_s"]
    d = curve.get("draft_token_s") or 0.0
    t1 = interp_call(call_s, 1)
    rows = {}
    for k in draft_lengths:
        cost = interp_call(call_s, k + 1) + draft_step_cost(curve, k, a) + (k + 1) * overhead_s
        tokens = expected_tokens(a, k)
        rows[k] = {"tokens_per_call": tokens, "call_cost_s": cost, "tokens_per_s": tokens / cost,
                   "speedup_vs_target": (tokens / cost) * (t1 + overhead_s)}
    best = max(rows, key=lambda k: rows[k]["tokens_per_s"])
    return {"acceptance": a, "by_k": rows, "best_k": best, "target_token_s": t1, "draft_token_s": d,
            "overhead_s": overhead_s}
