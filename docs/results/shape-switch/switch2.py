import time, statistics, os
import numpy as np, openvino as ov, psutil
import edgespec
from edgespec.runtime.manifest import load_pair
from edgespec.runtime.pipeline import load_lm
pair = load_pair(edgespec.default_pair())
core = ov.Core()
proc = psutil.Process()
r0 = proc.memory_info().rss
a = load_lm(core, pair.target, "CPU", True, "mask", form="paged")
r1 = proc.memory_info().rss
b = load_lm(core, pair.target, "CPU", True, "mask", form="paged")
r2 = proc.memory_info().rss
print("rss MB: first", (r1 - r0) / 1e6, "second", (r2 - r1) / 1e6)
for port in a.cache_ports:
    b.request.set_tensor(port.any_name, a.request.get_tensor(port.any_name))
b.blocks, b.block_ids = a.blocks, a.block_ids
past = np.resize(np.arange(1000, 1200), 300)
a.reset(); a.forward(past, last=1); keep = a.cached
b.tokens = list(a.tokens)
# check logits equality: b's 2-token call vs a's
la = a.forward([2000, 2001]); a.rollback(keep)
lb = b.forward([2000, 2001]); b.rollback(keep)
print("max diff", float(np.abs(la - lb).max()))
def run(pairs, reps=60):
    t = {}
    for i in range(reps):
        for lm, n in pairs:
            s = time.perf_counter(); lm.forward(np.arange(2000, 2000 + n)); e = time.perf_counter()
            lm.rollback(keep)
            if i >= 5: t.setdefault(n, []).append(e - s)
    return {n: round(statistics.median(v) * 1000, 2) for n, v in t.items()}
print("steady1", run([(a, 1)])); print("steady2", run([(b, 2)]))
print("alt same model 1/2", run([(a, 1), (a, 2)]))
print("alt two models 1/2", run([(a, 1), (b, 2)]))
print("alt two models 1/4", run([(a, 1), (b, 4)]))
print("alt two models 1 / 2,3,4", run([(a, 1), (b, 2), (a, 1), (b, 3), (a, 1), (b, 4)]))
