"""The Markdown report: everything needed to judge the numbers, then the numbers."""

from __future__ import annotations

import shlex
from pathlib import Path

from edgespec.bench import metrics
from edgespec.bench.modes import COLLAB_MODES, COLLAB_REFERENCE, LABELS
from edgespec.bench.quality import flagged

GB = 1e9


def shared_machine(machine: dict) -> bool:
    """Whether other work ran beside the bench: a 1-minute load average over half the CPUs before it started, or at
    its end over the CPUs its own threads keep busy (one per CPU: 2.0 on 2 CPUs is the bench alone) by 0.5 or more."""
    cpus = machine.get("logical_cpus")
    start, end = ((machine.get(key) or [None])[0] for key in ("load_average", "load_average_end"))
    if not cpus:
        return False
    return (start is not None and start > cpus / 2) or (end is not None and end >= cpus + 0.5)


def _f(value, digits: int = 2, scale: float = 1.0, suffix: str = "") -> str:
    if value is None:
        return "-"
    return f"{value * scale:.{digits}f}{suffix}"


def _spread(s: dict | None, digits: int = 2, scale: float = 1.0) -> str:
    if not s:
        return "-"
    if s["n"] == 1 or round(s["max"] * scale, digits) == round(s["min"] * scale, digits):
        return _f(s["median"], digits, scale)
    return f"{s['median'] * scale:.{digits}f} ({s['min'] * scale:.{digits}f}-{s['max'] * scale:.{digits}f})"


def _match(m: dict | None) -> str:
    if not m:
        return "-"
    return f"{m['equal']}/{m['total']}"


def _size(n: int | None) -> str:
    if not n:
        return "-"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def render(results: dict, plots: list[Path]) -> str:
    lines: list[str] = []
    add = lines.append
    pair = results["pair"]
    add(f"# edgespec bench: {pair['name']}")
    add("")
    add(f"Run {results['started']} to {results.get('finished', '?')}. Command:")
    add("")
    add("```")
    add(shlex.join(results["command"]))
    add("```")
    add("")
    notes = list(results.get("notes", []))
    m = results["machine"]
    if shared_machine(m):
        loads = [x[0] for x in (m.get("load_average"), m.get("load_average_end")) if x]
        notes.append(f"The machine was shared while this ran (load average up to {max(loads):.1f} on "
                     f"{m['logical_cpus']} CPUs): absolute times are inflated and noisy. The modes ran interleaved, "
                     "so the ratios between them are the figures to read.")
    for note in notes:
        add(f"> **Note:** {note}")
        add("")
    headline = _headline(results)
    if headline:
        add(headline)
        add("")
    _machine(results, add)
    _models(results, add)
    _settings(results, add)
    _tables(results, add)
    _memory(results, add)
    _sweep(results, add)
    _cost(results, add)
    if plots:
        add("## Figures")
        add("")
        for p in plots:
            add(f"![{p.stem}]({p.name})")
            add("")
    _definitions(add)
    return "\n".join(lines) + "\n"


def _headline(results: dict) -> str:
    summary = results["summary"].get("all", {})
    row = summary.get("edgespec-spec")
    parts = []
    for base in ("genai-target", "edgespec-target", "genai-spec", "llamacpp-target"):
        sp = row["speedup"].get(base) if row else None
        if sp:
            parts.append(f"{_spread(sp)}x over {LABELS[base]}")
    text = ("**Headline (all prompt sets, median over repeats, min-max in brackets):** edgespec speculative runs at "
            + "; ".join(parts) + ".") if parts else ""
    second = _draft2_sentence(summary)
    text = f"{text} {second}".strip() if second else text
    third = _collab_sentence(summary, results.get("collab") or {})
    return f"{text}\n\n{third}".strip() if third else text


def _collab_sentence(summary: dict, collab: dict) -> str:
    """Each CoS mode over the naive collaborative mode of its combination, with its acceptance and block size."""
    parts = []
    for mode, naive in COLLAB_REFERENCE.items():
        row = summary.get(mode)
        sp = row["speedup"].get(naive) if row else None
        if not sp:
            continue
        method = mode.split("-")[1]
        what = (f"weight {collab['weight']:g}" if method == "ensemble" else f"alpha {collab['alpha']:g}") \
            if collab else ""
        part = f"{LABELS[mode]}{f' ({what})' if what else ''}: {_spread(sp)}x over {LABELS[naive]}"
        part += (f", acceptance {_f(row['acceptance_rate'])}, {_f(row['tokens_per_target_call'])} tokens per "
                 "target call")
        match = row["matches"].get(naive)
        if match:
            part += f", output equal to naive in {_match(match)} runs"
        parts.append(part)
    if not parts:
        return ""
    return ("**Collaborative decoding (all prompt sets, median over repeats, min-max in brackets):** "
            + "; ".join(parts) + ".")


def _draft2_sentence(summary: dict) -> str:
    """edgespec with draft 2 against edgespec with the pair's draft, both over the two target-only baselines."""
    row2 = summary.get("edgespec-spec2")
    if not row2:
        return ""
    bases = [b for b in ("edgespec-target", "genai-target") if row2["speedup"].get(b)]
    if not bases:
        return ""
    row1 = summary.get("edgespec-spec")
    over = " and ".join(f"{_spread(row2['speedup'][b])}x over {LABELS[b]}" for b in bases)
    text = f"With draft 2, edgespec speculative runs at {over}"
    if row1 and all(row1["speedup"].get(b) for b in bases):
        text += " (with the pair's draft: " + " and ".join(_spread(row1["speedup"][b]) + "x" for b in bases) + ")"
    return text + "."


def _machine(results: dict, add) -> None:
    m, bw, v = results["machine"], results["bandwidth"], results["versions"]
    add("## Machine and software")
    add("")
    add(f"- CPU: {m['cpu']} ({m['logical_cpus']} logical CPUs; {', '.join(m['cpu_flags']) or 'no AVX2'})")
    add(f"- Memory: {_size(m['memory_bytes'])}; measured bandwidth {bw['read_bytes_per_s'] / GB:.1f} GB/s read, "
        f"{bw['copy_bytes_per_s'] / GB:.1f} GB/s copy ({bw['method']}, {_size(bw['buffer_bytes'])} buffer)")
    la, la_end = m.get("load_average"), m.get("load_average_end")
    if la:
        add(f"- Load average at start {la[0]:.2f}, at end {la_end[0]:.2f}" if la_end else
            f"- Load average at start {la[0]:.2f}")
    add(f"- Platform: {m['platform']}")
    add("- Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()))
    add(f"- Devices: target {results['devices']['target']}, draft {results['devices']['draft']}")
    add("")


def _models(results: dict, add) -> None:
    pair = results["pair"]
    add("## Models")
    add("")
    add(f"Pair folder `{pair['root']}`.")
    add("")
    add("| model | source | weights | weight file | all files |")
    add("|---|---|---|---|---|")
    for role, name in (("target", "target"), ("draft", "draft"), ("draft2", "draft 2")):
        info = pair.get(role)
        if not info:
            continue
        source = info.get("source") or (f"`{info['dir']}`" if role == "draft2" else "-")
        add(f"| {name} | {source} | {info.get('weights') or '-'} | "
            f"{_size(info['weight_bytes'])} | {_size(sum(info['files'].values()))} |")
    ratios = [f"{name} {pair[role]['weight_bytes'] / pair['target']['weight_bytes']:.3f}"
              for role, name in (("draft", "draft"), ("draft2", "draft 2")) if pair.get(role)]
    if ratios and pair["target"]["weight_bytes"]:
        add("")
        add("Draft/target weight bytes: " + ", ".join(ratios) + ".")
    if ratios and pair["target"].get("streamed_bytes"):
        streamed = [f"{name} {pair[role]['streamed_bytes'] / pair['target']['streamed_bytes']:.3f}"
                    for role, name in (("draft", "draft"), ("draft2", "draft 2")) if pair.get(role)]
        add("Draft/target bytes a decode step streams (the c of the memory-bound speedup; a table a model only "
            "gathers rows from, such as an input embedding that is not also its output head, is left out): "
            + ", ".join(streamed) + ".")
    add("")


def _settings(results: dict, add) -> None:
    st = results["settings"]
    add("## Settings")
    add("")
    decoding = "greedy" if not st["do_sample"] else (f"sampling (temperature {st['temperature']}, top-p {st['top_p']}, "
                                                       f"top-k {st['top_k']}, seed {st['seed']})")
    add(f"- Decoding: {decoding}; at most {st['max_new_tokens']} new tokens; draft length {st['draft_length']}"
        f" ({'adaptive in edgespec' if st['adaptive_draft'] else 'fixed'}; GenAI: num_assistant_tokens fixed at"
        f" {results.get('genai_draft_length', st['draft_length'])});"
        f" edgespec prompt lookup {'on' if st.get('prompt_lookup', True) else 'off'}")
    add(f"- Repeats: {results['repeats']}; prompts per set: at most {results['limit'] or 'all'}")
    collab = results.get("collab")
    if collab:
        add(f"- Collaborative decoding: ensemble r = (1 - w) p + w q with w = {collab['weight']:g} (p and q warped "
            f"first); contrastive r = softmax(z_target - a z_draft) with a = {collab['alpha']:g} (a reduced draft "
            "head's missing logits taken as its lowest); naive modes run both models on every token, CoS modes "
            "draft and verify against r; both models compile exact in these modes unless `--fast-kernels`")
    if "prefix_cache" in results:
        add("- KV cache between runs: " + ("kept (a repeated prompt reuses its prefix, in both runtimes)"
                                           if results["prefix_cache"] else
                                           "cleared: every run prefills its prompt (GenAI: prefix caching off)"))
    for name, prompts in results["prompt_sets"].items():
        toks = [p["prompt_tokens"] for p in prompts]
        templ = "chat template" if any(p["chat"] for p in prompts) else "raw text, no chat template"
        add(f"- Prompt set `{name}`: {len(prompts)} prompts, {min(toks)}-{max(toks)} prompt tokens, {templ}")
    loads = results.get("load_s") or {}
    if loads:
        add("- Load time: " + ", ".join(f"{LABELS[k]} {v:.1f} s" for k, v in loads.items()))
    fast = results.get("fast_kernels")
    if fast is not None:
        add("- Kernels: " + ("`--fast-kernels`: edgespec's target on the device's default kernels (exact=False); "
                             "greedy speculative output may differ from target-only output" if fast else
                             "edgespec's target on call-shape-independent kernels (exact, the default); "
                             "its drafts on the device defaults"))
    eng = results.get("engine_config")
    loaded = (eng or {}).get("target_kernels")
    if loaded:
        how = ("two-token calls on the device's fast kernels (every call feeds 2+ tokens; bitwise the same logits "
               "across call widths, checked at load)" if loaded["min_feed"] >= 2 else "one-token steps")
        add(f"- edgespec's target as loaded: {how}; compiled with {loaded['properties']}")
    if eng:
        es = eng["edgespec"]
        if isinstance(es, dict) and "target" in es:
            collab = (f", the collaborative modes' draft with {es['collab_draft']} (its logits enter the output)"
                      if es.get("collab_draft") else "")
            asked = (" (on CPUs with int8 dot products: the device defaults where two-token calls are exact)"
                     if es.get("exact_target") and "CPU" in str(es["target"]) else "")
            add(f"- edgespec compiles the target with {es['target']}{asked}, the drafts with {es['draft']}{collab}; "
                f"GenAI: {eng['genai']}")
        else:
            add(f"- edgespec compiles with {es}; GenAI: {eng['genai']}")
    order = ("in a balanced order (every mode in every position and after every other mode equally often over a "
             "cycle of turns)" if results.get("mode_order") == "balanced" else
             "the order rotated at every prompt and repeat")  # reports of runs before the balanced order
    add(f"- Every mode got the same prompt token ids; modes ran interleaved in one process, {order}, after one "
        "warm-up generation each.")
    if results.get("prompt_order") == "mixed":
        add("- Prompt order: mixed (each repeat one pass over every prompt, the sets taken in turns), so no prompt "
            "follows one of its own set.")
    add("")


def _head(add, head: list[str]) -> None:
    _row(add, head)
    add("|" + "---|" * len(head))


def _row(add, cells: list[str]) -> None:
    add("| " + " | ".join(cells) + " |")


def _tables(results: dict, add) -> None:
    modes = results["modes"]
    for set_name, table in results["summary"].items():
        add(f"## Results: {set_name}")
        add("")
        bases = [b for b in metrics.BASELINES if b in modes]
        refs = [b for b in metrics.REFERENCES if b in modes]
        collab = any(m in COLLAB_MODES for m in table)
        head = ["mode", "new tokens/s", "TTFT ms", "TPOT ms"] + [f"speedup vs {LABELS[b]}" for b in bases]
        head += ["speedup vs naive collaborative"] if collab else []
        _head(add, head)
        for mode, row in table.items():
            cells = [LABELS[mode], _spread(row["tokens_per_s"], 1), _spread(row["ttft_s"], 0, 1000),
                     _spread(row["tpot_s"], 1, 1000)]
            cells += ["1" if b == mode else _spread(row["speedup"].get(b)) for b in bases]
            if collab:
                naive = COLLAB_REFERENCE.get(mode)
                cells.append(_spread(row["speedup"].get(naive)) if naive else "1" if mode in COLLAB_MODES else "-")
            _row(add, cells)
        add("")
        scored = any(row.get("target_logprob") is not None for row in table.values())
        head = (["mode", "acceptance", "tokens/target call", "drafted/call", "memory-bound speedup",
                 "weight GB/s (of measured)"] + [f"= {LABELS[r]} output" for r in refs])
        head += ["= naive collaborative output"] if collab else []
        head += ["target log-prob/token"] if scored else []
        _head(add, head)
        for mode, row in table.items():
            frac = row["weight_bandwidth_fraction"]
            bw = (f"{row['weight_bandwidth_bytes_per_s'] / GB:.1f} ({frac:.0%})"
                  if row["weight_bandwidth_bytes_per_s"] and frac else "-")
            cells = [LABELS[mode], _f(row["acceptance_rate"]), _f(row["tokens_per_target_call"]),
                     _f(row["drafted_per_call"]), _f(row["memory_bound_speedup"]), bw]
            cells += ["-" if r == mode else _match(row["matches"].get(r)) for r in refs]
            if collab:
                naive = COLLAB_REFERENCE.get(mode)
                cells.append(_match(row["matches"].get(naive)) if naive else "-")
            if scored:
                cells.append(_f(row.get("target_logprob")))
            _row(add, cells)
        add("")
        if scored:
            _quality_note(table, add)


def _quality_note(table: dict, add) -> None:
    """Name the sampled modes whose text the target finds far less likely than its target-only text."""
    bad = []
    for mode, row in table.items():
        base = _sampling_baseline(mode, table)
        if base and mode != base and flagged(row.get("target_logprob"), table[base].get("target_logprob")):
            bad.append(f"{LABELS[mode]} ({row['target_logprob']:.2f} against {table[base]['target_logprob']:.2f})")
    if bad:
        add("> **Not a sample of the target's distribution:** " + "; ".join(bad) + ". Its mean log-probability "
            "per token under the target is far below target-only sampling's, so its text is not what the target "
            "would have sampled, and its speed is no comparison for a lossless sampler.")
        add("")


def _sampling_baseline(mode: str, table: dict) -> str | None:
    """The target-only mode of the runtime and engine that `mode` samples with (its own weights and kernels: the
    llama.cpp GGUF is another quantization than the OpenVINO IR)."""
    if mode.startswith("genai"):
        order = ["genai-target"]
    elif mode.startswith("llamacpp"):
        order = ["llamacpp-target"]
    elif mode.startswith("edgespec-llamacpp"):
        order = ["edgespec-llamacpp-target", "llamacpp-target"]
    else:
        order = ["edgespec-target"]
    return next((base for base in order if base in table), None)


def _memory(results: dict, add) -> None:
    mem = results.get("memory")
    if not mem:
        return
    add("## Peak resident memory")
    add("")
    add("Each mode alone in a fresh process: libraries imported, the mode loaded, one generation. "
        "Peak is the process's RSS high-water mark; 'over baseline' subtracts the RSS after imports. "
        "'After load' is small because both runtimes map the weight files and page them in on first use.")
    add("")
    add("| mode | peak RSS | over baseline | after load |")
    add("|---|---|---|---|")
    for mode, m in mem.items():
        if "error" in m:
            add(f"| {LABELS[mode]} | failed: {m['error']} | | |")
        else:
            add(f"| {LABELS[mode]} | {_size(m['peak_rss_bytes'])} | {_size(m['peak_over_baseline_bytes'])} | "
                f"{_size(m['loaded_rss_bytes'] - m['baseline_rss_bytes'])} |")
    add("")


def _sweep(results: dict, add) -> None:
    sweep = results.get("sweep", {}).get("summary") or {}
    if not sweep:
        return
    pred = (results.get("cost_curve") or {}).get("prediction") or {}
    ks = sorted({int(k) for rows in sweep.values() for k in rows})
    sw = results["sweep"]
    add("## Draft length sweep (fixed k, draft only: no prompt lookup; all prompt sets)")
    add("")
    add(f"{sw.get('prompts_per_set') or 'All'} prompts per set, {sw.get('repeats', 1)} repeat(s); spread over repeats.")
    add("")
    head = ["k"]
    for mode in sweep:
        head += [f"{LABELS[mode]} tokens/s", "acceptance", "tokens/call"]
    if pred:
        head += ["predicted edgespec tokens/s"]
    _head(add, head)
    for k in ks:
        cells = [str(k)]
        for mode, rows in sweep.items():
            r = rows.get(k) or rows.get(str(k))
            cells += [_spread(r["tokens_per_s"], 1), _f(r["acceptance_rate"]), _f(r["tokens_per_target_call"])] \
                if r else ["-", "-", "-"]
        if pred:
            p = pred["by_k"].get(k) or pred["by_k"].get(str(k))
            cells.append(_f(p["tokens_per_s"], 1) if p else "-")
        _row(add, cells)
    add("")
    _sweep_by_set(sweep, ks, add)


def _sweep_by_set(sweep: dict, ks: list[int], add) -> None:
    """Each mode against GenAI's speculative pipeline at the same fixed k, per prompt set (equal-work ratios)."""
    base = metrics.SWEEP_BASE
    others = [mode for mode in sweep if mode != base]
    if base not in sweep or not others:
        return
    add(f"Per prompt set, at the same fixed k: tokens/s, and the speedup over {LABELS[base]} (equal work).")
    add("")
    head = ["set", "k", f"{LABELS[base]} tokens/s"]
    for mode in others:
        head += [f"{LABELS[mode]} tokens/s", "tokens/call", f"vs {LABELS[base]}"]
    _head(add, head)
    for k in ks:
        rows = {mode: sweep[mode].get(k) or sweep[mode].get(str(k)) or {} for mode in sweep}
        for name in sorted((rows[base].get("by_set") or {})):
            cells = [name, str(k), _f(rows[base]["by_set"][name]["tokens_per_s"], 1)]
            for mode in others:
                r = (rows[mode].get("by_set") or {}).get(name)
                cells += [_f(r["tokens_per_s"], 1), _f(r["tokens_per_target_call"]),
                          _spread(r[f"speedup_vs_{base}"])] if r else ["-", "-", "-"]
            _row(add, cells)
    add("")


def _llamacpp_cost(results: dict, add) -> None:
    """The llama.cpp engine's target call costs beside OpenVINO's (edgespec-llamacpp runs)."""
    curve = results.get("cost_curve_llamacpp")
    if not curve:
        return
    ov = {int(k): v for k, v in ((results.get("cost_curve") or {}).get("target") or {}).get("call_s", {}).items()}
    call_s = {int(k): v for k, v in curve["call_s"].items()}
    engine = curve.get("engine", {})
    add(f"## Target call cost on llama.cpp ({curve['past_tokens']}-token past, median of repeats; "
        f"{engine.get('threads')} threads, batch {engine.get('batch')}, ubatch {engine.get('ubatch')}, "
        f"flash attention {'on' if engine.get('flash_attn') else 'off'})")
    add("")
    add("| n new tokens | llama.cpp call ms | vs one step | OpenVINO call ms | vs one step |")
    add("|---|---|---|---|---|")
    t1, o1 = call_s[min(call_s)], ov.get(min(ov)) if ov else None
    for n in sorted(call_s):
        other = (f"{ov[n] * 1000:.1f} | {ov[n] / o1:.2f}x" if n in ov else "- | -")
        add(f"| {n} | {call_s[n] * 1000:.1f} | {call_s[n] / t1:.2f}x | {other} |")
    add("")


def _cost(results: dict, add) -> None:
    _llamacpp_cost(results, add)
    curve = results.get("cost_curve")
    if not curve:
        return
    call_s = {int(k): v for k, v in curve["target"]["call_s"].items()}
    rb = {int(k): v for k, v in curve["target"]["rollback_s"].items()}
    add(f"## Verification cost curve ({curve['target']['past_tokens']}-token past, median of repeats)")
    add("")
    add("| n new tokens | target call ms | ms per token | vs one step | KV rollback ms |")
    add("|---|---|---|---|---|")
    t1 = call_s[min(call_s)]
    for n in sorted(call_s):
        add(f"| {n} | {call_s[n] * 1000:.1f} | {call_s[n] * 1000 / n:.1f} | {call_s[n] / t1:.2f}x | "
            f"{rb[n] * 1000:.2f} |")
    add("")
    if curve.get("draft_token_s") is not None:
        draft_calls = (curve.get("draft") or {}).get("call_s") or {}
        back_to_back = draft_calls.get(1, draft_calls.get("1"))  # int keys in memory, str after JSON
        add(f"Draft: {curve['draft_token_s'] * 1000:.1f} ms per token between target calls "
            f"({curve['draft_token_s'] / t1:.2f} of a target step)"
            + (f"; {float(back_to_back) * 1000:.1f} ms back to back." if back_to_back else "."))
        add("")
    if curve.get("draft_calls_s"):
        plain, catch_up = (" / ".join(f"{t * 1000:.2f}" for t in curve["draft_calls_s"][key])
                           for key in ("plain", "catch_up"))
        add(f"Draft calls right after a target call, one token each: {plain} ms; when the first also feeds the "
            f"token the draft missed (after a fully accepted block): {catch_up} ms.")
        add("")
    if curve.get("draft2_token_s") is not None:
        add(f"Draft 2: {curve['draft2_token_s'] * 1000:.1f} ms per token between target calls "
            f"({curve['draft2_token_s'] / t1:.2f} of a target step).")
        add("")
    pred = curve.get("prediction")
    if pred:
        add(f"Per-token acceptance a = {pred['acceptance']:.3f}, from the {pred['acceptance_source']}. "
            f"Loop overhead per forward call (edgespec target-only TPOT minus the bare 1-token call): "
            f"{pred.get('overhead_s', 0) * 1000:.1f} ms. Predicted cost of a step with k drafted tokens: "
            + ("T(k+1) + the k draft calls above (catching up with probability a^k)" if curve.get("draft_calls_s")
               else "T(k+1) + k x draft token")
            + " + (k+1) x overhead; expected tokens (1-a^(k+1))/(1-a).")
        best = pred["best_k"]
        row = pred["by_k"].get(best) or pred["by_k"][str(best)]
        add(f"Predicted best draft length: **k = {best}** ({row['tokens_per_s']:.1f} tokens/s, "
            f"{row['speedup_vs_target']:.2f}x over the target's single-token step rate).")
        if pred.get("measured_best_k"):
            add("Measured best draft length: " + ", ".join(
                f"{LABELS[m]} k = {k}" for m, k in pred["measured_best_k"].items()) + ".")
        add("")


def _definitions(add) -> None:
    add("## How the figures are computed")
    add("")
    add("- new tokens/s: generated tokens (end-of-sequence not counted) over wall time around the generate call, "
        "summed over a prompt set for each repeat; the spread is over repeats.")
    add("- Speedup: the baseline's seconds over the mode's for the same tokens, in the same repeat (interleaved "
        "runs): each prompt's two runs are cut to the shorter of their outputs (time to first token plus that share "
        "of the decoding), so two engines whose outputs differ in length are compared on equal work; equal outputs "
        "give the plain ratio of tokens/s. Median (min-max) over repeats.")
    add("- TTFT/TPOT: as each runtime reports them (GenAI perf metrics; edgespec GenerationStats), "
        "median (min-max) over all runs.")
    add("- acceptance: accepted drafted tokens / drafted tokens. tokens/target call: (new tokens - 1) / "
        "(target calls - 1), the prefill call left out. GenAI's counts come from its extended perf metrics.")
    add("- memory-bound speedup (FastDraft, Zafrir et al. 2024): tokens per target call / (1 + c x drafted per call), "
        "c = bytes a draft step streams / bytes a target step streams (draft 2's for the draft-2 modes; a table "
        "a model only gathers rows from, such as an untied input embedding, is left out): the speedup if each "
        "forward pass cost only one read of the model's weights.")
    add("- weight GB/s: (target streamed bytes x target calls + draft streamed bytes x draft calls) / wall time, "
        "against the numpy-measured read bandwidth.")
    add("- '= output': prompts (x repeats) whose generated token ids equal the reference mode's, token for token "
        "(greedy runs only).")
    add("- target log-prob/token (sampled runs): each output's mean log-probability per token under edgespec's "
        "OpenVINO target, warped as generation warped it, averaged over the runs; a lossless speculative sampler "
        "scores as target-only sampling does, up to sampling noise (flagged 0.5 below it).")
    add("- Collaborative modes: a CoS mode's speedup and '= naive collaborative output' are against the naive mode "
        "of the same combination (ensemble or contrastive); acceptance counts the draft's proposals kept against "
        "the combined distribution r, tokens/target call as above (the naive modes make one token per call).")
