#!/usr/bin/env python3
"""What `edgespec serve` costs over the Python API: tokens/s and time to first token of a streamed answer.

One run, interleaved: each round streams the same greedy answer once through SpeculativePipeline.generate (in
this process) and once through the server (`edgespec serve` in a subprocess, read over HTTP as an app would),
in alternating order so drift in machine load falls on both. Tokens/s is completion tokens over the wall time
from the call (or the request) to the last piece; time to first token is the wall time to the first piece of
text (for the server: the first SSE event with text; the first byte, the role chunk, comes earlier).

  pip install -e ".[serve]" httpx
  python scripts/serve_overhead.py                      # the default pair, 8 rounds of 128 tokens
  python scripts/serve_overhead.py --model pairs/qwen --rounds 12 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

import edgespec
from edgespec import GenerationConfig, SpeculativePipeline

PROMPTS = [
    "Write a Python function that checks whether a number is prime, and explain it.",
    "Explain how a hash map works, with an example in Python.",
    "Write a short story about a lighthouse keeper who finds a message in a bottle.",
    "Describe the water cycle step by step for a school class.",
]


def api_run(pipe: SpeculativePipeline, prompt: str, max_tokens: int) -> dict:
    first: list[float] = []
    start = time.perf_counter()
    result = pipe.generate([{"role": "user", "content": prompt}], GenerationConfig(max_new_tokens=max_tokens),
                           streamer=lambda piece: first.append(time.perf_counter()) if not first else None)
    end = time.perf_counter()
    return {"tokens": len(result.token_ids), "wall_s": end - start, "ttft_s": first[0] - start,
            "generation_s": result.stats.wall_s, "text": result.text}


def server_run(http: httpx.Client, url: str, model: str, prompt: str, max_tokens: int) -> dict:
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
            "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}
    start = time.perf_counter()
    first_byte = first_text = None
    pieces, tokens, generation_s = [], 0, 0.0
    with http.stream("POST", f"{url}/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            first_byte = first_byte or time.perf_counter()
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[6:])
            if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                first_text = first_text or time.perf_counter()
                pieces.append(chunk["choices"][0]["delta"]["content"])
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            if "edgespec" in chunk:
                generation_s = chunk["edgespec"]["generation_s"]
    end = time.perf_counter()
    return {"tokens": tokens, "wall_s": end - start, "ttft_s": first_text - start, "ttfb_s": first_byte - start,
            "generation_s": generation_s, "text": "".join(pieces)}


def start_server(model: Path, port: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "edgespec", "serve", "--model", str(model), "--port", str(port)]
    env = {k: v for k, v in os.environ.items() if k != "EDGESPEC_API_KEY"}  # no key: plain requests
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)


def wait_ready(http: httpx.Client, url: str, server: subprocess.Popen, timeout: float = 300) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit("the server exited while starting")
        try:
            return http.get(f"{url}/health").json()["model"]
        except httpx.TransportError:
            time.sleep(0.2)
    sys.exit("the server did not start")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def outside_loop(run: dict) -> float:
    """Seconds outside the runtime's generation loop: tokenizing, and for the server also HTTP, the queue, SSE
    and the client's parsing. Unlike tokens/s, this does not move with the load other programs put on the cores."""
    return run["wall_s"] - run["generation_s"]


def summary(api: list[dict], served: list[dict]) -> dict:
    api_tps = [r["tokens"] / r["wall_s"] for r in api]
    served_tps = [r["tokens"] / r["wall_s"] for r in served]
    pairs = list(zip(served, api))  # paired by round: two runs made seconds apart
    api_wall = statistics.median(r["wall_s"] for r in api)
    return {
        "rounds": len(api), "tokens": [r["tokens"] for r in api],
        "api_tokens_per_s_median": statistics.median(api_tps),
        "server_tokens_per_s_median": statistics.median(served_tps),
        "overhead_pct_median_of_pairs": 100 * (1 - statistics.median(s / a for s, a in zip(served_tps, api_tps))),
        "overhead_pct_of_medians": 100 * (1 - statistics.median(served_tps) / statistics.median(api_tps)),
        "api_outside_loop_ms_median": 1000 * statistics.median(outside_loop(r) for r in api),
        "server_outside_loop_ms_median": 1000 * statistics.median(outside_loop(r) for r in served),
        "server_path_cost_pct": 100 * statistics.median(outside_loop(s) - outside_loop(a) for s, a in pairs) / api_wall,
        "api_ttft_ms_median": 1000 * statistics.median(r["ttft_s"] for r in api),
        "server_ttft_ms_median": 1000 * statistics.median(r["ttft_s"] for r in served),
        "server_ttfb_ms_median": 1000 * statistics.median(r["ttfb_s"] for r in served),
        "ttft_gap_ms_median_of_pairs": 1000 * statistics.median(s["ttft_s"] - a["ttft_s"] for s, a in pairs),
        "same_text": all(s["text"] == a["text"] for s, a in pairs),
        "load_average": os.getloadavg(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="pair folder (default: the default pair)")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--json", type=Path, default=None, help="also write the runs and the summary here")
    args = parser.parse_args()
    model = args.model or edgespec.default_pair()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_server(model, port)
    try:
        with httpx.Client(timeout=300) as http:
            pipe = SpeculativePipeline.from_manifest(model)
            name = wait_ready(http, url, server)
            api_run(pipe, PROMPTS[0], args.max_tokens)  # warm-up, both ways
            server_run(http, url, name, PROMPTS[0], args.max_tokens)
            api, served = [], []
            for i in range(args.rounds):
                prompt = PROMPTS[i % len(PROMPTS)]
                order = ["api", "server"] if i % 2 == 0 else ["server", "api"]
                for way in order:
                    if way == "api":
                        api.append(api_run(pipe, prompt, args.max_tokens))
                    else:
                        served.append(server_run(http, url, name, prompt, args.max_tokens))
                print(f"round {i + 1}: api {api[-1]['tokens'] / api[-1]['wall_s']:.1f} tok/s, ttft "
                      f"{api[-1]['ttft_s'] * 1000:.0f} ms; server {served[-1]['tokens'] / served[-1]['wall_s']:.1f} "
                      f"tok/s, ttft {served[-1]['ttft_s'] * 1000:.0f} ms", file=sys.stderr)
    finally:
        server.terminate()
        server.wait(30)
    result = summary(api, served)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps({"summary": result, "api": api, "server": served}, indent=2))


if __name__ == "__main__":
    main()
