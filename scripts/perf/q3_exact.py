"""Q3: exactness of k-token calls vs one token per call, per form and KV precision.
6 prompts x 64 greedy tokens (the target's own greedy continuation from the f32 stateful reference)."""
import sys, json
from common import *
from paged import load_paged

N = 64
qs = [json.loads(l) for l in open(REF + "/bench/data/mt_bench.jsonl")]
prompts = [encode(f"<|im_start|>user\n{q['turns'][0] if 'turns' in q else q['prompt']}<|im_end|>\n<|im_start|>assistant\n")
           for q in qs[:6]]


def run(lm, prompt, cont, k):
    """Logits rows for positions predicting cont[0..N-1] (row j = logits after prompt + cont[:j])."""
    lm.reset()
    rows = [lm.forward(prompt, last=1)[-1]]
    feed = cont[:N - 1]
    for i in range(0, len(feed), k):
        rows.extend(lm.forward(feed[i:i + k]))
    return np.stack(rows)


ref = stateful(EXACT)
conts = []
for p in prompts:  # greedy continuation, one token per call
    ref.reset(); tok = int(ref.forward(p, 1)[-1].argmax()); c = [tok]
    while len(c) < N:
        tok = int(ref.forward([tok], 1)[-1].argmax()); c.append(tok)
    conts.append(c)
forms = {
    "stateful f32 KV": lambda: stateful(EXACT),
    "stateful f16 KV": lambda: stateful(EXACT | {"KV_CACHE_PRECISION": "f16"}),
    "stateful u8 KV": lambda: stateful(EXACT | {"KV_CACHE_PRECISION": "u8"}),
    "PA f32 KV": lambda: load_paged(core, XML, EXACT),
    "PA f16 KV": lambda: load_paged(core, XML, EXACT | {"KV_CACHE_PRECISION": "f16"}),
    "PA u8 KV": lambda: load_paged(core, XML, EXACT | {"KV_CACHE_PRECISION": "u8"}),
}
results = {}
for name, make in forms.items():
    lm = make()
    r = {}
    one = [run(lm, p, c, 1) for p, c in zip(prompts, conts)]
    r["k=1 vs f32 ref greedy: argmax differs"] = int(sum((o.argmax(-1) != np.array(c)).sum() for o, c in zip(one, conts)))
    for k in (3, 6):
        many = [run(lm, p, c, k) for p, c in zip(prompts, conts)]
        r[f"k={k}: argmax differs from own k=1"] = int(sum((m.argmax(-1) != o.argmax(-1)).sum() for m, o in zip(many, one)))
        r[f"k={k}: max |logit diff| vs own k=1"] = float(max(np.abs(m - o).max() for m, o in zip(many, one)))
    print(name, json.dumps(r), flush=True)
    results[name] = r
    del lm
json.dump(results, open("q3_exact.json", "w"), indent=1)
