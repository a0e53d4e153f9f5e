"""`edgespec bench` on the tiny pair: outputs exist and hold sane figures; prompt input errors are clear."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from edgespec.runtime.errors import EdgespecError
from edgespec.bench import metrics
from edgespec.runtime import costs as costcurve
from edgespec.runtime import hardware
from edgespec.bench.cli import bench_command
from edgespec.bench.modes import ALL_MODES, DRAFT2_MODES, LABELS, MODES
from edgespec.bench.prompts import load_prompt_set
from edgespec.runtime.config import GenerationConfig
from edgespec.runtime.pipeline import SpeculativePipeline

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command()(bench_command)
    return app


@pytest.fixture(scope="module")
def user_jsonl(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("prompts") / "mine.jsonl"
    path.write_text(json.dumps({"id": "a", "prompt": "Name three primary colours."}) + "\n\n"
                    + json.dumps({"turns": ["Say hello in French.", "And in German?"]}) + "\n")
    return path


@pytest.fixture(scope="module")
def bench_run(tiny_pair, user_jsonl, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench_out")
    args = [str(tiny_pair), "--prompts", f"humaneval,{user_jsonl}", "--limit", "1", "--max-new-tokens", "6",
            "--repeats", "2", "--draft-length", "2", "--fixed-draft", "--draft-lengths", "1,2", "--sweep-limit", "0",
            "--sweep-repeats", "2", "--out", str(out)]
    result = CliRunner().invoke(_app(), args)
    if result.exception:
        raise result.exception
    assert result.exit_code == 0, result.output
    return out, json.loads((out / "results.json").read_text())


def test_writes_json_markdown_and_plots(bench_run):
    out, _ = bench_run
    for name in ("speedup.png", "draft_length.png", "cost_curve.png"):
        assert (out / name).read_bytes()[:8] == PNG_MAGIC, name
    report = (out / "report.md").read_text()
    for heading in ("## Machine and software", "## Models", "## Results: humaneval", "## Results: mine",
                    "## Peak resident memory", "## Draft length sweep", "## Verification cost curve"):
        assert heading in report
    assert "![speedup](speedup.png)" in report
    assert re.search(r"Draft: [0-9.]+ ms per token between target calls \(.*\); [0-9.]+ ms back to back\.", report)
    assert not (out / "runs.partial.jsonl").exists()  # the live log is folded into results.json
    assert "| draft 2 |" not in report and "Kernels: edgespec's target on call-shape-independent kernels" in report
    assert re.search(r"edgespec's target as loaded: (two-token calls|one-token steps)", report)  # what was chosen


def test_raw_runs_are_interleaved_and_complete(bench_run):
    _, res = bench_run
    assert res["modes"] == list(MODES)
    main = [r for r in res["runs"] if r["phase"] == "main"]
    assert len(main) == 2 * 2 * len(MODES)  # prompts x repeats x modes
    assert {r["prompt"] for r in main} == {"humaneval/HumanEval/0", "mine/a"}
    # Interleaved: consecutive runs switch mode, and not always in the same order.
    assert all(a["mode"] != b["mode"] for a, b in zip(main, main[1:]))
    assert len({tuple(r["mode"] for r in main[i:i + 4]) for i in range(0, len(main), 4)}) > 1
    warm = [r for r in res["runs"] if r["phase"] == "warmup"]
    assert sorted(r["mode"] for r in warm) == sorted(MODES)
    for r in main:
        assert 0 < r["new_tokens"] <= 6 and r["wall_s"] > 0
        assert r["prompt_tokens"] > 0 and r["target_calls"] >= 1
    # Every mode saw the same prompt tokens.
    by_prompt = {}
    for r in main:
        by_prompt.setdefault(r["prompt"], set()).add(r["prompt_tokens"])
    assert all(len(v) == 1 for v in by_prompt.values())
    # The user file's `turns` record got the chat template; HumanEval did not.
    sets = res["prompt_sets"]
    assert [p["chat"] for p in sets["humaneval"]] == [False]
    assert all(p["chat"] for p in sets["mine"])


def test_summary_figures_are_sane(bench_run):
    _, res = bench_run
    row = res["summary"]["all"]
    for mode in MODES:
        assert row[mode]["tokens_per_s"]["median"] > 0
        assert row[mode]["tokens_per_s"]["n"] == 2
        assert row[mode]["ttft_s"]["median"] > 0
    spec = row["edgespec-spec"]
    assert 0.0 <= spec["acceptance_rate"] <= 1.0
    assert 1.0 <= spec["tokens_per_target_call"] <= 3.0  # k = 2
    assert spec["memory_bound_speedup"] > 0
    for base in ("genai-target", "edgespec-target", "genai-spec"):
        sp = spec["speedup"][base]
        assert sp["min"] <= sp["median"] <= sp["max"]
    # Greedy speculative decoding in edgespec reproduces edgespec's target-only output exactly.
    assert spec["matches"]["edgespec-target"]["fraction"] == 1.0
    assert 0.0 <= row["genai-spec"]["matches"]["genai-target"]["fraction"] <= 1.0
    assert 0 < row["genai-target"]["weight_bandwidth_bytes_per_s"]
    for mode in MODES:
        mem = res["memory"][mode]
        assert "error" not in mem, mem
        assert mem["peak_rss_bytes"] >= mem["loaded_rss_bytes"] > mem["baseline_rss_bytes"] > 0
    assert res["bandwidth"]["read_bytes_per_s"] > 1e8
    # Exact target kernels by default: recorded, and the target and draft configs reported apart.
    assert res["fast_kernels"] is False and res["pair"]["draft2"] is None
    eng = res["engine_config"]["edgespec"]
    assert eng["target"]["CPU"]["INFERENCE_PRECISION_HINT"] == "f32"
    assert "INFERENCE_PRECISION_HINT" not in eng["draft"]["CPU"]


def test_sweep_and_cost_curve(bench_run):
    _, res = bench_run
    sweep = res["sweep"]["summary"]
    assert set(sweep) == {"genai-spec", "edgespec-spec"}
    assert sorted(int(k) for k in sweep["edgespec-spec"]) == [1, 2]
    sweep_runs = [r for r in res["runs"] if r["phase"] == "sweep"]
    assert len(sweep_runs) == 2 * 2 * 2 * 2  # prompts x repeats x k x speculative modes
    curve = res["cost_curve"]
    ns = sorted(int(n) for n in curve["target"]["call_s"])
    assert ns[0] == 1 and {2, 3} <= set(ns)
    assert all(v > 0 for v in curve["target"]["call_s"].values())
    assert curve["draft_token_s"] > 0 and float(curve["draft"]["call_s"]["1"]) > 0  # between target calls; back to back
    calls = curve["draft_calls_s"]  # each draft call after a target call, plain and catching up
    assert len(calls["plain"]) == len(calls["catch_up"]) == 4 and min(calls["plain"] + calls["catch_up"]) > 0
    pred = curve["prediction"]
    assert int(pred["best_k"]) in (1, 2)
    assert 0.0 <= pred["acceptance"] <= 1.0
    assert set(pred["measured_best_k"]) == {"genai-spec", "edgespec-spec"}
    by_set = sweep["edgespec-spec"]["2"]["by_set"]  # JSON keys: k as a string
    assert set(by_set) == {r["prompt"].split("/")[0] for r in sweep_runs}
    assert all(row["speedup_vs_genai-spec"]["median"] > 0 for row in by_set.values())
    assert sweep["genai-spec"]["2"]["by_set"]["humaneval"]["speedup_vs_genai-spec"] is None


def test_sweep_compares_each_set_with_genai_at_the_same_k():
    """The fixed-k sweep's per-set table: each mode over GenAI's speculative pipeline at the same k, set by set, as
    equal work (the same prompts, cut to the shorter output)."""
    from edgespec.bench.metrics import summarize_sweep
    from edgespec.bench import report

    def run(mode, prompt, k, wall):
        return {"mode": mode, "prompt": prompt, "repeat": 0, "draft_length": k, "phase": "sweep", "new_tokens": 11,
                "wall_s": wall, "ttft_s": 0.0, "target_calls": 6, "drafted_tokens": 10, "accepted_tokens": 5}

    runs = [run("genai-spec", "code/1", 2, 1.0), run("genai-spec", "code/2", 2, 1.0), run("genai-spec", "chat/1", 2, 2.0),
            run("edgespec-spec", "code/1", 2, 0.5), run("edgespec-spec", "code/2", 2, 1.5),
            run("edgespec-spec", "chat/1", 2, 4.0)]
    sweep = summarize_sweep(runs)
    by_set = sweep["edgespec-spec"][2]["by_set"]
    assert by_set["code"]["speedup_vs_genai-spec"]["median"] == pytest.approx(1.0)  # 2 s against 2 s
    assert by_set["chat"]["speedup_vs_genai-spec"]["median"] == pytest.approx(0.5)
    assert by_set["code"]["tokens_per_s"] == pytest.approx(11.0) and by_set["code"]["tokens_per_target_call"] == 2.0
    assert sweep["genai-spec"][2]["by_set"]["chat"]["speedup_vs_genai-spec"] is None  # no ratio over itself
    lines = []
    report._sweep({"sweep": {"summary": sweep, "prompts_per_set": 2, "repeats": 1}}, lines.append)
    assert "| chat | 2 | 5.5 | 2.8 | 2.00 | 0.50 |" in lines


@pytest.fixture(scope="module")
def draft2_run(tiny_pair, tiny_pair_far, tmp_path_factory):
    """The tiny pair with the far pair's draft as draft 2 (same vocabulary, far worse drafts), fast kernels."""
    out = tmp_path_factory.mktemp("bench_draft2")
    args = [str(tiny_pair), "--draft2", str(tiny_pair_far / "draft"), "--fast-kernels", "--prompts", "humaneval",
            "--limit", "1", "--max-new-tokens", "4", "--repeats", "1", "--draft-length", "2", "--fixed-draft", "--draft-lengths", "2",
            "--out", str(out)]
    result = CliRunner().invoke(_app(), args)
    if result.exception:
        raise result.exception
    assert result.exit_code == 0, result.output
    return out, json.loads((out / "results.json").read_text())


def test_draft2_modes_run_everywhere(draft2_run, tiny_pair_far):
    out, res = draft2_run
    assert res["modes"] == list(ALL_MODES)  # --draft2 without --modes: all six
    assert res["pair"]["draft2"]["dir"] == str((tiny_pair_far / "draft").resolve())
    assert res["pair"]["draft2"]["weight_bytes"] > 0
    for phase in ("warmup", "main"):
        assert sorted(r["mode"] for r in res["runs"] if r["phase"] == phase) == sorted(ALL_MODES)
    sweep = [r for r in res["runs"] if r["phase"] == "sweep"]
    assert sorted(r["mode"] for r in sweep) == sorted(["genai-spec", "edgespec-spec", *DRAFT2_MODES])
    assert set(res["sweep"]["summary"]) == {"genai-spec", "edgespec-spec", *DRAFT2_MODES}
    for mode in ALL_MODES:
        assert "error" not in res["memory"][mode], res["memory"][mode]
    row = res["summary"]["all"]
    for mode in DRAFT2_MODES:
        assert row[mode]["drafted_per_call"] > 0 and 0.0 <= row[mode]["acceptance_rate"] <= 1.0
        assert row[mode]["memory_bound_speedup"] > 0
    assert set(row["edgespec-spec2"]["matches"]) == {"genai-target", "edgespec-target"}
    assert set(row["genai-spec2"]["speedup"]) == {"genai-target", "edgespec-target", "genai-spec"}
    assert res["cost_curve"]["draft2_token_s"] > 0
    report = (out / "report.md").read_text()
    for text in ("| draft 2 |", LABELS["genai-spec2"], LABELS["edgespec-spec2"], "With draft 2, edgespec speculative",
                 "Draft 2: "):
        assert text in report, text
    for name in ("speedup.png", "draft_length.png", "cost_curve.png"):
        assert (out / name).read_bytes()[:8] == PNG_MAGIC, name


def test_fast_kernels_recorded(draft2_run):
    out, res = draft2_run
    assert res["fast_kernels"] is True
    eng = res["engine_config"]["edgespec"]
    assert eng["exact_target"] is False
    assert "INFERENCE_PRECISION_HINT" not in eng["target"]["CPU"]
    assert "`--fast-kernels`" in (out / "report.md").read_text()


def test_draft2_mode_checks(tiny_pair, tmp_path):
    from edgespec.runtime.manifest import load_pair, write_model_info
    from edgespec.bench.runner import check_modes, load_draft2

    pair, bare = load_pair(tiny_pair), load_pair(tiny_pair / "target")
    d2 = load_draft2(tiny_pair / "draft", pair)
    assert check_modes(None, pair, d2) == list(ALL_MODES)
    assert check_modes(None, bare, d2) == ["genai-target", "genai-spec2", "edgespec-target", "edgespec-spec2"]
    assert check_modes(["edgespec-spec2", "edgespec-spec"], pair, d2) == ["edgespec-spec", "edgespec-spec2"]
    with pytest.raises(EdgespecError, match="need a second draft"):
        check_modes(["edgespec-spec2"], pair)
    assert load_draft2(tiny_pair, pair).dir == d2.dir  # a pair folder: its draft
    other = tmp_path / "other_vocab"
    other.mkdir()
    for name in ("openvino_model.xml", "openvino_model.bin"):
        (other / name).write_text("x")
    write_model_info(other, eos_token_ids=[2], context_length=256, vocab_size=1000)
    with pytest.raises(EdgespecError, match="share the target's vocabulary"):
        load_draft2(other, pair)


def test_sampling_run(tiny_pair, tmp_path):
    """--sample reaches both runtimes; output equality is not reported for sampled text, each output is scored under
    the target instead."""
    out = tmp_path / "sampled"
    args = [str(tiny_pair), "--modes", "genai-target,genai-spec,edgespec-spec", "--prompts", "mtbench", "--limit",
            "1", "--max-new-tokens", "4", "--repeats", "1", "--sample", "--seed", "3", "--no-memory", "--no-cost-curve",
            "--no-plots", "--out", str(out)]
    result = CliRunner().invoke(_app(), args)
    if result.exception:
        raise result.exception
    res = json.loads((out / "results.json").read_text())
    assert res["settings"]["do_sample"] and res["settings"]["seed"] == 3
    row = res["summary"]["all"]["edgespec-spec"]
    assert row["matches"] == {} and row["speedup"]["genai-target"]["n"] == 1
    assert not list(out.glob("*.png")) and "cost_curve" not in res and "memory" not in res
    # every sampled output is scored under the target (a check that speculative sampling kept the distribution)
    main = [r for r in res["runs"] if r["phase"] == "main"]
    assert all(r["target_logprob"] is not None and r["target_logprob"] <= 0 for r in main)
    assert row["target_logprob"] == pytest.approx(
        next(r["target_logprob"] for r in main if r["mode"] == "edgespec-spec"))
    assert "target log-prob/token" in (out / "report.md").read_text()
    # GenAI's speculative sampling garbles its text under any SchedulerConfig: that mode runs without one, and says so
    assert any(n.startswith("GenAI speculative ran with GenAI's prefix caching on") for n in res["notes"])
    assert not any(n.startswith("GenAI target only ran with") for n in res["notes"])


def test_sampled_text_the_target_would_not_draw_scores_lower_and_is_flagged(tiny_pair):
    """quality.py: the target's own samples score higher under it than tokens drawn uniformly from the vocabulary,
    and the report names a mode whose score falls far below its target-only baseline's."""
    from edgespec.bench.quality import mean_logprob
    from edgespec.bench.report import _quality_note
    from edgespec.runtime.sampling import Warp

    pipe = SpeculativePipeline.from_manifest(tiny_pair, use_draft=False)
    prompt = pipe.prompt_ids("Once upon a time", chat=False)
    warp = Warp(temperature=0.7)
    own = [pipe.generate(prompt, GenerationConfig(max_new_tokens=16, do_sample=True, temperature=0.7, seed=s,
                                                  ignore_eos=True)).token_ids for s in range(4)]
    rng = np.random.default_rng(0)
    noise = [[int(t) for t in rng.integers(0, pipe.target.vocab_size, 16)] for _ in range(4)]
    own_score = np.mean([mean_logprob(pipe.target, prompt, t, warp) for t in own])
    noise_score = np.mean([mean_logprob(pipe.target, prompt, t, warp) for t in noise])
    assert own_score > noise_score + 0.5
    assert mean_logprob(pipe.target, prompt, [], warp) is None
    lines = []
    scores = {"genai-target": -1.0, "genai-spec": -4.4, "edgespec-target": -1.1, "edgespec-spec": -1.2}
    _quality_note({mode: {"target_logprob": v} for mode, v in scores.items()}, lines.append)
    assert len(lines) == 2 and "GenAI speculative" in lines[0] and "edgespec" not in lines[0]
    # llama.cpp modes sample another quantization of the target: each is held to llama.cpp's target-only score
    lines = []
    scores = {"edgespec-target": -1.1, "llamacpp-target": -1.7, "llamacpp-lookup": -1.75, "edgespec-llamacpp": -1.72}
    _quality_note({mode: {"target_logprob": v} for mode, v in scores.items()}, lines.append)
    assert lines == []
    scores["llamacpp-lookup"] = -2.5
    _quality_note({mode: {"target_logprob": v} for mode, v in scores.items()}, lines.append)
    assert len(lines) == 2 and "llama.cpp prompt lookup" in lines[0] and "edgespec" not in lines[0]


def test_a_run_a_runtime_cannot_finish_is_noted_and_the_bench_goes_on(tiny_pair, tmp_path, monkeypatch):
    """GenAI 2026.4's speculative sampling stops some runs with an internal assertion: such a run is left out and
    named in the notes, and every other run and the report still come out."""
    from edgespec.bench import modes as bench_modes

    real = bench_modes.GenAIMode.generate

    def failing(self, pp, settings, draft_length):
        if pp.key.endswith("/81"):
            raise RuntimeError("Check 'content_length <= prompt_ids.size()' failed at sequence_group.cpp:32\n")
        return real(self, pp, settings, draft_length)
    monkeypatch.setattr(bench_modes.GenAIMode, "generate", failing)
    out = tmp_path / "failed"
    args = [str(tiny_pair), "--modes", "genai-target,edgespec-target", "--prompts", "mtbench", "--limit", "2",
            "--max-new-tokens", "4", "--repeats", "1", "--no-memory", "--no-cost-curve", "--no-plots", "--out",
            str(out)]
    result = CliRunner().invoke(_app(), args)
    if result.exception:
        raise result.exception
    res = json.loads((out / "results.json").read_text())
    failed = [n for n in res["notes"] if "failed on mtbench/81" in n]
    assert failed and all("GenAI target only" in n and "sequence_group.cpp:32" in n for n in failed)
    main = [(r["mode"], r["prompt"]) for r in res["runs"] if r["phase"] == "main"]
    assert ("genai-target", "mtbench/82") in main and ("edgespec-target", "mtbench/81") in main
    assert ("genai-target", "mtbench/81") not in main
    assert res["summary"]["all"]["edgespec-target"]["speedup"]["genai-target"]["n"] == 1
    assert "failed on mtbench/81" in (out / "report.md").read_text()


def test_user_jsonl_fields(user_jsonl):
    prompts = load_prompt_set(str(user_jsonl), None)
    assert [(p.set, p.id, p.text) for p in prompts] == [("mine", "a", "Name three primary colours."),
                                                         ("mine", "3", "Say hello in French.")]
    assert len(load_prompt_set(str(user_jsonl), 1)) == 1


def test_builtin_prompt_sets():
    he = load_prompt_set("humaneval", 3)
    assert len(he) == 3 and all("def " in p.text for p in he)
    assert not he[0].chat
    mt = load_prompt_set("mtbench", None)
    assert len(mt) == 80 and all(p.chat for p in mt)


@pytest.mark.parametrize("content, message", [
    ('{"prompt": "ok"}\n{"prompt": "broken"\n', "bad.jsonl:2: not valid JSON"),
    ('{"text": "no prompt field"}\n', "bad.jsonl:1: no 'prompt'"),
    ('["a list"]\n', "bad.jsonl:1: expected a JSON object"),
    ('\n\n', "holds no prompts"),
])
def test_bad_jsonl_is_a_clear_error(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(EdgespecError, match=message.replace("(", r"\(")):
        load_prompt_set(str(path), None)


def test_bad_prompts_through_the_cli(tiny_pair, tmp_path, monkeypatch, capsys):
    """The user-facing path: `edgespec bench` prints one `error:` line and exits 2, before loading any model."""
    from edgespec import cli

    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n")
    for prompts, message in ((str(bad), "bad.jsonl:1: not valid JSON"),
                             ("nosuchset", "unknown prompt set 'nosuchset'"),
                             (str(tmp_path / "missing.jsonl"), "prompt file not found")):
        monkeypatch.setattr(sys, "argv", ["edgespec", "bench", str(tiny_pair), "--prompts", prompts,
                                          "--out", str(tmp_path / "out")])
        with pytest.raises(SystemExit) as exit_info:
            cli.main()
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err, err
    assert not (tmp_path / "out").exists()


def test_unknown_mode_and_missing_draft(tiny_pair, tmp_path):
    from edgespec.runtime.manifest import load_pair
    from edgespec.bench.runner import BenchOptions, check_modes, run_bench

    assert check_modes(None, load_pair(tiny_pair)) == list(MODES)
    assert check_modes(None, load_pair(tiny_pair / "target")) == ["genai-target", "edgespec-target"]
    assert check_modes(["edgespec-spec", "genai-target", "genai-target"], load_pair(tiny_pair)) == [
        "genai-target", "edgespec-spec"]
    with pytest.raises(EdgespecError, match="unknown mode 'fast'"):
        run_bench(BenchOptions(pair=tiny_pair, modes=["fast"]), ["test"])
    target_only = tiny_pair / "target"  # a bare model folder is a pair without a draft
    with pytest.raises(EdgespecError, match="has no draft model"):
        run_bench(BenchOptions(pair=target_only, modes=["edgespec-spec"]), ["test"])


def test_expected_tokens_and_its_inverse():
    assert costcurve.expected_tokens(0.0, 5) == 1.0
    assert costcurve.expected_tokens(1.0, 5) == 6.0
    assert costcurve.expected_tokens(0.5, 2) == pytest.approx(1.75)
    for a in (0.1, 0.5, 0.8, 0.95):
        for k in (1, 3, 6):
            assert costcurve.acceptance_from_block(costcurve.expected_tokens(a, k), k) == pytest.approx(a, abs=1e-6)


def test_prediction_prefers_long_drafts_only_when_verification_is_cheap():
    cheap = {"target": {"call_s": {1: 0.030, 2: 0.031, 4: 0.032, 8: 0.034, 16: 0.04}}, "draft_token_s": 0.001}
    dear = {"target": {"call_s": {1: 0.030, 2: 0.045, 4: 0.075, 8: 0.135, 16: 0.255}}, "draft_token_s": 0.005}
    ks = list(range(1, 8))
    assert costcurve.predict(cheap, 0.8, ks)["best_k"] >= 5
    assert costcurve.predict(dear, 0.8, ks)["best_k"] <= 2
    # Loop overhead makes every extra forward call dearer, so it never lengthens the best draft.
    assert costcurve.predict(cheap, 0.8, ks, overhead_s=0.02)["best_k"] <= costcurve.predict(cheap, 0.8, ks)["best_k"]


def _rec(mode, prompt, rep, new, wall, calls=None, drafted=None, accepted=None, ids=None):
    return {"mode": mode, "prompt": prompt, "repeat": rep, "phase": "main", "new_tokens": new, "wall_s": wall,
            "ttft_s": 0.1, "tpot_s": 0.01, "target_calls": calls if calls is not None else new,
            "draft_calls": drafted or 0, "drafted_tokens": drafted, "accepted_tokens": accepted,
            "token_ids": ids or list(range(new))}


def test_speedup_is_per_repeat_tokens_per_second_ratio():
    recs = [
        _rec("genai-target", "s/1", 0, 10, 1.0), _rec("genai-target", "s/2", 0, 10, 1.0),
        _rec("genai-target", "s/1", 1, 10, 2.0), _rec("genai-target", "s/2", 1, 10, 2.0),
        _rec("edgespec-spec", "s/1", 0, 10, 0.5, calls=4, drafted=9, accepted=6),
        _rec("edgespec-spec", "s/2", 0, 8, 0.5, calls=4, drafted=9, accepted=4, ids=[9] * 8),
        _rec("edgespec-spec", "s/1", 1, 10, 0.5, calls=4, drafted=9, accepted=6),
        _rec("edgespec-spec", "s/2", 1, 10, 0.5, calls=4, drafted=9, accepted=6),
    ]
    summary = metrics.summarize(recs, ["genai-target", "edgespec-spec"], target_bytes=100, draft_bytes=10,
                                read_bandwidth=1000.0, greedy=True)
    spec = summary["s"]["edgespec-spec"]
    # repeat 0: 18 tok/s over 10 tok/s; repeat 1: 20 over 5.
    assert spec["speedup"]["genai-target"] == {"median": pytest.approx(2.9), "min": pytest.approx(1.8),
                                               "max": pytest.approx(4.0), "n": 2}
    assert spec["acceptance_rate"] == pytest.approx(22 / 36)
    assert spec["tokens_per_target_call"] == pytest.approx((9 + 7 + 9 + 9) / 12)
    assert spec["memory_bound_speedup"] == pytest.approx(spec["tokens_per_target_call"] / (1 + 0.1 * 3))
    assert spec["matches"]["genai-target"]["equal"] == 3 and spec["matches"]["genai-target"]["total"] == 4
    assert summary["s"]["genai-target"]["weight_bandwidth_bytes_per_s"] == pytest.approx(40 * 100 / 6.0)


def test_speedup_compares_outputs_of_different_lengths_on_equal_work():
    """Two engines' greedy outputs may differ in length (llama.cpp's Q4_1 target ended HumanEval/0 after 41 tokens,
    OpenVINO's INT8 one ran 102): tokens/s would spread the 0.4 s to the first token over different lengths. Each
    pair of runs is cut to the shorter output."""
    base = dict(_rec("llamacpp-target", "h/0", 0, 41, 0.73), ttft_s=0.42)
    longer = dict(_rec("edgespec-auto", "h/0", 0, 102, 1.27), ttft_s=0.23)
    assert (102 / 1.27) / (41 / 0.73) > 1.4  # what tokens/s would say
    # the longer run to its 41st token: 0.23 s + 40/101 of its 1.04 s of decoding = 0.642 s, against 0.73 s
    assert metrics.seconds_to(longer, 41) == pytest.approx(0.23 + 1.04 * 40 / 101)
    assert metrics.seconds_to(longer, 200) == 1.27 and metrics.seconds_to(base, 41) == 0.73
    summary = metrics.summarize([base, longer], ["llamacpp-target", "edgespec-auto"], target_bytes=100,
                                draft_bytes=10, read_bandwidth=None, greedy=True)
    assert summary["h"]["edgespec-auto"]["speedup"]["llamacpp-target"]["median"] == pytest.approx(
        0.73 / (0.23 + 1.04 * 40 / 101))


def test_memory_bound_speedup_uses_each_modes_draft():
    recs = [_rec(mode, "s/1", 0, 10, 0.5, calls=4, drafted=9, accepted=6)
            for mode in ("edgespec-spec", "edgespec-spec2")]
    summary = metrics.summarize(recs, ["edgespec-spec", "edgespec-spec2"], target_bytes=100,
                                draft_bytes={"edgespec-spec": 10, "edgespec-spec2": 50}, read_bandwidth=None,
                                greedy=True)["s"]
    tau = summary["edgespec-spec"]["tokens_per_target_call"]
    assert summary["edgespec-spec"]["memory_bound_speedup"] == pytest.approx(tau / (1 + 0.1 * 3))
    assert summary["edgespec-spec2"]["memory_bound_speedup"] == pytest.approx(tau / (1 + 0.5 * 3))
    assert summary["edgespec-spec2"]["weight_bandwidth_bytes_per_s"] == pytest.approx((4 * 100 + 9 * 50) / 0.5)


def _embedding_model(folder: Path, tied: bool, compressed: bool) -> Path:
    """ids -> Gather(table) -> MatMul(head): the head is the table itself when tied."""
    import openvino as ov
    from openvino import opset13 as ops

    rng = np.random.default_rng(0)
    ids = ops.parameter([1, 4], ov.Type.i64, name="input_ids")
    if compressed:  # the INT8 weight-decompression chain NNCF writes
        raw = ops.constant(rng.integers(0, 255, size=(64, 16)).astype(np.uint8))
        table = ops.multiply(ops.convert(raw, ov.Type.f32), ops.constant(np.full((64, 1), 0.01, np.float32)))
    else:
        table = ops.constant(rng.standard_normal((64, 16)).astype(np.float32))
    hidden = ops.gather(table, ids, ops.constant(np.int64(0)))
    head = table if tied else ops.constant(rng.standard_normal((64, 16)).astype(np.float32))
    logits = ops.matmul(hidden, head, transpose_a=False, transpose_b=True)
    folder.mkdir()
    ov.save_model(ov.Model([logits], [ids]), folder / "openvino_model.xml", compress_to_fp16=False)
    return folder


@pytest.mark.parametrize("compressed", [False, True])
def test_streamed_bytes_leave_out_untied_embeddings(tmp_path, compressed):
    table_bytes = 64 * 16 * (1 if compressed else 4)
    untied = hardware.model_files(_embedding_model(tmp_path / "untied", tied=False, compressed=compressed))
    assert untied["lookup_only_bytes"] == table_bytes
    assert untied["streamed_bytes"] == untied["weight_bytes"] - table_bytes > 0
    tied = hardware.model_files(_embedding_model(tmp_path / "tied", tied=True, compressed=compressed))
    assert tied["lookup_only_bytes"] == 0 and tied["streamed_bytes"] == tied["weight_bytes"]


@pytest.mark.parametrize("n", [2, 3, 4, 7])
def test_mode_order_puts_every_mode_after_every_other_equally_often(n):
    """A rotated order kept each mode's predecessor for good (llama-cpp-python always after an OpenVINO mode,
    auto after a llama.cpp one); over a cycle the balanced order varies both position and predecessor evenly."""
    from collections import Counter

    from edgespec.bench.runner import balanced_order

    modes = [f"m{i}" for i in range(n)]
    cycle = n if n % 2 == 0 else 2 * n
    rows = [balanced_order(modes, turn) for turn in range(cycle)]
    assert all(sorted(row) == modes for row in rows)
    positions = Counter((i, mode) for row in rows for i, mode in enumerate(row))
    assert set(positions.values()) == {cycle // n}
    pairs = Counter((a, b) for row in rows for a, b in zip(row, row[1:]))
    assert len(pairs) == n * (n - 1) and len(set(pairs.values())) == 1
    assert balanced_order(modes, cycle) == rows[0]


def test_mixed_prompt_order_runs_every_prompt_once_a_pass_and_never_after_its_own_set():
    """A mixed order models a user moving between kinds of work: each repeat is one pass over every prompt, and no
    prompt follows one of its own set unless its set outlasts the others (the sets order runs a prompt's repeats back
    to back)."""
    from types import SimpleNamespace

    from edgespec.bench.runner import main_order
    from edgespec.runtime.errors import EdgespecError

    sets = {name: [SimpleNamespace(key=f"{name}/{i}", set=name) for i in range(n)]
            for name, n in (("code", 3), ("chat", 2), ("qa", 4))}
    mixed = main_order(sets, 2, "mixed")
    assert len(mixed) == 18
    passes = [[pp.key for pp, rep in mixed if rep == r] for r in range(2)]
    assert passes[0] == passes[1] and sorted(passes[0]) == sorted(pp.key for pps in sets.values() for pp in pps)
    assert [rep for _, rep in mixed] == [0] * 9 + [1] * 9
    neighbours = list(zip(passes[0], passes[0][1:]))
    assert sum(a.split("/")[0] == b.split("/")[0] for a, b in neighbours) == 1  # qa/2, qa/3: qa outlasts the rest
    by_sets = main_order(sets, 2, "sets")
    assert [pp.key for pp, _ in by_sets[:2]] == ["code/0", "code/0"] and len(by_sets) == 18
    with pytest.raises(EdgespecError, match="prompt order"):
        main_order(sets, 1, "random")


def test_a_bench_alone_on_the_machine_is_not_called_shared():
    """The bench's own threads hold the load average near one per CPU (2.01 at the end of a clean run on 2 CPUs):
    only load beyond that, or before it started, says other work ran beside it."""
    from edgespec.bench.report import shared_machine

    def machine(start, end, cpus=2):
        return {"logical_cpus": cpus, "load_average": [start, 0.5, 0.4], "load_average_end": [end, 1.9, 1.0]}

    assert not shared_machine(machine(0.46, 2.01))
    assert shared_machine(machine(0.46, 2.6)) and shared_machine(machine(1.5, 2.0))
    assert not shared_machine({"load_average": [9.0, 9.0, 9.0]})  # CPU count unknown: no claim
