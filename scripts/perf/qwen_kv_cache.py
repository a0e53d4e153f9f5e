"""Qwen2.5-Coder's target on the fast kernels by KV cache precision (docs/performance.md Q12): is each one bitwise
exact across call widths (runtime/call_width.py's check), and what do calls of 1, 2 and 4 tokens cost after a
200-token past (a step is a two-token call where the check passes). A timing: run it under the bench lock.

    EDGESPEC_QWEN_PAIR=/path/to/qwen2.5-coder flock /tmp/edgespec-bench.lock python scripts/perf/qwen_kv_cache.py
"""
import os
import statistics
import time

import numpy as np
import openvino as ov

from edgespec.runtime.call_width import bitwise_same_across_widths
from edgespec.runtime.devices import cpu_config
from edgespec.runtime.manifest import load_pair
from edgespec.runtime.model import read_ir
from edgespec.runtime.paged import PagedLM, to_paged

entry = load_pair(os.environ.get("EDGESPEC_QWEN_PAIR", "/work/pairs/qwen2.5-coder")).target
core = ov.Core()
SETTINGS = {"exact": (cpu_config(True), 1),
            "bf16 KV": ({**cpu_config(False), "KV_CACHE_PRECISION": "bf16"}, 2),
            "f16 KV": ({**cpu_config(False), "KV_CACHE_PRECISION": "f16"}, 2),
            "default (u8) KV": (cpu_config(False), 2)}
lms = {}
for name, (config, feed) in SETTINGS.items():
    model = read_ir(entry.xml)
    to_paged(model)
    lm = lms[name] = PagedLM(core.compile_model(model, "CPU", config), entry.context_length, min_feed=feed)
    exact = bitwise_same_across_widths(lm) if feed == 2 else "(one-token calls)"
    print(f"{name}: cache {lm.cache_ports[0].get_element_type()}, exact across widths: {exact}", flush=True)
ids = [int(i) for i in np.random.default_rng(0).integers(100, 8000, 400)]
for lm in lms.values():
    lm.forward(ids[:200], last=1)
times = {(name, width): [] for name in lms for width in (1, 2, 4)}
for _ in range(3):
    for name, lm in lms.items():
        for width in (1, 2, 4):
            for i in range(4):
                lm.rollback(200)
                start = time.perf_counter()
                lm.forward(ids[200:200 + width], last=width)
                if i:
                    times[name, width].append(time.perf_counter() - start)
for name in lms:
    print(name, " ".join(f"{w}: {statistics.median(times[name, w]) * 1e3:.1f} ms" for w in (1, 2, 4)))
