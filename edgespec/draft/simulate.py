"""Greedy speculative decoding simulated offline: which draft length, and what speed, a draft should give.

A greedy decoder only ever extends the target's own greedy text, so the draft's per-position matches on
cached target answers (measure.draft_matches_*) fix every call's outcome for any draft-length choice; only the
time is modelled: each target call is priced from a measured cost curve (`edgespec bench` writes one) plus the
drafted tokens at the draft's cost per call. No CPU noise and seconds per policy; the CPU's own effects come in
through the costs: on a 2-core CPU the draft runs slower right after a target call than back to back, and slower
still when its first call also feeds the token it missed (benches write both as `draft_calls_s`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgespec.runtime.errors import EdgespecError
from edgespec.runtime.config import GenerationConfig
from edgespec.runtime.draft_length import DraftLength
from edgespec.runtime.costs import draft_calls_cost
from edgespec.draft.measure import block_step


def call_pricer(call_s: dict[int, float], switch_s: float = 0.0) -> Callable[[int, int], float]:
    """Seconds of an n-token target call after a call of `last` tokens (0: none), from measured shapes.

    Shapes between measured ones are interpolated; `switch_s` is added when the shape changes (the CPU's
    cost of alternating call shapes, ~5 ms for SmolLM2 on 2 cores)."""
    if not call_s:
        raise EdgespecError("the cost curve has no measured call shapes")
    shapes = sorted(call_s)
    costs = [call_s[n] for n in shapes]
    if shapes[0] != 1:
        raise EdgespecError(f"the cost curve must include a 1-token call (has {shapes})")

    def price(n: int, last: int) -> float:
        if n > shapes[-1]:
            raise EdgespecError(f"a {n}-token call is past the cost curve's longest ({shapes[-1]} tokens)")
        return float(np.interp(n, shapes, costs)) + (switch_s if last and last != n else 0.0)
    return price


def draft_pricer(plain_s: list[float], catch_up_s: list[float] | None = None) -> Callable[[int, bool], float]:
    """Seconds of drafting `width` tokens one call each right after a target call: call i costs plain_s[i] (the
    last entry from there on), or catch_up_s[i] when the first call also feeds the token the draft missed (after
    a block accepted whole, or a step the draft sat out)."""
    if not plain_s:
        raise EdgespecError("no draft call costs")

    def price(width: int, catch_up: bool) -> float:
        return draft_calls_cost(catch_up_s if catch_up and catch_up_s else plain_s, width)
    return price


def timed_walk(matches: np.ndarray, choose: Callable[[], int], price: Callable[[int, int], float],
               draft_price: Callable[[int, bool], float],
               record: Callable[[int, int, float, float], None] | None = None) -> tuple[int, int, float]:
    """One answer decoded with `choose()` picking each call's draft length: (tokens, target calls, seconds)."""
    n, pos, calls, seconds, last, catch_up = len(matches), 0, 0, 0.0, 0, False
    while pos < n:
        width, kept = block_step(matches, pos, choose())
        target_s = price(width + 1, last)
        draft_s = draft_price(width, catch_up)
        seconds += target_s + draft_s
        if record is not None:
            record(width, kept, target_s, draft_s)
        calls, last, pos = calls + 1, width + 1, pos + kept + 1
        catch_up = kept == width
    return n, calls, seconds


def _total(match_lists: list[np.ndarray], decode: Callable[[np.ndarray], tuple[int, int, float]]) -> dict:
    tokens = calls = 0
    seconds = 0.0
    for m in match_lists:
        t, c, s = decode(m)
        tokens, calls, seconds = tokens + t, calls + c, seconds + s
    # Every simulated call verifies (no prefill call here): tokens per verify call, as runtime.config defines it.
    return {"tokens": tokens, "target_calls": calls, "seconds": seconds,
            "tokens_per_target_call": tokens / max(1, calls), "tokens_per_s": tokens / seconds if seconds else 0.0}


def simulate(match_lists: list[np.ndarray], call_s: dict[int, float], draft_s: float | list[float], lengths: list[int],
             initial: int, maximum: int = GenerationConfig.max_draft_length, switch_s: float = 0.0,
             catch_up_s: list[float] | None = None) -> dict:
    """Target-only, each fixed draft length, the runtime's adaptive policy and a per-answer oracle (the best
    fixed length for each answer, known in hindsight), each with speed relative to target-only.
    draft_s: seconds per draft call, one figure or one per call position after a target call (see draft_pricer)."""
    price = call_pricer(call_s, switch_s)
    draft_price = draft_pricer([draft_s] if isinstance(draft_s, (int, float)) else list(draft_s), catch_up_s)
    longest = max(lengths + [maximum])
    if longest + 1 > max(call_s):
        raise EdgespecError(f"draft lengths up to {longest} need the cost curve to reach {longest + 1} tokens "
                            f"(it reaches {max(call_s)})")
    rows = {"target-only": _total(match_lists, lambda m: timed_walk(m, lambda: 0, price, draft_price))}
    for k in lengths:
        rows[f"k={k}"] = _total(match_lists, lambda m, k=k: timed_walk(m, lambda: k, price, draft_price))

    policy = DraftLength(initial, maximum, adaptive=True)  # one policy over all answers, as a session runs

    def adaptive(m: np.ndarray) -> tuple[int, int, float]:
        policy.restart(initial, maximum, True)
        return timed_walk(m, policy.next, price, draft_price, policy.record)
    rows[f"adaptive (from k={initial})"] = _total(match_lists, adaptive)

    def oracle(m: np.ndarray) -> tuple[int, int, float]:
        return min((timed_walk(m, lambda: k, price, draft_price) for k in [0] + lengths), key=lambda r: r[2])
    rows["per-answer best fixed k"] = _total(match_lists, oracle)
    base = rows["target-only"]["tokens_per_s"]
    for row in rows.values():
        row["speedup"] = row["tokens_per_s"] / base if base else 0.0
    return rows


def costs_from_bench(results_json: Path, engine: str = "openvino") -> tuple[dict[int, float], list[float],
                                                                            list[float] | None]:
    """From an `edgespec bench` results.json: the target's call costs per shape (on OpenVINO, or on llama.cpp from
    a bench that ran edgespec-llamacpp), the draft's cost per call after a target call (one per call position where
    the bench measured them), and those when the first call catches up (None from older benches)."""
    try:
        results = json.loads(results_json.read_text())
        curve = results["cost_curve"]
        target = results["cost_curve_llamacpp"] if engine == "llamacpp" else curve["target"]
        call_s = {int(n): float(s) for n, s in target["call_s"].items()}
        if curve.get("draft_calls_s"):
            calls = curve["draft_calls_s"]
            return call_s, [float(t) for t in calls["plain"]], [float(t) for t in calls["catch_up"]]
        # draft_token_s: timed between target calls (benches since stop 12); older ones only back to back
        return call_s, [float(curve.get("draft_token_s") or curve["draft"]["call_s"]["1"])], None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EdgespecError(f"{results_json}: not an `edgespec bench` results.json with a cost curve "
                            f"({type(exc).__name__}: {exc})") from None
