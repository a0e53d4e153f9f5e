"""`edgespec bench`: edgespec against OpenVINO GenAI, interleaved in one process.

Kept light at import time (no matplotlib, no OpenVINO): the top-level CLI imports this module.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from edgespec.runtime.config import GenerationConfig
from edgespec.runtime.errors import EdgespecError


def _csv(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def _ints(value: str | None, option: str) -> list[int]:
    try:
        return [int(v) for v in _csv(value)]
    except ValueError:
        raise EdgespecError(f"{option} takes comma-separated integers, got {value!r}") from None


def bench_command(
    pair: Optional[Path] = typer.Argument(None, help="Pair folder (edgespec.json); default: the default pair."),
    modes: str = typer.Option("", "--modes", show_default=False,
                              help="Comma-separated subset of genai-target, genai-spec, edgespec-target, "
                                   "edgespec-spec, and with --draft2 genai-spec2, edgespec-spec2 (default: all "
                                   "four, six with --draft2; no pair-draft modes for a pair without draft). "
                                   "Collaborative decoding, on request only: naive-ensemble, cos-ensemble, "
                                   "naive-contrastive, cos-contrastive (CoS, one extra draft call for the bonus "
                                   "position), cos-ensemble-alt, cos-contrastive-alt (CoS, alternate proposal). "
                                   "llama.cpp (needs the edgespec[llamacpp] extra and a pair exported from a GGUF): "
                                   "llamacpp-target, llamacpp-default, llamacpp-lookup (llama-cpp-python's own loop: "
                                   "target only, target only with its default attention (flash attention off), "
                                   "prompt lookup), edgespec-llamacpp-target, edgespec-llamacpp (edgespec's loop, "
                                   "target on llama.cpp), edgespec-auto (the engine chosen by the probe)."),
    draft2: Optional[Path] = typer.Option(None, "--draft2", show_default=False,
                                          help="A second draft model folder (same vocabulary as the target): "
                                               "adds genai-spec2 and edgespec-spec2, the speculative modes with "
                                               "this draft in place of the pair's."),
    target_device: str = typer.Option("CPU", "--target-device", help="Device for the target model."),
    draft_device: str = typer.Option("CPU", "--draft-device", help="Device for the draft model."),
    prompts: str = typer.Option("humaneval,mtbench", "--prompts",
                                help="Comma-separated prompt sets: humaneval, mtbench, the shipped sets in "
                                     "edgespec/assets/prompts (longdoc, rag, codeedit, translation, shortqa, math, "
                                     "chat), or JSONL files with a 'prompt' or 'turns' field per line."),
    limit: int = typer.Option(10, "--limit", help="Prompts per set (0 = all)."),
    max_new_tokens: int = typer.Option(128, "--max-new-tokens"),
    repeats: int = typer.Option(3, "--repeats", help="Times every prompt is run in every mode."),
    prompt_order: str = typer.Option("sets", "--prompt-order",
                                     help="sets: set by set, each prompt's repeats in a row; mixed: every repeat a "
                                          "pass over all prompts, the sets taken in turns."),
    draft_length: int = typer.Option(GenerationConfig.draft_length, "--draft-length",
                                     help="Draft length k (GenAI: num_assistant_tokens)."),
    lookup: bool = typer.Option(True, "--lookup/--no-lookup",
                                help="edgespec's prompt lookup beside the draft (its default); --no-lookup drafts "
                                     "only, as GenAI's speculative pipeline. The --draft-lengths sweep never looks up."),
    adaptive: bool = typer.Option(True, "--adaptive/--fixed-draft",
                                  help="Let edgespec adapt k while decoding (its default) or fix it like GenAI."),
    genai_draft_length: int = typer.Option(0, "--genai-draft-length",
                                           help="GenAI's num_assistant_tokens in the main runs, e.g. its best k from "
                                                "a --draft-lengths sweep (default: --draft-length)."),
    draft_lengths: str = typer.Option("", "--draft-lengths",
                                      help="Also sweep these fixed draft lengths, e.g. 1,2,3,4,5,6 (default: none)."),
    sweep_limit: int = typer.Option(3, "--sweep-limit", help="Prompts per set in the sweep (0 = same as --limit)."),
    sweep_repeats: int = typer.Option(1, "--sweep-repeats", help="Repeats in the sweep."),
    sample: bool = typer.Option(False, "--sample/--greedy", help="Sampling instead of greedy decoding."),
    temperature: float = typer.Option(GenerationConfig.temperature, "--temperature", min=0.0,
                                      help="Sampling temperature (with --sample), as `edgespec generate`'s."),
    top_p: float = typer.Option(GenerationConfig.top_p, "--top-p", min=0.0, max=1.0,
                                help="Nucleus sampling: keep the smallest set of tokens with this much probability."),
    top_k: int = typer.Option(GenerationConfig.top_k, "--top-k", min=0, help="Keep the k likeliest tokens (0: all)."),
    seed: int = typer.Option(0, "--seed", help="Random seed for sampling."),
    memory: bool = typer.Option(True, "--memory/--no-memory", help="Measure peak memory per mode in child processes."),
    cost_curve: bool = typer.Option(True, "--cost-curve/--no-cost-curve",
                                    help="Measure the verification cost curve and predict the best draft length."),
    fast_kernels: bool = typer.Option(False, "--fast-kernels",
                                      help="Compile edgespec's target with the device's default kernels and KV "
                                           "cache too (exact=False: faster on bf16/VNNI CPUs and, through an f16 "
                                           "KV cache, on AVX2-only ones; but greedy speculative output "
                                           "may then differ from target-only output). GenAI is unaffected."),
    prefix_cache: bool = typer.Option(False, "--prefix-cache/--cold",
                                      help="Let both runtimes reuse the KV cache of an identical earlier prompt (as in "
                                           "a chat) or start every run cold (default: each run pays its prefill)."),
    collab_weight: float = typer.Option(0.5, "--collab-weight", min=0.0, max=1.0,
                                        help="The draft's weight w in the *-ensemble modes: r = (1 - w) p + w q."),
    collab_alpha: float = typer.Option(0.1, "--collab-alpha", min=0.0,
                                       help="alpha in the *-contrastive modes: r = softmax(z_target - alpha z_draft)."),
    plots: bool = typer.Option(True, "--plots/--no-plots", help="Write PNG figures (needs matplotlib)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Result folder (default: bench-results/<pair name>)."),
) -> None:
    """Benchmark edgespec against OpenVINO GenAI: speed, acceptance, exactness, memory, cost curve."""
    from edgespec.bench.runner import BenchOptions, run_bench
    from rich.console import Console

    console = Console(stderr=True)
    if limit < 0:
        raise EdgespecError("--limit must be 0 (all) or more")
    settings = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=sample, temperature=temperature,
                                top_p=top_p, top_k=top_k, seed=seed if sample else None, draft_length=draft_length,
                                adaptive_draft=adaptive, prompt_lookup=lookup)
    opts = BenchOptions(pair=pair, modes=_csv(modes) or None, target_device=target_device, draft_device=draft_device,
                        prompt_sets=_csv(prompts), limit=limit or None, repeats=repeats, settings=settings,
                        draft_lengths=_ints(draft_lengths, "--draft-lengths"), sweep_limit=sweep_limit or None,
                        genai_draft_length=genai_draft_length or None,
                        sweep_repeats=sweep_repeats, memory=memory, cost_curve=cost_curve, draft2=draft2,
                        fast_kernels=fast_kernels, prefix_cache=prefix_cache, collab_weight=collab_weight,
                        collab_alpha=collab_alpha, prompt_order=prompt_order)
    if not opts.prompt_sets:
        raise EdgespecError("--prompts is empty")
    if plots:
        from edgespec.bench.plots import pyplot
        pyplot()  # fail before an hour of benchmarking, not after
    out_dir = out or Path("bench-results") / _slug(Path(pair).name if pair else "default")
    opts.log = out_dir / "runs.partial.jsonl"
    results = run_bench(opts, _command_line(), console)
    paths = write_outputs(results, out_dir, plots)
    opts.log.unlink(missing_ok=True)  # everything it held is in results.json now
    print_summary(results, console)
    console.print("wrote " + ", ".join(str(p) for p in paths))


def _command_line() -> list[str]:
    argv = list(sys.argv)
    if argv and (Path(argv[0]).name == "edgespec" or Path(argv[0]).parts[-2:] == ("edgespec", "__main__.py")):
        argv[0] = "edgespec"
    return argv


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name) or "pair"


def write_outputs(results: dict, out_dir: Path, plots: bool = True) -> list[Path]:
    from edgespec.bench.report import render

    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "results.json"
    json_path.write_text(json.dumps(results, indent=1) + "\n")
    figures = []
    if plots:
        from edgespec.bench.plots import plot_all
        figures = plot_all(results, out_dir)
    md_path = out_dir / "report.md"
    md_path.write_text(render(results, figures))
    return [json_path, md_path, *figures]


def print_summary(results: dict, console) -> None:
    """One compact table per prompt set: the figures people look for first."""
    from edgespec.bench.metrics import BASELINES
    from edgespec.bench.modes import COLLAB_MODES, COLLAB_REFERENCE
    from edgespec.bench.report import _f, _spread
    from rich.table import Table

    short = {"genai-target": "GenAI", "genai-spec": "GenAI spec", "genai-spec2": "GenAI spec d2",
             "edgespec-target": "edgespec", "edgespec-spec": "edgespec spec", "edgespec-spec2": "edgespec spec d2",
             "naive-ensemble": "naive ens", "cos-ensemble": "CoS ens", "cos-ensemble-alt": "CoS ens alt",
             "naive-contrastive": "naive con", "cos-contrastive": "CoS con", "cos-contrastive-alt": "CoS con alt",
             "llamacpp-target": "llama.cpp", "llamacpp-default": "llama.cpp no FA",
             "llamacpp-lookup": "llama.cpp lookup",
             "edgespec-llamacpp-target": "edgespec llama.cpp", "edgespec-llamacpp": "edgespec spec llama.cpp",
             "edgespec-auto": "edgespec auto",
             "edgespec-tree-auto": "tree auto", "edgespec-tree16": "tree 16", "edgespec-chain16": "chain 16",
             "edgespec-tree8": "tree 8", "edgespec-chain8": "chain 8"}
    for set_name, table in results["summary"].items():
        t = Table(title=f"{results['pair']['name']} / {set_name}")
        bases = [b for b in BASELINES if b in table]
        collab = any(m in COLLAB_MODES for m in table)
        for col in ["mode", "tok/s", "accept", "tok/call"] + [f"x {short[b]}" for b in bases] + (
                ["x naive"] if collab else []):
            t.add_column(col, no_wrap=True)
        for mode, row in table.items():
            naive = COLLAB_REFERENCE.get(mode)
            extra = [_spread(row["speedup"].get(naive)) if naive else "1" if mode in COLLAB_MODES else "-"]
            t.add_row(short[mode], _spread(row["tokens_per_s"], 1), _f(row["acceptance_rate"]),
                      _f(row["tokens_per_target_call"]),
                      *["1" if b == mode else _spread(row["speedup"].get(b)) for b in bases],
                      *(extra if collab else []))
        console.print(t)
