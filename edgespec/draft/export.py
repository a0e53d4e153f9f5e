"""Trained draft (torch checkpoint) -> GGUF -> OpenVINO IR folder, INT8 weights, verified logits.

GenAI's GGUF reader accepts an output.weight with fewer rows than the vocabulary (checked: the
logits output then has head_vocab columns), so a reduced FR-Spec head goes through the GGUF
as is; draft_vocab.npy beside the IR maps its logit index -> target token id.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from edgespec.runtime.errors import EdgespecError
from edgespec.runtime.manifest import DRAFT_VOCAB, write_model_info

TOKENIZER_IR = ("openvino_tokenizer.xml", "openvino_tokenizer.bin", "openvino_detokenizer.xml",
                "openvino_detokenizer.bin")


# INT4 drafts keep 64 weights per scale: on the Qwen2.5-Coder draft, group 128 lost 0.5-1% greedy match
# against INT8 where group 64 lost 0-0.5% (40 cached answers per prompt set), at the same file size.
DRAFT_INT4_GROUP = 64


def export_draft(model, vocab_map: np.ndarray | None, tokenizer_gguf: Path, out_dir: Path, eos_token_ids: list[int],
                 weights: str = "int8", keep_tokenizer: bool = True, name: str = "fastdraft") -> str:
    """Write the draft IR folder with `weights` "int8" (per channel), "int4" (layers INT4, embedding and head
    INT8) or "fp16"; returns the compression engine used ("nncf", "builtin" or "none")."""
    from edgespec.export.compress import check_weight_format, compress_ir
    from edgespec.export.gguf_convert import convert_gguf
    from edgespec.export.gguf_llama import read_tokenizer_fields, write_llama_gguf

    weights_format = check_weight_format(weights)
    if weights_format == "keep":
        raise EdgespecError("a draft is written as int8, int4 or fp16 weights, not 'keep'")
    cfg = model.cfg
    if vocab_map is not None and len(vocab_map) != cfg.head_vocab:
        raise EdgespecError(f"vocab map has {len(vocab_map)} ids but the head has {cfg.head_vocab} rows")
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("openvino_model.xml", "openvino_model.bin", DRAFT_VOCAB):
        (out_dir / stale).unlink(missing_ok=True)
    tensors = model.gguf_weights()
    if vocab_map is None and np.array_equal(tensors["output.weight"], tensors["token_embd.weight"]):
        tensors.pop("output.weight")  # tied: GenAI reuses the embedding
    scratch = out_dir / ".export"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    try:
        gguf_path = write_llama_gguf(scratch / f"{name}.gguf", cfg.shape(), tensors,
                                     read_tokenizer_fields(tokenizer_gguf), name=name)
        convert_gguf(gguf_path, out_dir)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if not keep_tokenizer:
        drop_tokenizer(out_dir)
    engine = compress_ir(out_dir, weights_format, group_size=DRAFT_INT4_GROUP)
    if vocab_map is not None:
        np.save(out_dir / DRAFT_VOCAB, np.asarray(vocab_map, np.int32))
    write_model_info(out_dir, eos_token_ids=eos_token_ids, context_length=cfg.context, vocab_size=cfg.target_vocab)
    return engine


def ov_logits(folder: Path, ids: list[int], precise: bool = True) -> np.ndarray:
    """All-position logits of an IR model for one sequence (fresh state)."""
    import openvino as ov

    from edgespec.draft.teacher import all_position_logits

    cfg = {"KV_CACHE_PRECISION": "f32", "INFERENCE_PRECISION_HINT": "f32"} if precise else {}
    compiled = ov.Core().compile_model(folder / "openvino_model.xml", "CPU", cfg)
    return all_position_logits(compiled.create_infer_request(), {p.any_name for p in compiled.inputs}, ids)


# Fixed real text for the export check (code and prose as the draft will meet them; written for this
# check, not taken from an evaluation set). Real text gives confident logits at most positions, where an
# argmax flip means a broken export; the draft's own greedy text alone left few such positions (9 of 48).
VERIFY_TEXT = '''<|im_start|>user
Write a function that returns the running mean of a list of numbers.<|im_end|>
<|im_start|>assistant
Here is a simple function that computes the running mean:

```python
def running_mean(values):
    """Return a list where item i is the mean of values[0..i]."""
    means = []
    total = 0.0
    for i, value in enumerate(values, start=1):
        total += value
        means.append(total / i)
    return means
```

For example, `running_mean([2, 4, 6])` returns `[2.0, 3.0, 4.0]`. The function walks the list once, so it
takes linear time, and it keeps only the running total in memory. If the list is empty, it returns an
empty list. You can also use `itertools.accumulate` to get the running totals and divide each one by its
position.<|im_end|>
'''


def export_checkpoint(checkpoint: Path, tokenizer_gguf: Path, out: Path, weights: str = "int8",
                      keep_tokenizer: bool = False, verify_tokens: int = 48) -> tuple[str, dict[str, dict]]:
    """Export a training checkpoint as an IR folder and compare its logits with torch's on a fixed real text
    (confident logits) and on the draft's own greedy text; writes export_check.json.
    Returns the weight format written and verify_export's check per text."""
    from edgespec.draft.model import load_checkpoint

    model, state, vocab_map, _ = load_checkpoint(checkpoint)
    model.eval()
    engine = export_draft(model, vocab_map, tokenizer_gguf, out, eos_token_ids=gguf_eos_ids(tokenizer_gguf),
                          weights=weights, keep_tokenizer=True)
    fmt = "fp16" if engine == "none" else weights.lower()
    reference = reference_ids(out, model.cfg.context)  # needs the tokenizer IR, dropped below unless kept
    if not keep_tokenizer:
        drop_tokenizer(out)
    checks = {"reference_text": verify_export(model, out, reference),
              "own_text": verify_export(model, out, own_continuation(model, vocab_map, verify_tokens))}
    (out / "export_check.json").write_text(json.dumps({"weights": fmt, "step": state.get("step"), **checks}, indent=2))
    return fmt, checks


def gguf_eos_ids(tokenizer_gguf: Path) -> list[int]:
    """The end-of-sequence id a GGUF's tokenizer names, as the one-element list export_draft takes."""
    from edgespec.export.gguf_llama import read_tokenizer_fields

    if not tokenizer_gguf.is_file():
        raise EdgespecError(f"tokenizer GGUF not found: {tokenizer_gguf}")
    eos = read_tokenizer_fields(tokenizer_gguf).get("tokenizer.ggml.eos_token_id")
    if eos is None:
        raise EdgespecError(f"{tokenizer_gguf} names no end-of-sequence token")
    return [int(eos)]


def reference_ids(tokenizer_folder: Path, length: int) -> list[int]:
    """The first `length` token ids of VERIFY_TEXT under the tokenizer IR in `tokenizer_folder`."""
    from edgespec.runtime.tokenizer import TextTokenizer

    ids = TextTokenizer(tokenizer_folder).encode(VERIFY_TEXT)
    return ids[:length]


def drop_tokenizer(folder: Path) -> None:
    for f in TOKENIZER_IR:
        (folder / f).unlink(missing_ok=True)


def own_continuation(model, vocab_map: np.ndarray | None, length: int, seed: int = 0) -> list[int]:
    """Token ids the torch draft writes itself (greedy, after 4 random ids).

    Export is checked on such text rather than on random ids: after random ids the logits are nearly
    flat and INT8 weights flip argmaxes that real text rarely meets (SmolLM2 draft, INT8: 0.85 argmax
    agreement on random ids, while its token match on cached target answers moved by 1e-4)."""
    import torch

    ids = [int(i) for i in np.random.default_rng(seed).integers(3, 20000, 4)]
    with torch.no_grad():
        while len(ids) < length:
            index = int(model(torch.tensor([ids]))[0, -1].argmax())
            ids.append(int(vocab_map[index]) if vocab_map is not None else index)
    return ids


def verify_export(model, folder: Path, ids: list[int]) -> dict:
    """Compare OpenVINO logits with torch's on `ids`: max abs difference and argmax agreement."""
    import torch

    with torch.no_grad():
        ref = model(torch.tensor([ids]))[0].float().numpy()
    got = ov_logits(folder, ids)
    if got.shape != ref.shape:
        raise EdgespecError(f"exported logits have shape {got.shape}, torch gives {ref.shape}")
    top2 = np.sort(ref, -1)[:, -2:]
    # INT8 weights move logits by up to ~1 here; where torch's top two are closer than that an argmax
    # flip is rounding, not a broken export.
    clear = top2[:, 1] - top2[:, 0] >= 1.0
    same = got.argmax(-1) == ref.argmax(-1)
    return {"positions": len(ids), "max_abs_diff": float(np.abs(got - ref).max()), "logit_scale": float(np.abs(ref).max()),
            "argmax_agreement": float(same.mean()),
            "clear_positions": int(clear.sum()),
            "argmax_agreement_clear": float(same[clear].mean()) if clear.any() else 1.0}


# Argmax agreement an IR must reach with torch where torch's top two logits differ by 1 or more.
MIN_CLEAR_AGREEMENT = 0.95


def require_agreement(check: dict, what: str) -> None:
    """Refuse an IR/torch pair that verify_export found disagreeing where torch is clear."""
    if check["argmax_agreement_clear"] < MIN_CLEAR_AGREEMENT:
        raise EdgespecError(f"{what} (argmax agreement {check['argmax_agreement_clear']:.2f} where torch's top "
                            f"two differ by 1 or more)")
