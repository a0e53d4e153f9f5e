"""Our loop's own cost on the llama.cpp engine: wall time of a generation less the time inside llama_decode, per
new token (docs/llamacpp.md, Stop 39). Default pair, MT-bench x 3, greedy, 128 tokens, three rounds after a warm-up.

    python scripts/perf/llamacpp_loop_overhead.py [draft|nodraft]   # draft: the pair's draft loaded (it sits out)
"""

import statistics
import sys
import time

from edgespec.bench.prompts import load_prompt_set, prepare
from edgespec.bench.runner import default_pair
from edgespec.runtime.config import GenerationConfig
from edgespec.runtime.pipeline import SpeculativePipeline


def main(mode: str = "draft") -> None:
    pipe = SpeculativePipeline.from_manifest(default_pair(), engine="llamacpp", use_draft=mode != "nodraft")
    lib = pipe.target.lib
    inside = [0.0]
    decode = lib.llama_decode

    def timed_decode(ctx, batch):
        start = time.perf_counter()
        code = decode(ctx, batch)
        inside[0] += time.perf_counter() - start
        return code

    lib.llama_decode = timed_decode
    prompts = prepare(load_prompt_set("mtbench", 3), pipe.tokenizer.tokenizer)
    config = GenerationConfig(max_new_tokens=128)
    for prompt in prompts:  # warm-up: first shapes, the draft policy's first costs
        pipe.generate(prompt.ids, config)
    outside, per_call = [], []
    for _ in range(3):
        for prompt in prompts:
            pipe.clear_cache()
            inside[0] = 0.0
            start = time.perf_counter()
            result = pipe.generate(prompt.ids, config)
            wall = time.perf_counter() - start
            outside.append((wall - inside[0]) / result.stats.new_tokens * 1e3)
            per_call.append(inside[0] / result.stats.target_calls * 1e3)
    lib.llama_decode = decode
    print(f"{mode}: ms a token outside llama_decode, median {statistics.median(outside):.3f} "
          f"({min(outside):.3f}-{max(outside):.3f}); llama_decode ms a call {statistics.median(per_call):.2f}")


if __name__ == "__main__":
    main(*sys.argv[1:])
