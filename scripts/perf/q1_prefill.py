"""Q1: prefill (time to first-token logits) of a ~660-token chat prompt, all variants interleaved."""
import sys, json
from common import *
from paged import load_paged

REPEATS = int(sys.argv[1]) if len(sys.argv) > 1 else 5
DEFAULT = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1"}
print("load before:", load(), flush=True)
s_exact = stateful(EXACT)
s_def = stateful(DEFAULT)
p_exact = load_paged(core, XML, EXACT)
p_def = load_paged(core, XML, DEFAULT)
pipe = openvino_genai.LLMPipeline(TARGET, "CPU")
gcfg = openvino_genai.GenerationConfig(); gcfg.max_new_tokens = 1


def prefill(lm, ids, chunk=None):
    lm.reset()
    t = now()
    if chunk is None:
        lm.forward(ids, last=1)
    else:
        for i in range(0, len(ids), chunk):
            lm.forward(ids[i:i + chunk], last=1)
    return now() - t


def genai(text):
    t = now()
    r = pipe.generate([text], gcfg)
    wall = now() - t
    return wall, r.perf_metrics.get_ttft().mean / 1e3


variants = {
    "stateful exact 1 call": lambda ids, txt: prefill(s_exact, ids),
    "stateful LATENCY-only (u8/f16 KV, DQ32) 1 call": lambda ids, txt: prefill(s_def, ids),
}
for c in (64, 128, 256):
    variants[f"stateful exact chunk {c}"] = (lambda c: lambda ids, txt: prefill(s_exact, ids, c))(c)
variants["PA exact (f32 KV) 1 call"] = lambda ids, txt: prefill(p_exact, ids)
variants["PA LATENCY-only (f16 KV, DQ32) 1 call"] = lambda ids, txt: prefill(p_def, ids)
for c in (256,):
    variants[f"PA exact chunk {c}"] = (lambda c: lambda ids, txt: prefill(p_exact, ids, c))(c)
genai_ttft = []
variants["GenAI LLMPipeline (wall, 1 new token)"] = lambda ids, txt: genai_ttft.append(genai(txt)) or genai_ttft[-1][0]

# warm up every variant (new shapes) on prompts never used again
for w in range(1):
    txt, ids = chat_prompt(100 + w)
    for f in variants.values():
        f(ids, txt)
res = {k: [] for k in variants}
for r in range(REPEATS):
    for k, f in variants.items():
        txt, ids = chat_prompt(r * 20 + list(variants).index(k))  # a fresh prompt for every call
        res[k].append(f(ids, txt))
    print("repeat", r, "load", load(), flush=True)
print("prompt tokens", len(ids))
for k, v in res.items():
    print(f"{k:50s} {med(v)}")
print(f"{'GenAI perf_metrics TTFT':50s} {med([t for _, t in genai_ttft[1:]])}")
print("load after:", load())
json.dump(res, open("q1_prefill.json", "w"))
