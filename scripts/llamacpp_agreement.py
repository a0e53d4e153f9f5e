"""Greedy agreement on the llama.cpp engine: speculative output vs target-only output, per llama.cpp setting.

    python scripts/llamacpp_agreement.py --prompts humaneval,mtbench,rag,translation,shortqa,codeedit --limit 3 \
        --out docs/results/llamacpp-agreement.json

For each prompt: target-only greedy on llama.cpp (one token per call), then speculative greedy with the pair's
draft on OpenVINO at fixed k = 4 and adaptive, all on the same llama.cpp target. Equal outputs mean the
k-token verify calls picked the same argmax as one-token calls at every position. Settings: the engine's default
(flash attention on) and flash attention off.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


LABELS = (("k4", 4, False), ("adaptive", 3, True))  # fixed k = 4, and the adaptive default


def first_difference(a: list[int], b: list[int]) -> int | None:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pair", default=None)
    parser.add_argument("--prompts", default="humaneval,mtbench,rag,translation,shortqa,codeedit")
    parser.add_argument("--limit", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--settings", default="default,no_flash_attn")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    import openvino_genai as ov_genai

    from edgespec.bench.prompts import load_prompt_set, prepare
    from edgespec.export.presets import ensure_default_pair
    from edgespec.runtime.config import GenerationConfig, GenerationStats
    from edgespec.runtime.draft_length import DraftLength
    from edgespec.runtime.llamacpp import LlamaCppLM
    from edgespec.runtime.manifest import load_pair
    from edgespec.runtime.pipeline import SpeculativePipeline
    from edgespec.runtime.speculative import decode

    pair = load_pair(args.pair or ensure_default_pair())
    tokenizer = ov_genai.Tokenizer(str(pair.target.dir))
    prompts = [pp for spec in args.prompts.split(",") for pp in prepare(load_prompt_set(spec, args.limit), tokenizer)]
    draft = SpeculativePipeline(pair, engine="openvino").draft
    eos = set(pair.target.eos_token_ids)
    settings = {"default": {}, "no_flash_attn": {"flash_attn": False}, "ubatch8": {"ubatch": 8},
                "threads1": {"threads": 1}}
    out = {}
    for name in args.settings.split(","):
        target = LlamaCppLM(pair.target.gguf, pair.target.context_length, **settings[name])

        def run(ids, k, adaptive):
            target.reset()
            if draft is not None:
                draft.reset()
            config = GenerationConfig(max_new_tokens=args.max_new_tokens, draft_length=k or 1,
                                      adaptive_draft=adaptive)
            policy = DraftLength(config.draft_length, config.max_draft_length, adaptive)
            return [t for step in decode(target, draft if k else None, ids, config, eos, GenerationStats(), policy)
                    for t in step]

        rows = []
        for pp in prompts:
            want = run(pp.ids, 0, False)
            row = {"prompt": pp.key, "tokens": len(want)}
            for label, k, adaptive in LABELS:
                got = run(pp.ids, k, adaptive)
                row[label] = first_difference(got, want)
            rows.append(row)
            print(name, row, file=sys.stderr, flush=True)
        out[name] = {"runs": rows, "equal": {lab: sum(r[lab] is None for r in rows) for lab, _, _ in LABELS},
                     "total": len(rows)}
        print(name, out[name]["equal"], "of", len(rows), file=sys.stderr, flush=True)
        target.close()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
