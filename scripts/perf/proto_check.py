"""Prototype check: PagedLM (paged.py) as edgespec's target vs StatefulLM (exact props both).
1. correctness: greedy target-only and speculative (real draft) output must equal StatefulLM target-only output;
2. timing, interleaved: TTFT on a 660-token chat prompt, TPOT over 64 tokens (target-only), speculative wall."""
import sys, json
from common import *
from paged import load_paged
from edgespec.speculative import decode, GenerationConfig, GenerationStats

REPEATS = int(sys.argv[1]) if len(sys.argv) > 1 else 5
DRAFT = PAIR + "/draft"
vmap = np.load(DRAFT + "/draft_vocab.npy").astype(np.int64)


def draft_lm():
    m = core.read_model(DRAFT + "/openvino_model.xml"); slice_logits(m)
    return StatefulLM(core.compile_model(m, "CPU", {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1"}), 2048,
                      vocab_map=vmap)


def gen(target, draft, ids, n=64, k=3):
    target.reset()
    if draft is not None:
        draft.reset()
    cfg = GenerationConfig(max_new_tokens=n, draft_length=k, ignore_eos=True)
    st = GenerationStats()
    out = [t for step in decode(target, draft, ids, cfg, {2}, st) for t in step]
    return out, st


print("load before:", load(), flush=True)
S = stateful(EXACT)
P = load_paged(core, XML, EXACT)
D = draft_lm()
qs = [json.loads(l)["turns"][0] for l in open(REF + "/bench/data/mt_bench.jsonl")][10:14]
prompts = [encode(f"<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n") for q in qs] + [chat_prompt(3)[1]]
ok = True
for ids in prompts:
    ref, _ = gen(S, None, ids)
    pt, _ = gen(P, None, ids)
    ps, st = gen(P, D, ids)
    ss, _ = gen(S, D, ids)
    same = ref == pt == ps == ss
    ok &= same
    print(f"prompt {len(ids)} tok: stateful==paged target-only {ref == pt}, paged spec==ref {ps == ref}, "
          f"stateful spec==ref {ss == ref}; paged spec acceptance {st.acceptance_rate:.2f}", flush=True)
S.reset(); P.reset()
a, b = S.forward(prompts[-1], last=4), P.forward(prompts[-1], last=4)
print(f"prefill last-4 logits max |diff| stateful vs paged: {np.abs(a - b).max():.2e}")
print("CORRECTNESS", "PASS" if ok else "FAIL", flush=True)

res = {}
for r in range(REPEATS):
    for name, lm in (("stateful", S), ("paged", P)):
        txt, ids = chat_prompt(500 + r * 2 + (name == "paged"))
        out, st = gen(lm, None, ids, n=64)
        res.setdefault(f"{name} target-only TTFT (660 tok)", []).append(st.ttft_s)
        res.setdefault(f"{name} target-only TPOT after 660", []).append(st.tpot_s)
        out, st = gen(lm, D, prompts[r % 4], n=96, k=3)
        res.setdefault(f"{name} speculative (draft k=3 adaptive) ms/token, short prompt", []).append(
            (st.wall_s - st.ttft_s) / (st.new_tokens - 1))
        res.setdefault(f"{name} speculative target_s per target call", []).append(st.target_s / st.target_calls)
    print("repeat", r, load(), flush=True)
for k, v in res.items():
    print(f"  {k:62s} {med(v)}")
print("load after:", load())
json.dump(res, open("proto_check.json", "w"))
