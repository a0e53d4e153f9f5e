"""The pretraining corpus: deduplicated Python sources tokenized with the target's tokenizer, and prompt seeds.

A corpus folder holds train.npy and val.npy (token streams, documents separated by the end-of-turn id),
seeds.json (code seeds and ShareGPT user turns for `draft synthesize`) and stats.json.
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgespec.runtime.errors import EdgespecError
from edgespec.draft import data


def build_corpus(target: Path, out: Path, roots: list[Path], max_tokens: int, val_fraction: float,
                 sharegpt: int, sharegpt_later: int, seeds: int, mt_bench: Path,
                 on_document: Callable[[int, int], None] | None = None) -> dict:
    """Write a corpus folder for `target` from the .py files under `roots`; returns its stats.
    on_document(tokens so far, documents so far) follows the tokenizing."""
    out.mkdir(parents=True, exist_ok=True)
    guard = data.default_guard(mt_bench)
    tok = data.TargetTokenizer(target)
    files = list(data.python_files(roots))
    random.Random(0).shuffle(files)  # a capped corpus should still span many packages
    docs = tokenize_documents(files, tok, guard, max_tokens, val_fraction, on_document)
    if not docs.train:
        raise EdgespecError(f"no Python sources found under {', '.join(map(str, roots))}")
    data.save_tokens(out / "train.npy", np.concatenate(docs.train))
    data.save_tokens(out / "val.npy", np.concatenate(docs.val if docs.val else docs.train[-1:]))
    # Seeds are cheap (no tokenizing), so they come from every source file, not only the tokenized ones;
    # lazily, and without the whole-file guard: code_seeds stops at its limit and guards each seed itself.
    more = (text for _, text in data.dedup_documents(files[docs.files_read:], None))
    found = prompt_seeds(itertools.chain(docs.texts, more), guard, seeds, sharegpt, sharegpt_later)
    (out / "seeds.json").write_text(json.dumps(found))
    stats = {"documents": len(docs.texts), "tokens": docs.tokens,
             "train_tokens": int(sum(len(t) for t in docs.train)), "val_tokens": int(sum(len(v) for v in docs.val)),
             "code_seeds": len(found["code"]), "sharegpt_prompts": len(found["sharegpt"]),
             "sharegpt_later_prompts": len(found["sharegpt_later"]),
             "roots": [str(r) for r in roots], "target": str(target)}
    (out / "stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    return stats


@dataclass
class Documents:
    """Tokenized documents: train and held-out token arrays, their texts, and how many files were read."""
    train: list[np.ndarray] = field(default_factory=list)
    val: list[np.ndarray] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    tokens: int = 0
    files_read: int = 0


def tokenize_documents(files: list[Path], tok: data.TargetTokenizer, guard: data.EvalGuard, max_tokens: int,
                       val_fraction: float, on_document: Callable[[int, int], None] | None = None) -> Documents:
    """Deduplicated, guarded documents of `files` in order, tokenized until `max_tokens`."""
    docs, path = Documents(), None
    eos = tok.eos_id  # end of turn doubles as document separator, as in chat-tuned models' own data
    for path, text in data.dedup_documents(files, guard):
        ids = tok.encode([text])[0] + [eos]
        held_out = random.Random(str(path)).random() < val_fraction
        (docs.val if held_out else docs.train).append(np.array(ids, np.uint32))
        docs.texts.append(text)
        docs.tokens += len(ids)
        if on_document is not None:
            on_document(docs.tokens, len(docs.texts))
        if docs.tokens >= max_tokens:
            break
    docs.files_read = files.index(path) + 1 if path is not None else 0
    return docs


def prompt_seeds(documents: Iterable[str], guard: data.EvalGuard, seeds: int, sharegpt: int, sharegpt_later: int
                 ) -> dict[str, list[str]]:
    """Code seeds from `documents` and ShareGPT user turns (first and later ones), all kept off the eval sets."""
    code = data.code_seeds(documents, guard, seeds)
    share, later, sharegpt_path = [], [], data.sharegpt_file()
    if sharegpt_path is not None:
        share = data.sharegpt_user_prompts(sharegpt_path, guard, sharegpt)
        later = data.sharegpt_user_prompts(sharegpt_path, guard, sharegpt_later, later=True)
    return {"code": code, "sharegpt": share, "sharegpt_later": later}
