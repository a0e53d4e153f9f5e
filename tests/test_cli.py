"""The command line: streamed output, JSON metrics, chat, and one-line errors for bad input."""

import json
import os
import shutil
import subprocess
import sys

import pytest


def edgespec(*args: str, stdin: str | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "edgespec", *args], input=stdin, capture_output=True, text=True,
                          timeout=timeout, env=env)


def assert_clean_error(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_generate_json_matches_target_only(tiny_pair):
    spec = edgespec("generate", "Once upon a time", "--model", str(tiny_pair), "--raw", "-n", "24", "--json")
    base = edgespec("generate", "Once upon a time", "--model", str(tiny_pair), "--raw", "-n", "24", "--json",
                    "--no-draft")
    assert spec.returncode == 0 and base.returncode == 0, spec.stderr + base.stderr
    spec_out, base_out = json.loads(spec.stdout), json.loads(base.stdout)
    assert spec_out["mode"] == "speculative" and base_out["mode"] == "target"
    assert spec_out["stats"]["new_tokens"] > 0 and spec_out["stats"]["draft_calls"] > 0
    # default kernels: the target's are call-shape independent, so greedy speculation is exact
    assert spec_out["token_ids"] == base_out["token_ids"]
    fast = edgespec("generate", "Once upon a time", "--model", str(tiny_pair), "--raw", "-n", "24", "--json",
                    "--fast-kernels")
    assert fast.returncode == 0, fast.stderr
    assert json.loads(fast.stdout)["stats"]["new_tokens"] == spec_out["stats"]["new_tokens"]


def test_generate_streams_text_and_prints_metrics(tiny_pair):
    result = edgespec("generate", "Hello", "--model", str(tiny_pair), "-n", "16")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    assert "tokens per target call" in result.stderr and "acceptance rate" in result.stderr


def test_chat_keeps_history_and_commands(tiny_pair):
    script = "Hi there\n/stats\nTell me more\n/reset\n/stats\n/help\n/exit\n"
    result = edgespec("chat", "--model", str(tiny_pair), "-n", "8", stdin=script)
    assert result.returncode == 0, result.stderr
    assert "history cleared" in result.stderr
    assert "tokens per target call" in result.stderr
    assert result.stderr.count("/help this") == 2  # the banner, then /help answered by the CLI, not the model


def test_stats_of_an_interrupted_answer(tiny_pair):
    """Ctrl-C in chat arrives as KeyboardInterrupt inside the streamer: the stopped answer's stats stay readable."""
    from edgespec.runtime.pipeline import GenerationConfig, SpeculativePipeline

    pipe = SpeculativePipeline.from_manifest(tiny_pair)
    pipe.generate("Hello", GenerationConfig(max_new_tokens=4))
    pieces = []

    def interrupt(piece: str) -> None:
        pieces.append(piece)
        if len(pieces) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pipe.generate("Once upon a time", GenerationConfig(max_new_tokens=64, ignore_eos=True), streamer=interrupt,
                      chat=False)
    assert pipe.last_stats.stop_reason == "stopped" and 0 < pipe.last_stats.new_tokens < 64


def test_missing_model_folder(tmp_path):
    assert_clean_error(edgespec("generate", "hi", "--model", str(tmp_path / "nope")), "not found")


@pytest.mark.parametrize("garbage", ["<net><layers>garbage", "garbage, not even XML"])
def test_corrupted_model_file(tiny_pair, tmp_path, garbage):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_pair, broken)
    (broken / "target" / "openvino_model.xml").write_text(garbage)
    result = edgespec("generate", "hi", "--model", str(broken))
    assert_clean_error(result, "target/openvino_model.xml")
    assert len([line for line in result.stderr.splitlines() if line.strip()]) == 1, result.stderr  # no log noise


def test_truncated_weights(tiny_pair, tmp_path):
    broken = tmp_path / "truncated"
    shutil.copytree(tiny_pair, broken)
    weights = broken / "draft" / "openvino_model.bin"
    weights.write_bytes(weights.read_bytes()[:1000])
    assert_clean_error(edgespec("generate", "hi", "--model", str(broken)), "draft/openvino_model.bin", "truncated")


def test_corrupted_manifest(tiny_pair, tmp_path):
    broken = tmp_path / "manifest"
    shutil.copytree(tiny_pair, broken)
    (broken / "edgespec.json").write_text("{not json")
    assert_clean_error(edgespec("generate", "hi", "--model", str(broken)), "edgespec.json")


def test_missing_tokenizer(tiny_pair, tmp_path):
    broken = tmp_path / "notok"
    shutil.copytree(tiny_pair, broken)
    (broken / "target" / "openvino_detokenizer.xml").unlink()
    assert_clean_error(edgespec("generate", "hi", "--model", str(broken)), "openvino_detokenizer.xml")


def test_unknown_device(tiny_pair):
    assert_clean_error(edgespec("generate", "hi", "--model", str(tiny_pair), "--target-device", "TPU"), "TPU")


def test_absent_gpu(tiny_pair):
    result = edgespec("generate", "hi", "--model", str(tiny_pair), "--draft-device", "GPU")
    if result.returncode == 0:
        pytest.skip("this machine has a GPU")
    assert_clean_error(result, "GPU")


def test_empty_prompt(tiny_pair):
    assert_clean_error(edgespec("generate", "   ", "--model", str(tiny_pair)), "empty prompt")


def test_prompt_past_context(tiny_pair):
    long_prompt = "word " * 400  # the tiny models hold 256 positions
    assert_clean_error(edgespec("generate", long_prompt, "--model", str(tiny_pair), "--raw"), "context")


def test_prompt_past_the_tokenizers_cut_off(tiny_pair):
    """The tokenizer IR stops at 8,192 tokens without saying so; the error still gives the real count."""
    result = edgespec("generate", "word " * 9000, "--model", str(tiny_pair), "--raw")
    assert_clean_error(result, "context holds 256")
    count = int(result.stderr.split("prompt has ")[1].split()[0])
    assert 9000 <= count <= 9003


def test_generation_stops_at_context_limit(tiny_pair):
    from edgespec.runtime.pipeline import GenerationConfig, SpeculativePipeline

    pipe = SpeculativePipeline.from_manifest(tiny_pair)
    result = pipe.generate("word " * 240, GenerationConfig(max_new_tokens=100, ignore_eos=True), chat=False)
    assert result.stats.stop_reason == "context"
    assert result.stats.prompt_tokens + len(result.token_ids) <= pipe.target.context_length + 1


def test_stop_string_and_streamer_stop(tiny_pair):
    from edgespec.runtime.pipeline import GenerationConfig, SpeculativePipeline

    pipe = SpeculativePipeline.from_manifest(tiny_pair)
    full = pipe.generate("Once upon a time", GenerationConfig(max_new_tokens=30, ignore_eos=True), chat=False)
    stop = full.text[10:14]
    cut = pipe.generate("Once upon a time", GenerationConfig(max_new_tokens=30, ignore_eos=True,
                                                             stop_strings=(stop,)), chat=False)
    assert cut.text == full.text[:full.text.find(stop)] and cut.stats.stop_reason == "stop_string"
    pieces = []
    stopped = pipe.generate("Once upon a time", GenerationConfig(max_new_tokens=30, ignore_eos=True), chat=False,
                            streamer=lambda piece: pieces.append(piece) or len(pieces) >= 3)
    assert len(pieces) == 3 and stopped.stats.stop_reason == "streamer"


def test_stream_never_splits_a_character(tiny_pair):
    from edgespec.runtime.tokenizer import TextStream, TextTokenizer

    tokenizer = TextTokenizer(tiny_pair / "target")
    text = "naïve café → 你好世界 🎉🚀 done\nnext line ü"
    ids = tokenizer.encode(text)
    stream = TextStream(tokenizer)
    pieces = [stream.push([token]) for token in ids]
    assert all("\ufffd" not in piece for piece in pieces)
    assert "".join(pieces) == text
