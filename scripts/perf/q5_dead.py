"""Q5: stateful 'mask' rollback: cost of a call with 0 / 64 / 256 dead (masked-out) KV slots, ~200 live.
Each repeat rebuilds the caches (untimed); the timed calls themselves add up to 25 more dead slots."""
import sys, json
from common import *

REPEATS = int(sys.argv[1]) if len(sys.argv) > 1 else 5
print("load before:", load(), flush=True)
txt, ids = chat_prompt(9, target_tokens=200)
P = len(ids)
lms = {d: stateful(EXACT, rollback="mask") for d in (0, 64, 256)}


def build(lm, dead):
    lm.reset(); lm.max_dead = 10 ** 9
    lm.forward(ids[:P - 1], 1)
    if dead:  # write `dead` junk slots, then forget them: they stay in the cache, masked out
        lm.forward((ids * 2)[:dead], 1)
        lm.rollback(P - 1)
    lm.forward(ids[P - 1:], 1)


res = {}
for r in range(REPEATS + 1):
    for dead, lm in lms.items():
        build(lm, dead)
        for n in (1, 4):
            ts = []
            for _ in range(5):
                t = now(); lm.forward(ids[:n], 1); ts.append(now() - t)
                lm.rollback(P)
            if r:
                res.setdefault(f"dead={dead} n={n}", []).append(statistics.median(ts[1:]))
    print("repeat", r, load(), flush=True)
for k, v in res.items():
    print(f"  {k:20s} {med(v)}")
print("load after:", load())
json.dump(res, open("q5_dead.json", "w"))
