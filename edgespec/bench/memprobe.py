"""Peak resident memory of one mode, measured in a fresh process.

In the interleaved run every mode lives in one process, so its high-water mark is the sum of all
of them. Here a child process imports the libraries, loads one mode, generates once, and reports
its RSS high-water mark (VmHWM) and the RSS it had before loading, so the figure belongs to that
mode alone.

    python -m edgespec.bench.memprobe '<request as JSON>'   ->  prints one JSON line
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from edgespec.runtime.errors import EdgespecError


def probe(request: dict) -> dict:
    """request: pair, mode, target_device, draft_device, eos, text, ids, settings; optional draft2 (a draft
    folder for the *-spec2 modes), exact (SpeculativePipeline's, for the edgespec modes), collab_weight and
    collab_alpha (the collaborative modes)."""
    from edgespec.runtime.manifest import load_pair, read_model_entry
    from edgespec.runtime.hardware import peak_rss_bytes, rss_bytes
    from edgespec.bench.modes import load_mode
    from edgespec.runtime.config import GenerationConfig
    from edgespec.bench.prompts import PreparedPrompt, Prompt

    import openvino  # noqa: F401  (count the libraries in the baseline, not in the mode)
    import openvino_genai  # noqa: F401

    baseline = rss_bytes()
    pair = load_pair(request["pair"])
    draft2 = request.get("draft2")
    draft2 = read_model_entry(Path(draft2), need_tokenizer=False) if draft2 else None
    mode = load_mode(request["mode"], pair, request["target_device"], request["draft_device"],
                     set(request["eos"]), draft2=draft2, exact=request.get("exact"),
                     collab_weight=request.get("collab_weight", 0.5), collab_alpha=request.get("collab_alpha", 0.1))
    loaded = rss_bytes()
    pp = PreparedPrompt(Prompt("probe", "0", request["text"], chat=False), request["text"], request["ids"])
    settings = GenerationConfig(**request["settings"])
    mode.generate(pp, settings, settings.draft_length)
    return {"mode": request["mode"], "baseline_rss_bytes": baseline, "loaded_rss_bytes": loaded,
            "peak_rss_bytes": peak_rss_bytes(), "peak_over_baseline_bytes": peak_rss_bytes() - baseline}


def run_probe(request: dict, timeout: float = 1800) -> dict:
    """Run probe() in a child process; a failure is reported, not raised (memory is one figure of many)."""
    proc = subprocess.run([sys.executable, "-m", "edgespec.bench.memprobe", json.dumps(request)],
                          capture_output=True, text=True, timeout=timeout)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()
        return {"mode": request["mode"], "error": tail[-1] if tail else f"exit code {proc.returncode}"}
    return json.loads(lines[-1])


def main(argv: list[str]) -> int:
    try:
        request = json.loads(argv[0])
        print(json.dumps(probe(request)), flush=True)
    except EdgespecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
