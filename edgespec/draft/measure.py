"""Measurements for drafts: per-token cost (CPU and NPU emulation) and greedy acceptance.

Greedy acceptance is measured offline: the target's greedy answers to evaluation prompts are
generated once and cached; the draft then reads prompt+answer in one call, and at every answer
position we ask whether the draft's argmax equals the target's next token. Because a greedy
speculative decoder only ever extends the target's own greedy prefix, walking these matches in
blocks of `k` reproduces its block efficiency (tokens per target call) exactly, up to numerical
near-ties between batched and one-by-one target calls.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np

from edgespec.runtime.errors import EdgespecError



def block_walk(matches: np.ndarray, k: int) -> tuple[int, int, int]:
    """Greedy speculative decoding over a match vector: (target_calls, drafted, accepted).

    matches[i] is True when the draft's greedy token equals the target's at answer position i.
    Each call drafts min(k, remaining) tokens, accepts the leading run of matches and adds one
    target token (the correction, or the bonus token after a fully accepted block).
    """
    n, pos, calls, drafted, accepted = len(matches), 0, 0, 0, 0
    while pos < n:
        width, run = block_step(matches, pos, k)
        calls += 1
        drafted += width
        accepted += run
        pos += run + 1
    return calls, drafted, accepted


def block_step(matches: np.ndarray, pos: int, k: int) -> tuple[int, int]:
    """One target call at answer position `pos` with k drafted: (tokens drafted, leading drafts kept).

    Nothing is drafted past the answer's last token: that call only verifies."""
    width = min(k, len(matches) - pos - 1) if len(matches) - pos > 1 else 0
    kept = 0
    while kept < width and matches[pos + kept]:
        kept += 1
    return width, kept


def acceptance_summary(match_lists: list[np.ndarray], k: int) -> dict:
    """Greedy acceptance, tokens per target call and token match of match vectors walked at draft length k."""
    calls = drafted = accepted = tokens = hits = 0
    for m in match_lists:
        c, d, a = block_walk(m, k)
        calls, drafted, accepted = calls + c, drafted + d, accepted + a
        tokens += len(m)
        hits += int(m.sum())
    # Every walked call verifies (no prefill call here): tokens per verify call, as runtime.config defines it.
    per_call = tokens / max(1, calls)
    return {"prompts": len(match_lists), "tokens": tokens, "token_match_rate": hits / max(1, tokens),
            "acceptance_rate": accepted / max(1, drafted), "tokens_per_target_call": per_call,
            "draft_length": k}


def outside_head(samples: list[tuple[list[int], list[int]]], vocab_map: np.ndarray | None) -> float | None:
    """Share of answer tokens a reduced (FR-Spec) head has no row for: positions the draft can never match."""
    if vocab_map is None:
        return None
    answers = [token for _, answer in samples for token in answer]
    return float(1.0 - np.isin(answers, vocab_map).mean()) if answers else 0.0


def draft_matches_ov(draft_dir: Path, samples: list[tuple[list[int], list[int]]],
                     vocab_map: np.ndarray | None, context: int) -> list[np.ndarray]:
    """Per-sample match vectors with the exported OpenVINO draft (CPU)."""
    import openvino as ov

    compiled = ov.Core().compile_model(draft_dir / "openvino_model.xml", "CPU", {"KV_CACHE_PRECISION": "f32"})
    request = compiled.create_infer_request()
    names = {p.any_name for p in compiled.inputs}
    out = []
    for prompt, answer in samples:
        seq = (prompt + answer)[-context:]
        n_ans = min(len(answer), len(seq) - 1)
        request.reset_state()
        inputs = {"input_ids": np.array([seq], np.int64), "attention_mask": np.ones((1, len(seq)), np.int64),
                  "position_ids": np.arange(len(seq), dtype=np.int64)[None]}
        if "beam_idx" in names:
            inputs["beam_idx"] = np.zeros(1, np.int32)
        request.infer(inputs)
        logits = request.get_tensor("logits").data[0]
        pred = logits[len(seq) - 1 - n_ans:len(seq) - 1].argmax(-1)
        if vocab_map is not None:
            pred = vocab_map[pred]
        out.append(pred == np.array(seq[len(seq) - n_ans:]))
    return out


def draft_matches_torch(model, samples: list[tuple[list[int], list[int]]], vocab_map: np.ndarray | None
                        ) -> list[np.ndarray]:
    import torch

    out = []
    model.eval()
    with torch.no_grad():
        for prompt, answer in samples:
            seq = (prompt + answer)[-model.cfg.context:]
            n_ans = min(len(answer), len(seq) - 1)
            logits = model(torch.tensor([seq]))[0]
            pred = logits[len(seq) - 1 - n_ans:len(seq) - 1].argmax(-1).numpy()
            if vocab_map is not None:
                pred = np.asarray(vocab_map)[pred]
            out.append(pred == np.array(seq[len(seq) - n_ans:]))
    return out


def per_token_cost(folder: Path, device: str = "CPU", past: int = 200, steps: int = 48,
                   config: dict | None = None, compiled=None) -> dict:
    """Median ms for one single-token step after a `past`-token prefill: a plain stateful loop, as a draft runs."""
    import openvino as ov

    t0 = time.time()
    if compiled is None:
        cfg = {"PERFORMANCE_HINT": "LATENCY", "KV_CACHE_PRECISION": "f32"} | (config or {})
        compiled = ov.Core().compile_model(folder / "openvino_model.xml", device, cfg)
    compile_s = time.time() - t0
    request = compiled.create_infer_request()
    names = {p.any_name for p in compiled.inputs}

    def step(ids: np.ndarray, start: int) -> np.ndarray:
        n = len(ids)
        inputs = {"input_ids": ids.reshape(1, -1).astype(np.int64),
                  "attention_mask": np.ones((1, start + n), np.int64),
                  "position_ids": np.arange(start, start + n, dtype=np.int64)[None]}
        if "beam_idx" in names:
            inputs["beam_idx"] = np.zeros(1, np.int32)
        request.infer(inputs)
        return request.get_tensor("logits").data[0, -1]  # NPUW pads logits; the real row is the last

    rng = np.random.default_rng(0)
    step(rng.integers(100, 20000, past), 0)
    times, token = [], 100
    for i in range(steps):
        t = time.perf_counter()
        logits = step(np.array([token]), past + i)
        times.append((time.perf_counter() - t) * 1000)
        token = int(logits.argmax()) % 20000 + 3
    return {"device": device, "ms_per_token": statistics.median(times), "compile_s": compile_s, "past": past,
            **({"config": config} if config else {})}


def in_loop_draft_cost(draft, target, past: int = 200, steps: int = 32, draft_tokens: int = 2) -> dict:
    """Median ms of the draft's single-token steps when each run of `draft_tokens` follows a target step, as in
    speculative decoding: the bench's cost-curve routine (edgespec.runtime.costs.time_draft_between) on the
    runtime's StatefulLM over two compiled models."""
    from edgespec.runtime.model import StatefulLM
    from edgespec.runtime.costs import time_draft_between

    past_ids = np.random.default_rng(0).integers(100, 20000, past)
    context = past + draft_tokens  # the prefill, then at most draft_tokens before each rollback
    seconds = time_draft_between(StatefulLM(target, context), StatefulLM(draft, context), past_ids, steps,
                                 draft_tokens)
    return {"device": "CPU", "ms_per_token": seconds * 1000, "past": past, "draft_tokens": draft_tokens}


def cost_report(draft: Path, target: Path | None, rounds: int, npu: bool) -> dict:
    """Per-token decode cost of a draft IR folder on CPU, compiled as the runtime compiles it; with `target`,
    the target's too (timed alternating with the draft) and the draft/target ratios; with `npu`, the draft
    under NPU emulation."""
    import openvino as ov

    from edgespec.runtime.devices import cpu_config

    core = ov.Core()
    models = {"draft": (draft, cpu_config(exact=False))}
    if target is not None:
        models["target"] = (target, cpu_config(exact=True))
    compiled = {name: core.compile_model(folder / "openvino_model.xml", "CPU", cfg)
                for name, (folder, cfg) in models.items()}
    runs: dict[str, list[dict]] = {name: [] for name in models}
    for _ in range(rounds):  # alternate, so load on a shared machine hits both alike
        for name, (folder, cfg) in models.items():
            runs[name].append(per_token_cost(folder, compiled=compiled[name], config=cfg))
    results = {f"{name} (CPU)": {**median_of_rounds(rows), "dir": str(models[name][0])} for name, rows in runs.items()}
    if target is not None:
        results["draft/target"] = results["draft (CPU)"]["ms_per_token"] / results["target (CPU)"]["ms_per_token"]
        results["draft (CPU, between target calls)"] = median_of_rounds(
            [in_loop_draft_cost(compiled["draft"], compiled["target"]) for _ in range(rounds)])
        results["draft/target between target calls"] = (results["draft (CPU, between target calls)"]["ms_per_token"]
                                                        / results["target (CPU)"]["ms_per_token"])
    if npu:
        results["draft (NPU emulated: NPUW on CPU)"] = npu_emulation_cost(draft)
    return results


def median_of_rounds(rows: list[dict]) -> dict:
    """The first round's record with the median ms per token over all rounds, and each round's figure."""
    return {**rows[0], "ms_per_token": statistics.median(r["ms_per_token"] for r in rows),
            "rounds_ms": [r["ms_per_token"] for r in rows]}


def npu_emulation_cost(folder: Path, steps: int = 32) -> dict:
    """Compile on "NPU" through the runtime's NPUW path (CPU backend when there is no NPU) and time a decode loop."""
    import openvino as ov

    from edgespec.runtime.npu import NPUConfig, compile_npu, make_npuw_compatible

    core = ov.Core()
    try:
        model = core.read_model(folder / "openvino_model.xml")
        repairs = make_npuw_compatible(model)
        t0 = time.time()
        compiled = compile_npu(core, model, NPUConfig(max_prompt_len=128, min_response_len=64), generation_tokens=1)
        result = per_token_cost(folder, "NPU", past=64, steps=steps, compiled=compiled)
        return result | {"compile_s": time.time() - t0, "repairs": repairs}
    except (RuntimeError, EdgespecError) as exc:
        msg = [m for m in str(exc).strip().splitlines() if m.strip()]
        return {"device": "NPU", "error": (msg[-1] if msg else repr(exc))[:300]}
