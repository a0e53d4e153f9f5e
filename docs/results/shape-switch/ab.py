"""A/B: the default pipeline (lanes=3) vs lanes=1 (the previous form), spec and target, interleaved."""
import sys, time, statistics
import edgespec
from edgespec.bench.prompts import load_prompt_set
from edgespec.runtime import pipeline as P
from edgespec.runtime.pipeline import SpeculativePipeline, GenerationConfig

sets = sys.argv[1].split(","); limit = int(sys.argv[2])
orig = P.load_lm
def one_lane(*a, **k):
    k["lanes"] = 1
    return orig(*a, **k)
t = time.perf_counter()
pipes = {"spec3": SpeculativePipeline.from_manifest(edgespec.default_pair(), engine="openvino"),
         "target3": SpeculativePipeline.from_manifest(edgespec.default_pair(), engine="openvino", use_draft=False)}
print("load s", time.perf_counter() - t)
P.load_lm = one_lane
pipes["spec1"] = SpeculativePipeline.from_manifest(edgespec.default_pair(), engine="openvino")
pipes["target1"] = SpeculativePipeline.from_manifest(edgespec.default_pair(), engine="openvino", use_draft=False)
cfg = GenerationConfig(max_new_tokens=128)
for s in sets:
    walls = {n: [] for n in pipes}; toks = {}
    for pp in load_prompt_set(s, limit):
        for rep in range(2):
            for name, pipe in pipes.items():
                pipe.clear_cache()
                t = time.perf_counter(); r = pipe.generate(pp.text, cfg, chat=pp.chat); w = time.perf_counter() - t
                walls[name].append(w); toks.setdefault((pp.id, name[:-1]), set()).add(tuple(r.token_ids))
    same = all(toks[(i, "spec")] == toks[(i, "target")] for (i, n) in toks if n == "spec")
    print(s, {n: round(sum(v), 2) for n, v in walls.items()}, "spec/target lanes3 %.2f lanes1 %.2f" % (
        sum(walls["target3"]) / sum(walls["spec3"]), sum(walls["target1"]) / sum(walls["spec1"])), "equal", same)
