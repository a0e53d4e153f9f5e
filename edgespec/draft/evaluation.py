"""Evaluating a draft against its target: the evaluation prompts, greedy matches and acceptance on cached
target answers (offline), simulated speed per draft length, and acceptance measured by the runtime itself.

Nothing here imports torch unless a draft is given as a training checkpoint (.pt).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgespec.runtime.config import tokens_per_target_call
from edgespec.runtime.errors import EdgespecError
from edgespec.draft import data, measure, simulate

RUNTIME_KINDS = ("humaneval", "humaneval-raw", "mtbench")

MatchFunction = Callable[[list[tuple[list[int], list[int]]]], list[np.ndarray]]


def evaluation_prompts(humaneval: int, humaneval_raw: int, mtbench: int, mt_bench: Path) -> list[dict]:
    """Prompt rows ({id, kind, user}): the first N HumanEval prompts chat-wrapped, the first N continued as
    plain code, and the first N MT-bench first turns."""
    rows = [{"id": f"humaneval-{i}", "kind": "humaneval", "user": data.code_task(p)}
            for i, p in enumerate(data.humaneval_prompts()[:humaneval])]
    rows += [{"id": f"humaneval-raw-{i}", "kind": "humaneval-raw", "user": p}
             for i, p in enumerate(data.humaneval_prompts()[:humaneval_raw])]
    questions = [json.loads(line)["turns"][0] for line in mt_bench.read_text().splitlines() if line.strip()]
    rows += [{"id": f"mtbench-{i}", "kind": "mtbench", "user": q} for i, q in enumerate(questions[:mtbench])]
    return rows


def match_function(draft: Path) -> tuple[MatchFunction, np.ndarray | None]:
    """The per-answer match function of a draft IR folder or a torch checkpoint (.pt), and its vocab_map."""
    if draft.suffix == ".pt":
        import torch

        from edgespec.draft.model import load_checkpoint

        torch.set_num_threads(1)
        model, _, vocab_map, _ = load_checkpoint(draft)
        return lambda pairs: measure.draft_matches_torch(model, pairs, vocab_map), vocab_map
    from edgespec.runtime.manifest import read_model_entry

    entry = read_model_entry(draft, need_tokenizer=False)
    vocab_map = entry.vocab_map()
    return lambda pairs: measure.draft_matches_ov(draft, pairs, vocab_map, entry.context_length), vocab_map


def matches_by_kind(draft: Path, eval_rows: list[dict], target: Path, max_new_tokens: int
                    ) -> dict[str, tuple[list[np.ndarray], float | None]]:
    """Per evaluation kind: the draft's per-answer match vectors on cached target answers, and the share of
    answer tokens its reduced head has no row for (None for a full head)."""
    matches, vocab_map = match_function(draft)
    tok = data.TargetTokenizer(target)
    results = {}
    for kind in sorted({r["kind"] for r in eval_rows}):
        pairs = data.tokenized_pairs([r for r in eval_rows if r["kind"] == kind], tok, max_new_tokens)
        results[kind] = (matches(pairs), measure.outside_head(pairs, vocab_map))
    return results


def acceptance_by_kind(draft: Path, eval_rows: list[dict], target: Path, k: int, max_new_tokens: int) -> dict:
    """Per evaluation kind: greedy acceptance, tokens per target call and token match at draft length k."""
    results = {}
    for kind, (matches, outside) in matches_by_kind(draft, eval_rows, target, max_new_tokens).items():
        results[kind] = measure.acceptance_summary(matches, k)
        if outside is not None:
            results[kind]["outside_head"] = outside
    return results


def simulation_by_kind(draft: Path, eval_rows: list[dict], target: Path, max_new_tokens: int,
                       call_s: dict[int, float], draft_s: list[float], lengths: list[int], initial: int,
                       switch_s: float = 0.0, catch_up_s: list[float] | None = None
                       ) -> dict[str, tuple[int, dict]]:
    """Per evaluation kind: the number of answers and simulate.simulate's rows (speed of each policy)."""
    results = {}
    for kind, (matches, _) in matches_by_kind(draft, eval_rows, target, max_new_tokens).items():
        results[kind] = (len(matches), simulate.simulate(matches, call_s, draft_s, lengths, initial,
                                                         switch_s=switch_s, catch_up_s=catch_up_s))
    return results


def tree_simulation_by_kind(draft: Path, eval_rows: list[dict], target: Path, max_new_tokens: int,
                            call_s: dict[int, float], draft_s: list[float], lengths: list[int], initial: int,
                            budgets: list[int], switch_s: float = 0.0, catch_up_s: list[float] | None = None
                            ) -> dict[str, dict]:
    """Per evaluation kind: chains (simulate.simulate, fixed lengths including each tree budget, so trees and
    chains compare at equal verified width) and trees (simulate_tree), on the measured and on a flat target cost
    curve, with the best tree's speed over the best fixed chain's on each."""
    if draft.suffix == ".pt":
        raise EdgespecError("tree simulation runs the exported draft (an IR folder), not a training checkpoint")
    import openvino as ov

    from edgespec.runtime.costs import DEFAULT_NS, time_calls
    from edgespec.runtime.manifest import read_model_entry
    from edgespec.runtime.pipeline import load_lm
    from edgespec.draft.simulate_tree import simulate_trees

    lm = load_lm(ov.Core(), read_model_entry(draft, need_tokenizer=False), "CPU", False, "mask", draft=True,
                 form="paged")
    tok = data.TargetTokenizer(target)
    match, _ = match_function(draft)
    curves = {"measured": call_s, "flat": {n: call_s[1] for n in call_s}}
    chain_lengths = sorted(set(lengths) | set(budgets))
    results, draft_curve = {}, None
    for kind in sorted({r["kind"] for r in eval_rows}):
        samples = data.tokenized_pairs([r for r in eval_rows if r["kind"] == kind], tok, max_new_tokens)
        matches = match(samples)  # the chains' per-position argmax matches on the same answers
        if draft_curve is None:  # the draft's call cost by tokens fed (a tree round feeds the tree so far)
            draft_curve = time_calls(lm, np.asarray(samples[0][0][:200], np.int64),
                                     [n for n in DEFAULT_NS if n <= max(budgets)], repeats=5)["call_s"]
        # The curve's shape by tokens fed is measured here, its level is the bench's: a one-token draft call as the
        # decode loop pays it (this process also holds a second compiled draft, which slows calls timed here).
        scale = draft_s[0] / draft_curve[1]
        trees = simulate_trees(lm, samples, budgets, curves, draft_curve, scale)
        kind_result = {"answers": len(samples), "trees": trees, "chains": {}, "best": {}}
        for name, curve in curves.items():
            chains = simulate.simulate(matches, curve, draft_s, chain_lengths, initial, switch_s=switch_s,
                                       catch_up_s=catch_up_s)
            kind_result["chains"][name] = chains
            fixed = {k: r for k, r in chains.items() if k.startswith("k=")}
            chain_k = max(fixed, key=lambda k: fixed[k]["tokens_per_s"])
            tree_b = max(trees, key=lambda b: trees[b][name]["tokens_per_s"])
            kind_result["best"][name] = {"chain": chain_k, "tree": tree_b,
                                         "tree_over_chain": trees[tree_b][name]["tokens_per_s"]
                                         / fixed[chain_k]["tokens_per_s"]}
        kind_result["draft_curve_s"] = draft_curve
        kind_result["draft_scale"] = scale
        results[kind] = kind_result
    return results


def runtime_acceptance(pair: Path, rows: list[dict], draft_length: int, max_new_tokens: int,
                       on_prompt: Callable[[str], None] | None = None) -> dict:
    """Per prompt kind: a pair's runtime counts summed over the prompts (greedy, fixed draft length), with
    acceptance, tokens per target call and tokens/s. on_prompt(kind) follows each prompt."""
    from edgespec.runtime.pipeline import GenerationConfig, SpeculativePipeline

    pipe = SpeculativePipeline.from_manifest(pair)
    if pipe.draft is None:
        raise EdgespecError(f"{pair} has no draft")
    config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, draft_length=draft_length,
                              adaptive_draft=False)
    results = {}
    for kind in RUNTIME_KINDS:
        stats = []
        for row in (r for r in rows if r["kind"] == kind):
            stats.append(pipe.generate(row["user"], config, chat=kind not in data.RAW_KINDS).stats)
            if on_prompt is not None:
                on_prompt(kind)
        if stats:
            results[kind] = summed_stats(stats)
    return results


def summed_stats(stats: list) -> dict:
    """Runtime GenerationStats summed over prompts, with the rates of the sums."""
    total = {"prompts": len(stats), "new_tokens": sum(s.new_tokens for s in stats),
             "target_calls": sum(s.target_calls for s in stats), "drafted": sum(s.drafted_tokens for s in stats),
             "accepted": sum(s.accepted_tokens for s in stats), "wall_s": sum((s.wall_s for s in stats), 0.0)}
    total["acceptance_rate"] = total["accepted"] / max(1, total["drafted"])
    total["tokens_per_target_call"] = summed_tokens_per_target_call(total["new_tokens"], total["target_calls"],
                                                                    total["prompts"])
    total["tokens_per_s"] = total["new_tokens"] / max(1e-9, total["wall_s"])
    return total


def summed_tokens_per_target_call(new_tokens: int, target_calls: int, prompts: int) -> float:
    """tokens_per_target_call of counts summed over prompts: every prompt's prefill call and its token left
    out, i.e. (new_tokens - prompts) / (target_calls - prompts)."""
    # Folding the prompts' prefills into one lets the one definition leave them all out.
    return tokens_per_target_call(new_tokens - prompts + 1, target_calls - prompts + 1)
