"""Q4: cost T(n) of an n-token call at past ~200: stateful (exact, trim rollback, untimed) vs PA (exact).
steady: same n every call; alt: calls alternate 1, n, 1, n (each timed call follows a shape change);
mixed: a fixed random sequence of n in 1..6 (like an adaptive draft) unpadded vs padded to width 6 or 8
(dummy tokens after the real ones, rolled back)."""
import sys, json, random
from common import *
from paged import load_paged

REPEATS = int(sys.argv[1]) if len(sys.argv) > 1 else 5
print("load before:", load(), flush=True)
lms = {"stateful": stateful(EXACT, rollback="trim"), "PA": load_paged(core, XML, EXACT)}
txt, ids = chat_prompt(7, target_tokens=200)
P = len(ids)
for lm in lms.values():
    lm.reset(); lm.forward(ids, 1)
feed = ids[:8]


def call(lm, n, pad=0):
    t = now()
    lm.forward(feed[:max(n, pad)], last=n)
    dt = now() - t
    lm.rollback(P)
    return dt


rng = random.Random(0)
seq = [rng.randint(1, 6) for _ in range(24)]
res = {}
for r in range(REPEATS + 1):
    for name, lm in lms.items():
        for n in range(1, 9):
            ts = [call(lm, n) for _ in range(6)][1:]
            res.setdefault(f"{name} steady n={n}", []).append(statistics.median(ts)) if r else None
            ts = []
            for _ in range(5):
                call(lm, 1 if n > 1 else 2)
                ts.append(call(lm, n))
            res.setdefault(f"{name} alt n={n}", []).append(statistics.median(ts)) if r else None
        for pad in (0, 6, 8):
            t = sum(call(lm, n, pad) for n in seq) / len(seq)
            res.setdefault(f"{name} mixed seq mean/call pad={pad}", []).append(t) if r else None
    print("repeat", r, load(), flush=True)
print(f"past {P}, mixed seq {seq} (mean n {statistics.mean(seq):.2f})")
for k, v in res.items():
    print(f"  {k:40s} {med(v)}")
print("load after:", load())
json.dump(res, open("q4_verify.json", "w"))
