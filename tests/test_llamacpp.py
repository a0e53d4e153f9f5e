"""The llama.cpp engine (edgespec.runtime.llamacpp): the loop's interface on llama.cpp, exactness, engine choice.

Everything that loads a model needs the edgespec[llamacpp] extra (llama-cpp-python) and is skipped without it; the
error a user sees without the extra is checked either way.
"""

import json
import sys

import numpy as np
import pytest

from edgespec.runtime.config import GenerationConfig, GenerationStats
from edgespec.runtime.engines import (CHAT, LOW_ACCEPTANCE, TEXT, EngineChoice, decide, per_token_s, predicted_rate,
                                      prefill_seconds)
from edgespec.runtime.errors import EdgespecError
from edgespec.runtime.llamacpp import available

needs_llama_cpp = pytest.mark.skipif(not available(), reason="llama-cpp-python is not installed "
                                                             "(pip install 'edgespec[llamacpp]')")

PROMPTS = ["Hello there, how are", "def fibonacci(n):", "The capital of France is", "1, 2, 3, 4,",
           "import numpy as np\n", "Q: What is 2+2?\nA:"]


@pytest.fixture(scope="module")
def gguf_pair(tmp_path_factory):
    from tiny import build_tiny_gguf_pair

    return build_tiny_gguf_pair(tmp_path_factory.mktemp("tiny_gguf_pair"))


def test_missing_extra_is_one_clear_line(monkeypatch):
    from edgespec.runtime.llamacpp import require_llama_cpp

    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # what `import llama_cpp` sees without the extra
    with pytest.raises(EdgespecError, match=r"edgespec\[llamacpp\]") as err:
        require_llama_cpp()
    assert "\n" not in str(err.value)


def test_unknown_engine_and_missing_gguf_are_clear_errors(gguf_pair, tmp_path):
    from edgespec.runtime.manifest import write_manifest
    from edgespec.runtime.pipeline import SpeculativePipeline

    no_gguf = tmp_path / "no-gguf"  # the same models, the manifest recording no GGUF
    no_gguf.mkdir()
    (no_gguf / "target").symlink_to(gguf_pair / "target")
    write_manifest(no_gguf, "no-gguf", {"dir": "target", "source": "random", "weights": "fp16"}, None)

    with pytest.raises(EdgespecError, match="unknown engine 'vulkan'"):
        SpeculativePipeline.from_manifest(no_gguf, engine="vulkan")
    if available():
        with pytest.raises(EdgespecError, match="records no GGUF"):
            SpeculativePipeline.from_manifest(no_gguf, engine="llamacpp")
    # auto falls back to OpenVINO when llama.cpp cannot run the target (here: no GGUF recorded)
    assert SpeculativePipeline.from_manifest(no_gguf, engine="auto", use_draft=False).engine == "openvino"


def test_engine_choice_from_costs():
    flat = {1: 0.030, 2: 0.033, 4: 0.040}   # OpenVINO-like: extra tokens nearly free
    steep = {1: 0.014, 2: 0.023, 4: 0.041}  # llama.cpp-like on this CPU: each token costs most of a step
    assert predicted_rate(steep, None) == (pytest.approx(1 / 0.014), 0)
    assert decide(flat, steep, None)["engine"] == "llamacpp"  # no draft: the faster single step wins
    # a free draft: the flat curve verifies 3 tokens for little more than one step
    verdict = decide({1: 0.016, 2: 0.017, 4: 0.019}, steep, 0.0005)
    assert verdict["engine"] == "openvino" and verdict["predicted_k"]["openvino"] == 3
    assert not verdict["per_prompt"]  # no prefill measured: one engine
    # the step's growth from steps timed alike after a short and a long prompt (not against the calls' own timing)
    grown = decide({1: 0.057, 2: 0.081, 4: 0.101}, {1: 0.038, 2: 0.068, 4: 0.116}, 0.034,
                   {"openvino": 1.7, "llamacpp": 2.5}, {"openvino": 0.0617, "llamacpp": 0.0392},
                   {"openvino": 0.0595, "llamacpp": 0.0360})
    assert grown["step_growth_s"]["openvino"] == pytest.approx(0.0022 / 224)
    assert grown["step_growth_s"]["llamacpp"] == pytest.approx(0.0032 / 224)


def test_engine_per_prompt_when_the_faster_decoder_prefills_slower():
    flat = {1: 0.030, 2: 0.033, 4: 0.040}
    steep = {1: 0.014, 2: 0.023, 4: 0.041}
    # llama.cpp-like: faster steps, prefill at half OpenVINO's speed (as SmolLM2 Q4_1 on the AVX2 EPYC)
    verdict = decide(flat, steep, None, {"openvino": 0.30, "llamacpp": 0.60})
    assert verdict["engine"] == "llamacpp" and verdict["per_prompt"]
    # each 256 prompt tokens cost 0.3 s more on llama.cpp, each answer token 16 ms less: ~19 answer tokens pay it
    choice = EngineChoice(verdict)
    assert choice.expected("llamacpp", 256, 256, 0) == pytest.approx(0.60)
    assert choice.expected("openvino", 128, 128, 10) == pytest.approx(0.15 + 10 * 0.030)
    assert choice.choose({"openvino": 800, "llamacpp": 800}, 800, 16) == "openvino"
    assert choice.choose({"openvino": 800, "llamacpp": 800}, 800, 128) == "llamacpp"
    assert choice.choose({"openvino": 2000, "llamacpp": 2000}, 2000, 128) == "openvino"
    assert choice.choose({"openvino": 40, "llamacpp": 40}, 40, 16) == "llamacpp"
    # a chat whose history llama.cpp holds: only the new turn is prefilled there
    assert choice.choose({"openvino": 800, "llamacpp": 30}, 800, 128) == "llamacpp"
    assert not decide(flat, steep, None, {"openvino": 0.6, "llamacpp": 0.3})["per_prompt"]


def test_engine_per_prompt_when_the_other_engine_decodes_faster_where_the_draft_does_poorly():
    """SmolLM2's probe (v24): OpenVINO with the draft at the prior acceptance 129 tokens/s, llama.cpp alone 123, and
    OpenVINO prefills 5x faster; kept alone, OpenVINO ran MT-bench (acceptance 0.3-0.4) at 0.90x of llama.cpp."""
    ov_calls = {1: 0.0119, 2: 0.01215, 4: 0.0125}
    llama_calls = {1: 0.00816, 2: 0.0148, 4: 0.0211}
    verdict = decide(ov_calls, llama_calls, 0.00145, {"openvino": 0.138, "llamacpp": 0.724},
                     {"openvino": 0.0125, "llamacpp": 0.0095}, {"openvino": 0.0119, "llamacpp": 0.0082})
    assert verdict["engine"] == "openvino"
    low = {name: predicted_rate(calls, 0.00145, LOW_ACCEPTANCE)[0]
           for name, calls in (("ov", ov_calls), ("llama", llama_calls))}
    assert low["llama"] > low["ov"]
    assert verdict["per_prompt"]
    # a draft that wins at any acceptance (here: llama.cpp's step no faster) keeps one engine
    assert not decide(ov_calls, {n: 2 * t for n, t in llama_calls.items()}, 0.00145,
                      {"openvino": 0.138, "llamacpp": 0.724}, {"openvino": 0.0125, "llamacpp": 0.019},
                      {"openvino": 0.0119, "llamacpp": 0.0164})["per_prompt"]


def test_engine_choice_learns_from_the_generations_it_runs():
    """The probe predicts each engine's decode rate at one context and a prior acceptance; the generations run
    on an engine correct it (SmolLM2 here: OpenVINO speculation predicted at 82 tokens/s ran at 61 on chat
    prompts, and llama.cpp's step grows with the context where OpenVINO's paged form's hardly does)."""
    flat = {1: 0.015, 2: 0.017, 4: 0.021}
    steep = {1: 0.009, 2: 0.015, 4: 0.025}
    verdict = decide(flat, steep, 0.003, {"openvino": 0.44, "llamacpp": 0.98},
                     {"openvino": 0.015, "llamacpp": 0.010})
    assert verdict["engine"] == "llamacpp"
    assert verdict["step_growth_s"]["openvino"] == 0.0
    assert verdict["step_growth_s"]["llamacpp"] == pytest.approx(0.001 / 128)
    assert verdict["per_prompt"]
    choice = EngineChoice(verdict)
    # the step's growth: 128 answer tokens after a 40-token prompt on llama.cpp, after a 1500-token one on OpenVINO
    assert choice.choose({"openvino": 40, "llamacpp": 40}, 40, 128) == "llamacpp"
    assert choice.choose({"openvino": 10, "llamacpp": 10}, 1500, 128) == "openvino"
    # OpenVINO runs 1.6x slower than the probe prices the calls it made: medium prompts move to llama.cpp
    assert choice.choose({"openvino": 300, "llamacpp": 300}, 300, 128) == "openvino"
    slow = prefill_seconds(verdict, "openvino", 300) + 1.6 * 60 * (0.021 + 3 * 0.003)  # 60 k = 3 steps, 3 ms drafts
    choice.record("openvino", 300, 300, prefill_seconds(verdict, "openvino", 300), 128, slow, [4] * 60, 180)
    assert choice.decode_factor["openvino"] == pytest.approx(1.3)
    choice.record("openvino", 300, 300, prefill_seconds(verdict, "openvino", 300), 128, slow, [4] * 60, 180)
    assert choice.choose({"openvino": 300, "llamacpp": 300}, 300, 128) == "llamacpp"
    # a short prompt's time to first token (mostly fixed costs) does not move the prefill correction
    before = dict(choice.prefill_factor)
    choice.record("openvino", 53, 53, 0.3, 128, 0.3 + 127 * per_token_s(verdict, "openvino", 53 + 64))
    assert choice.prefill_factor == before
    # a stalled generation moves the correction at most to the bound, and a few tokens do not count
    choice.record("llamacpp", 300, 300, 100.0, 4, 200.0)
    assert choice.prefill_factor["llamacpp"] <= EngineChoice.BOUNDS[1] and choice.decode_factor["llamacpp"] == 1.0


def test_engine_choice_follows_the_workloads_rate_and_measures_it_again_each_generation():
    """At the prior acceptance alone, MT-bench's questions (0.3-0.55) stayed on OpenVINO at 0.87x of llama.cpp (v20).
    The realized rate of the last generations prices the next one; a workload change misprices one generation,
    since every generation measures the draft's acceptance again (its chains, or its agreement with an answer it
    did not draft), which prices the engine that did not run."""
    verdict = decide({1: 0.012, 2: 0.014, 4: 0.018}, {1: 0.0075, 2: 0.013, 4: 0.022}, 0.0027,
                     {"openvino": 0.54, "llamacpp": 0.90}, {"openvino": 0.012, "llamacpp": 0.0110})
    assert verdict["per_prompt"]
    choice = EngineChoice(verdict)
    short = ({"openvino": 53, "llamacpp": 53}, 53, 128)
    assert choice.choose(*short) == "llamacpp"
    # code: 128 tokens in 36 steps of 4 tokens (k = 3, most drafts kept), each as fast as the probe prices it
    fast_code = 36 * (0.018 + 3 * 0.0027)
    for _ in range(2):
        choice.record("openvino", 120, 120, 0.3, 128, 0.3 + fast_code, [4] * 36, 108)
    assert choice.decode_factor["openvino"] == pytest.approx(1.0, abs=0.02)
    assert choice.rate["openvino"] > 1.15 * verdict["predicted_tokens_per_s"]["openvino"]
    assert choice.choose(*short) == "openvino"
    # then questions: 128 tokens in 95 steps of 2 tokens (k = 1, a third kept)
    slow_questions = 95 * (0.014 + 0.0027)
    choice.record("openvino", 53, 53, 0.2, 128, 0.2 + slow_questions, [2] * 95, 95)
    choice.record_acceptance("openvino", 0.35)
    assert choice.choose(*short) == "llamacpp"
    # on llama.cpp (no drafts) the draft's agreement with each answer keeps OpenVINO priced: code brings it back
    choice.record("llamacpp", 53, 53, 0.2, 128, 0.2 + 127 * 0.0075)
    choice.record_acceptance("llamacpp", 0.4)
    assert choice.choose(*short) == "llamacpp"
    for _ in range(3):
        choice.record("llamacpp", 53, 53, 0.2, 128, 0.2 + 127 * 0.0075)
        choice.record_acceptance("llamacpp", 0.9)
    assert choice.choose(*short) == "openvino"
    # a draft that could not pay on the other engine even when right 9 times in 10 is not measured
    assert choice.acceptance_matters("llamacpp")
    qwen = decide({1: 0.060, 2: 0.084, 4: 0.117}, {1: 0.037, 2: 0.060, 4: 0.103}, 0.0286,
                  {"openvino": 2.0, "llamacpp": 2.4}, {"openvino": 0.066, "llamacpp": 0.040})
    assert not EngineChoice(qwen).acceptance_matters("llamacpp")


def test_copies_are_priced_on_every_engine_and_expected_from_prompts_of_a_like_length():
    """The engine that ran was priced by its realized rate, prompt lookup's copies included, every other engine by
    the draft's acceptance alone; and the copies of one prompt priced the next whatever it was: after Qwen's code
    edits the translation went to OpenVINO (0.8x of llama.cpp), after short questions a long document to llama.cpp.
    Now each answer's copies are priced on every engine's own calls (lookup_rate) and kept apart from the rate, as
    a lift expected for prompts of the same kind within LIFT_SPAN of their length."""
    from edgespec.runtime.engines import LIFT_SPAN, answer_walks, call_seconds, lookup_rate

    calls = {"openvino": {1: 0.0600, 2: 0.0640, 4: 0.0700}, "llamacpp": {1: 0.0370, 2: 0.0600, 4: 0.1030}}
    verdict = decide(calls["openvino"], calls["llamacpp"], 0.045, {"openvino": 2.0, "llamacpp": 2.4},
                     {"openvino": 0.060, "llamacpp": 0.040}, {"openvino": 0.060, "llamacpp": 0.037})
    assert verdict["engine"] == "llamacpp" and verdict["per_prompt"]
    assert call_seconds(calls["openvino"], 8) == pytest.approx(0.070 + 4 * 0.003)
    assert call_seconds({"1": 0.01, "2": 0.02}, 2) == pytest.approx(0.02)
    code = list(range(1000, 1300))
    edit, copying = [1, 2] + code + [3], [4] + code[:120] + [5] * 7          # a 303-token prompt, copied
    question, fresh = [1, 2] + list(range(3000, 3098)), [4] + list(range(2000, 2127))   # 100 tokens, nothing copied
    plain = 1 / 0.0600
    assert lookup_rate(calls["openvino"], plain, answer_walks(edit, fresh), 127) == plain
    assert lookup_rate(calls["openvino"], plain, answer_walks(edit, copying), 127) > 2.5 * plain
    choice = EngineChoice(verdict)
    at = {"edit": ({"openvino": 303, "llamacpp": 303}, 303, 128), "question": ({"openvino": 100, "llamacpp": 100},
                                                                               100, 128)}
    assert choice.choose(*at["edit"], CHAT) == "llamacpp"  # nothing known of copying: the plain rates
    choice.record("llamacpp", 303, 303, 2.4 * 303 / 256, 128, 3.0 + 127 * 0.037, kind=CHAT, text=(edit, copying))
    assert choice.lift("openvino", 303, CHAT) > 2.5 and choice.lift("openvino", 303, CHAT) > choice.lift(
        "llamacpp", 303, CHAT)
    assert choice.lifts[-1][2]["llamacpp"] == pytest.approx(1.0)  # its loop copied nothing: realized, not priced
    assert choice.choose(*at["edit"], CHAT) == "openvino"
    # the next prompt is a short question: the edit's copies are not its own
    assert choice.lift("openvino", 100, CHAT) == 1.0 and 303 > LIFT_SPAN * 100
    assert choice.choose(*at["question"], CHAT) == "llamacpp"
    assert choice.lift("openvino", 303, TEXT) == 1.0  # nor a plain-text prompt's
    # a question that copied nothing, then an edit again: the edit is priced by the edit
    choice.record("llamacpp", 100, 100, 0.8, 128, 0.8 + 127 * 0.037, kind=CHAT, text=(question, fresh))
    assert choice.choose(*at["question"], CHAT) == "llamacpp"
    assert choice.choose(*at["edit"], CHAT) == "openvino"
    # an edit on OpenVINO: its rate without copies is its price at the draft's acceptance (none measured: the target
    # alone), its lift what it realized over that
    copied_steps, plain_steps = [8] * 14, [1] * 15
    decoding = sum(call_seconds(calls["openvino"], w) for w in copied_steps + plain_steps)
    choice.record("openvino", 303, 303, 2.0 * 303 / 256, 128, 2.4 + decoding, copied_steps + plain_steps, 0, CHAT,
                  (edit, copying))
    assert choice.lifts[-1][2]["openvino"] == pytest.approx(127 / decoding / plain)
    assert choice.choose(*at["edit"], CHAT) == "openvino"
    # edits that stop copying bring OpenVINO back to its plain price
    for _ in range(4):
        choice.record("openvino", 303, 303, 2.0 * 303 / 256, 128, 2.4 + 127 * 0.060, kind=CHAT, text=(edit, fresh))
    assert choice.choose(*at["edit"], CHAT) == "llamacpp"
    # the draft's measured acceptance prices the other engine's rate without copies
    choice.record_acceptance("llamacpp", 0.9, CHAT)
    assert choice.acceptance[CHAT] == 0.9
    assert choice.rates[CHAT]["openvino"] > 1 / 0.060


def test_engine_choice_follows_chat_and_plain_text_workloads_apart():
    """Priced by HumanEval's completions before it (drafts kept at 0.75-0.95), the first MT-bench question ran on
    OpenVINO at 0.66x of llama.cpp's speed (v27, v28). Chat-formatted prompts and plain text keep rates apart: code
    completions lift OpenVINO's rate for the next completion, not for a chat question; the engine's own
    corrections are shared."""
    verdict = decide({1: 0.012, 2: 0.014, 4: 0.018}, {1: 0.0075, 2: 0.013, 4: 0.022}, 0.0027,
                     {"openvino": 0.54, "llamacpp": 0.90}, {"openvino": 0.012, "llamacpp": 0.0110})
    choice = EngineChoice(verdict)
    short = ({"openvino": 53, "llamacpp": 53}, 53, 128)
    fast_code = 36 * (0.018 + 3 * 0.0027)
    for _ in range(2):
        choice.record("openvino", 120, 120, 0.3, 128, 0.3 + fast_code, [4] * 36, 108, TEXT)
    assert choice.choose(*short, TEXT) == "openvino"
    assert choice.choose(*short, CHAT) == "llamacpp"
    assert choice.rates[CHAT] == verdict["predicted_tokens_per_s"]
    # a chat answer the draft agreed with poorly moves the chat rate only
    choice.record("llamacpp", 53, 53, 0.2, 128, 0.2 + 127 * 0.0075, kind=CHAT)
    choice.record_acceptance("llamacpp", 0.3, CHAT)
    assert choice.rates[CHAT]["openvino"] < verdict["predicted_tokens_per_s"]["openvino"]
    assert choice.choose(*short, TEXT) == "openvino" and choice.choose(*short, CHAT) == "llamacpp"
    # a stalled OpenVINO generation of either kind corrects the engine for both
    for _ in range(3):
        choice.record("openvino", 53, 53, 0.2, 128, 0.2 + 4 * fast_code, [4] * 36, 108, CHAT)
    assert choice.decode_factor["openvino"] > 2 and choice.choose(*short, TEXT) == "llamacpp"


def test_one_slow_generation_outweighs_a_copied_one_in_the_workloads_rate():
    """Code edits run 3-6x their draft's rate on prompt lookup (steps of 8 copied tokens). Averaged as tokens per
    second, that rate kept its pull for two more generations: the translations after the code edits, which sat the
    draft out, went to OpenVINO twice (Qwen, 0.81x of llama.cpp). Averaged as seconds per token (what an answer's
    time is linear in), one such generation brings the price down. Steps wider than the probe's widest call are
    priced on its slope (8 tokens: 26 ms here), not as 4 tokens, which read these edits as 1.4x their price and
    OpenVINO's decoding as that much slower."""
    verdict = decide({1: 0.012, 2: 0.014, 4: 0.018}, {1: 0.0075, 2: 0.013, 4: 0.022}, 0.0027,
                     {"openvino": 0.54, "llamacpp": 0.90}, {"openvino": 0.012, "llamacpp": 0.0110})
    choice = EngineChoice(verdict)
    prompt = ({"openvino": 53, "llamacpp": 53}, 53, 128)
    for _ in range(4):
        choice.record("openvino", 400, 400, 0.8, 128, 0.8 + 16 * 0.026, [8] * 16, 0, CHAT)
    assert choice.decode_factor["openvino"] == pytest.approx(1.0)
    assert choice.choose(*prompt, CHAT) == "openvino"
    choice.record("openvino", 200, 200, 0.4, 128, 0.4 + 127 * 0.014, [2] * 127, 0, CHAT)
    assert choice.rates[CHAT]["openvino"] < 1.3 * 127 / (127 * 0.014)
    assert choice.choose(*prompt, CHAT) == "llamacpp"


def test_pipeline_tells_chat_prompts_from_plain_text(gguf_pair):
    from edgespec.runtime.pipeline import SpeculativePipeline

    pipe = SpeculativePipeline.from_manifest(gguf_pair, engine="openvino", use_draft=False)
    pipe.chat_marker = pipe.tokenizer.chat_marker()
    assert pipe.chat_marker is not None
    chat = pipe.prompt_ids([{"role": "user", "content": "Hello there"}])
    assert pipe.prompt_kind(chat) == CHAT
    assert pipe.prompt_kind(pipe.prompt_ids("def add(a, b):", chat=False)) == TEXT


def test_engine_choice_corrects_long_contexts_apart():
    """OpenVINO speculation after 800-1000-token prompts ran 1.5x slower per token than predicted (SmolLM2 v12):
    that must not price a 290-token chat prompt, which OpenVINO's prefill wins, onto llama.cpp."""
    verdict = decide({1: 0.012, 2: 0.014, 4: 0.018}, {1: 0.0075, 2: 0.013, 4: 0.022}, 0.0027,
                     {"openvino": 0.45, "llamacpp": 0.95}, {"openvino": 0.012, "llamacpp": 0.0085})
    choice = EngineChoice(verdict)
    chat = ({"openvino": 290, "llamacpp": 290}, 290, 128)
    assert choice.choose(*chat) == "openvino"
    for _ in range(4):  # long documents: prefill as predicted, one-token steps 1.5x slower than the probe's 12 ms
        choice.record("openvino", 900, 900, prefill_seconds(verdict, "openvino", 900), 128,
                      prefill_seconds(verdict, "openvino", 900) + 127 * 1.5 * 0.012)
    assert choice.long_decode_factor["openvino"] == pytest.approx(1.5, abs=0.05)
    assert choice.decode_factor["openvino"] == 1.0
    assert choice.choose(*chat) == "openvino"
    def decoding(c: EngineChoice) -> float:
        return c.expected("openvino", 900, 900, 128) - c.expected("openvino", 900, 900, 0)
    fresh = EngineChoice(verdict)
    fresh.rate = dict(choice.rate)  # the same workload's rate (these ran without drafts), no correction
    assert decoding(choice) == pytest.approx(1.5 * decoding(fresh), rel=0.05)  # long ones: corrected


@needs_llama_cpp
def test_forward_in_one_call_equals_token_by_token_and_rollback_forgets(gguf_pair):
    from edgespec.runtime.engines import load_llamacpp
    from edgespec.runtime.manifest import load_pair

    lm = load_llamacpp(load_pair(gguf_pair).target)
    ids = lm.tokenize("The capital of France is Paris, and the capital of Italy is")
    whole = lm.forward(ids)  # every row
    assert whole.shape == (len(ids), lm.vocab_size) and lm.cached == len(ids)
    lm.reset()
    steps = np.concatenate([lm.forward([t]) for t in ids])
    # Equal to float rounding with flash attention (the engine's default; bit for bit in most runs on an AVX2 EPYC,
    # up to 5.4e-4 apart on an AVX-512 one); its plain attention path differs by up to 1e-2 here and by 1.3 on
    # SmolLM2 (docs/llamacpp.md).
    np.testing.assert_allclose(whole, steps, atol=2e-3)
    assert (whole.argmax(-1) == steps.argmax(-1)).all()
    # Roll back over a wrong continuation: the cache must read as if it was never fed.
    keep = len(ids) - 4
    lm.rollback(keep)
    assert lm.cached == keep
    lm.forward([5, 6, 7])
    assert lm.pending(ids) == ids[keep:]  # common prefix kept, the wrong tokens dropped
    again = lm.forward(ids[keep:], last=2)
    np.testing.assert_allclose(again, whole[-2:], atol=2e-3)
    with pytest.raises(EdgespecError, match="context length"):
        lm.forward(np.zeros(lm.context_length, dtype=np.int64))
    assert lm.cached == len(ids)  # refused before feeding anything: the cache is as it was
    lm.close()


@needs_llama_cpp
def test_a_feed_longer_than_the_batch_runs_in_chunks_with_the_rows_asked_for(gguf_pair):
    from edgespec.runtime.llamacpp import LlamaCppLM
    from edgespec.runtime.manifest import load_pair

    entry = load_pair(gguf_pair).target
    whole = LlamaCppLM(entry.gguf, entry.context_length)
    chunked = LlamaCppLM(entry.gguf, entry.context_length, batch=4, ubatch=4)
    ids = whole.tokenize("The capital of France is Paris, and the capital of Italy is")
    assert len(ids) > 8  # three chunks of at most 4 tokens
    for last in (None, 6, 1):
        expected = whole.forward(ids, last=last)
        got = chunked.forward(ids, last=last)
        assert got.shape == expected.shape == (last or len(ids), whole.vocab_size)
        np.testing.assert_allclose(got, expected, atol=2e-3)
        assert chunked.cached == whole.cached == len(ids) and chunked.calls == whole.calls
        whole.reset()
        chunked.reset()
    whole.close()
    chunked.close()


@needs_llama_cpp
@pytest.mark.parametrize("draft_engine", ["openvino", "llamacpp"])
def test_greedy_speculative_on_llamacpp_equals_target_only(gguf_pair, draft_engine):
    """Exact: with flash attention llama.cpp's k-token calls give the one-token calls' logits (to float rounding),
    so speculative greedy output must equal target-only output token for token."""
    from edgespec.runtime.pipeline import SpeculativePipeline

    base = SpeculativePipeline.from_manifest(gguf_pair, use_draft=False, engine="llamacpp")
    spec = SpeculativePipeline.from_manifest(gguf_pair, engine="llamacpp", draft_engine=draft_engine)
    assert spec.engine == "llamacpp" and type(spec.target).__name__ == "LlamaCppLM"
    drafted = accepted = 0
    for prompt in PROMPTS:
        want = base.generate(prompt, GenerationConfig(max_new_tokens=32, ignore_eos=True), chat=False)
        for k, adaptive in [(1, False), (4, False), (3, True)]:
            config = GenerationConfig(max_new_tokens=32, ignore_eos=True, draft_length=k, adaptive_draft=adaptive)
            got = spec.generate(prompt, config, chat=False)
            assert got.token_ids == want.token_ids, (prompt, k, adaptive)
            drafted += got.stats.drafted_tokens
            accepted += got.stats.accepted_tokens
    assert drafted and 0 < accepted <= drafted  # the draft proposed, and some proposals were kept


@needs_llama_cpp
def test_sampling_on_llamacpp_is_seeded(gguf_pair):
    from edgespec.runtime.pipeline import SpeculativePipeline

    spec = SpeculativePipeline.from_manifest(gguf_pair, engine="llamacpp")
    # A fixed draft length: an adaptive one carries measured costs into the next generation, which changes k.
    config = GenerationConfig(max_new_tokens=24, ignore_eos=True, do_sample=True, temperature=0.8, seed=3,
                              adaptive_draft=False)
    first = spec.generate("Once upon a time", config, chat=False)
    # The same calls the second time (a cached prompt would be read in other call shapes, whose logits differ in
    # float rounding on some CPUs, enough to move a sample).
    spec.clear_cache()
    assert first.token_ids == spec.generate("Once upon a time", config, chat=False).token_ids
    assert first.stats.drafted_tokens > 0


@needs_llama_cpp
def test_auto_engine_probes_once_and_remembers(gguf_pair, tmp_path, monkeypatch):
    from edgespec.runtime.engines import PROBE_FILE, PROBE_NS
    from edgespec.runtime.pipeline import SpeculativePipeline

    monkeypatch.setenv("EDGESPEC_CACHE", str(tmp_path))
    pipe = SpeculativePipeline.from_manifest(gguf_pair, engine="auto")
    assert pipe.engine in ("openvino", "llamacpp") and pipe.engine_probe["engine"] == pipe.engine
    probes = json.loads((tmp_path / PROBE_FILE).read_text())
    (verdict,) = probes.values()
    assert set(verdict["call_s"]) == {"openvino", "llamacpp"}
    assert {int(n) for n in verdict["call_s"]["llamacpp"]} == set(PROBE_NS) and verdict["draft_token_s"] > 0
    assert set(verdict["prefill_s"]) == {"openvino", "llamacpp"} and min(verdict["prefill_s"].values()) > 0
    assert set(pipe.targets) == ({"openvino", "llamacpp"} if verdict["per_prompt"] else {pipe.engine})
    # Remembered: a second pipeline takes the verdict from the cache (a changed verdict there is obeyed).
    other = "openvino" if pipe.engine == "llamacpp" else "llamacpp"
    (key,) = probes
    probes[key].update(engine=other, per_prompt=False)
    (tmp_path / PROBE_FILE).write_text(json.dumps(probes))
    again = SpeculativePipeline.from_manifest(gguf_pair, engine="auto")
    assert again.engine == other and list(again.targets) == [other]


def auto_pipe_with_verdict(gguf_pair, cache, monkeypatch, verdict: dict):
    """An auto pipeline on the tiny GGUF pair that finds `verdict` remembered as its probe's (no probe runs)."""
    from edgespec.runtime.engines import PROBE_FILE, probe_key
    from edgespec.runtime.manifest import load_pair
    from edgespec.runtime.pipeline import SpeculativePipeline

    monkeypatch.setenv("EDGESPEC_CACHE", str(cache))
    pair = load_pair(gguf_pair)
    (cache / PROBE_FILE).write_text(json.dumps({probe_key(pair.target, pair.draft, "CPU", "CPU/openvino"): verdict}))
    return SpeculativePipeline.from_manifest(gguf_pair, engine="auto")


@needs_llama_cpp
def test_auto_per_prompt_runs_long_prompts_on_the_faster_prefill(gguf_pair, tmp_path, monkeypatch):
    """A verdict where llama.cpp decodes faster and OpenVINO prefills faster keeps both targets: each generation
    runs where it is expected to finish first, and its output is the greedy target-only text of the engine that ran
    it (the engines' kernels differ: OpenVINO's fast ones on a CPU with int8 dot products, call_width.py)."""
    from edgespec.runtime.pipeline import SpeculativePipeline

    verdict = decide({1: 0.030, 2: 0.033, 4: 0.040}, {1: 0.014, 2: 0.023, 4: 0.041}, 0.002,
                     {"openvino": 0.30, "llamacpp": 0.60})
    pipe = auto_pipe_with_verdict(gguf_pair, tmp_path, monkeypatch, verdict)
    assert set(pipe.targets) == {"openvino", "llamacpp"}
    config = GenerationConfig(max_new_tokens=8)
    short = pipe.generate("Hello there", config, chat=False)
    assert short.stats.engine == "llamacpp"
    # the first generation timed both targets' calls, not only its own engine's
    assert all(policy.steady_cost for policy in pipe.policies.values())
    long_prompt = list(range(5, 205))  # 200 prompt tokens: 0.23 s more to prefill on llama.cpp than 8 tokens save
    long_run = pipe.generate(long_prompt, config)
    assert long_run.stats.engine == "openvino"
    expected = long_run.stats.engine_expected_s  # why: each engine's expected seconds, kept with the stats
    assert set(expected) == {"openvino", "llamacpp"} and expected["openvino"] < expected["llamacpp"]
    on_openvino = SpeculativePipeline.from_manifest(gguf_pair, engine="openvino", use_draft=False)
    assert long_run.token_ids == on_openvino.generate(long_prompt, config).token_ids
    on_llama = SpeculativePipeline.from_manifest(gguf_pair, engine="llamacpp", use_draft=False)
    assert short.token_ids == on_llama.generate("Hello there", config, chat=False).token_ids
    # a generation that did not draft has the draft read its answer: OpenVINO priced at that acceptance (the tiny
    # model's 24 tokens take milliseconds, so the check's time budget, tested on its own, is lifted here)
    monkeypatch.setattr("edgespec.runtime.pipeline.CHECK_BUDGET", 1.0)
    before = dict(pipe.engine_choice.rate)
    answer = pipe.generate("Hello there", GenerationConfig(max_new_tokens=24, ignore_eos=True), chat=False)
    assert answer.stats.engine == "llamacpp" and answer.stats.draft_calls == 0 and answer.stats.draft_check_s > 0
    assert pipe.engine_choice.rate["openvino"] != before["openvino"]


@needs_llama_cpp
def test_agreement_checks_space_out_while_the_other_engine_stays_far_behind(gguf_pair, tmp_path, monkeypatch):
    """auto's agreement check costs a generation 1-2% (SmolLM2's short questions): where it leaves the other engine
    CHECK_FAR times slower or more, its kind's next checks come half as often (every 2nd, 4th, 8th undrafted answer);
    where it brings the choice near, every 2nd again. A drafted answer is a fresh measure: the count starts from it."""
    from edgespec.runtime.engines import TEXT
    from edgespec.runtime.pipeline import CHECK_EVERY, CHECK_EVERY_MAX

    monkeypatch.setattr("edgespec.runtime.pipeline.CHECK_BUDGET", 1.0)  # the tiny model's checks take milliseconds
    # OpenVINO's verify calls are flat (drafts could pay there) but its steps 20x llama.cpp's: far at any acceptance
    verdict = decide({1: 0.300, 2: 0.301, 4: 0.302}, {1: 0.014, 2: 0.023, 4: 0.041}, 0.0001,
                     {"openvino": 0.30, "llamacpp": 0.60})
    pipe = auto_pipe_with_verdict(gguf_pair, tmp_path, monkeypatch, verdict)
    assert pipe.engine_choice.acceptance_matters("llamacpp")
    # no drafts on llama.cpp (on the tiny model its measured calls are flat, so drafting would pay there)
    config = GenerationConfig(max_new_tokens=24, ignore_eos=True, draft_length=0, adaptive_draft=False,
                              prompt_lookup=False)
    checked = []
    for _ in range(7):
        stats = pipe.generate("Hello there", config, chat=False).stats
        assert stats.engine == "llamacpp" and stats.draft_calls == 0
        checked.append(stats.draft_check_s > 0)
    assert checked == [True, False, False, False, True, False, False]
    assert pipe.check_every[TEXT] == 8 == CHECK_EVERY_MAX
    # a drafted answer measures the acceptance itself: checks every CHECK_EVERY-th undrafted answer from there
    drafting = GenerationConfig(max_new_tokens=24, ignore_eos=True, adaptive_draft=False, prompt_lookup=False)
    drafted = pipe.generate("Hello there", drafting, chat=False).stats
    assert drafted.chain_acceptance() is not None and drafted.draft_check_s == 0
    after = [pipe.generate("Hello there", config, chat=False).stats.draft_check_s > 0 for _ in range(2)]
    assert after == [False, True] and CHECK_EVERY == 2
    # a check that finds the other engine near: every CHECK_EVERY-th again
    pipe.engine_choice.rates_for(TEXT)["openvino"] = 1e6
    pipe._space_checks(2, 24, TEXT)
    assert pipe.check_every[TEXT] == CHECK_EVERY


@needs_llama_cpp
def test_bench_runs_llamacpp_with_either_attention_beside_our_loop(gguf_pair, tmp_path):
    """The bench's llama.cpp baselines: llama-cpp-python's loop with flash attention on (edgespec's llama.cpp engine's
    setting: greedy outputs equal ours token for token) and with its own default, off (what `Llama(path)` runs; its
    kernels are other ones, so its outputs are not a reference); every mode's speedup is read over both."""
    import llama_cpp
    import typer
    from typer.testing import CliRunner

    from edgespec.bench.cli import bench_command
    from edgespec.bench.modes import load_mode
    from edgespec.runtime.manifest import load_pair

    pair = load_pair(gguf_pair)
    for name, attention in (("llamacpp-target", llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED),
                            ("llamacpp-default", llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED)):
        mode = load_mode(name, pair, "CPU", "CPU", {2})
        try:
            assert mode.name == name and mode.llm.context_params.flash_attn_type == attention
        finally:
            mode.close()
    app = typer.Typer()
    app.command()(bench_command)
    out = tmp_path / "bench"
    modes = "llamacpp-target,llamacpp-default,edgespec-llamacpp-target"
    result = CliRunner().invoke(app, [str(gguf_pair), "--modes", modes, "--prompts", "mtbench", "--limit", "2",
                                      "--max-new-tokens", "8", "--repeats", "1", "--no-memory", "--no-cost-curve",
                                      "--no-plots", "--out", str(out)])
    if result.exception:
        raise result.exception
    res = json.loads((out / "results.json").read_text())
    ours = res["summary"]["all"]["edgespec-llamacpp-target"]
    assert set(ours["speedup"]) >= {"llamacpp-target", "llamacpp-default"}
    assert ours["matches"]["llamacpp-target"]["equal"] == 2 == ours["matches"]["llamacpp-target"]["total"]
    assert "llamacpp-default" not in ours["matches"]
    assert "llama.cpp target only, flash attention off" in (out / "report.md").read_text()


SMOLLM2_CHAT = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"
SMOLLM2_PROMPTS = ["Write a Python function that checks whether a number is prime.",
                   "Translate into French: The weather is nice today and we are going to the beach."]


@needs_llama_cpp
def test_real_smollm2_speculative_greedy_equals_llamacpp_target_only():
    """The SmolLM2 Q4_1 GGUF on llama.cpp with the shipped FastDraft draft on OpenVINO. Exact, not an agreement
    rate, because prompt and answer stay under 257 positions: there llama.cpp's k-token verify calls give its
    one-token steps' logits bit for bit (flash attention on). Longer sequences are not exact with 2 threads (its
    one-token calls then split attention over threads): their agreement rate is measured in docs/llamacpp.md."""
    from edgespec.runtime.engines import load_llamacpp
    from edgespec.runtime.manifest import read_model_entry
    from edgespec.runtime.assets import DRAFTS
    from edgespec.runtime.pipeline import load_lm
    from edgespec.runtime.speculative import decode
    from edgespec.runtime.draft_length import DraftLength
    from tiny import smollm2_gguf
    import openvino as ov

    target_entry = read_model_entry(DRAFTS / "smollm2", need_tokenizer=False)  # context and eos as the target's
    target_entry.gguf = smollm2_gguf()
    target = load_llamacpp(target_entry)
    draft = load_lm(ov.Core(), read_model_entry(DRAFTS / "smollm2", need_tokenizer=False), "CPU", False, "mask",
                    draft=True)
    config = GenerationConfig(max_new_tokens=48)
    kept = 0
    for text in SMOLLM2_PROMPTS:
        ids = target.tokenize(SMOLLM2_CHAT.format(text))
        assert len(ids) + config.max_new_tokens <= 256
        target.reset()
        want = [t for step in decode(target, None, ids, config, {2}, GenerationStats()) for t in step]
        target.reset()
        stats = GenerationStats()
        got = [t for step in decode(target, draft, ids, config, {2}, stats, DraftLength(3, 12, True)) for t in step]
        assert got == want, text
        kept += stats.accepted_tokens
    assert kept > 0
    target.close()


def test_simulate_prices_calls_with_either_engines_curve(tmp_path):
    from edgespec.draft.simulate import costs_from_bench

    results = {"cost_curve": {"target": {"call_s": {"1": 0.030, "4": 0.040}}, "draft_token_s": 0.002},
               "cost_curve_llamacpp": {"call_s": {"1": 0.014, "4": 0.041}}}
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    assert costs_from_bench(path)[0] == {1: 0.030, 4: 0.040}
    assert costs_from_bench(path, "llamacpp")[0] == {1: 0.014, 4: 0.041}
    del results["cost_curve_llamacpp"]
    path.write_text(json.dumps(results))
    with pytest.raises(EdgespecError, match="cost_curve_llamacpp"):
        costs_from_bench(path, "llamacpp")


@needs_llama_cpp
def test_shipped_draft_as_gguf_runs_on_llamacpp_and_keeps_output_exact(default_pair, monkeypatch):
    """`edgespec draft gguf` writes the shipped draft (INT8 IR, 8192-row FR-Spec head) as a GGUF llama.cpp loads,
    records it in the default pair (kept when the pair is prepared again), its logits follow the OpenVINO draft's,
    and speculative output with the draft on llama.cpp equals target-only output."""
    from typer.testing import CliRunner

    from edgespec.cli import app
    from edgespec.export.ir_to_gguf import DRAFT_GGUF
    from edgespec.export.presets import ensure_default_pair
    from edgespec.runtime.manifest import load_pair
    from edgespec.runtime.pipeline import SpeculativePipeline

    monkeypatch.setenv("EDGESPEC_CACHE", str(default_pair.parents[1]))
    result = CliRunner().invoke(app, ["draft", "gguf"])
    assert result.exit_code == 0, result.output
    assert "argmax_agreement_clear" in result.output
    assert ensure_default_pair(default_pair.parents[1]) == default_pair
    pair = load_pair(default_pair)
    assert pair.draft.gguf == pair.draft.dir / DRAFT_GGUF and pair.draft.gguf.is_file()
    config = GenerationConfig(max_new_tokens=40)
    base = SpeculativePipeline.from_manifest(default_pair, use_draft=False)
    spec = SpeculativePipeline.from_manifest(default_pair, draft_engine="llamacpp")
    assert not spec.policies["openvino"].realized_guard  # realized rates stop proposals on llama.cpp targets only
    for text in SMOLLM2_PROMPTS[:2]:
        want = base.generate(text, config).token_ids
        got = spec.generate(text, GenerationConfig(max_new_tokens=40, draft_length=3, adaptive_draft=False))
        assert got.token_ids == want, text
        assert got.stats.accepted_tokens > 0


def test_one_stalled_generation_does_not_price_an_engine_out():
    """A generation that stalled (the cores taken by other work: 1.48 s for 73 tokens against 0.66 s for 128) is one
    ratio among the last few: the next code prompt still goes to the engine that runs code fastest, and a workload
    that really runs slower there moves it once most recent generations say so."""
    verdict = decide({1: 0.012, 2: 0.014, 4: 0.018}, {1: 0.0075, 2: 0.013, 4: 0.022}, 0.0027,
                     {"openvino": 0.54, "llamacpp": 0.90}, {"openvino": 0.012, "llamacpp": 0.0110})
    choice = EngineChoice(verdict)
    code = 36 * (0.018 + 3 * 0.0027)  # 128 tokens in 36 steps of k = 3, as fast as the probe prices them
    for wall in (code, code, code, 3.5 * code):
        choice.record("openvino", 120, 120, 0.3, 128, 0.3 + wall, [4] * 36, 108)
    assert choice.decode_factor["openvino"] == pytest.approx(1.0, abs=0.02)
    assert choice.choose({"openvino": 53, "llamacpp": 53}, 53, 128) == "openvino"
    for _ in range(2):
        choice.record("openvino", 120, 120, 0.3, 128, 0.3 + 1.6 * code, [4] * 36, 108)
    assert choice.decode_factor["openvino"] == pytest.approx(1.6, abs=0.02)
