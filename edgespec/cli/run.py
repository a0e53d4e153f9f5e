"""`edgespec generate` and `edgespec chat`."""

from __future__ import annotations

import dataclasses
import enum
import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from edgespec.export.presets import ensure_default_pair
from edgespec.runtime.errors import EdgespecError
from edgespec.runtime.npu import NPUConfig
from edgespec.runtime.pipeline import CollabConfig, GenerationConfig, SpeculativePipeline

err = Console(stderr=True)


class Engine(str, enum.Enum):
    auto = "auto"
    openvino = "openvino"
    llamacpp = "llamacpp"


class DraftEngine(str, enum.Enum):
    openvino = "openvino"
    llamacpp = "llamacpp"


class CollabMethod(str, enum.Enum):
    ensemble = "ensemble"
    contrastive = "contrastive"


class CollabBonusKind(str, enum.Enum):
    extra_call = "extra-call"
    alternate = "alternate"


def _value(choice: enum.Enum | str | None) -> str | None:
    return choice.value if isinstance(choice, enum.Enum) else choice


ModelOption = typer.Option(None, "--model", "-m", help="Pair folder from `edgespec export` (default: the embedded "
                                                       "SmolLM2 pair, prepared on first use).")
TargetDevice = typer.Option("CPU", help="Device for the target: CPU, GPU, NPU.")
DraftDevice = typer.Option("CPU", help="Device for the draft: CPU, GPU, NPU.")
NoDraft = typer.Option(False, "--no-draft", help="Target only (the baseline), through the same loop.")
MaxNew = typer.Option(128, "--max-new-tokens", "-n", min=1, help="Most tokens to generate (fewer at an end of turn).")
DraftLength = typer.Option(GenerationConfig.draft_length, min=1, max=32, help="Drafted tokens per step (the start value when adaptive).")
TreeOption = typer.Option("off", "--tree", help="Tree speculation (SpecExec): 'off' (chain drafts), 'auto' (a tree "
                          "where the measured verify costs and acceptance say it pays, else the chain), or N (a tree "
                          "of N drafted nodes every step). Needs the paged-attention form (CPU default); NPU drafts "
                          "chains only.")
FixedLength = typer.Option(False, "--fixed-draft-length", help="Keep the draft length; do not adapt it.")
Sample = typer.Option(False, "--sample", help="Sample (lossless speculative sampling) instead of greedy.")
Temperature = typer.Option(1.0, min=0.0, help="Sampling temperature (with --sample).")
TopK = typer.Option(0, min=0, help="Sample from the k likeliest tokens only (0: all).")
TopP = typer.Option(1.0, min=0.0, max=1.0, help="Sample from the smallest set of tokens with this much probability.")
Seed = typer.Option(None, help="Random seed for sampling (default: a fresh one each run).")
Stop = typer.Option(None, "--stop", help="Stop string (repeatable).")
NpuPrompt = typer.Option(1024, "--npu-max-prompt", min=16, help="NPU: longest prompt its static shapes hold.")
NpuResponse = typer.Option(128, "--npu-min-response", min=16, help="NPU: KV slots kept beyond the prompt.")
FastKernels = typer.Option(False, "--fast-kernels", help="The device's default kernels and KV cache for the target "
                           "too (faster on bf16/VNNI CPUs, and through an f16 KV cache on AVX2-only ones; greedy "
                           "speculative output may then differ from target-only).")
EngineOption = typer.Option("auto", "--engine", help="The target's engine: openvino, llamacpp (the pair's GGUF on "
                            "llama.cpp; needs the edgespec[llamacpp] extra), or auto: the faster here, from a short "
                            "probe remembered in the cache (openvino when llama.cpp cannot run the target).")
DraftEngineOption = typer.Option("openvino", "--draft-engine", help="The draft's engine: openvino, or llamacpp "
                                 "(needs a GGUF of the draft recorded in the pair).")

Collab = typer.Option(None, "--collab", help="Collaborative decoding of target and draft: 'ensemble' "
                      "(r = (1 - weight) p + weight q) or 'contrastive' (r = softmax(z_target - alpha z_draft)); "
                      "made fast by speculation (CoS) unless --collab-naive. Both models compile exact.")
Weight = typer.Option(None, "--weight", min=0.0, max=1.0, help="--collab ensemble: the draft's weight (default 0.5).")
Alpha = typer.Option(None, "--alpha", min=0.0, help="--collab contrastive: the draft's logit factor (default 0.1).")
CollabNaive = typer.Option(False, "--collab-naive", help="--collab: run both models on every token (the baseline "
                           "CoS is measured against) instead of drafting and verifying.")
CollabBonus = typer.Option("extra-call", "--collab-bonus", help="--collab, CoS: the draft's distribution after the "
                           "last drafted token from one more draft call ('extra-call') or from CoS's alternate "
                           "proposal ('alternate': the target's own token there is verified by the draft's next "
                           "call; fewer draft calls, no faster on a CPU).")


def collab_config(collab: str | None, weight: float | None, alpha: float | None, naive: bool = False,
                  bonus: str = "extra-call") -> CollabConfig | None:
    """The CollabConfig the collaborative options ask for (None without --collab); misplaced options are errors."""
    if collab is None:
        extra = [name for name, given in (("--weight", weight is not None), ("--alpha", alpha is not None),
                                          ("--collab-naive", naive), ("--collab-bonus", bonus != "extra-call")) if given]
        if extra:
            raise EdgespecError(f"{extra[0]} needs --collab ensemble or --collab contrastive")
        return None
    if collab == "ensemble" and alpha is not None:
        raise EdgespecError("--alpha applies to --collab contrastive; --collab ensemble takes --weight")
    if collab == "contrastive" and weight is not None:
        raise EdgespecError("--weight applies to --collab ensemble; --collab contrastive takes --alpha")
    defaults = CollabConfig()
    return CollabConfig(collab, weight=defaults.weight if weight is None else weight,
                        alpha=defaults.alpha if alpha is None else alpha, naive=naive, bonus=bonus)


def resolve_model(model: Path | None) -> Path:
    return model if model is not None else ensure_default_pair()


def load_pipeline(model: Path | None, target_device: str, draft_device: str, no_draft: bool,
                  npu_max_prompt: int = 1024, npu_min_response: int = 128,
                  fast_kernels: bool = False, collab: CollabConfig | None = None, engine: str = "auto",
                  draft_engine: str = "openvino") -> SpeculativePipeline:
    """collab: load for collaborative decoding: the draft's logits enter the output, so both models compile exact
    (unless --fast-kernels)."""
    if collab is not None and no_draft:
        raise EdgespecError("--collab needs the draft: drop --no-draft")
    path = resolve_model(model)
    npu = NPUConfig(max_prompt_len=npu_max_prompt, min_response_len=npu_min_response)
    exact = False if fast_kernels else (True if collab is not None else None)
    with err.status("loading models..."):
        pipe = SpeculativePipeline.from_manifest(path, target_device=target_device, draft_device=draft_device,
                                                 use_draft=not no_draft, npu=npu, exact=exact,
                                                 engine=engine, draft_engine=draft_engine)
    if collab is not None and pipe.draft is None:
        raise EdgespecError(f"--collab needs a draft model: {pipe.pair.root} has none")
    mode = "target only" if pipe.draft is None else "speculative"
    if pipe.draft is None and not no_draft:
        mode += " (this pair has no draft)"
    if collab is not None:
        mode = f"collaborative {collab.describe()}"
    chosen = ", chosen by --engine auto" if pipe.engine_probe else ""
    engines = " or ".join(pipe.targets) + " per prompt" if len(pipe.targets) > 1 else pipe.engine
    err.print(f"[dim]{pipe.pair.name}: {mode}, target on {target_device} ({engines}{chosen})"
              + (f", draft on {draft_device} ({pipe.draft_engine})" if pipe.draft else "") + "[/dim]")
    return pipe


def make_config(max_new_tokens: int, draft_length: int, fixed_draft_length: bool, sample: bool, temperature: float,
                top_k: int, top_p: float, seed: int | None, stop: list[str] | None,
                collab: CollabConfig | None = None, tree: str = "off") -> GenerationConfig:
    return GenerationConfig(max_new_tokens=max_new_tokens, do_sample=sample, temperature=temperature, top_k=top_k,
                            top_p=top_p, seed=seed, draft_length=draft_length,
                            adaptive_draft=not fixed_draft_length, stop_strings=tuple(stop or ()), collab=collab,
                            tree=tree)


CHAT_HELP = "/reset clears the history, /stats shows the last answer's metrics, /help this, /exit quits; " \
            "Ctrl-C stops an answer"


def stats_table(stats) -> Table:
    table = Table(show_header=False, box=None, pad_edge=False)
    per_token = stats.token_acceptance()
    rows = [
        ("new tokens", f"{stats.new_tokens} ({stats.stop_reason})"),
        ("tokens/s", f"{stats.new_tokens / stats.wall_s:.1f}" if stats.wall_s else "-"),
        ("time to first token", f"{stats.ttft_s * 1000:.0f} ms"),
        ("time per output token", f"{stats.tpot_s * 1000:.1f} ms"),
        ("target calls", str(stats.target_calls)),
        ("draft calls", str(stats.draft_calls)),
        ("acceptance rate", f"{stats.acceptance_rate:.2f}" if stats.drafted_tokens else "-"),
        ("per-token acceptance", "-" if per_token is None else f"{per_token:.2f}"),
        ("tokens per target call", f"{stats.tokens_per_target_call:.2f}"),
    ]
    if stats.lookup_tokens:  # prompt lookup: copied tokens proposed without a draft call
        rows.append(("prompt-lookup tokens kept", f"{stats.lookup_accepted}/{stats.lookup_tokens}"))
    if stats.engine:
        rows.append(("target engine", stats.engine))
    if stats.tree_steps:  # tree speculation: steps that verified a drafted tree
        rows.append(("tree steps", str(stats.tree_steps)))
    if stats.tree_choice:
        rows.append(("tree auto chose", stats.tree_choice))
    if stats.draft_stopped_at:
        rows.append(("draft sat out from", f"token {stats.draft_stopped_at} (past its context)"))
    if stats.alternate_tokens:  # CoS: the target's own tokens, verified by the draft
        rows.append(("target's proposals kept", f"{stats.alternate_accepted}/{stats.alternate_tokens}"))
    for name, value in rows:
        table.add_row(f"[dim]{name}[/dim]", value)
    return table


def _stream_to_stdout(piece: str) -> None:
    sys.stdout.write(piece)
    sys.stdout.flush()


def generate(
    prompt: str = typer.Argument(..., help="The prompt (a user message for chat models unless --raw)."),
    model: Path = ModelOption, target_device: str = TargetDevice, draft_device: str = DraftDevice,
    no_draft: bool = NoDraft, max_new_tokens: int = MaxNew, draft_length: int = DraftLength,
    fixed_draft_length: bool = FixedLength, sample: bool = Sample, temperature: float = Temperature,
    top_k: int = TopK, top_p: float = TopP, seed: int = Seed, stop: list[str] = Stop,
    raw: bool = typer.Option(False, "--raw", help="Continue the text as is, without the chat template."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of streamed text."),
    npu_max_prompt: int = NpuPrompt, npu_min_response: int = NpuResponse, fast_kernels: bool = FastKernels,
    collab: CollabMethod = Collab, weight: float = Weight, alpha: float = Alpha, collab_naive: bool = CollabNaive,
    collab_bonus: CollabBonusKind = CollabBonus, engine: Engine = EngineOption, draft_engine: DraftEngine = DraftEngineOption,
    tree: str = TreeOption,
) -> None:
    """Generate one answer, streamed, then its metrics."""
    collab_cfg = collab_config(_value(collab), weight, alpha, collab_naive, _value(collab_bonus))
    pipe = load_pipeline(model, target_device, draft_device, no_draft, npu_max_prompt, npu_min_response,
                         fast_kernels, collab_cfg, _value(engine), _value(draft_engine))
    config = make_config(max_new_tokens, draft_length, fixed_draft_length, sample, temperature, top_k, top_p, seed,
                         stop, collab_cfg, tree)
    result = pipe.generate(prompt, config, streamer=None if as_json else _stream_to_stdout,
                           chat=False if raw else None)
    if as_json:
        mode = ("collaborative" if collab_cfg else "speculative") if pipe.draft else "target"
        print(json.dumps({"model": str(pipe.pair.root), "mode": mode,
                          "collab": dataclasses.asdict(collab_cfg) if collab_cfg else None,
                          "target_device": target_device, "draft_device": draft_device if pipe.draft else None,
                          "engine": pipe.engine, "draft_engine": pipe.draft_engine if pipe.draft else None,
                          "text": result.text, "token_ids": result.token_ids, "stats": result.stats.as_dict()}))
        return
    print()
    err.print(stats_table(result.stats))


def chat(
    model: Path = ModelOption, target_device: str = TargetDevice, draft_device: str = DraftDevice,
    no_draft: bool = NoDraft,
    max_new_tokens: int = typer.Option(2048, "--max-new-tokens", "-n", min=1,
                                       help="Most tokens per answer; an answer normally ends at the end of its turn."),
    draft_length: int = DraftLength, fixed_draft_length: bool = FixedLength, sample: bool = Sample,
    temperature: float = Temperature, top_k: int = TopK, top_p: float = TopP, seed: int = Seed,
    system: str = typer.Option(None, help="System message."),
    npu_max_prompt: int = NpuPrompt, npu_min_response: int = NpuResponse, fast_kernels: bool = FastKernels,
    collab: CollabMethod = Collab, weight: float = Weight, alpha: float = Alpha, collab_naive: bool = CollabNaive,
    collab_bonus: CollabBonusKind = CollabBonus, engine: Engine = EngineOption, draft_engine: DraftEngine = DraftEngineOption,
    tree: str = TreeOption,
) -> None:
    """Interactive chat: /reset clears the history, /stats shows the last answer's metrics, /help lists the
    commands, /exit quits. Ctrl-C stops the current answer and keeps the session."""
    collab_cfg = collab_config(_value(collab), weight, alpha, collab_naive, _value(collab_bonus))
    pipe = load_pipeline(model, target_device, draft_device, no_draft, npu_max_prompt, npu_min_response,
                         fast_kernels, collab_cfg, _value(engine), _value(draft_engine))
    config = make_config(max_new_tokens, draft_length, fixed_draft_length, sample, temperature, top_k, top_p, seed,
                         None, collab_cfg, tree)
    history: list[dict] = [{"role": "system", "content": system}] if system else []
    last_stats = None
    err.print(f"[dim]{CHAT_HELP}[/dim]")
    while True:
        try:
            user = input("> ")
        except (EOFError, KeyboardInterrupt):
            print()
            return
        command = user.strip()
        if not command:
            continue
        if command in ("/exit", "/quit"):
            return
        if command == "/reset":
            history = history[:1] if system else []
            err.print("[dim]history cleared[/dim]")
            continue
        if command == "/stats":
            err.print(stats_table(last_stats) if last_stats else "[dim]no answer yet[/dim]")
            continue
        if command.startswith("/") and " " not in command:  # never send a mistyped command to the model
            err.print(f"[dim]{CHAT_HELP}[/dim]")
            continue
        history.append({"role": "user", "content": user})
        shown: list[str] = []

        def show(piece: str) -> None:
            shown.append(piece)
            _stream_to_stdout(piece)

        try:
            result = pipe.generate(history, config, streamer=show)
            answer, last_stats = result.text, result.stats
        except KeyboardInterrupt:
            answer, last_stats = "".join(shown), pipe.last_stats
            err.print("\n[dim](stopped)[/dim]", end="")
        except EdgespecError as exc:
            history.pop()
            err.print(f"[red]error: {exc}[/red]")
            continue
        print()
        history.append({"role": "assistant", "content": answer})
