"""Predicted speed of the best tree and the best chain per prompt set, on the measured and on a flat cost curve.

Per-rank acceptance (how often the target's pick is the draft's rank-r child) is measured by decoding each set's
prompts with 16-node trees; chain acceptance with a fixed k = 4 chain. Rates then come from the tuner's own model
(edgespec.runtime.tree_shape): tokens per call over (target call + draft) seconds. "flat" prices every target
call like a one-token call (an iGPU/NPU or a memory-bound large target), "measured" uses the bench's cost curve.

    python docs/results/trees-smollm2/flat_curve.py docs/results/trees-smollm2/results.json
"""

import json
import sys

import edgespec
from edgespec.bench.prompts import load_prompt_set
from edgespec.runtime.costs import acceptance_from_block
from edgespec.runtime.draft_length import DraftLength, expected_tokens
from edgespec.runtime.pipeline import GenerationConfig, SpeculativePipeline
from edgespec.runtime.tree_shape import BRANCHING, TreeShape, expected_tree_tokens, tree_width

BUDGETS = (4, 8, 16, 32, 64)


class Counting(TreeShape):
    """The tuner's record, with undecayed totals beside it."""

    def __init__(self, mode):
        super().__init__(mode)
        self.total_hits, self.total_visits = [0] * BRANCHING, [0] * BRANCHING
        self.rounds = self.round_s = 0.0

    def record(self, ranks, visited_children, draft_calls, draft_s, *call):
        super().record(ranks, visited_children, draft_calls, draft_s, *call)
        for depth, children in enumerate(visited_children):
            for r in range(min(children, BRANCHING)):
                self.total_visits[r] += 1
            if depth < len(ranks) and ranks[depth] < BRANCHING:
                self.total_hits[ranks[depth]] += 1
        self.rounds += draft_calls
        self.round_s += draft_s


def curve(results: dict) -> dict[int, float]:
    return {int(n): s for n, s in results["cost_curve"]["target"]["call_s"].items()}


def price(call_s: dict[int, float], n: int) -> float:
    policy = DraftLength(3, 12, False)
    policy.steady_cost = call_s
    return policy.target_seconds(n)


def main(bench_json: str) -> None:
    results = json.loads(open(bench_json).read())
    measured = curve(results)
    flat = {n: measured[1] for n in measured}
    pipe = SpeculativePipeline.from_manifest(edgespec.default_pair())
    out = {}
    for set_name in ("mtbench", "humaneval"):
        prompts = load_prompt_set(set_name, 5)
        shape = Counting(15)
        pipe.tree_shape = shape
        for p in prompts:
            pipe.generate(p.text, GenerationConfig(max_new_tokens=128, tree=15), chat=p.chat)
        new = calls = 0
        draft_s = drafted = 0.0
        for p in prompts:
            s = pipe.generate(p.text, GenerationConfig(max_new_tokens=128, draft_length=4, adaptive_draft=False,
                                                       prompt_lookup=False), chat=p.chat).stats
            new, calls = new + s.new_tokens - 1, calls + s.target_calls - 1
            draft_s, drafted = draft_s + s.draft_s, drafted + s.drafted_tokens
        chain_a = acceptance_from_block(new / calls, 4)  # per-token acceptance giving that many tokens per call
        ranks = [h / v if v else 0.0 for h, v in zip(shape.total_hits, shape.total_visits)]
        per_token, per_round = draft_s / drafted, shape.round_s / shape.rounds
        row = {"rank_acceptance": ranks, "chain_acceptance": chain_a, "draft_s_per_token": per_token,
               "draft_s_per_round": per_round}
        for label, call_s in (("measured", measured), ("flat", flat)):
            chain = {k: expected_tokens(chain_a, k) / (price(call_s, k + 1) + k * per_token) for k in range(0, 33)}
            trees = {b: expected_tree_tokens(ranks, b) / (price(call_s, b + 1) + (1 + -(-b // tree_width(b)) - 1)
                                                           * per_round) for b in BUDGETS}
            k, b = max(chain, key=chain.get), max(trees, key=trees.get)
            row[label] = {"best_chain_k": k, "chain_tokens_per_s": chain[k], "best_tree_nodes": b,
                          "tree_tokens_per_s": trees[b], "tree_over_chain": trees[b] / chain[k]}
        out[set_name] = row
        print(set_name, json.dumps(row, indent=1))
    with open(bench_json.replace("results.json", "flat_curve.json"), "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1])
