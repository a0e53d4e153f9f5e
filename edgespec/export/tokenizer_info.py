"""What an exported model folder says about its tokenizer: vocabulary bytes, eos ids, chat end-of-turn.

openvino_genai.Tokenizer.get_vocab_vector() would be the natural way to read a vocabulary, but it
raises UnicodeDecodeError on byte-level vocabularies whose tokens are partial UTF-8 sequences
(SmolLM2's are). So the vocabulary is read from the detokenizer IR itself: its VocabDecoder op takes
the token strings as three constants (begins, ends, bytes), which gives every token as exact bytes.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

from edgespec.runtime.errors import EdgespecError

# End-of-turn markers used by common chat templates; the first found in the template and vocabulary counts.
END_OF_TURN_MARKERS = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>")


def _byte_decoder() -> dict[str, int]:
    """GPT-2's printable-unicode-to-byte table (inverse of bytes_to_unicode)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


@lru_cache(maxsize=1)
def _core():
    """One Core for the process: a model read with tokenizer ops must not outlive the Core that read it
    (that crashed at exit)."""
    import openvino as ov
    import openvino_tokenizers  # noqa: F401  (registers the tokenizer ops with OpenVINO)

    return ov.Core()


def _read_ir(path: Path):
    if not path.is_file():
        raise EdgespecError(f"missing tokenizer file: {path}")
    try:
        return _core().read_model(path)
    except RuntimeError as exc:
        raise EdgespecError(f"{path} is unreadable ({str(exc).strip().splitlines()[0]})") from None


def vocab_bytes(model_dir: str | Path) -> list[bytes]:
    """Every token of the model's detokenizer as the bytes it decodes to, indexed by token id."""
    return list(_vocab_bytes_cached(str(Path(model_dir).resolve())))


@lru_cache(maxsize=8)
def _vocab_bytes_cached(model_dir: str) -> tuple[bytes, ...]:
    model = _read_ir(Path(model_dir) / "openvino_detokenizer.xml")
    ops = model.get_ordered_ops()
    decoders = [op for op in ops if op.get_type_name() == "VocabDecoder"]
    if not decoders:
        raise EdgespecError(f"{model_dir}: the detokenizer has no vocabulary (no VocabDecoder op)")
    consts = []
    for i in (1, 2, 3):
        node = decoders[0].input_value(i).get_node()
        if node.get_type_name() != "Constant":
            raise EdgespecError(f"{model_dir}: the detokenizer's vocabulary is not constant")
        consts.append(np.array(node.get_data()))
    begins, ends, chars = consts
    raw = chars.astype(np.uint8).tobytes()
    tokens = [raw[b:e] for b, e in zip(begins.tolist(), ends.tolist())]
    if any(op.get_type_name() == "CharsToBytes" for op in ops):
        # The vocabulary is kept in GPT-2's byte-to-unicode form and mapped to bytes after lookup.
        table = _byte_decoder()
        tokens = [bytes(table.get(ch, 0) for ch in t.decode("utf-8", "replace")) for t in tokens]
    return tuple(tokens)


def tokenizer_rt_info(model_dir: str | Path) -> dict[str, str]:
    """The rt_info entries of openvino_tokenizer.xml (eos_token_id, chat_template, ...) as strings."""
    model = _read_ir(Path(model_dir) / "openvino_tokenizer.xml")
    info = {}
    for key in ("eos_token_id", "bos_token_id", "pad_token_id", "chat_template"):
        if model.has_rt_info(key):
            info[key] = model.get_rt_info(key).astype(str)
    return info


def token_id(vocab: list[bytes], text: str) -> int | None:
    target = text.encode()
    for i, tok in enumerate(vocab):
        if tok == target:
            return i
    return None


def _generation_config_eos(hf_dir: Path | None) -> list[int]:
    if hf_dir is None or not (hf_dir / "generation_config.json").is_file():
        return []
    try:
        eos = json.loads((hf_dir / "generation_config.json").read_text()).get("eos_token_id")
    except (OSError, json.JSONDecodeError):
        return []
    if eos is None:
        return []
    return [int(e) for e in (eos if isinstance(eos, list) else [eos])]


def eos_token_ids(model_dir: str | Path, hf_dir: str | Path | None = None) -> list[int]:
    """Tokens that end generation: the tokenizer's eos, generation_config.json's eos list (HF sources),
    and the chat template's end-of-turn token (such as <|im_end|>) when the template uses one."""
    model_dir = Path(model_dir)
    info = tokenizer_rt_info(model_dir)
    ids = set()
    if info.get("eos_token_id", "").strip().lstrip("-").isdigit():
        ids.add(int(info["eos_token_id"]))
    ids.update(_generation_config_eos(Path(hf_dir) if hf_dir else None))
    template = info.get("chat_template", "")
    if template:
        vocab = vocab_bytes(model_dir)
        for marker in END_OF_TURN_MARKERS:
            if marker in template and (tid := token_id(vocab, marker)) is not None:
                ids.add(tid)
                break
    return sorted(i for i in ids if i >= 0)


def model_vocab_size(model_dir: str | Path) -> int:
    """Size of the logits' last dimension of openvino_model.xml (the output head's width)."""
    model = _core().read_model(Path(model_dir) / "openvino_model.xml")
    for out in model.outputs:
        if "logits" in out.get_names():
            dim = out.get_partial_shape()[-1]
            if dim.is_static:
                return dim.get_length()
    raise EdgespecError(f"{model_dir}: no static logits dimension in openvino_model.xml")


def first_difference(a: list[bytes], b: list[bytes]) -> int | None:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def check_same_tokenizer(target_dir: str | Path, draft_dir: str | Path, target_eos: list[int],
                         draft_eos: list[int]) -> None:
    """Refuse a pair whose tokenizers differ: the draft proposes token ids the target must read the same way.

    A draft without its own detokenizer is taken to use the target's.
    """
    draft_dir = Path(draft_dir)
    if (draft_dir / "openvino_detokenizer.xml").is_file():
        tv, dv = vocab_bytes(target_dir), vocab_bytes(draft_dir)
        where = first_difference(tv, dv)
        if where is not None:
            show = lambda v: repr(v[where]) if where < len(v) else "nothing"  # noqa: E731
            raise EdgespecError(f"target and draft tokenizers differ at token id {where} "
                                f"(target {show(tv)}, draft {show(dv)}; vocab sizes {len(tv)} and {len(dv)})")
    if set(target_eos) != set(draft_eos) and draft_eos:
        raise EdgespecError(f"target and draft disagree on end-of-sequence tokens ({sorted(target_eos)} vs "
                            f"{sorted(draft_eos)})")
