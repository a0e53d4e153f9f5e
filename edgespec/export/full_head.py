"""A reduced-head draft seen through a full-vocabulary output, for tools that know no draft_vocab.npy.

A FastDraft draft's head covers only the most frequent target tokens (FR-Spec); logit column i means
target token vocab_map[i]. OpenVINO GenAI's draft_model expects logits over the whole vocabulary. The
model written here appends one -inf column and a Gather that places every head column at its target id
(all other ids read the -inf column), so the draft still computes only its reduced head and proposes
exactly the tokens the edgespec runtime would, and its probability for any token outside the head is 0.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgespec.runtime.errors import EdgespecError


def full_vocab_gather_index(vocab_map: np.ndarray, vocab_size: int) -> np.ndarray:
    """index[t] = the head column of target token t, or len(vocab_map) (the -inf column) if t is not in the head."""
    vocab_map = np.asarray(vocab_map, np.int64)
    if vocab_map.size == 0 or vocab_map.min() < 0 or vocab_map.max() >= vocab_size:
        raise EdgespecError(f"draft vocabulary map does not fit a vocabulary of {vocab_size} tokens")
    index = np.full(vocab_size, len(vocab_map), np.int64)
    index[vocab_map] = np.arange(len(vocab_map))
    return index


def write_full_head_model(src_xml: Path, out_xml: Path, vocab_map: np.ndarray, vocab_size: int) -> Path:
    """Write a copy of the draft IR whose `logits` output spans the whole target vocabulary."""
    import openvino as ov
    import openvino.opset15 as ops

    model = ov.Core().read_model(src_xml)
    logits = model.output("logits")
    head = logits.get_partial_shape()[-1]
    if head.is_static and head.get_length() != len(vocab_map):
        raise EdgespecError(f"{src_xml}: head has {head.get_length()} columns, draft_vocab.npy {len(vocab_map)} ids")
    source = logits.get_node().input_value(0)  # the Result node's producer
    # One -inf column shaped like a single logit column: [batch, tokens, 1].
    first_col = ops.slice(source, np.array([0]), np.array([1]), np.array([1]), np.array([-1]))
    minus_inf = ops.add(ops.multiply(first_col, np.float32(0.0)), np.float32(-np.inf))
    padded = ops.concat([source, minus_inf], axis=-1)
    index = ops.constant(full_vocab_gather_index(vocab_map, vocab_size).astype(np.int32))
    full = ops.gather(padded, index, axis=np.int64(-1))
    full.output(0).get_tensor().set_names({"logits"})
    source.get_tensor().set_names(set())
    logits.get_node().input(0).replace_source_output(full.output(0))
    model.validate_nodes_and_infer_types()
    out_xml.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, out_xml, compress_to_fp16=False)
    return out_xml
