"""GenAI speculative sampling with and without a SchedulerConfig (docs/results.md, Stop 34): each output scored under
the target (mean log-prob per token at temperature 0.7). Arguments: none (a default SchedulerConfig passed), noprefix
(prefix caching off), maxbatch (max_num_batched_tokens = 2**31 - 1). scripts/perf/genai_sampling_seeds.py runs without one."""
import tempfile, numpy as np, openvino as ov
from pathlib import Path
import openvino_genai as ov_genai
from edgespec.runtime.manifest import load_pair
from edgespec.bench.prompts import load_prompt_set, prepare
from edgespec.bench.runner import default_pair
from edgespec.bench.modes import genai_draft_dir
from edgespec.bench.quality import mean_logprob
from edgespec.runtime.pipeline import SpeculativePipeline
from edgespec.runtime.sampling import Warp
pair = load_pair(default_pair())
tok = ov_genai.Tokenizer(str(pair.target.dir))
pps = prepare(load_prompt_set("mtbench", 3), tok)
scorer = SpeculativePipeline(pair, "CPU", "CPU", use_draft=False).target
import sys
sc = ov_genai.SchedulerConfig()
if "noprefix" in sys.argv: sc.enable_prefix_caching = False
if "maxbatch" in sys.argv: sc.max_num_batched_tokens = 2**31 - 1
g = ov_genai.LLMPipeline(str(pair.target.dir), "CPU", scheduler_config=sc, draft_model=ov_genai.draft_model(str(genai_draft_dir(pair, Path(tempfile.mkdtemp()))), "CPU"))
eos = set(pair.target.eos_token_ids)
def run(seed, k, eos_id, top_p, n=128):
    out = []
    for pp in pps:
        c = ov_genai.GenerationConfig(); c.max_new_tokens = n; c.do_sample = True; c.temperature = 0.7; c.rng_seed = seed; c.apply_chat_template = False
        c.num_assistant_tokens = k
        if top_p: c.top_p = 1.0
        if eos_id: c.eos_token_id = min(eos); c.stop_token_ids = eos
        inp = ov_genai.TokenizedInputs(ov.Tensor(np.array([pp.ids], np.int64)), ov.Tensor(np.ones((1, len(pp.ids)), np.int64)))
        try:
            toks = [int(t) for t in np.array(g.generate(inp, c).tokens[0]).reshape(-1)]
        except RuntimeError:
            out.append("error"); continue
        out.append(round(mean_logprob(scorer, pp.ids, toks, Warp(temperature=0.7)), 2))
    return out
for seed, k, e, tp in ((0, 2, True, True), (1, 2, True, True), (5, 2, True, True)):
    print(f"seed {seed} k {k} eos {e} top_p {tp}: {run(seed, k, e, tp)}", flush=True)
