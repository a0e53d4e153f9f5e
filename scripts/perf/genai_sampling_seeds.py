"""GenAI speculative sampling against its target-only sampling, same seeds, no SchedulerConfig (docs/results.md, Stop 34):
the first position where the two texts differ, per run (None: identical over 40 tokens)."""
import sys, tempfile, numpy as np, openvino as ov
from pathlib import Path
import openvino_genai as ov_genai
from edgespec.runtime.manifest import load_pair
from edgespec.bench.runner import default_pair
from edgespec.bench.modes import genai_draft_dir
from edgespec.bench.prompts import load_prompt_set, prepare
pair = load_pair(default_pair())
tok = ov_genai.Tokenizer(str(pair.target.dir))
g_t = ov_genai.LLMPipeline(str(pair.target.dir), "CPU")
g_s = ov_genai.LLMPipeline(str(pair.target.dir), "CPU", draft_model=ov_genai.draft_model(str(genai_draft_dir(pair, Path(tempfile.mkdtemp()))), "CPU"))
pps = prepare(load_prompt_set("mtbench", 1), tok) + prepare(load_prompt_set("chat", 1), tok)
def gen(pipe, ids, seed, spec, T=0.7, L=40):
    c = ov_genai.GenerationConfig(); c.max_new_tokens = L; c.do_sample = True; c.temperature = T; c.rng_seed = seed; c.apply_chat_template = False; c.ignore_eos = True
    if spec: c.num_assistant_tokens = 2
    inp = ov_genai.TokenizedInputs(ov.Tensor(np.array([ids], np.int64)), ov.Tensor(np.ones((1, len(ids)), np.int64)))
    try:
        return [int(t) for t in np.array(pipe.generate(inp, c).tokens[0]).reshape(-1)]
    except RuntimeError:
        return None
firstdiff = []
for pp in pps:
    for seed in range(1, 21):
        a, b = gen(g_t, pp.ids, seed, False), gen(g_s, pp.ids, seed, True)
        if a is None or b is None: continue
        d = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None)
        firstdiff.append(d)
print("first differing position per run (None = identical 40 tokens):", firstdiff)
