"""From raw run records to the figures in the report.

Conventions (the same for every mode):
- tokens/s of a mode on a prompt set, for one repeat = sum of new tokens / sum of wall seconds over
  the set's prompts. Speedup of mode M over baseline B for that repeat = tokens/s(M) / tokens/s(B).
  Tokens/s rather than time because M and B may stop at different lengths. Spread = over repeats.
- tokens per target call (block efficiency) = (new tokens - 1) / (target calls - 1): the prefill
  call that makes the first token is left out, as in edgespec's GenerationStats.
- memory-bound speedup (FastDraft, Zafrir et al. 2024, after Leviathan et al. 2023):
  MBSU = tau / (1 + c * gamma), with tau the block efficiency, gamma the mean number of drafted tokens
  per verification call, c the bytes a decode step of the mode's draft streams (the pair's draft, or draft 2
  for the *-spec2 modes) over the target's. The paper's c is a ratio of parameter counts; bytes are what a
  memory-bound step reads, and a table the model only gathers rows from (an input embedding that is not also
  the output head) is left out, since a step reads one row of it (hardware.lookup_only_bytes). It is the
  speedup a device would see if every forward pass cost only the time to read the model's weights once.
- achieved weight bandwidth = (target bytes * target calls + draft bytes * draft calls) / wall time.
- collaborative modes: each CoS mode's speedup is also taken over the naive mode of its combination
  (COLLAB_REFERENCE), and its greedy output compared with that mode's, not with target-only output
  (collaborative decoding is another distribution by design).
"""

from __future__ import annotations

import statistics
from collections import defaultdict

from edgespec.bench.modes import COLLAB_MODES, COLLAB_REFERENCE

BASELINES = ("genai-target", "edgespec-target", "genai-spec", "llamacpp-target", "llamacpp-default")
# Greedy outputs are compared with these: an OpenVINO mode's with the OpenVINO references, a llama.cpp-engine mode's
# with llama.cpp's (another engine's numerics need not agree token for token).
REFERENCES = ("genai-target", "edgespec-target", "llamacpp-target")


def spread(values: list[float]) -> dict | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def _group(records: list[dict], key) -> dict:
    """Records grouped by key(record), in their order."""
    out = defaultdict(list)
    for r in records:
        out[key(r)].append(r)
    return out


def _by(records: list[dict], *keys) -> dict:
    return _group(records, lambda r: tuple(r[k] for k in keys))


def prompt_set(record: dict) -> str:
    """The prompt set a run's prompt came from (prompt ids are "set/id")."""
    return record["prompt"].split("/", 1)[0]


def tokens_per_s(records: list[dict]) -> float | None:
    wall = sum(r["wall_s"] for r in records)
    return sum(r["new_tokens"] for r in records) / wall if wall > 0 else None


def seconds_to(record: dict, tokens: int) -> float:
    """Seconds a run took to its first `tokens` new tokens: its wall time at its own length or beyond, else its time
    to first token plus that share of its decoding (tokens after the first come at an even pace)."""
    n, wall, ttft = record["new_tokens"], record["wall_s"], record.get("ttft_s") or 0.0
    if tokens >= n or n <= 1:
        return wall
    return ttft + (wall - ttft) * max(tokens - 1, 0) / (n - 1)


def equal_work_speedup(records: list[dict], base_records: list[dict]) -> float | None:
    """Base seconds over mode seconds for the same tokens: each prompt's two runs are cut to the shorter output.
    Equal outputs give the plain ratio of tokens per second; outputs that differ (two engines, two quantizations:
    a 41-token answer against a 102-token one) would otherwise compare a time to first token spread over different
    lengths."""
    base = {r["prompt"]: r for r in base_records}
    pairs = [(r, base[r["prompt"]]) for r in records if r["prompt"] in base]
    mode_s = sum(seconds_to(r, min(r["new_tokens"], b["new_tokens"])) for r, b in pairs)
    base_s = sum(seconds_to(b, min(r["new_tokens"], b["new_tokens"])) for r, b in pairs)
    return base_s / mode_s if mode_s > 0 and base_s > 0 else None


def block_efficiency(records: list[dict]) -> float | None:
    calls = [r for r in records if r.get("target_calls")]
    denom = sum(r["target_calls"] - 1 for r in calls)
    return sum(r["new_tokens"] - 1 for r in calls) / denom if denom > 0 else None


def acceptance(records: list[dict]) -> float | None:
    drafted = sum(r["drafted_tokens"] or 0 for r in records)
    if not drafted:
        return None
    return sum(r["accepted_tokens"] or 0 for r in records) / drafted


def draft_per_call(records: list[dict]) -> float | None:
    calls = sum((r["target_calls"] or 1) - 1 for r in records)
    drafted = sum(r["drafted_tokens"] or 0 for r in records)
    return drafted / calls if calls > 0 and drafted else None


def mbsu(tau: float | None, gamma: float | None, byte_ratio: float | None) -> float | None:
    if tau is None or gamma is None or byte_ratio is None:
        return None
    return tau / (1.0 + byte_ratio * gamma)


def weight_bandwidth(records: list[dict], target_bytes: int, draft_bytes: int) -> float | None:
    wall = sum(r["wall_s"] for r in records)
    if wall <= 0:
        return None
    moved = sum((r["target_calls"] or 0) * target_bytes + (r["draft_calls"] or 0) * draft_bytes for r in records)
    return moved / wall


def output_match(records: list[dict], reference: list[dict]) -> dict | None:
    """Fraction of (prompt, repeat) runs whose token ids equal the reference mode's, token for token."""
    ref = {(r["prompt"], r["repeat"]): r["token_ids"] for r in reference}
    pairs = [(r["token_ids"], ref[(r["prompt"], r["repeat"])]) for r in records if (r["prompt"], r["repeat"]) in ref]
    if not pairs:
        return None
    same = sum(1 for a, b in pairs if a == b)
    first_diff = [_first_difference(a, b) for a, b in pairs if a != b]
    return {"fraction": same / len(pairs), "equal": same, "total": len(pairs),
            "median_first_difference": statistics.median(first_diff) if first_diff else None}


def _first_difference(a: list[int], b: list[int]) -> int:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b))


def summarize(records: list[dict], modes: list[str], target_bytes: int, draft_bytes: int | dict[str, int],
              read_bandwidth: float | None, greedy: bool) -> dict:
    """summary[set][mode] = {...figures...} for the main-phase records.

    draft_bytes: weight bytes of the draft each mode runs, {mode: bytes} (a mode not in it: 0, no draft),
    or one number for every mode."""
    main = [r for r in records if r["phase"] == "main"]
    sets = sorted({prompt_set(r) for r in main})
    per_mode = draft_bytes if isinstance(draft_bytes, dict) else {m: draft_bytes for m in modes}
    out = {}
    for set_name in sets + ["all"]:
        in_set = [r for r in main if set_name == "all" or prompt_set(r) == set_name]
        by_mode = _by(in_set, "mode")
        table = {}
        for mode in modes:
            recs = by_mode.get((mode,), [])
            if not recs:
                continue
            per_repeat = _by(recs, "repeat")
            tps = {rep[0]: tokens_per_s(rs) for rep, rs in per_repeat.items()}
            row = {
                "runs": len(recs),
                "new_tokens": sum(r["new_tokens"] for r in recs),
                "tokens_per_s": spread(list(tps.values())),
                "ttft_s": spread([r["ttft_s"] for r in recs]),
                "tpot_s": spread([r["tpot_s"] for r in recs]),
                "acceptance_rate": acceptance(recs),
                "tokens_per_target_call": block_efficiency(recs),
                "drafted_per_call": draft_per_call(recs),
                "target_logprob": _mean([r.get("target_logprob") for r in recs]),
            }
            d_bytes = per_mode.get(mode) or 0
            byte_ratio = d_bytes / target_bytes if target_bytes and d_bytes else None
            row["memory_bound_speedup"] = mbsu(row["tokens_per_target_call"], row["drafted_per_call"], byte_ratio)
            bw = weight_bandwidth(recs, target_bytes, d_bytes)
            row["weight_bandwidth_bytes_per_s"] = bw
            row["weight_bandwidth_fraction"] = bw / read_bandwidth if bw and read_bandwidth else None
            row["speedup"] = {}
            row["matches"] = {}
            collab_base = COLLAB_REFERENCE.get(mode)
            for base in BASELINES + ((collab_base,) if collab_base else ()):
                base_recs = by_mode.get((base,), [])
                if not base_recs or base == mode:
                    continue
                base_by_repeat = _by(base_recs, "repeat")
                ratios = [equal_work_speedup(rs, base_by_repeat[rep]) for rep, rs in per_repeat.items()
                          if rep in base_by_repeat]
                row["speedup"][base] = spread([r for r in ratios if r])
                references = (collab_base,) if mode in COLLAB_MODES else REFERENCES
                if greedy and base in references:
                    row["matches"][base] = output_match(recs, base_recs)
            table[mode] = row
        out[set_name] = table
    return out


def _mean(values: list) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


SWEEP_BASE = "genai-spec"  # the sweep's per-set ratios: each mode at a fixed k over GenAI's pipeline at that k


def summarize_sweep(records: list[dict]) -> dict:
    """sweep[mode][k] = tokens/s spread over repeats, with acceptance and block efficiency, and per prompt set
    (by_set) its tokens/s, tokens per call and equal-work speedup over SWEEP_BASE at the same k."""
    out: dict = defaultdict(dict)
    sweep = [r for r in records if r["phase"] == "sweep"]
    by_mode_k = _by(sweep, "mode", "draft_length")
    for (mode, k), recs in by_mode_k.items():
        tps = [tokens_per_s(rs) for rs in _by(recs, "repeat").values()]
        base = by_mode_k.get((SWEEP_BASE, k), []) if mode != SWEEP_BASE else []
        out[mode][k] = {"tokens_per_s": spread(tps), "acceptance_rate": acceptance(recs),
                        "tokens_per_target_call": block_efficiency(recs), "runs": len(recs),
                        "by_set": {name: _sweep_set(rs, [b for b in base if prompt_set(b) == name])
                                   for name, rs in sorted(_group(recs, prompt_set).items())}}
    return {m: dict(sorted(v.items())) for m, v in out.items()}


def _sweep_set(records: list[dict], base_records: list[dict]) -> dict:
    base_by_repeat = _by(base_records, "repeat")
    ratios = [equal_work_speedup(rs, base_by_repeat[rep]) for rep, rs in _by(records, "repeat").items()
              if rep in base_by_repeat]
    return {"tokens_per_s": tokens_per_s(records), "tokens_per_target_call": block_efficiency(records),
            f"speedup_vs_{SWEEP_BASE}": spread([r for r in ratios if r])}
