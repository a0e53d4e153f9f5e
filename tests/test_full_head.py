"""A reduced-head (FR-Spec) draft given a full-vocabulary output for OpenVINO GenAI (export/full_head.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgespec.runtime.errors import EdgespecError
from edgespec.export.full_head import full_vocab_gather_index, write_full_head_model

SHIPPED = Path(__file__).resolve().parents[1] / "edgespec" / "assets" / "drafts" / "smollm2"


def _all_logits(xml: Path, ids: list[int]) -> np.ndarray:
    import openvino as ov

    request = ov.Core().compile_model(xml, "CPU", {"INFERENCE_PRECISION_HINT": "f32"}).create_infer_request()
    n = len(ids)
    request.infer({"input_ids": np.array([ids], np.int64), "attention_mask": np.ones((1, n), np.int64),
                   "position_ids": np.arange(n, dtype=np.int64)[None], "beam_idx": np.zeros(1, np.int32)})
    return request.get_tensor("logits").data.copy()[0]


def test_gather_index_places_head_columns_at_their_ids():
    index = full_vocab_gather_index(np.array([3, 0, 7]), 8)
    assert index.tolist() == [1, 3, 3, 0, 3, 3, 3, 2]  # 3 = the -inf column
    with pytest.raises(EdgespecError):
        full_vocab_gather_index(np.array([0, 8]), 8)


def test_full_head_model_matches_reduced_head(tmp_path):
    if not (SHIPPED / "openvino_model.xml").exists():
        pytest.skip("shipped draft not present")
    vocab_map = np.load(SHIPPED / "draft_vocab.npy").astype(np.int64)
    out = write_full_head_model(SHIPPED / "openvino_model.xml", tmp_path / "openvino_model.xml", vocab_map, 49152)
    ids = [1, 504, 3210, 17, 2, 9000]
    reduced, full = _all_logits(SHIPPED / "openvino_model.xml", ids), _all_logits(out, ids)
    assert full.shape == (len(ids), 49152)
    np.testing.assert_array_equal(full[:, vocab_map], reduced)
    assert np.isneginf(np.delete(full, vocab_map, axis=1)).all()
    assert (vocab_map[reduced.argmax(-1)] == full.argmax(-1)).all()


def test_head_size_mismatch_is_refused(tmp_path):
    if not (SHIPPED / "openvino_model.xml").exists():
        pytest.skip("shipped draft not present")
    with pytest.raises(EdgespecError, match="head has 8192 columns"):
        write_full_head_model(SHIPPED / "openvino_model.xml", tmp_path / "m.xml", np.arange(100), 49152)
