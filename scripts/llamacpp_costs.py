"""Target call cost by tokens fed, on OpenVINO and on llama.cpp under several settings (docs/llamacpp.md).

    flock /tmp/edgespec-bench.lock python scripts/llamacpp_costs.py --ggufs Q8_0.gguf,Q4_0.gguf --out costs.json

(--ggufs: the pair's GGUF rewritten to other weight types beforehand, e.g. with
edgespec.export.gguf_tools.rewrite_gguf(src, "SmolLM2.Q8_0.gguf", "Q8_0"), so the lock is not held while converting.)

Every call appends n tokens after a fixed past, asks for the logits of all n rows (as a verification does) and is
rolled back; median of --repeats after one warm-up per shape. The llama.cpp variants change one thing each against
the engine's defaults (the pair's GGUF, all CPUs as threads, batch 512, flash attention on): the GGUF's weight
type, threads, flash attention, and logits for the last row only (the output head's share of a call).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

NS = (1, 2, 3, 4, 6, 8)


def time_curve(lm, past: np.ndarray, ns, repeats: int, last_only: bool = False) -> dict[int, float]:
    lm.reset()
    lm.forward(past, last=1)
    keep = lm.cached
    out = {}
    for n in ns:
        new = np.resize(past, n)
        times = []
        for _ in range(repeats + 1):
            t = time.perf_counter()
            lm.forward(new, last=1 if last_only else None)
            times.append(time.perf_counter() - t)
            lm.rollback(keep)
        out[n] = statistics.median(times[1:])
    lm.reset()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pair", default=None, help="pair folder (default: the default pair)")
    parser.add_argument("--past", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--ggufs", default="", help="comma-separated GGUF files: the same model in other weight types")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    import openvino as ov

    from edgespec.export.presets import ensure_default_pair
    from edgespec.runtime.hardware import cpu_name, versions
    from edgespec.runtime.llamacpp import LlamaCppLM, default_threads
    from edgespec.runtime.manifest import load_pair
    from edgespec.runtime.pipeline import _load_lm

    pair = load_pair(args.pair or ensure_default_pair())
    target = pair.target
    past = np.resize(np.arange(1000, 1064), args.past)
    rows = {}

    def record(name: str, curve: dict[int, float]) -> None:
        rows[name] = curve
        print(f"{name:40s} " + " ".join(f"{n}:{curve[n] * 1000:6.1f}" for n in NS), file=sys.stderr, flush=True)

    record("openvino paged exact", time_curve(_load_lm(ov.Core(), target, "CPU", True, "mask"), past, NS,
                                              args.repeats))
    threads = default_threads()
    variants = [("llama.cpp", {}), ("llama.cpp last row only", {"last_only": True}),
                ("llama.cpp flash attention off", {"flash_attn": False}),
                ("llama.cpp 1 thread", {"threads": 1}), ("llama.cpp ubatch 8", {"ubatch": 8})]
    for name, opts in variants:
        last_only = opts.pop("last_only", False)
        lm = LlamaCppLM(target.gguf, target.context_length, threads=opts.pop("threads", threads), **opts)
        record(f"{name} ({Path(target.gguf).stem.rsplit('.', 1)[-1]})", time_curve(lm, past, NS, args.repeats,
                                                                                    last_only))
        lm.close()
    for path in [Path(p) for p in args.ggufs.split(",") if p]:
        kind = path.stem.rsplit(".", 1)[-1]
        lm = LlamaCppLM(path, target.context_length, threads=threads)
        record(f"llama.cpp ({kind})", time_curve(lm, past, NS, args.repeats))
        record(f"llama.cpp last row only ({kind})", time_curve(lm, past, NS, args.repeats, last_only=True))
        lm.close()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"cpu": cpu_name(), "threads": threads, "past": args.past,
                                    "repeats": args.repeats, "gguf": str(target.gguf), "versions": versions(),
                                    "call_s": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
