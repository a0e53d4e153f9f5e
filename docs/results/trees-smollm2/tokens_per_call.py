"""Tokens per target call, tree vs chain at equal verified tokens per call (8 and 16), and greedy equality with
target-only output, on the default pair (counts, not timings: no lock needed).

    python docs/results/trees-smollm2/tokens_per_call.py > docs/results/trees-smollm2/tokens_per_call.txt
"""

import json
import statistics
from pathlib import Path

import edgespec
from edgespec.bench.prompts import load_prompt_set
from edgespec.runtime.pipeline import GenerationConfig, SpeculativePipeline

WIDTHS = (8, 16)  # tokens per verify call: the last token plus 7 or 15 drafted


def configs(width: int) -> dict[str, GenerationConfig]:
    drafted = width - 1
    return {f"tree{width}": GenerationConfig(max_new_tokens=128, tree=drafted),
            f"chain{width}": GenerationConfig(max_new_tokens=128, draft_length=drafted, max_draft_length=drafted,
                                              adaptive_draft=False, prompt_lookup=False)}


def main() -> None:
    pair = edgespec.default_pair()
    spec = SpeculativePipeline.from_manifest(pair)
    base = SpeculativePipeline.from_manifest(pair, use_draft=False)
    out = {}
    for set_name in ("mtbench", "humaneval"):
        rows = {}
        for p in load_prompt_set(set_name, 5):
            want = base.generate(p.text, GenerationConfig(max_new_tokens=128), chat=p.chat).token_ids
            for width in WIDTHS:
                for name, config in configs(width).items():
                    s = spec.generate(p.text, config, chat=p.chat)
                    rows.setdefault(name, []).append({"prompt": p.id, "equal": s.token_ids == want,
                                                      "tokens_per_call": s.stats.tokens_per_target_call})
        out[set_name] = rows
        for width in WIDTHS:
            tree, chain = rows[f"tree{width}"], rows[f"chain{width}"]
            ratios = [t["tokens_per_call"] / c["tokens_per_call"] for t, c in zip(tree, chain)]
            medians = [statistics.median(r["tokens_per_call"] for r in rows) for rows in (tree, chain)]
            print(f"{set_name} width {width}: tokens/call tree {medians[0]:.2f} chain {medians[1]:.2f};"
                  f" tree/chain per prompt median {statistics.median(ratios):.2f} (min {min(ratios):.2f},"
                  f" max {max(ratios):.2f}); equal to target-only: tree {sum(r['equal'] for r in tree)}/{len(tree)},"
                  f" chain {sum(r['equal'] for r in chain)}/{len(chain)}", flush=True)
    Path(__file__).with_suffix(".json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
