"""Sum min(p_T, q_T') over teacher-forced sampled continuations: target at T=0.7, draft at several T'."""
import numpy as np, openvino_genai as ov_genai
from edgespec.runtime.manifest import load_pair
from edgespec.bench.prompts import load_prompt_set, prepare
from edgespec.bench.runner import default_pair
from edgespec.runtime.pipeline import SpeculativePipeline
from edgespec.runtime.sampling import Warp, probabilities
pair = load_pair(default_pair())
print("draft vocab map:", None if pair.draft.vocab_map() is None else len(pair.draft.vocab_map()))
p = SpeculativePipeline(pair, "CPU", "CPU", use_draft=True, engine="openvino")
tok = ov_genai.Tokenizer(str(pair.target.dir))
Tm, D = p.target, p.draft
V = Tm.vocab_size
rng = np.random.default_rng(0)
wt = Warp(temperature=0.7)
TS = (0.35, 0.5, 0.7, 1.0)
for s in "mtbench,chat,translation".split(","):
    acc = {t: [] for t in TS}; outside = []
    for pp in prepare(load_prompt_set(s, 3), tok):
        ids = pp.ids
        Tm.reset(); last = Tm.forward(ids, last=1); cont = []
        for i in range(48):
            pt = probabilities(last, wt)[-1]; x = int(rng.choice(len(pt), p=pt / pt.sum())); cont.append(x); last = Tm.forward([x], last=1)
        Tm.reset(); tl = Tm.forward(ids + cont[:-1], last=len(cont))
        D.reset(); dl = D.forward(ids + cont[:-1], last=len(cont))
        P = probabilities(tl, wt)
        if D.vocab_map is not None:
            outside.append(1 - P[:, D.vocab_map].sum(axis=1).mean())
        for t in TS:
            Q = probabilities(dl, Warp(temperature=t))
            if D.vocab_map is not None:
                full = np.zeros_like(P); full[:, D.vocab_map] = Q; Q = full
            acc[t].extend(np.minimum(P, Q).sum(axis=1))
    print(s, " ".join(f"T'={t}: {np.mean(v):.2f}" for t, v in acc.items()), f"target mass outside the draft's vocabulary {np.mean(outside) if outside else 0:.3f}", flush=True)
