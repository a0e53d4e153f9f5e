"""Prefill of a 900-token prompt on the default SmolLM2 target (paged form) under each CPU kernel setting: which
compile could prefill an exact target's cache faster (docs/performance.md, Q7). A timing: run it under the bench lock.

    flock /tmp/edgespec-bench.lock python scripts/perf/prefill_kernels.py
"""
import os
import time
import openvino as ov
from edgespec.runtime.manifest import load_pair
from edgespec.runtime.model import read_ir
from edgespec.runtime.paged import PagedLM, to_paged
pair = load_pair(os.path.expanduser("~/.cache/edgespec/pairs/smollm2-int8-v1"))
core = ov.Core()
ids = list(range(1000, 1900))
base = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1"}
for name, cfg in [("exact", {"INFERENCE_PRECISION_HINT": "f32", "DYNAMIC_QUANTIZATION_GROUP_SIZE": "0", "KV_CACHE_PRECISION": "f32"}),
                  ("f32+DQ32", {"INFERENCE_PRECISION_HINT": "f32", "DYNAMIC_QUANTIZATION_GROUP_SIZE": "32", "KV_CACHE_PRECISION": "f32"}),
                  ("bf16 DQ0 kv bf16", {"DYNAMIC_QUANTIZATION_GROUP_SIZE": "0", "KV_CACHE_PRECISION": "bf16"}),
                  ("bf16 DQ32 kv bf16", {"KV_CACHE_PRECISION": "bf16"}),
                  ("defaults", {})]:
    m = read_ir(pair.target.xml); to_paged(m)
    try:
        c = core.compile_model(m, "CPU", base | cfg)
    except Exception as e:
        print(name, "compile failed", str(e).splitlines()[-1]); continue
    lm = PagedLM(c, 2048)
    ts = []
    for r in range(4):
        lm.rollback(0); t = time.perf_counter(); lm.forward(ids, last=1); ts.append(time.perf_counter() - t)
    print(f"{name:20s} prefill 900: {' '.join(f'{x*1e3:.0f}' for x in ts)} ms; cache {lm.cache_ports[0].get_element_type()} {lm.cache_ports[0].get_partial_shape()}", flush=True)
