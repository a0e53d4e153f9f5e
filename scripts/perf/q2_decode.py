"""Q2: per-token decode cost at past ~100 / ~700 / ~1500 tokens: stateful f32/f16/u8 KV, PA f32/f16/u8, GenAI TPOT."""
import sys, json
from common import *
from paged import load_paged

REPEATS = int(sys.argv[1]) if len(sys.argv) > 1 else 5
LENGTHS = [int(x) for x in sys.argv[2].split(",")] if len(sys.argv) > 2 else [100, 700, 1500]
STEPS = 12
print("load before:", load(), flush=True)
lms = {
    "stateful f32 KV (exact)": stateful(EXACT, rollback="trim"),
    "stateful f16 KV": stateful(EXACT | {"KV_CACHE_PRECISION": "f16"}, rollback="trim"),
    "stateful u8 KV": stateful(EXACT | {"KV_CACHE_PRECISION": "u8"}, rollback="trim"),
    "PA f32 KV (exact)": load_paged(core, XML, EXACT, capacity=2048),
    "PA f16 KV (f32 math, DQ0)": load_paged(core, XML, EXACT | {"KV_CACHE_PRECISION": "f16"}, capacity=2048),
    "PA u8 KV (f32 math, DQ0)": load_paged(core, XML, EXACT | {"KV_CACHE_PRECISION": "u8"}, capacity=2048),
}
pipe = openvino_genai.LLMPipeline(TARGET, "CPU")
g = openvino_genai.GenerationConfig(); g.max_new_tokens = STEPS + 1; g.ignore_eos = True
out = {}
for L in LENGTHS:
    txt, ids = chat_prompt(L, target_tokens=L)
    first = {}
    for name, lm in lms.items():
        lm.reset()
        first[name] = int(lm.forward(ids, last=1)[-1].argmax())
    res = {k: [] for k in list(lms) + ["GenAI LLMPipeline TPOT"]}
    for r in range(REPEATS + 1):
        for name, lm in lms.items():
            lm.rollback(len(ids))
            tok, times = first[name], []
            for _ in range(STEPS):
                t = now()
                tok = int(lm.forward([tok], last=1)[-1].argmax())
                times.append(now() - t)
            if r:  # repeat 0 is warm-up
                res[name].append(statistics.median(times))
        txt2, _ = chat_prompt(1000 + 10 * r + L, target_tokens=L)
        m = pipe.generate([txt2], g).perf_metrics
        if r:
            res["GenAI LLMPipeline TPOT"].append(m.get_tpot().mean / 1e3)
    print(f"past ~{len(ids)} tokens   load {load()}")
    for k, v in res.items():
        print(f"  {k:40s} {med(v)}")
    out[L] = res
print("load after:", load())
json.dump(out, open("q2_decode.json", "w"))
