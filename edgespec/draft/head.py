"""The draft's reduced output head (FR-Spec): which target ids get a row, picked by frequency.

A head of the most frequent ids costs a fraction of a full-vocabulary head per draft call; the ids it
leaves out can never be drafted. `vocab_map[i]` is the target id of head row i.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgespec.runtime.errors import EdgespecError
from edgespec.draft import data
from edgespec.draft.model import DraftLM, remap_head, token_frequencies, top_tokens

CHAT_PROMPTS = 4000  # ShareGPT prompts counted beside the code corpus


def target_vocab(target: Path) -> int:
    """Rows of the target's output head, read from its IR (the vocabulary the draft must cover)."""
    import openvino as ov

    xml = target / "openvino_model.xml"
    if not xml.is_file():
        raise EdgespecError(f"no openvino_model.xml in {target}")
    dim = ov.Core().read_model(xml).output("logits").get_partial_shape()[-1]
    if not dim.is_static:
        raise EdgespecError(f"{xml}: the logits output has no fixed vocabulary size")
    return dim.get_length()


def pick_head(corpus_dir: Path, target: Path, head_vocab: int, vocab: int) -> np.ndarray | None:
    """The `head_vocab` most frequent target ids over a corpus's code tokens and chat prompts, with the
    chat format's own ids always in; None for a full head."""
    if not head_vocab or head_vocab >= vocab:
        return None
    arrays = [data.corpus_tokens(corpus_dir, "train.npy")]
    seeds = json.loads((corpus_dir / "seeds.json").read_text())
    tok = data.TargetTokenizer(target)
    # One call per prompt: the tokenizer truncates a single long text.
    chat = tok.encode(seeds["sharegpt"][:CHAT_PROMPTS])
    arrays.extend(np.array(ids, np.int64) for ids in chat if ids)
    return top_tokens(arrays, head_vocab, vocab, always=tok.special_ids())


def answer_head(corpus: np.ndarray, pairs: list[tuple[list[int], list[int]]], head_vocab: int, vocab: int,
                always: list[int]) -> np.ndarray:
    """A head picked with the target's own answers in the counts, weighted as much as the whole corpus."""
    answers = np.concatenate([np.array(a, np.int64) for _, a in pairs])
    freq = token_frequencies([corpus, answers], vocab)
    freq[always] = freq.max() + 1
    return np.sort(np.argsort(-freq, kind="stable")[:head_vocab])


def repick_head(model: DraftLM, vocab_map: np.ndarray | None, corpus: np.ndarray,
                pairs: list[tuple[list[int], list[int]]], head_vocab: int, always: list[int]
                ) -> tuple[DraftLM, np.ndarray]:
    """The draft with its head swapped for `answer_head` (rows it already had keep their weights), and
    the new head's vocab_map."""
    new_map = answer_head(corpus, pairs, head_vocab, model.cfg.target_vocab, always)
    return remap_head(model, vocab_map, new_map), new_map
