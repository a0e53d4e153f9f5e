"""Call widths on the default SmolLM2 target (paged form), per CPU kernel setting (docs/performance.md, Q8):
1. is a token's logits the same whatever width of call computed it? Teacher-forced: 8 prompts of 4 sets, 64 greedy
   tokens each, logits from two-token calls (the last cached token fed again) against calls of 1, 3, 5, 16, 33
   tokens (a 1-token call where the last chunk has one token, so width 1 is counted apart);
2. the cost of one call by width at past 200 and 900 (settings interleaved, median of 48).
A timing: run it under the bench lock.

    flock /tmp/edgespec-bench.lock python scripts/perf/call_widths.py
"""
import json
import os
import time

import numpy as np
import openvino as ov
import openvino_genai as ov_genai

from edgespec.bench.prompts import load_prompt_set, prepare
from edgespec.runtime.devices import cpu_config, prefill_config
from edgespec.runtime.manifest import load_pair
from edgespec.runtime.model import read_ir
from edgespec.runtime.paged import PagedLM, to_paged

pair = load_pair(os.path.expanduser("~/.cache/edgespec/pairs/smollm2-int8-v1"))
core = ov.Core()
SETTINGS = {"exact (f32, no DQ, f32 KV)": cpu_config(True), "f32 + DQ, f32 KV": prefill_config(),
            "defaults (bf16, DQ, default KV: f16 in the PA form here)": cpu_config(False)}
tok = ov_genai.Tokenizer(str(pair.target.dir))
prompts = [pp.ids for s in ("humaneval", "mtbench", "rag", "translation") for pp in prepare(load_prompt_set(s, 2), tok)]
N, WIDTHS = 64, (1, 3, 5, 16, 33)


def compiled(cfg):
    m = read_ir(pair.target.xml)
    to_paged(m)
    return core.compile_model(m, "CPU", cfg)


out = {"agreement": {}, "cost_ms": {}}
lms = {}
for name, cfg in SETTINGS.items():
    lm = PagedLM(compiled(cfg), pair.target.context_length, min_feed=2)
    lms[name] = lm
    agree = {w: [0, 0, 0, 0.0] for w in WIDTHS}  # argmax flips, rows, bitwise-equal rows, max |diff|
    for ids in prompts:
        lm.reset()
        lm.forward(ids, last=1)
        P, cont, ref = len(ids), [], []
        for i in range(N):  # two-token calls: logits at position P-1+i
            lm.rollback(P + i - 1)
            row = lm.forward([(ids + cont)[-1]])[0]
            ref.append(row)
            cont.append(int(row.argmax()))
        ref, seq = np.array(ref), ids + cont
        lm.min_feed = 1
        for w in WIDTHS:
            lm.rollback(P - 1)
            rows = np.concatenate([lm.forward(seq[p:min(p + w, P - 1 + N)]) for p in range(P - 1, P - 1 + N, w)])
            d = np.abs(rows - ref).max(axis=1)
            a = agree[w]
            a[0] += int((rows.argmax(1) != ref.argmax(1)).sum()); a[1] += N; a[2] += int((d == 0).sum())
            a[3] = max(a[3], float(d.max()))
        lm.min_feed = 2
    out["agreement"][name] = {w: {"argmax_flips": a[0], "rows": a[1], "bitwise_equal": a[2], "max_abs_diff": a[3]}
                              for w, a in agree.items()}
    print(name, {w: f"flips {a[0]}/{a[1]}, bitwise {a[2]}, max diff {a[3]:.2g}" for w, a in agree.items()}, flush=True)

ids = list(np.random.default_rng(0).integers(100, 8000, 1100))
for past in (200, 900):
    for lm in lms.values():
        lm.min_feed = 1
        lm.reset()
        lm.forward(ids[:past], last=1)
    times = {(n, w): [] for n in lms for w in (1, 2, 3, 5, 8, 16)}
    for _ in range(6):
        for n, lm in lms.items():
            for w in (1, 2, 3, 5, 8, 16):
                for i in range(10):
                    lm.rollback(past)
                    t = time.perf_counter()
                    lm.forward(ids[past:past + w], last=w)
                    if i >= 2:
                        times[n, w].append(time.perf_counter() - t)
    for n in lms:
        curve = {w: round(float(np.median(times[n, w])) * 1e3, 2) for w in (1, 2, 3, 5, 8, 16)}
        out["cost_ms"][f"{n} @ past {past}"] = curve
        print(f"past {past} {n}: " + " ".join(f"{w}:{c}" for w, c in curve.items()), flush=True)
print(json.dumps(out))
