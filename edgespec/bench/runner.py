"""The bench itself: load every mode in one process, warm each up, then run them interleaved.

Order of work:
 1. machine facts and a numpy memory-bandwidth measurement (while nothing else of ours runs);
 2. peak memory per mode, each in its own child process (memprobe);
 3. all modes loaded here; one warm-up generation each;
 4. main phase: for every prompt and repeat, every mode once, in a balanced order (every mode in every position
    and after every other mode equally often over a cycle), so slow drifts of a shared CPU (other jobs, thermal
    state) and what one mode leaves behind for the next hit all modes alike;
 5. draft-length sweep: the speculative modes (draft 2's included) at each fixed k, interleaved the same way;
 6. verification cost curve on edgespec's own StatefulLM objects, and the draft length it predicts.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from edgespec.runtime.errors import EdgespecError
from edgespec.runtime.manifest import DRAFT_VOCAB, MANIFEST, ModelEntry, Pair, load_pair, read_model_entry
from edgespec.bench import metrics, quality
from edgespec.runtime import costs as costcurve
from edgespec.runtime import hardware
from edgespec.runtime.config import GenerationConfig
from edgespec.bench.memprobe import run_probe
from edgespec.bench.modes import (ALL_MODES, COLLAB_MODES, DRAFT2_MODES, KNOWN_MODES, LABELS, MODES, SPECULATIVE,
                                  Mode, RunRecord, _last_line, load_mode)
from edgespec.bench.prompts import PreparedPrompt, load_prompt_set, prepare

SCHEMA = 1


@dataclass
class BenchOptions:
    pair: Path | None = None
    modes: list[str] | None = None   # None: all four (six with draft2), the target-only ones for a pair without draft
    draft2: Path | None = None       # a second draft folder: adds genai-spec2 and edgespec-spec2
    target_device: str = "CPU"
    draft_device: str = "CPU"
    prompt_sets: list[str] = field(default_factory=lambda: ["humaneval", "mtbench"])
    limit: int | None = 10
    repeats: int = 3
    settings: GenerationConfig = field(default_factory=GenerationConfig)
    draft_lengths: list[int] = field(default_factory=list)   # the sweep; empty = no sweep
    genai_draft_length: int | None = None  # GenAI's num_assistant_tokens in the main runs (None: settings' k)
    sweep_limit: int | None = 3      # prompts per set in the sweep (None = as many as the main phase)
    sweep_repeats: int = 1
    memory: bool = True
    cost_curve: bool = True
    fast_kernels: bool = False       # edgespec on the device's default kernels (exact=False), target included
    prefix_cache: bool = False       # let both runtimes reuse the KV cache of a repeated prompt (default: cold runs)
    collab_weight: float = 0.5       # the draft's weight in the *-ensemble modes: r = (1 - w) p + w q
    collab_alpha: float = 0.1        # the *-contrastive modes: r = softmax(z_target - alpha z_draft)
    cost_past: int = 200
    cost_repeats: int = 5
    log: Path | None = None          # JSONL of raw runs, written as they finish
    prompt_order: str = "sets"       # "sets": set by set, each prompt's repeats in a row; "mixed": see main_order

    @property
    def exact(self) -> bool | None:
        """SpeculativePipeline's `exact` for every edgespec model of this run."""
        return False if self.fast_kernels else None


def default_pair() -> Path:
    try:
        from edgespec.export.presets import ensure_default_pair
    except ImportError:
        raise EdgespecError("no pair given and the default pair is unavailable (edgespec.export.presets "
                            "missing): pass a pair folder") from None
    return Path(ensure_default_pair())


def check_modes(modes: list[str] | None, pair: Pair, draft2: ModelEntry | None = None) -> list[str]:
    if modes is None:
        chosen = set(MODES) if pair.draft is not None else {m for m in MODES if m not in SPECULATIVE}
        if draft2 is not None:
            chosen |= set(DRAFT2_MODES)
        return [m for m in ALL_MODES if m in chosen]
    unknown = [m for m in modes if m not in KNOWN_MODES]
    if unknown:
        raise EdgespecError(f"unknown mode {unknown[0]!r}; choose from {', '.join(KNOWN_MODES)}")
    if not modes:
        raise EdgespecError("no modes to run")
    if pair.draft is None and ((SPECULATIVE - set(DRAFT2_MODES)) | set(COLLAB_MODES)) & set(modes):
        raise EdgespecError(f"pair {pair.root} has no draft model; run with --modes genai-target,edgespec-target")
    if draft2 is None and set(DRAFT2_MODES) & set(modes):
        raise EdgespecError(f"modes {', '.join(DRAFT2_MODES)} need a second draft: pass --draft2 PATH")
    return [m for m in KNOWN_MODES if m in modes]  # canonical order, no duplicates


def load_draft2(path: Path, pair: Pair) -> ModelEntry:
    """The second draft: a draft model folder (or a pair folder, whose draft is taken); it must share the
    target's vocabulary, in full or as a reduced head (draft_vocab.npy) indexing into it."""
    path = Path(path).expanduser()
    if (path / MANIFEST).is_file():
        other = load_pair(path)
        if other.draft is None:
            raise EdgespecError(f"--draft2 {path}: that pair has no draft model")
        entry = other.draft
    else:
        entry = read_model_entry(path, need_tokenizer=False)
    vocab = pair.target.vocab_size
    vocab_map = entry.vocab_map()
    if vocab_map is not None:
        if vocab and vocab_map.size and (int(vocab_map.min()) < 0 or int(vocab_map.max()) >= vocab):
            raise EdgespecError(f"--draft2 {entry.dir}: its {DRAFT_VOCAB} holds ids outside the target's "
                                f"vocabulary of {vocab}")
    elif entry.vocab_size and vocab and entry.vocab_size != vocab:
        raise EdgespecError(f"--draft2 {entry.dir}: vocabulary of {entry.vocab_size} tokens, the target's has "
                            f"{vocab}; a draft must share the target's vocabulary")
    return entry


def pair_info(pair: Pair, draft2: ModelEntry | None = None) -> dict:
    info = {"name": pair.name, "root": str(pair.root), "target": hardware.model_files(pair.target.dir),
            "draft": hardware.model_files(pair.draft.dir) if pair.draft else None,
            "draft2": hardware.model_files(draft2.dir) if draft2 else None}
    info["target"].update(source=pair.target.source, weights=pair.target.weights)
    for role, entry in (("draft", pair.draft), ("draft2", draft2)):
        if entry:
            info[role].update(source=entry.source, weights=entry.weights, reduced_vocab=entry.vocab_map() is not None)
    return info


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False)


def balanced_order(items: list[str], turn: int) -> list[str]:
    """The modes' order at `turn`: a balanced Latin square (Williams design), so over a cycle of n turns (2n for an
    odd number of modes) every mode runs in every position and after every other mode equally often. A plain
    rotation keeps each mode's predecessor for good, and what one engine leaves behind (llama.cpp's OpenMP threads
    spinning on both cores, OpenVINO's TBB workers) then always falls on the same neighbour."""
    n = len(items)
    if n < 2:
        return list(items)
    base, low, high = [0], 1, n - 1
    while len(base) < n:
        base.append(low)
        low += 1
        if len(base) < n:
            base.append(high)
            high -= 1
    row = turn % (n if n % 2 == 0 else 2 * n)
    order = [items[(b + row) % n] for b in base]
    return order[::-1] if row >= n else order


PROMPT_ORDERS = ("sets", "mixed")


def main_order(sets: dict[str, list[PreparedPrompt]], repeats: int, order: str) -> list[tuple[PreparedPrompt, int]]:
    """(prompt, repeat) in the order the main phase runs them. "sets": set after set, each prompt's repeats in a
    row (a workload of one kind at a time). "mixed": each repeat a pass over every prompt, the sets taken in turns
    (the first prompt of each set, then the second of each, ...): a user moving between kinds of work, where nothing
    a runtime learned on one prompt is the next prompt's own."""
    if order not in PROMPT_ORDERS:
        raise EdgespecError(f"unknown prompt order {order!r} (choose from {', '.join(PROMPT_ORDERS)})")
    if order == "sets":
        return [(pp, rep) for pps in sets.values() for pp in pps for rep in range(repeats)]
    longest = max(map(len, sets.values()))
    one_pass = [pps[i] for i in range(longest) for pps in sets.values() if i < len(pps)]
    return [(pp, rep) for rep in range(repeats) for pp in one_pass]


def run_bench(opts: BenchOptions, command: list[str], console: Console | None = None) -> dict:
    console = console or Console(stderr=True)
    pair = load_pair(opts.pair if opts.pair else default_pair())
    draft2 = load_draft2(opts.draft2, pair) if opts.draft2 else None
    modes = check_modes(opts.modes, pair, draft2)
    notes = []
    if opts.modes is None and pair.draft is None:
        notes.append(f"{pair.root} has no draft model: " + ("of its own speculative modes, only draft 2's ran."
                                                           if draft2 else "only the target-only modes ran."))
    for which, entry in (("draft", pair.draft), ("second draft", draft2)):
        if entry is not None and entry.source.startswith("makeshift"):
            notes.append(f"The {which} is a makeshift ({entry.source}), not a trained draft: these numbers check "
                         "the mechanics of speculation and are no speedup claim.")
    for note in notes:
        console.print(f"[yellow]{note}[/]")
    if opts.repeats < 1 or opts.sweep_repeats < 1:
        raise EdgespecError("--repeats and --sweep-repeats must be at least 1")
    if opts.settings.max_new_tokens < 1:
        raise EdgespecError("--max-new-tokens must be at least 1")
    if any(k < 1 for k in opts.draft_lengths + [opts.settings.draft_length, opts.genai_draft_length or 1]):
        raise EdgespecError("draft lengths must be at least 1")
    import openvino_genai as ov_genai

    tokenizer = ov_genai.Tokenizer(str(pair.target.dir))
    eos = set(pair.target.eos_token_ids) or {int(tokenizer.get_eos_token_id())}
    sets: dict[str, list[PreparedPrompt]] = {}
    for spec in opts.prompt_sets:
        prompts = load_prompt_set(spec, opts.limit)
        for pp in prepare(prompts, tokenizer):
            sets.setdefault(pp.prompt.set, []).append(pp)
    if not sets:
        raise EdgespecError("no prompts to run")
    all_prompts = [pp for pps in sets.values() for pp in pps]
    main_runs = main_order(sets, opts.repeats, opts.prompt_order)  # an unknown order fails here, before any loading
    settings = opts.settings
    greedy = not settings.do_sample

    results: dict = {
        "schema": SCHEMA, "command": command, "started": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "pair": pair_info(pair, draft2), "modes": modes,
        "devices": {"target": opts.target_device, "draft": opts.draft_device}, "fast_kernels": opts.fast_kernels,
        "settings": asdict(settings), "genai_draft_length": opts.genai_draft_length or settings.draft_length,
        "prefix_cache": opts.prefix_cache, "repeats": opts.repeats, "limit": opts.limit, "mode_order": "balanced",
        "prompt_order": opts.prompt_order,
        "prompt_sets": {name: [{"id": pp.key, "prompt_tokens": len(pp.ids), "chat": pp.rendered != pp.prompt.text}
                               for pp in pps] for name, pps in sets.items()},
        "machine": hardware.machine_info(), "versions": hardware.versions(), "notes": notes,
    }
    if set(COLLAB_MODES) & set(modes):
        results["collab"] = {"weight": opts.collab_weight, "alpha": opts.collab_alpha}
    results["engine_config"] = _engine_config(opts)
    console.print(f"[bold]edgespec bench[/] {pair.name}: modes {', '.join(modes)}; "
                  f"{len(all_prompts)} prompts x {opts.repeats} repeats, {settings.max_new_tokens} new tokens")
    console.print("measuring memory bandwidth ...")
    results["bandwidth"] = hardware.measure_bandwidth()

    if opts.memory:
        results["memory"] = _memory_probes(pair, draft2, modes, opts, eos, all_prompts[0], console)

    loaded: dict[str, Mode] = {}
    results["load_s"] = {}
    for name in modes:
        console.print(f"loading {name} ...")
        t = time.perf_counter()
        loaded[name] = load_mode(name, pair, opts.target_device, opts.draft_device, eos, draft2=draft2, exact=opts.exact,
                                 prefix_cache=opts.prefix_cache, collab_weight=opts.collab_weight,
                                 collab_alpha=opts.collab_alpha, sampling=not greedy)
        results["load_s"][name] = time.perf_counter() - t
        if getattr(loaded[name], "cold", True) is False and not opts.prefix_cache:
            results["notes"].append(f"{LABELS[name]} ran with GenAI's prefix caching on (a repeated prompt may skip "
                                    "its prefill): given a SchedulerConfig, GenAI 2026.4's speculative sampling keeps "
                                    "tokens its target would not draw (docs/results.md, Stop 34).")
        if results["engine_config"].get("target_kernels") is None:
            results["engine_config"]["target_kernels"] = _loaded_target_kernels(loaded[name])

    spec_modes = [m for m in modes if m in SPECULATIVE]
    n_main = len(all_prompts) * opts.repeats * len(modes)
    sweep_sets = {name: pps[:opts.sweep_limit] if opts.sweep_limit else pps for name, pps in sets.items()}
    n_sweep = sum(map(len, sweep_sets.values())) * opts.sweep_repeats * len(opts.draft_lengths) * len(spec_modes)
    records: list[RunRecord] = []
    if opts.log:
        opts.log.parent.mkdir(parents=True, exist_ok=True)
    log = opts.log.open("w") if opts.log else None

    def record(mode: Mode, pp: PreparedPrompt, cfg: GenerationConfig, k: int | None, rep: int, phase: str) -> None:
        # Each finished run goes to the log at once: a long bench that dies keeps what it measured.
        try:
            rec = _run(mode, pp, cfg, k, rep, phase)
        except Exception as exc:  # one run a runtime cannot finish must not end an hour of runs: noted, left out
            note = f"{LABELS[mode.name]} failed on {pp.key} ({phase}, repeat {rep}): {_last_line(exc)}"
            results["notes"].append(note)
            console.print(f"[yellow]{note}[/]")
            return
        records.append(rec)
        if log:
            log.write(json.dumps(rec.to_json()) + "\n")
            log.flush()

    try:
        with _progress(console) as progress:
            task = progress.add_task("warm-up", total=len(modes))
            for name in modes:
                record(loaded[name], all_prompts[0], settings, _main_k(opts, name), 0, "warmup")
                progress.advance(task)
            task = progress.add_task("interleaved runs", total=n_main)
            turn = 0
            for pp, rep in main_runs:
                for name in balanced_order(modes, turn):
                    record(loaded[name], pp, settings, _main_k(opts, name), rep, "main")
                    progress.advance(task)
                turn += 1
            if n_sweep:
                # The same loop as GenAI's at each k: a fixed draft length and no prompt lookup.
                fixed = dataclasses.replace(settings, adaptive_draft=False, prompt_lookup=False)
                task = progress.add_task("draft-length sweep", total=n_sweep)
                for pps in sweep_sets.values():
                    for pp in pps:
                        for rep in range(opts.sweep_repeats):
                            for k in opts.draft_lengths:
                                for name in balanced_order(spec_modes, turn):
                                    record(loaded[name], pp, fixed, k, rep, "sweep")
                                    progress.advance(task)
                                turn += 1
            if opts.cost_curve:
                try:
                    results["cost_curve"] = _cost_curve(pair, loaded, opts, all_prompts[0].ids, progress)
                except Exception as exc:  # an hour of runs must not be lost to the last, optional step
                    results["notes"].append(f"cost curve failed: {exc.__class__.__name__}: {exc}")
                    console.print(f"[yellow]cost curve failed: {exc}[/]")
                llama = next((loaded[m].pipe.targets["llamacpp"] for m in ("edgespec-llamacpp",
                                                                            "edgespec-llamacpp-target", "edgespec-auto")
                              if m in loaded and "llamacpp" in loaded[m].pipe.targets), None)
                if llama is not None:
                    results["cost_curve_llamacpp"] = _llamacpp_cost_curve(llama, opts, all_prompts[0].ids)
            if not greedy:
                _score_sampled(records, all_prompts, loaded, settings, results, console)
    finally:
        for mode in loaded.values():
            mode.close()
        if log:
            log.close()

    raw = [r.to_json() for r in records]
    results["runs"] = raw
    info = results["pair"]
    target_bytes = info["target"]["streamed_bytes"]
    # c of the memory-bound speedup and the weight bandwidth: the bytes a step of each mode's draft streams.
    draft_bytes = {m: (info["draft2"] if m in DRAFT2_MODES else info["draft"])["streamed_bytes"]
                   for m in modes if m in SPECULATIVE or m in COLLAB_MODES}
    results["summary"] = metrics.summarize(raw, modes, target_bytes, draft_bytes,
                                           results["bandwidth"]["read_bytes_per_s"], greedy)
    results["sweep"] = {"draft_lengths": opts.draft_lengths, "prompts_per_set": opts.sweep_limit,
                        "repeats": opts.sweep_repeats, "summary": metrics.summarize_sweep(raw)}
    if results.get("cost_curve"):
        _add_prediction(results, opts)
    results["finished"] = dt.datetime.now().astimezone().isoformat(timespec="seconds")
    results["machine"]["load_average_end"] = hardware.machine_info()["load_average"]
    return results


def _score_sampled(records: list[RunRecord], all_prompts: list[PreparedPrompt], loaded: dict[str, Mode],
                   settings: GenerationConfig, results: dict, console: Console) -> None:
    """Sampled runs: each output's mean log-probability per token under edgespec's OpenVINO target, warped as the
    runs were (quality.py: a lossless speculative sampler's text scores as target-only sampling's does)."""
    target = next((t for t in map(_openvino_target, loaded.values()) if t is not None), None)
    if target is None:
        results["notes"].append("Sampled outputs were not scored: no edgespec mode with an OpenVINO target ran.")
        return
    console.print("scoring sampled outputs under the target ...")
    quality.score_runs(records, {pp.key: pp.ids for pp in all_prompts}, target, settings.warp)


def _engine_config(opts: BenchOptions) -> dict:
    """How each runtime compiles its models: the settings a reader needs to judge the comparison.

    edgespec's target gets call-shape-independent kernels (exact) unless --fast-kernels; its drafts keep the
    device defaults either way (SpeculativePipeline with exact=None or False), except in the collaborative
    modes, where the draft's logits enter the output and it compiles like the target."""
    target_exact = not opts.fast_kernels
    edgespec = {"target": _edgespec_compile(opts.target_device, target_exact),
                "draft": _edgespec_compile(opts.draft_device, False), "exact_target": target_exact}
    if opts.modes and set(COLLAB_MODES) & set(opts.modes):
        edgespec["collab_draft"] = _edgespec_compile(opts.draft_device, target_exact)
    return {"edgespec": edgespec,
            "genai": "LLMPipeline defaults (no properties passed); GenerationConfig apply_chat_template=False, "
                     "stop_token_ids = the pair's eos ids"}


KERNEL_PROPERTIES = ("INFERENCE_PRECISION_HINT", "DYNAMIC_QUANTIZATION_GROUP_SIZE", "KV_CACHE_PRECISION")


def _loaded_target_kernels(mode: Mode) -> dict | None:
    """What an edgespec mode's OpenVINO target was compiled with, as loaded (two-token calls or the exact kernels are
    chosen at load: runtime/call_width.py); None for other modes."""
    target = _openvino_target(mode)
    compiled = getattr(target, "compiled", None)
    if compiled is None:
        return None
    props = {}
    for name in KERNEL_PROPERTIES:
        try:
            props[name] = str(compiled.get_property(name))
        except RuntimeError:
            pass  # a device without the property
    return {"min_feed": getattr(target, "min_feed", 1), "properties": props}


def _openvino_target(mode: Mode):
    """An edgespec mode's OpenVINO target model (its pipeline's), or None for other modes and engines."""
    return getattr(getattr(mode, "pipe", None), "targets", {}).get("openvino")


def _edgespec_compile(device: str, exact: bool) -> dict | str:
    """The properties edgespec.runtime.devices.compile_model passes for `device`."""
    from edgespec.runtime.devices import device_config, is_npu

    if is_npu(device):
        return f"{device}: NPUW with edgespec.runtime.npu's static shapes (exact does not apply)"
    return {device: device_config(device, exact)}


def _main_k(opts: BenchOptions, name: str) -> int:
    """The draft length a mode runs with in the main phase (GenAI's may be set apart: its best fixed k)."""
    return opts.genai_draft_length if name.startswith("genai-") and opts.genai_draft_length \
        else opts.settings.draft_length


def _run(mode: Mode, pp: PreparedPrompt, settings: GenerationConfig, k: int | None, rep: int, phase: str) -> RunRecord:
    spec = mode.name in SPECULATIVE
    out = mode.generate(pp, settings, k if spec else None)
    return RunRecord(mode=mode.name, prompt=pp.key, repeat=rep, draft_length=k if spec else None, phase=phase,
                     prompt_tokens=out["prompt_tokens"], new_tokens=out["new_tokens"], wall_s=out["wall_s"],
                     ttft_s=out["ttft_s"], tpot_s=out["tpot_s"], target_calls=out["target_calls"],
                     draft_calls=out["draft_calls"], drafted_tokens=out["drafted_tokens"],
                     accepted_tokens=out["accepted_tokens"], stop_reason=out.get("stop_reason"),
                     token_ids=out["token_ids"], engine=out.get("engine"), lookup_tokens=out.get("lookup_tokens"),
                     engine_expected_s=out.get("engine_expected_s"), draft_check_s=out.get("draft_check_s"))


def _memory_probes(pair: Pair, draft2: ModelEntry | None, modes: list[str], opts: BenchOptions, eos: set[int],
                   pp: PreparedPrompt, console: Console) -> dict:
    out = {}
    for name in modes:
        console.print(f"peak memory of {name} (child process) ...")
        request = {"pair": str(pair.root), "mode": name, "target_device": opts.target_device,
                   "draft_device": opts.draft_device, "eos": sorted(eos), "text": pp.rendered, "ids": pp.ids,
                   "settings": asdict(opts.settings), "draft2": str(draft2.dir) if draft2 else None,
                   "exact": opts.exact, "collab_weight": opts.collab_weight, "collab_alpha": opts.collab_alpha}
        out[name] = run_probe(request)
        if "error" in out[name]:
            console.print(f"[yellow]memory probe of {name} failed: {out[name]['error']}[/]")
    return out


def _cost_curve(pair: Pair, loaded: dict[str, Mode], opts: BenchOptions, seed_ids: list[int], progress) -> dict:
    """Time calls on the very StatefulLM objects edgespec decodes with (loading them if no edgespec mode ran).
    The curve's draft is the pair's own; draft 2 (when edgespec ran it) gets its step between target calls."""
    pipe = None
    for name in ("edgespec-spec", "edgespec-target"):
        if name in loaded:
            pipe = loaded[name].pipe
            break
    if pipe is None or (pipe.draft is None and pair.draft is not None):
        from edgespec.runtime.pipeline import SpeculativePipeline

        pipe = SpeculativePipeline(pair, opts.target_device, opts.draft_device, use_draft=pair.draft is not None,
                                   exact=opts.exact)
    past = min(opts.cost_past, pipe.target.context_length - 64 - 1)
    if past < 1:
        raise EdgespecError(f"context length {pipe.target.context_length} is too short for the cost curve")
    max_n = min(64, pipe.target.context_length - past)
    ns = [n for n in costcurve.curve_points(opts.draft_lengths or [opts.settings.draft_length], max_n) if n <= max_n]
    task = progress.add_task("cost curve", total=len(ns) + (1 if pipe.draft is not None else 0))
    draft2 = loaded["edgespec-spec2"].pipe.draft if "edgespec-spec2" in loaded else None
    curve = costcurve.measure(pipe.target, pipe.draft, seed_ids, ns, past=past, repeats=opts.cost_repeats,
                              progress=lambda: progress.advance(task), draft2=draft2)
    curve["devices"] = {"target": opts.target_device, "draft": opts.draft_device}
    return curve


def _llamacpp_cost_curve(target, opts: BenchOptions, seed_ids: list[int]) -> dict:
    """The same target call costs on the llama.cpp engine (the target edgespec-llamacpp decodes with)."""
    past = min(opts.cost_past, target.context_length - 64 - 1)
    ns = [n for n in costcurve.curve_points(opts.draft_lengths or [opts.settings.draft_length], 64)
          if n <= target.context_length - past]
    curve = costcurve.time_calls(target, costcurve._past_tokens(seed_ids, past), ns, opts.cost_repeats)
    curve["engine"] = {"threads": target.threads, "batch": target.batch_size, "ubatch": target.ubatch,
                       "flash_attn": target.flash_attn, "gguf": str(target.gguf)}
    return curve


def _add_prediction(results: dict, opts: BenchOptions) -> None:
    """Acceptance from the fixed-k sweep (else the main run), then predicted vs measured best k."""
    curve = results["cost_curve"]
    sweep = results["sweep"]["summary"]
    source = None
    estimates = []
    for mode in ("edgespec-spec", "genai-spec"):
        rows = sweep.get(mode) or {}
        estimates = [costcurve.acceptance_from_block(r["tokens_per_target_call"], int(k))
                     for k, r in rows.items() if r["tokens_per_target_call"] is not None]
        estimates = [a for a in estimates if a is not None]
        if estimates:
            source = f"{mode} draft-length sweep (median over k of a solving (1-a^(k+1))/(1-a) = tokens per call)"
            break
    if not estimates:
        for mode in ("edgespec-spec", "genai-spec"):
            row = results["summary"].get("all", {}).get(mode)
            if row and row["tokens_per_target_call"] and row["drafted_per_call"]:
                estimates = [costcurve.acceptance_from_block(row["tokens_per_target_call"], row["drafted_per_call"])]
                source = f"{mode} main run (mean draft length {row['drafted_per_call']:.2f})"
                break
    if not estimates or curve.get("draft_token_s") is None:
        return
    import statistics

    a = statistics.median(estimates)
    lengths = opts.draft_lengths or list(range(1, 9))
    # The loop's own cost per call: edgespec's target-only step time beyond the bare model call.
    overhead = 0.0
    base = results["summary"].get("all", {}).get("edgespec-target")
    if base and base["tpot_s"]:
        overhead = max(0.0, base["tpot_s"]["median"] - costcurve.interp_call(curve["target"]["call_s"], 1))
    pred = costcurve.predict(curve, a, lengths, overhead)
    pred["acceptance_source"] = source
    measured = {}
    for mode, rows in sweep.items():
        if rows:
            measured[mode] = max(rows, key=lambda k: rows[k]["tokens_per_s"]["median"])
    pred["measured_best_k"] = measured
    curve["prediction"] = pred
