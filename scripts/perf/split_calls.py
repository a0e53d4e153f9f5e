"""Split calls on the default SmolLM2 target (paged form, the CPU's default kernels), docs/performance.md Q9:
can a call of n tokens be fed as n one-token subsequences over the same KV blocks (each token then takes the PA op's
one-token attention instead of the multi-token path, which repacks every cached block per call), and is that faster?
1. bitwise: teacher-forced logits of split calls of widths 3..24 against two-token split calls (8 prompts x 48);
2. cost by past length: the same compiled model, split against one subsequence, widths 2 (a one-token step with the
   last cached token fed again), 3 and 5, blocks of 7 calls (2 dropped), 6 rounds alternating the order.
A timing: run it under the bench lock.

    flock /tmp/edgespec-bench.lock python scripts/perf/split_calls.py
"""
import os
import time

import numpy as np
import openvino as ov
import openvino_genai as ov_genai

from edgespec.bench.prompts import load_prompt_set, prepare
from edgespec.runtime.devices import cpu_config
from edgespec.runtime.manifest import load_pair
from edgespec.runtime.model import read_ir
from edgespec.runtime.paged import PagedLM, to_paged
from paged_calls import run, split_inputs


class SplitLM(PagedLM):
    """PagedLM whose calls (but a prefill into an empty cache) feed each token as its own subsequence."""
    split = True

    def _run(self, tokens, positions, mask, last, request=None):
        if not self.split or not self.cached:
            return super()._run(tokens, positions, mask, last, request)
        refeed = min(self.min_feed - len(tokens), self.cached)
        if refeed > 0:
            last = len(tokens) if last is None else min(last, len(tokens))
            tokens, positions, mask = self._with_refed(refeed, tokens, positions, mask)
        n, past = len(tokens), self.cached
        self.grow(past + n)
        rows = n if last is None else min(last, n)
        return run(self, split_inputs(self, tokens, positions), tokens, rows)


pair = load_pair(os.path.expanduser("~/.cache/edgespec/pairs/smollm2-int8-v1"))
model = read_ir(pair.target.xml)
to_paged(model)
lm = SplitLM(ov.Core().compile_model(model, "CPU", cpu_config(False)), 8192, min_feed=2, capacity=2048)
tok = ov_genai.Tokenizer(str(pair.target.dir))
prompts = [pp.ids for s in ("humaneval", "mtbench", "rag", "translation") for pp in prepare(load_prompt_set(s, 2), tok)]
N, WIDTHS = 48, (3, 4, 5, 7, 12, 24)
equal = {w: [0, 0] for w in WIDTHS}
for ids in prompts:
    lm.reset()
    lm.forward(ids, last=1)
    P, cont, ref = len(ids), [], []
    for i in range(N):
        lm.rollback(P + i - 1)
        row = lm.forward([(ids + cont)[-1]])[0]
        ref.append(row)
        cont.append(int(row.argmax()))
    ref, seq = np.array(ref), ids + cont
    for w in WIDTHS:
        lm.rollback(P - 1)
        rows = np.concatenate([lm.forward(seq[p:min(p + w, P - 1 + N)]) for p in range(P - 1, P - 1 + N, w)])
        equal[w][0] += int((np.abs(rows - ref).max(axis=1) == 0).sum())
        equal[w][1] += len(rows)
for w, (same, total) in equal.items():
    print(f"split width {w} vs two-token split calls: bitwise equal {same}/{total}")

ids = np.random.default_rng(0).integers(100, 40000, 1400).tolist()
cost = {}
PASTS, FEEDS = (100, 300, 600, 900, 1200), (1, 3, 5)  # a 1-token feed is a 2-token call (min_feed)
for past in PASTS:
    lm.split = False
    lm.reset()
    lm.prefill(ids[:past], last=1)
    for rnd in range(6):
        for split in ((False, True) if rnd % 2 == 0 else (True, False)):
            lm.split = split
            for w in FEEDS:
                times = []
                for _ in range(7):
                    lm.rollback(past)
                    start = time.perf_counter()
                    lm.forward(ids[past:past + w])
                    times.append(time.perf_counter() - start)
                cost.setdefault((past, split, w), []).extend(times[2:])
print("call cost, ms (median of 30): one subsequence / split")
for past in PASTS:
    print(f"past {past:5d}: " + "  ".join(
        f"width {max(w, 2)} {np.median(cost[(past, False, w)]) * 1e3:6.2f} / {np.median(cost[(past, True, w)]) * 1e3:6.2f}"
        for w in FEEDS))
