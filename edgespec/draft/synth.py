"""Alignment data: answers written by the OpenVINO target itself.

Prompts (one JSON object per line: {"id", "kind", "user"}; raw kinds are continued as plain text, the
rest as a chat user turn) are answered by the target through
openvino_genai.LLMPipeline in batches, which GenAI runs with continuous batching so both cores stay
busy. Answers are appended to a JSONL file as soon as a batch finishes; a rerun skips every id
already there, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

from edgespec.runtime.errors import EdgespecError
from edgespec.draft.data import EvalGuard, TargetTokenizer, code_task, default_guard, model_input


def read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            # A run killed mid-write leaves a partial last line; anything else is real corruption.
            if n < len(path.read_text(encoding="utf-8").splitlines()):
                raise EdgespecError(f"{path}:{n} is not valid JSON") from None
    return rows


def read_answers(paths: list[Path]) -> list[dict]:
    """The non-empty answers in JSONL files: at least two, one to train on and one to hold out."""
    rows = [r for path in paths for r in read_jsonl(path) if r.get("response", "").strip()]
    if len(rows) < 2:
        raise EdgespecError(f"only {len(rows)} synthetic answers in {', '.join(map(str, paths))}")
    return rows


def read_prompt_lists(paths: list[Path]) -> list[dict]:
    """The rows of saved prompt lists ([{id, kind, user}]), each id once (its first list wins)."""
    rows, seen = [], set()
    for path in paths:
        if not path.is_file():
            raise EdgespecError(f"prompt list not found: {path}")
        try:
            listed = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            raise EdgespecError(f"{path} is not a JSON prompt list") from None
        rows += [r for r in listed if r["id"] not in seen and not seen.add(r["id"])]
    return rows


def append_jsonl(path: Path, rows: list[dict]) -> None:
    with path.open("a", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def make_pipeline(target_dir: Path, threads: int | None = None):
    import openvino_genai

    if not (Path(target_dir) / "openvino_model.xml").exists():
        raise EdgespecError(f"no openvino_model.xml in {target_dir}")
    props = {}
    if threads:
        props["INFERENCE_NUM_THREADS"] = threads
    return openvino_genai.LLMPipeline(str(target_dir), "CPU", **props)


def _config(max_new_tokens: int, sample: bool, end_of_turn: str, seed: int = 0, num_return: int = 1):
    import openvino_genai

    cfg = openvino_genai.GenerationConfig()
    cfg.max_new_tokens = max_new_tokens
    cfg.apply_chat_template = False  # prompts arrive already in the chat format
    if sample:
        cfg.do_sample = True
        cfg.temperature = 1.0
        cfg.top_p = 0.95
        cfg.rng_seed = seed
        cfg.num_return_sequences = num_return
    else:
        cfg.do_sample = False
    cfg.stop_strings = {end_of_turn}
    cfg.include_stop_str_in_output = False
    return cfg


def self_generated_users(pipe, tok: TargetTokenizer, count: int, guard: EvalGuard | None, seed: int = 0,
                         max_new_tokens: int = 80, per_call: int = 8) -> list[str]:
    """User turns the target writes itself: sampled where its chat format opens a user turn."""
    users, seen, call = [], set(), 0
    while len(users) < count and call < 4 * count // per_call + 4:
        cfg = _config(max_new_tokens, sample=True, end_of_turn=tok.end_of_turn, seed=seed + call, num_return=per_call)
        texts = pipe.generate(tok.before_user, cfg).texts
        call += 1
        for text in texts:
            text = text.split(tok.end_of_turn)[0].strip()
            if len(text) < 10 or text in seen or (guard is not None and guard.contaminated(text)):
                continue
            seen.add(text)
            users.append(text)
    return users[:count]


def synthesize(pipe, tok: TargetTokenizer, prompts: list[dict], out_path: Path, max_new_tokens: int, batch: int,
               on_batch: Callable[[int, int], None] | None = None) -> int:
    """Answer every prompt not yet in out_path; returns the number of new answers written."""
    done = {row["id"] for row in read_jsonl(out_path)}
    todo = [p for p in prompts if p["id"] not in done]
    cfg = _config(max_new_tokens, sample=False, end_of_turn=tok.end_of_turn)
    written = 0
    for start in range(0, len(todo), batch):
        chunk = todo[start:start + batch]
        texts = pipe.generate([model_input(tok, p) for p in chunk], cfg).texts
        rows = [{"id": p["id"], "kind": p["kind"], "user": p["user"], "response": t} for p, t in zip(chunk, texts)]
        append_jsonl(out_path, rows)
        written += len(rows)
        if on_batch:
            on_batch(len(rows), sum(len(t) for t in texts))
    return written


def mix_prompts(sources: dict[str, list[str]], seed: int = 0, start: dict[str, int] | None = None) -> list[dict]:
    """Prompts from every source with stable ids, interleaved so any prefix of the run is a fair mix.
    `start[kind]` skips a source's first prompts (they are already in an earlier list)."""
    rows = []
    for kind, users in sources.items():
        first = (start or {}).get(kind, 0)
        rows.extend({"id": f"{kind}-{i}", "kind": kind, "user": u} for i, u in enumerate(users) if i >= first)
    random.Random(seed).shuffle(rows)
    return rows


def grow_prompts(saved: list[dict], sources: dict[str, list[str]]) -> list[dict]:
    """`saved` plus the prompts of `sources` beyond what it holds per kind, appended after it (so a run
    that asks for more prompts answers the saved ones first and never renames one)."""
    held = {kind: sum(1 for r in saved if r["kind"] == kind) for kind in sources}
    return saved + mix_prompts(sources, seed=len(saved), start=held)


def prompt_sources(corpus_dir: Path, code: int, code_raw: int, sharegpt: int, sharegpt_later: int
                   ) -> dict[str, list[str]]:
    """User turns per prompt kind from a corpus folder's seeds: the first N of each."""
    seeds_path = corpus_dir / "seeds.json"
    if not seeds_path.exists():
        raise EdgespecError(f"{seeds_path} not found: run `edgespec draft corpus` first")
    seeds = json.loads(seeds_path.read_text())
    sources = {"code": [code_task(s) for s in seeds["code"][:code]], "code-raw": seeds["code"][:code_raw],
               "sharegpt": seeds["sharegpt"][:sharegpt]}
    if sharegpt_later:
        if not seeds.get("sharegpt_later"):
            raise EdgespecError(f"{seeds_path} has no later ShareGPT turns: rerun `edgespec draft corpus`")
        sources["sharegpt-later"] = seeds["sharegpt_later"][:sharegpt_later]
    return sources


def prompt_list(path: Path, sources: dict[str, list[str]], pipe, tok: TargetTokenizer, self_prompts: int
                ) -> list[dict]:
    """The run's prompts, saved at `path` on the first run so resumed runs answer the same set; asking for
    more code or ShareGPT prompts appends the next ones from the corpus."""
    if path.exists():
        prompts = grow_prompts(json.loads(path.read_text()), sources)
    else:
        selfgen = self_generated_users(pipe, tok, self_prompts, default_guard()) if self_prompts else []
        prompts = mix_prompts(sources | {"self": selfgen})
    path.write_text(json.dumps(prompts))
    return prompts
