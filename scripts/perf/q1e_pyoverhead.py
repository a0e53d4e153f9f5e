"""Q1e (replacement for benchmark_app, which failed on this IR's mask subgraph with random inputs): Python overhead
of StatefulLM.forward / PagedLM.forward = total call time minus the time inside start_async()+wait()."""
from common import *
from paged import load_paged

print("load before:", load(), flush=True)
txt, ids = chat_prompt(77, target_tokens=700)
lms = {"stateful": stateful(EXACT), "paged": load_paged(core, XML, EXACT)}
inner = {}
for name, lm in lms.items():
    req = lm.request
    orig_start, orig_wait = req.start_async, req.wait

    class Timed:  # proxy around the InferRequest that records time spent inside OpenVINO
        def __init__(s, r, name): s.r, s.name = r, name
        def __getattr__(s, a): return getattr(s.r, a)
        def start_async(s, *a, **k): s.t = now(); return s.r.start_async(*a, **k)
        def wait(s): out = s.r.wait(); inner.setdefault(s.name, []).append(now() - s.t); return out
    lm.request = Timed(req, name)
    lm.forward(ids, 1)
res = {}
tok = 13
for r in range(40):
    for name, lm in lms.items():
        t = now(); lm.forward([tok], 1); res.setdefault(name, []).append(now() - t)
        lm.rollback(len(ids))
for name in lms:
    tot, ov_ = np.array(res[name][5:]), np.array(inner[name][-35:])
    print(f"{name}: forward {med(list(tot))}; inside OpenVINO {med(list(ov_))}; Python overhead median "
          f"{np.median(tot - ov_) * 1e3:.2f} ms")
print("load after:", load())
