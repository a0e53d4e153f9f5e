"""A stand-in pair for benchmarking while no trained draft exists: the target drafts for itself.

Why not a cut-down target: with SmolLM2-135M, dropping any block other than one in the middle
turns its greedy output to noise (tried: first 27 of 30 blocks; 0-25 + 29; 0-9 + 20-29; 0-4 +
25-29), so an untrained layer-dropped draft has no acceptance at all. The target as its own draft
has acceptance near 1 and costs as much as the target: the bench then measures the mechanics of
speculation (call counts, verification cost, loop overhead) with the best acceptance possible.
It is never a speedup claim, and the reports built with it say so.

    python -m edgespec.bench.makeshift_draft TARGET_IR_DIR OUT_PAIR
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

from edgespec.runtime.errors import EdgespecError
from edgespec.runtime.manifest import (
    MODEL_FILES,
    MODEL_INFO,
    TOKENIZER_FILES,
    read_model_entry,
    write_manifest,
    write_model_info,
)


def build_self_pair(target_ir: Path, out: Path, eos_token_ids: list[int], context_length: int) -> Path:
    """Pair folder whose target/ and draft/ both link the files of `target_ir`."""
    entry = read_model_entry(target_ir)  # checks the files are there
    for role in ("target", "draft"):
        folder = out / role
        folder.mkdir(parents=True, exist_ok=True)
        for name in MODEL_FILES + TOKENIZER_FILES:
            _link_or_copy(target_ir / name, folder / name)
        if (target_ir / MODEL_INFO).exists():
            _link_or_copy(target_ir / MODEL_INFO, folder / MODEL_INFO)
        else:
            write_model_info(folder, eos_token_ids, context_length, entry.vocab_size or _vocab(target_ir))
    write_manifest(out, out.name, {"dir": "target", "source": str(target_ir), "weights": "as converted"},
                   {"dir": "draft", "source": f"makeshift: the target itself ({target_ir})", "weights": "as converted"})
    return out


def _vocab(folder: Path) -> int:
    import openvino as ov

    model = ov.Core().read_model(str(folder / "openvino_model.xml"))
    dim = model.output("logits").get_partial_shape()[-1]
    return dim.get_length() if dim.is_static else 0


def _link_or_copy(src: Path, dst: Path) -> None:
    if not src.is_file():
        raise EdgespecError(f"missing {src}")
    if dst.exists() or dst.is_symlink():
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("target_ir", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--eos", default="2", help="end-of-sequence token ids, comma-separated (if no edgespec_model.json)")
    ap.add_argument("--context", type=int, default=8192)
    args = ap.parse_args()
    eos = [int(i) for i in args.eos.split(",") if i.strip()]
    pair = build_self_pair(args.target_ir, args.out, eos, args.context)
    print(json.dumps({"pair": str(pair)}))


if __name__ == "__main__":
    main()
