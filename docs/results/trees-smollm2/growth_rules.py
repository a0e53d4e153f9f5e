"""Is best-first growth by raw draft log-probability the limit of a 15-node tree with this draft? Tokens per target
call of trees grown by other rules, replayed on cached greedy answers (counts, not timings: no lock needed).

Rules: the runtime's (cumulative draft log-probability, top 4 children, about eight rounds), one node per round
(depth up to 15), 8 children per node, a sharpened draft (temperature 0.5 and 0.7), and a calibrated one: each
child valued by the measured chance that a child of its rank and draft probability is the target's pick (bins
fitted on answers 8-23 of each set, rules compared on answers 0-7, then the uncalibrated rules on all 24).

    edgespec draft evalset --target ~/.cache/edgespec/pairs/smollm2-int8-v1/target --out eval48.jsonl \\
        --humaneval 0 --humaneval-raw 24 --mtbench 24
    python docs/results/trees-smollm2/growth_rules.py eval48.jsonl > docs/results/trees-smollm2/growth_rules.txt
"""

import heapq
import json
import math
import sys
from pathlib import Path

import numpy as np
import openvino as ov

import edgespec
from edgespec.draft import data
from edgespec.draft.simulate_tree import answer_path
from edgespec.runtime.manifest import read_model_entry
from edgespec.runtime.pipeline import load_lm
from edgespec.runtime.tree import ROOT, Tree, feed_tree, log_softmax

BUDGET = 15  # nodes: 16 tokens per verify call with the root
EDGES = np.array([0, .05, .1, .2, .3, .4, .5, .6, .7, .8, .9, .95, 1.0001])


def grow(draft, sequence, width, branching, value):
    """runtime.tree.grow_tree with a pluggable child value (log space); also returns each node's own log-prob."""
    tree, own, candidates, fed = Tree(), [], [], 0

    def push(parent, logits, base):
        logp = log_softmax(logits.astype(np.float64))
        top = np.argpartition(-logp, branching)[:branching]
        top = top[np.argsort(-logp[top])]
        for rank, (index, v) in enumerate(zip(top, value(logp, top))):
            token = int(draft.vocab_map[index]) if draft.vocab_map is not None else int(index)
            heapq.heappush(candidates, (-(base + v), parent, token, rank, float(logp[index])))

    push(ROOT, draft.forward(draft.pending(sequence), last=1)[0], 0.0)
    while len(tree) < BUDGET and candidates:
        added = []
        while candidates and len(added) < min(width, BUDGET - len(tree)):
            neg, parent, token, rank, lp = heapq.heappop(candidates)
            added.append(tree.add(token, parent, -neg, rank))
            own.append(lp)
        if len(tree) >= BUDGET:
            break
        draft.rollback(len(sequence))
        logits = feed_tree(draft, [], tree, last=len(added))
        fed = len(tree)
        for row, node in zip(logits, added):
            push(node, row, tree.scores[node])
    return tree, fed, own


def replay(draft, prompt, answer, width, branching, value, seen=None):
    """Tokens and target calls decoding one cached answer; `seen` collects (own log-prob, rank, accepted) for every
    child of every node the target's walk stood on."""
    pos = calls = tokens = 0
    draft.rollback(0)
    draft.forward(prompt[:-1], last=1)
    while pos < len(answer):
        sequence = prompt + answer[:pos]
        if len(answer) - pos == 1:
            return tokens + 1, calls + 1
        tree, fed, own = grow(draft, sequence, width, branching, value)
        path = answer_path(tree, answer[pos:])[:len(answer) - pos - 1]
        if seen is not None:
            for i, node in enumerate([ROOT, *path]):
                for child in tree.children(node).values():
                    seen.append((own[child], tree.ranks[child], i < len(path) and child == path[i]))
        start = len(sequence)
        draft.keep_slots(start, [start + i for i in path if i < fed])
        calls, tokens, pos = calls + 1, tokens + len(path) + 1, pos + len(path) + 1
    return tokens, calls


def tokens_per_call(draft, samples, width, branching, value, seen=None):
    totals = [replay(draft, p, a, width, branching, value, seen) for p, a in samples]
    return sum(t for t, _ in totals) / sum(c for _, c in totals)


def raw(logp, top):
    return logp[top]


def sharpened(temperature):
    def value(logp, top):
        z = logp / temperature
        return (z - np.logaddexp.reduce(z))[top]
    return value


def calibrated(seen):
    """Per rank group (0, 1+) and draft-probability bin: the share of such children that were the target's pick."""
    table = {}
    for group in (0, 1):
        rows = [(math.exp(lp), ok) for lp, rank, ok in seen if (rank > 0) == bool(group)]
        q = np.array([r[0] for r in rows])
        ok = np.array([r[1] for r in rows], float)
        bins = np.digitize(q, EDGES) - 1
        table[group] = [((ok[bins == b].sum() + 1) / ((bins == b).sum() + 2), int((bins == b).sum()),
                         float(q[bins == b].mean()) if (bins == b).any() else float("nan"))
                        for b in range(len(EDGES) - 1)]

    def value(logp, top):
        return np.array([math.log(table[min(rank, 1)][min(np.digitize(math.exp(logp[i]), EDGES) - 1,
                                                         len(EDGES) - 2)][0]) for rank, i in enumerate(top)])
    return value, table


def main() -> None:
    pair = Path(edgespec.default_pair())
    draft = load_lm(ov.Core(), read_model_entry(pair / "draft", need_tokenizer=False), "CPU", False, "mask",
                    draft=True, form="paged")
    tok = data.TargetTokenizer(pair / "target")
    rows = [json.loads(line) for line in open(sys.argv[1])]
    kinds = sorted({r["kind"] for r in rows})
    samples = {k: data.tokenized_pairs([r for r in rows if r["kind"] == k], tok, 128) for k in kinds}
    out = {}

    seen = []
    for k in kinds:
        tokens_per_call(draft, samples[k][8:24], 1, 4, raw, seen)
    value, table = calibrated(seen)
    print("calibration (fitted on answers 8-23): bin lower edge: target-pick share / mean draft prob (children)")
    for group, name in ((0, "rank 0"), (1, "rank 1-3")):
        print(f"  {name}: " + "  ".join(f"{e:.2f}: {s:.2f}/{q:.2f} ({n})" for e, (s, n, q) in zip(EDGES, table[group])
                                         if n))

    rules = {"chain (15 drafted)": (1, 1, raw), "runtime rule (top 4, 2 per round)": (2, 4, raw),
             "top 4, 1 per round": (1, 4, raw), "sharpened T=0.5, 2 per round": (2, 4, sharpened(0.5)),
             "sharpened T=0.5, 1 per round": (1, 4, sharpened(0.5)), "sharpened T=0.7, 2 per round": (2, 4, sharpened(0.7)),
             "calibrated, 2 per round": (2, 4, value), "calibrated, 1 per round": (1, 4, value)}
    for title, subset, names in (("answers 0-7 of each set", slice(0, 8), list(rules)),
                                 ("all 24 answers of each set", slice(0, 24),
                                  ["chain (15 drafted)", "runtime rule (top 4, 2 per round)", "top 8, 2 per round",
                                   "top 8, 1 per round"])):
        rules.update({"top 8, 2 per round": (2, 8, raw), "top 8, 1 per round": (1, 8, raw)})
        print(f"\ntokens per target call, 15 nodes, {title} (x the 15-token chain)")
        result = {}
        for name in names:
            width, branching, val = rules[name]
            result[name] = {k: tokens_per_call(draft, samples[k][subset], width, branching, val) for k in kinds}
            chain = result["chain (15 drafted)"]
            print(f"  {name:36s} " + "  ".join(f"{k} {result[name][k]:.3f} ({result[name][k] / chain[k]:.3f}x)"
                                               for k in kinds), flush=True)
        out[title] = result
    Path(__file__).with_suffix(".json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
