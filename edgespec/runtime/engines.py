"""Which engine runs a model: OpenVINO, llama.cpp, or the faster of the two on this machine (auto).

auto times both engines on the target (calls of 1, 2 and 4 tokens after a short past, as verification makes them,
and a prompt's prefill) and the draft's one-token step, predicts the tokens per second each engine would decode at
with the draft at a prior acceptance (and alone), and picks the higher. Where the other engine prefills faster
(llama.cpp decodes SmolLM2 Q4_1 faster here but prefills it at half OpenVINO's speed), both stay loaded and each
generation takes the engine with the least expected time: the prompt tokens its cache lacks at its prefill rate
plus the expected answer at its decode rate. The verdict is kept in the cache, keyed by the model files, the
library versions, the CPU and the thread count, so it is measured again only when one of those changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from edgespec.runtime import costs
from edgespec.runtime.cache import cache_root
from edgespec.runtime.draft_length import expected_tokens
from edgespec.runtime.errors import EdgespecError
from edgespec.runtime.llamacpp import LlamaCppLM, available, default_threads, llama_cpp_version
from edgespec.runtime.manifest import ModelEntry

ENGINES = ("openvino", "llamacpp", "auto")
PROBE_NS = (1, 2, 4)
PROBE_PAST = 128
PROBE_REPEATS = 3
# Per-token acceptance assumed before any is measured: about what the shipped SmolLM2 draft reaches (its greedy
# token match is 0.56 on MT-bench and 0.73 on HumanEval); the adaptive policy corrects k once decoding runs.
PRIOR_ACCEPTANCE = 0.6
PROBE_FILE = "engine-probes.json"
PROBE_VERSION = 2  # 2: prefill timed too
PREFILL_TOKENS = 256  # the probe's prompt (prefill time grows about linearly with the prompt here)


def check_engine(engine: str) -> str:
    if engine not in ENGINES:
        raise EdgespecError(f"unknown engine {engine!r} (choose from {', '.join(ENGINES)})")
    return engine


def load_llamacpp(entry: ModelEntry, role: str = "target") -> LlamaCppLM:
    """The model of `entry` on llama.cpp, from the GGUF the pair records for it."""
    if entry.gguf is None:
        raise EdgespecError(f"the {role} in {entry.dir} has no GGUF recorded (the llama.cpp engine reads GGUF: "
                            f"export the pair from a GGUF, or use --engine openvino)")
    if not entry.gguf.is_file():
        raise EdgespecError(f"the {role}'s GGUF is missing: {entry.gguf}")
    lm = LlamaCppLM(entry.gguf, entry.context_length, vocab_map=entry.vocab_map())
    if entry.vocab_size and lm.vocab_size != entry.vocab_size:
        raise EdgespecError(f"{entry.gguf} has a vocabulary of {lm.vocab_size} tokens, the {role}'s OpenVINO "
                            f"model {entry.vocab_size}: not the same model")
    return lm


def llamacpp_usable(entry: ModelEntry, device: str) -> str | None:
    """Why the llama.cpp engine cannot run `entry` on `device` (None: it can)."""
    if device.split(".")[0].split(":")[0].upper() != "CPU":
        return f"the llama.cpp engine runs on the CPU here, not {device}"
    if not available():
        return "llama-cpp-python is not installed (the edgespec[llamacpp] extra)"
    if entry.gguf is None or not entry.gguf.is_file():
        return "the pair records no GGUF for this model"
    return None


def _file_stamp(path: Path | None) -> list:
    if path is None or not path.is_file():
        return [str(path), None]
    stat = path.stat()
    return [str(path.resolve()), stat.st_size, int(stat.st_mtime)]


def probe_key(target: ModelEntry, draft: ModelEntry | None, device: str, draft_device: str) -> str:
    """What the probe's answer depends on: model files, library versions, CPU, threads, devices."""
    import openvino as ov

    from edgespec.runtime.hardware import cpu_name

    facts = {"version": PROBE_VERSION, "target": [_file_stamp(target.xml), _file_stamp(target.gguf)],
             "draft": _file_stamp(draft.xml) if draft else None, "devices": [device, draft_device],
             "openvino": ov.get_version(), "llama_cpp": llama_cpp_version(), "cpu": cpu_name(),
             "machine": platform.machine(), "threads": default_threads()}
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:24]


def predicted_rate(call_s: dict[int, float], draft_token_s: float | None, acceptance: float = PRIOR_ACCEPTANCE,
                   max_k: int = 3) -> tuple[float, int]:
    """(tokens per second, k) of the best draft length 0..max_k for a target with these call costs (k = 0 only
    without a draft)."""
    best = (1.0 / costs.interp_call(call_s, 1), 0)
    if draft_token_s is None:
        return best
    for k in range(1, max_k + 1):
        rate = expected_tokens(acceptance, k) / (costs.interp_call(call_s, k + 1) + k * draft_token_s)
        best = max(best, (rate, k))
    return best


def probe_calls(lm, seed_ids: list[int]) -> dict[int, float]:
    """Median seconds of target calls of PROBE_NS tokens after a PROBE_PAST-token past."""
    past = np.resize(np.asarray(seed_ids, dtype=np.int64), min(PROBE_PAST, lm.context_length - max(PROBE_NS) - 1))
    return costs.time_calls(lm, past, list(PROBE_NS), PROBE_REPEATS)["call_s"]


def probe_draft(draft, seed_ids: list[int]) -> float:
    """Median seconds of one draft token after a short past."""
    past = np.resize(np.asarray(seed_ids, dtype=np.int64), min(PROBE_PAST, draft.context_length - 2))
    return costs.time_calls(draft, past, [1], PROBE_REPEATS)["call_s"][1]


def probe_prefill(lm, seed_ids: list[int]) -> float:
    """Median seconds of a PREFILL_TOKENS-token prompt fed to an empty cache (the first is a warm-up)."""
    ids = np.resize(np.asarray(seed_ids, dtype=np.int64), min(PREFILL_TOKENS, lm.context_length - 1))
    times = []
    for _ in range(PROBE_REPEATS + 1):
        lm.reset()
        start = time.perf_counter()
        lm.forward(ids, last=1)
        times.append(time.perf_counter() - start)
    lm.reset()
    return statistics.median(times[1:])


def decide(openvino_calls: dict[int, float], llamacpp_calls: dict[int, float], draft_token_s: float | None,
           prefill_s: dict[str, float] | None = None) -> dict:
    """The probe's verdict from measured costs: each engine's predicted decode rate, the faster engine, and whether
    the other one prefills faster (per_prompt: keep both, choose per generation with choose_engine)."""
    rates = {"openvino": predicted_rate(openvino_calls, draft_token_s),
             "llamacpp": predicted_rate(llamacpp_calls, draft_token_s)}
    engine = max(rates, key=lambda e: rates[e][0])
    per_prompt = bool(prefill_s) and min(prefill_s, key=prefill_s.get) != engine
    return {"engine": engine, "predicted_tokens_per_s": {e: r for e, (r, _) in rates.items()},
            "predicted_k": {e: k for e, (_, k) in rates.items()}, "acceptance_prior": PRIOR_ACCEPTANCE,
            "call_s": {"openvino": openvino_calls, "llamacpp": llamacpp_calls}, "draft_token_s": draft_token_s,
            "prefill_s": prefill_s, "prefill_tokens": PREFILL_TOKENS, "per_prompt": per_prompt}


def expected_seconds(verdict: dict, engine: str, prompt_tokens: int, answer_tokens: float) -> float:
    """A generation's expected time on `engine`: the prompt tokens its cache lacks at the probed prefill rate,
    then the answer at the predicted decode rate."""
    prefill = verdict["prefill_s"][engine] * prompt_tokens / verdict["prefill_tokens"]
    return prefill + answer_tokens / verdict["predicted_tokens_per_s"][engine]


def choose_engine(verdict: dict, pending: dict[str, int], answer_tokens: float) -> str:
    """The engine (of those in `pending`: engine -> prompt tokens its cache lacks) that should run a generation."""
    return min(pending, key=lambda e: expected_seconds(verdict, e, pending[e], answer_tokens))


def read_probes(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def remember(path: Path, key: str, verdict: dict) -> None:
    """Add one verdict to the probe file (written aside and renamed: readers never see half a file)."""
    data = read_probes(path)
    data[key] = {**verdict, "measured": time.strftime("%Y-%m-%dT%H:%M:%S")}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1, default=str) + "\n")
    os.replace(tmp, path)


def remembered(key: str, cache_dir: str | Path | None = None) -> dict | None:
    return read_probes(cache_root(cache_dir) / PROBE_FILE).get(key)


def probe_file(cache_dir: str | Path | None = None) -> Path:
    return cache_root(cache_dir) / PROBE_FILE
