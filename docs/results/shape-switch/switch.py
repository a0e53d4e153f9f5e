import time, statistics, sys
import numpy as np, openvino as ov
import edgespec
from edgespec.runtime.manifest import load_pair
from edgespec.runtime.pipeline import load_lm
pair = load_pair(edgespec.default_pair())
props = dict(a.split("=") for a in sys.argv[1:])
core = ov.Core()
if props:
    core.set_property("CPU", props)
lm = load_lm(core, pair.target, "CPU", True, "mask", form="paged")
past = np.resize(np.arange(1000, 1200), 300)
lm.reset(); lm.forward(past, last=1); keep = lm.cached
def run(widths, reps=60):
    t = {}
    for i in range(reps):
        for n in widths:
            s = time.perf_counter(); lm.forward(np.arange(2000, 2000 + n)); e = time.perf_counter()
            lm.rollback(keep)
            if i >= 5: t.setdefault(n, []).append(e - s)
    return {n: round(statistics.median(v) * 1000, 2) for n, v in t.items()}
print("steady1", run([1])); print("steady2", run([2])); print("steady4", run([4]))
print("alt1/2", run([1, 2])); print("alt1/4", run([1, 4])); print("alt2/3", run([2, 3]))
print("steady1", run([1]))
