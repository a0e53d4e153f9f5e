"""A target-only step whose second token is a dummy subsequence over a scratch block, docs/performance.md Q10: the
matrix products see two rows (the int8-activation path every verify call takes), the real token attends over the
cache on the PA op's one-query path (no repack of the cached blocks), and verify calls are split calls (each token
its own one-token subsequence, Q9) so they take the same attention path.
1. bitwise: teacher-forced logits of split calls of widths 2, 3, 5 against dummy steps (8 prompts x 48);
2. cost by past length: a plain one-token call (GenAI's step), the two-token step edgespec runs, the dummy step, and
   verify calls of 3 and 5 tokens as one subsequence and split; blocks of 7 calls (2 dropped), 8 rounds.
A timing: run it under the bench lock.

    flock /tmp/edgespec-bench.lock python scripts/perf/dummy_step.py [exact|time|both]
"""
import os, sys, time
import numpy as np
import openvino as ov
import openvino_genai as ov_genai
from edgespec.bench.prompts import load_prompt_set, prepare
from edgespec.runtime.devices import cpu_config
from edgespec.runtime.manifest import load_pair
from edgespec.runtime.model import read_ir
from edgespec.runtime.paged import PagedLM, to_paged
from paged_calls import run, split_inputs

class ProtoLM(PagedLM):
    mode = "one"  # one: one subsequence (refeed for 1 token); split; dummy (1 token: dummy sub; more: split); plain
    def _run(self, tokens, positions, mask, last, request=None):
        if self.mode == "plain" or not self.cached:
            mf = self.min_feed
            if self.mode == "plain":
                self.min_feed = 1
            try:
                return super()._run(tokens, positions, mask, last, request)
            finally:
                self.min_feed = mf
        if self.mode == "one":
            return super()._run(tokens, positions, mask, last, request)
        n0, past = len(tokens), self.cached
        rows = n0 if last is None else min(last, n0)
        self.grow(past + n0 + 2 * self.block_size)
        if self.mode == "dummy" and n0 == 1:
            scratch = self.blocks - 1
            blocks = -(-(past + 1) // self.block_size)
            inputs = {"input_ids": np.concatenate([[tokens[0]], tokens]).astype(np.int64),
                      "position_ids": np.concatenate([[0], positions]).astype(np.int64),
                      "max_context_len": np.array(past + 1, np.int32),
                      "past_lens": np.array([0, past], np.int32),
                      "subsequence_begins": np.array([0, 1, 2], np.int32),
                      "block_indices": np.concatenate([[scratch], self.block_ids[:blocks]]).astype(np.int32),
                      "block_indices_begins": np.array([0, 1, 1 + blocks], np.int32)}
        elif n0 == 1:
            raise RuntimeError("a split call needs 2 or more tokens (two-row matrix products)")
        else:
            inputs = split_inputs(self, tokens, positions)
        return run(self, inputs, tokens, rows)

pair = load_pair(os.path.expanduser("~/.cache/edgespec/pairs/smollm2-int8-v1"))
model = read_ir(pair.target.xml)
to_paged(model)
lm = ProtoLM(ov.Core().compile_model(model, "CPU", cpu_config(False)), 8192, min_feed=2, capacity=2048)
tok = ov_genai.Tokenizer(str(pair.target.dir))
what = sys.argv[1] if len(sys.argv) > 1 else "both"
if what in ("exact", "both"):
    prompts = [pp.ids for s in ("humaneval", "mtbench", "rag", "translation") for pp in prepare(load_prompt_set(s, 2), tok)]
    N = 48
    eq = {w: [0, 0, 0] for w in (2, 3, 5)}
    for ids in prompts:
        lm.mode = "one"; lm.reset(); lm.forward(ids, last=1)
        P, cont, ref = len(ids), [], []
        lm.mode = "dummy"
        for i in range(N):
            lm.rollback(P + i - 1)
            row = lm.forward([(ids + cont)[-1]])[0]
            ref.append(row); cont.append(int(row.argmax()))
        ref, seq = np.array(ref), ids + cont
        for w in (2, 3, 5):
            lm.rollback(P - 1)
            rows = np.concatenate([lm.forward(seq[p:min(p + w, P - 1 + N)]) for p in range(P - 1, P - 1 + N, w) if min(p + w, P - 1 + N) - p >= 2] )
            m = len(rows)
            d = np.abs(rows - ref[:m]).max(axis=1)
            eq[w][0] += int((d == 0).sum()); eq[w][1] += m; eq[w][2] += int((rows.argmax(1) != ref[:m].argmax(1)).sum())
    for w, (s, t, a) in eq.items():
        print(f"split width {w} vs dummy one-token steps: bitwise {s}/{t}, argmax differs {a}", flush=True)
if what in ("time", "both"):
    ids = np.random.default_rng(0).integers(100, 40000, 1600).tolist()
    cost = {}
    PASTS = (100, 300, 600, 900, 1200)
    CASES = [("plain", 1), ("one", 1), ("dummy", 1), ("one", 3), ("dummy", 3), ("one", 5), ("dummy", 5)]
    for past in PASTS:
        lm.mode = "one"; lm.reset(); lm.prefill(ids[:past], last=1)
        for rnd in range(8):
            for mode, w in (CASES if rnd % 2 == 0 else CASES[::-1]):
                lm.mode = mode
                times = []
                for _ in range(7):
                    lm.rollback(past)
                    s = time.perf_counter(); lm.forward(ids[past:past + w], last=w); times.append(time.perf_counter() - s)
                cost.setdefault((past, mode, w), []).extend(times[2:])
    print("ms, median of 30 (p25-p75): plain 1-token | two-token one-sub | dummy step | verify 3: one-sub / split | verify 5: one-sub / split")
    for past in PASTS:
        f = lambda k: f"{np.median(cost[(past,)+k])*1e3:5.2f}"
        print(f"past {past:5d}: {f(('plain',1))} | {f(('one',1))} | {f(('dummy',1))} | {f(('one',3))} / {f(('dummy',3))} | {f(('one',5))} / {f(('dummy',5))}", flush=True)
