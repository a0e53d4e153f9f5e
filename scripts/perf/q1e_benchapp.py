"""Q1e: benchmark_app vs a Python loop on the same stateless IR (last-row head), same shapes and properties.
Prefill 660 tokens (empty past) and one decode step at past 700. Interleaved rounds."""
import json, re, subprocess, sys
from common import *

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 3
IR = "ir/stateless_last.xml"
json.dump({"CPU": EXACT}, open("ir/exact_config.json", "w"))
m = core.read_model(IR)
pk = [i.any_name for i in m.inputs if i.any_name.startswith("past_key_values")]


def shapes(n, past):
    return {"input_ids": [1, n], "attention_mask": [1, past + n], "position_ids": [1, n]} | {p: [1, 3, past, 64] for p in pk}


def bench(n, past, niter):
    ds = ",".join(f"{k}[{','.join(map(str, v))}]" for k, v in shapes(n, past).items())
    out = subprocess.run([sys.executable.replace("python", "benchmark_app"), "-m", IR, "-d", "CPU", "-hint", "latency",
                          "-load_config", "ir/exact_config.json", "-data_shape", ds, "-niter", str(niter),
                          "-inference_only", "true", "-nireq", "1", "-api", "sync"],
                         capture_output=True, text=True).stdout
    return float(re.search(r"Median:\s+([\d.]+) ms", out).group(1)) / 1e3


compiled = core.compile_model(m, "CPU", EXACT)
req = compiled.create_infer_request()


def py(n, past, niter):
    rng = np.random.default_rng(0)
    inputs = {"input_ids": rng.integers(0, 49152, (1, n)), "attention_mask": np.ones((1, past + n), np.int64),
              "position_ids": np.arange(past, past + n).reshape(1, n)}
    inputs |= {p: rng.standard_normal((1, 3, past, 64)).astype(np.float32) for p in pk}
    req.infer(inputs)
    ts = []
    for _ in range(niter):
        t = now(); req.infer(inputs, share_inputs=True); ts.append(now() - t)
    return statistics.median(ts)


print("load before:", load(), flush=True)
res = {}
for r in range(ROUNDS):
    for case, (n, past, it) in {"prefill 660": (660, 0, 5), "decode @700": (1, 700, 60)}.items():
        res.setdefault(f"{case} benchmark_app", []).append(bench(n, past, it))
        res.setdefault(f"{case} python infer()", []).append(py(n, past, it))
    print("round", r, load(), flush=True)
for k, v in res.items():
    print(f"  {k:32s} {med(v)}")
print("load after:", load())
