"""FastDraft: eval-set exclusion, the torch draft vs OpenVINO, and the whole recipe end to end on tiny models."""

from __future__ import annotations

import gzip
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")  # the `draft` extra

from typer.testing import CliRunner  # noqa: E402

from edgespec.runtime.assets import DRAFTS, RECIPES  # noqa: E402
from edgespec.runtime.errors import EdgespecError  # noqa: E402
from edgespec.runtime.manifest import read_model_entry, write_manifest  # noqa: E402
from edgespec.export.gguf_llama import random_llama_weights, read_tokenizer_fields, write_llama_gguf  # noqa: E402
from edgespec.draft import data, evaluation, measure, simulate  # noqa: E402
from edgespec.draft.cli import app  # noqa: E402
from edgespec.draft.data import EvalGuard, normalize  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from tiny import TINY_SHAPE, smollm2_gguf  # noqa: E402

SHIPPED_PROMPTS = RECIPES / "smollm2-draft.prompts.json.gz"
runner = CliRunner()


def run(*args: str) -> None:
    result = runner.invoke(app, [str(a) for a in args])
    if result.exit_code != 0:
        raise AssertionError(f"draft {args[0]} failed: {result.output}\n{result.exception!r}") from result.exception


def eval_prompts() -> list[str]:
    return data.humaneval_prompts() + data.mt_bench_prompts()


def test_guard_catches_every_eval_prompt_and_partial_copies():
    prompts = eval_prompts()
    guard = EvalGuard(prompts)
    assert len(prompts) == 164 + 160
    for p in prompts:
        assert guard.contaminated("# header\n" + p.replace("\n", "\n  ") + "\nmore text"), p[:60]
    he = data.humaneval_prompts()[3]
    assert guard.contaminated(he[len(he) // 3:])  # a truncated copy still shares whole windows
    assert not guard.contaminated("def add(a, b):\n    return a + b\n")


@pytest.mark.parametrize("prompt_list", [SHIPPED_PROMPTS, RECIPES / "qwen2.5-coder-draft.prompts.json.gz"],
                         ids=["smollm2", "qwen2.5-coder"])
def test_shipped_alignment_prompts_exclude_eval_sets(prompt_list):
    """Every user prompt a recipe's draft was aligned on is free of HumanEval/MT-bench text."""
    if not prompt_list.exists():
        pytest.skip("shipped prompt list not present")
    users = json.loads(gzip.decompress(prompt_list.read_bytes()))
    assert len(users) > 100
    guard = EvalGuard(eval_prompts())
    full = {normalize(p) for p in eval_prompts()}
    assert not [u for u in users if normalize(u) in full]
    assert not [u for u in users if guard.contaminated(u)]


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory, tiny_pair) -> Path:
    """A few stdlib files plus one file that smuggles a HumanEval prompt: the latter must be dropped."""
    src = tmp_path_factory.mktemp("src")
    stdlib = Path(shutil.__file__).parent
    for name in ("shutil.py", "textwrap.py", "bisect.py", "heapq.py", "colorsys.py"):
        shutil.copy(stdlib / name, src / name)
    (src / "leak.py").write_text("import os\n\n" + data.humaneval_prompts()[0] + "    return False\n")
    out = tmp_path_factory.mktemp("corpus")
    run("corpus", "--target", tiny_pair / "target", "--out", out, "--source", src, "--max-tokens", 60000,
        "--sharegpt", 50, "--sharegpt-later", 30, "--seeds", 20)
    return out


def test_corpus_excludes_eval_prompts(tiny_corpus, tiny_pair):
    stats = json.loads((tiny_corpus / "stats.json").read_text())
    assert stats["documents"] == 5  # leak.py dropped
    tok = data.TargetTokenizer(tiny_pair / "target")
    text = normalize(tok.decode(np.concatenate([np.load(tiny_corpus / "train.npy"),
                                                np.load(tiny_corpus / "val.npy")]).tolist()))
    assert "def bisect_left" in text or "def heappush" in text
    for p in eval_prompts():
        assert normalize(p)[:200] not in text
    seeds = json.loads((tiny_corpus / "seeds.json").read_text())
    guard = EvalGuard(eval_prompts())
    prompts = seeds["code"] + seeds["sharegpt"] + seeds["sharegpt_later"]
    assert seeds["code"] and not any(guard.contaminated(s) for s in prompts)
    # later ShareGPT turns: long enough to stand without their conversation
    assert len(seeds["sharegpt_later"]) == 30 and min(map(len, seeds["sharegpt_later"])) >= 40


IDS = [1, 504, 3458, 282, 4649, 314, 253, 1345, 28, 1848]


def assert_torch_matches_openvino(model, ir_dir: Path) -> None:
    """The torch draft's logits are GenAI's for the same weights (close values, same argmax everywhere)."""
    from edgespec.draft.export import ov_logits

    with torch.no_grad():
        ref = model(torch.tensor([IDS]))[0].numpy()
    got = ov_logits(ir_dir, IDS)
    assert np.abs(got - ref).max() < 0.05 * np.abs(ref).max()
    assert (got.argmax(-1) == ref.argmax(-1)).all()


def test_torch_draft_matches_openvino_target(tmp_path, tiny_pair):
    """The torch model copied from a GGUF reproduces GenAI's logits (RoPE layout, norms, GQA)."""
    from edgespec.draft.model import draft_from_target, read_gguf_model

    weights = random_llama_weights(TINY_SHAPE, seed=0)  # the tiny_pair target's weights
    gguf_path = write_llama_gguf(tmp_path / "t.gguf", TINY_SHAPE, weights, read_tokenizer_fields(smollm2_gguf()))
    cfg, w = read_gguf_model(gguf_path)
    assert_torch_matches_openvino(draft_from_target(cfg, w, [0, 1], None), tiny_pair / "target")


def test_teacher_top_logprobs_are_the_targets_distribution(tiny_pair):
    from edgespec.draft.export import ov_logits
    from edgespec.draft.teacher import Teacher

    ids, logp = Teacher(tiny_pair / "target", exact=True).top_logprobs(IDS, 5)
    logits = ov_logits(tiny_pair / "target", IDS)
    want = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) - logits.max(-1, keepdims=True)
    top5 = np.sort(want, -1)[:, -5:]
    assert np.allclose(np.sort(logp.astype(np.float32), -1), top5, atol=2e-2)
    assert (np.take_along_axis(want, ids.astype(np.int64), -1) >= top5[:, :1] - 1e-4).all()


def test_teacher_shard_cut_short_by_a_kill_is_not_read(tmp_path, monkeypatch):
    from edgespec.draft import teacher

    def killed(path, **arrays):
        Path(path).write_bytes(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt

    monkeypatch.setattr(teacher.np, "savez", killed)
    with pytest.raises(KeyboardInterrupt):
        teacher._write_shard(tmp_path, ["a"], [np.zeros((2, 1), np.int32)], [np.zeros((2, 1), np.float16)])
    monkeypatch.undo()
    assert teacher.load_cache(tmp_path) == {}
    teacher._write_shard(tmp_path, ["a"], [np.zeros((2, 1), np.int32)], [np.zeros((2, 1), np.float16)])
    assert list(teacher.load_cache(tmp_path)) == ["a"]


def test_soft_loss_with_one_hot_teacher_is_cross_entropy():
    """A teacher sure of the label gives the hard loss; a teacher outside the reduced head adds nothing."""
    from edgespec.draft.model import DraftConfig, DraftLM
    from edgespec.draft.train import batch_loss, inverse_map

    torch.manual_seed(0)
    cfg = DraftConfig(target_vocab=64, head_vocab=16, hidden=16, layers=1, heads=2, kv_heads=1, ffn=32, context=32)
    model = DraftLM(cfg)
    vocab_map = np.arange(0, 64, 4)  # the head holds every fourth id
    inverse = inverse_map(vocab_map, 64)
    toks = torch.tensor([[0, 4, 8, 12, 16, 20]])
    mask = torch.ones(1, 5)
    hard, _, _ = batch_loss(model, toks, mask, inverse)
    one_hot = (toks[:, 1:, None].int(), torch.zeros(1, 5, 1))
    soft, _, _ = batch_loss(model, toks, mask, inverse, one_hot, soft_weight=1.0)
    assert torch.allclose(hard, soft, atol=1e-5)
    outside = (torch.full((1, 5, 1), 3), torch.zeros(1, 5, 1))  # id 3 is not in the head
    mixed, _, _ = batch_loss(model, toks, mask, inverse, outside, soft_weight=0.5)
    assert torch.allclose(mixed, hard)


def test_answer_windows_keep_one_row_per_pair():
    """Teacher distributions are matched to windows by answer id, so window i must be pair i."""
    from edgespec.draft.train import windows_from_pairs

    pairs = [([1, 2], [3, 4]), ([5], []), ([6, 7, 8, 9, 10], [11, 12, 13])]
    windows = windows_from_pairs(pairs, length=4, pad=0)
    assert windows.tokens.tolist() == [[1, 2, 3, 4, 0], [5, 0, 0, 0, 0], [9, 10, 11, 12, 13]]
    assert windows.mask.tolist() == [[0, 1, 1, 0], [0, 0, 0, 0], [0, 1, 1, 1]]


def test_log_of_a_resumed_run_keeps_the_resumed_rows(tmp_path):
    from edgespec.draft.train import read_log

    log = tmp_path / "log.jsonl"
    steps = [0, 1, 2, 3, 4, 5, 3, 4, 5, 6]  # killed at 5, resumed from the checkpoint at step 2
    log.write_text("".join(json.dumps({"step": s, "run": i >= 6}) + "\n" for i, s in enumerate(steps)))
    rows = read_log(log)
    assert [r["step"] for r in rows] == [0, 1, 2, 3, 4, 5, 6]
    assert all(r["run"] for r in rows[3:])


def test_block_walk_counts_target_calls():
    m = np.array([1, 1, 0, 1, 1, 1, 1, 1, 0, 0], bool)
    calls, drafted, accepted = measure.block_walk(m, 5)
    # call 1: accept 2, correct pos 2 -> 3 tokens; call 2: accept 5 + bonus -> 6 tokens; call 3: reject -> 1
    assert (calls, accepted) == (3, 7)
    assert drafted == 5 + 5 + 0 or drafted == 5 + 5 + 1
    assert measure.block_walk(np.ones(12, bool), 5)[0] == 2


def test_runtime_counts_summed_over_prompts_leave_out_every_prefill():
    from edgespec.runtime.config import GenerationStats, tokens_per_target_call

    one = GenerationStats(new_tokens=10, target_calls=4, drafted_tokens=9, accepted_tokens=6, wall_s=1.0)
    two = GenerationStats(new_tokens=5, target_calls=3, drafted_tokens=4, accepted_tokens=2, wall_s=0.5)
    total = evaluation.summed_stats([one, two])
    assert total["tokens_per_target_call"] == pytest.approx((10 + 5 - 2) / (4 + 3 - 2))
    assert total["acceptance_rate"] == pytest.approx(8 / 13) and total["tokens_per_s"] == pytest.approx(10)
    # one prompt: the runtime's own figure
    assert evaluation.summed_stats([one])["tokens_per_target_call"] == tokens_per_target_call(10, 4)


def test_outside_head_counts_answer_tokens_without_a_head_row():
    samples = [([1, 2], [5, 6, 7]), ([3], [5, 9, 9, 8])]  # prompt tokens never count
    assert measure.outside_head(samples, np.array([5, 6, 8])) == pytest.approx(3 / 7)
    assert measure.outside_head(samples, None) is None  # a full head predicts every token


def test_simulated_walk_prices_calls_and_drafts():
    price = simulate.call_pricer({1: 0.010, 3: 0.012, 8: 0.022}, switch_s=0.005)
    assert price(2, 2) == pytest.approx(0.011)  # between measured shapes: interpolated
    assert price(3, 1) == pytest.approx(0.017)  # a change of shape costs the switch price
    # 7 matching tokens at k = 2: two calls keep 2 drafts + 1 target token each, the last call has nothing to draft
    flat = simulate.draft_pricer([0.001])
    tokens, calls, seconds = simulate.timed_walk(np.ones(7, bool), lambda: 2, price, flat)
    assert (tokens, calls) == (7, 3)
    assert seconds == pytest.approx(0.012 + 0.002 + 0.012 + 0.002 + 0.010 + 0.005)
    # draft calls priced by position after a target call; the step after a block accepted whole catches up
    draft = simulate.draft_pricer([0.003, 0.002], catch_up_s=[0.005, 0.004, 0.0025])
    assert draft(3, False) == pytest.approx(0.003 + 0.002 + 0.002) and draft(0, True) == 0.0
    assert draft(4, True) == pytest.approx(0.005 + 0.004 + 0.0025 + 0.0025)
    _, _, all_kept = simulate.timed_walk(np.ones(7, bool), lambda: 2, price, draft)
    assert all_kept == pytest.approx(0.012 + 0.005 + 0.012 + 0.009 + 0.010 + 0.005)
    misses = np.array([True, False] * 4)  # each call keeps 1 of 2 drafts, so no call catches up
    _, calls, seconds = simulate.timed_walk(misses, lambda: 2, price, draft)
    # three 2-draft calls, then one with a single token left to draft (a 2-token verify: shape switch)
    assert calls == 4 and seconds == pytest.approx(3 * (0.012 + 0.005) + 0.011 + 0.005 + 0.003)
    with pytest.raises(EdgespecError, match="longest"):
        price(9, 0)
    with pytest.raises(EdgespecError, match="1-token"):
        simulate.call_pricer({2: 0.01})


def test_simulation_agrees_with_block_walk_and_finds_the_best_length():
    rng = np.random.default_rng(3)
    good = [rng.random(120) < 0.85 for _ in range(6)]  # a draft that is right 85% of the time
    curve = {1: 0.010, 2: 0.0105, 4: 0.0115, 8: 0.016, 16: 0.03}
    rows = simulate.simulate(good, curve, draft_s=0.0005, lengths=[1, 3, 5], initial=3)
    assert rows["k=5"]["tokens_per_target_call"] == pytest.approx(
        measure.acceptance_summary(good, 5)["tokens_per_target_call"])
    assert rows["target-only"]["speedup"] == 1.0 and rows["target-only"]["tokens_per_target_call"] == 1.0
    assert rows["k=5"]["speedup"] > rows["k=1"]["speedup"] > 1.5
    assert rows["per-answer best fixed k"]["speedup"] >= max(rows[f"k={k}"]["speedup"] for k in (1, 3, 5))
    assert rows["adaptive (from k=3)"]["speedup"] > rows["k=1"]["speedup"]
    # a draft that is never right: the policy backs off from its initial k and loses less than 10%
    bad = [np.zeros(120, bool) for _ in range(6)]
    rows = simulate.simulate(bad, curve, draft_s=0.0005, lengths=[1, 3], initial=3)
    assert rows["per-answer best fixed k"]["speedup"] == 1.0
    assert rows["k=3"]["speedup"] < 0.9 < rows["adaptive (from k=3)"]["speedup"] < 1.0
    with pytest.raises(EdgespecError, match="cost curve to reach"):
        simulate.simulate(bad, {1: 0.01, 4: 0.012}, draft_s=0.0005, lengths=[1, 3], initial=3)


def test_cached_greedy_answers_equal_recomputing_every_step():
    """Left-padded batches with a KV cache give each prompt the answer a plain full forward gives."""
    from edgespec.draft.distill import greedy_answers
    from edgespec.draft.model import DraftConfig, DraftLM

    torch.manual_seed(0)
    model = DraftLM(DraftConfig(target_vocab=97, head_vocab=97, hidden=48, layers=2, heads=6, kv_heads=2, ffn=64,
                                context=128)).eval()
    for param in model.parameters():
        param.data *= 8  # decisive logits: no near-ties between the two computations
    rng = np.random.default_rng(0)
    prompts = [rng.integers(3, 97, size=n) for n in (5, 1, 17, 9, 9, 30)]

    def recomputed(prompt: np.ndarray) -> list[int]:
        ids, out = list(prompt), []
        while len(out) < 12 and (not out or out[-1] != 2):
            with torch.no_grad():
                out.append(int(model(torch.tensor([ids]))[0, -1].argmax()))
            ids.append(out[-1])
        return out

    expected = [recomputed(p) for p in prompts]
    assert any(e[-1] == 2 for e in expected) and any(len(e) == 12 for e in expected)  # both ways to end
    assert greedy_answers(model, prompts, 12, 2, batch=4) == expected
    assert greedy_answers(model, prompts, 12, 2, batch=4, batch_tokens=40) == expected  # smaller batches


def test_distill_end_to_end(tmp_path, tiny_pair):
    """pack-prompts -> distill (answers + online-teacher training) -> resume from its answers and draft."""
    from edgespec.draft.distill import greedy_answers, read_token_lists
    from edgespec.draft.model import DraftLM, load_checkpoint, read_gguf_model

    gguf_path = write_llama_gguf(tmp_path / "t.gguf", TINY_SHAPE, random_llama_weights(TINY_SHAPE, seed=0),
                                 read_tokenizer_fields(smollm2_gguf()))
    rows = [{"id": f"code-{i}", "kind": "code", "user": f"Write a function number {i} that adds {i} to x."}
            for i in range(10)] + [{"id": "code-raw-0", "kind": "code-raw", "user": "def add(x, y):\n"}]
    (tmp_path / "prompts.json").write_text(json.dumps(rows))
    run("pack-prompts", "--prompts", tmp_path / "prompts.json", "--target", tiny_pair / "target",
        "--out", tmp_path / "prompts.npz")
    keys, prompts = read_token_lists(tmp_path / "prompts.npz")
    tok = data.TargetTokenizer(tiny_pair / "target")
    assert keys == [r["id"] for r in rows] and prompts[0].tolist() == tok.encode([data.model_input(tok, rows[0])])[0]
    assert prompts[-1].tolist() == tok.encode(["def add(x, y):\n"])[0]  # raw prompts keep no chat template

    assert tok.eos_id == 2  # the GGUF's eos id, which distill uses when --stop-id is not given
    common = ("--target-gguf", gguf_path, "--prompts", tmp_path / "prompts.npz",
              "--device", "cpu", "--max-new-tokens", 6, "--gen-batch", 4, "--seq", 48, "--batch", 2,
              "--eval-every", 5, "--minutes", 0.12, "--val-percent", 40)
    run("distill", *common, "--out", tmp_path / "d1", "--layers", "0,-1", "--answer-minutes", 0.1)
    answered = dict(zip(*read_token_lists(tmp_path / "d1" / "answers.npz")))
    assert set(answered) == set(keys)
    cfg, weights = read_gguf_model(gguf_path)
    target = DraftLM(cfg)
    target.load_gguf_weights(weights)
    assert [answered[k].tolist() for k in keys[:3]] == greedy_answers(target.eval(), prompts[:3], 6, tok.eos_id, 8)
    summary = json.loads((tmp_path / "d1" / "distill.json").read_text())
    assert summary["answers"] == 11 and summary["step"] >= 1
    log = [json.loads(line) for line in (tmp_path / "d1" / "log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == summary["step"] and "acceptance" in log[-1]
    draft, _, _, _ = load_checkpoint(tmp_path / "d1" / "last.pt")
    assert draft.cfg.init_layers == [0, 1] and draft.cfg.layers == 2  # -1: the target's last layer

    # a second run starts from that draft and those answers: nothing is asked again
    run("distill", *common, "--out", tmp_path / "d2", "--init", tmp_path / "d1" / "last.pt",
        "--answers", tmp_path / "d1" / "answers.npz", "--answer-minutes", 0)
    again = dict(zip(*read_token_lists(tmp_path / "d2" / "answers.npz")))
    assert {k: v.tolist() for k, v in again.items()} == {k: v.tolist() for k, v in answered.items()}
    first = [json.loads(line) for line in (tmp_path / "d2" / "log.jsonl").read_text().splitlines()][0]
    assert first["step"] == 0 and abs(first["val_loss"] - log[-1]["val_loss"]) < 1e-3  # the same draft, evaluated


def test_distill_bad_input_is_one_clear_line(tmp_path, tiny_pair):
    def fails(*args: str) -> str:
        result = runner.invoke(app, [str(a) for a in args])
        assert result.exit_code != 0 and isinstance(result.exception, EdgespecError)
        return str(result.exception)

    assert "prompt list not found" in fails("pack-prompts", "--prompts", tmp_path / "none.json", "--target",
                                            tiny_pair / "target", "--out", tmp_path / "p.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    from edgespec.draft.distill import read_token_lists

    with pytest.raises(EdgespecError, match="not a token list file"):
        read_token_lists(tmp_path / "junk.npz")
    if not torch.cuda.is_available():
        assert "no GPU" in fails("distill", "--target-gguf", smollm2_gguf(), "--prompts", tmp_path / "junk.npz",
                                 "--out", tmp_path / "d", "--device", "cuda")


def test_recipe_end_to_end(tmp_path, tiny_corpus, tiny_pair):
    """corpus -> pretrain -> synthesize -> align -> export -> accept, all on tiny models."""
    target = tiny_pair / "target"
    run("pretrain", "--corpus", tiny_corpus, "--target", target, "--out", tmp_path / "pre", "--head-vocab", 1024,
        "--hidden", 32, "--n-layers", 1, "--heads", 2, "--kv-heads", 1, "--ffn", 64, "--seq", 32, "--batch", 2,
        "--steps", 6, "--eval-every", 3, "--threads", 1)
    log = [json.loads(line) for line in (tmp_path / "pre" / "log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 6 and "acceptance" in log[-1]
    assert log[-1]["val_loss"] < log[0]["val_loss"]  # it learns something even in 6 steps
    # resume: asking for more steps continues from the checkpoint instead of restarting
    run("pretrain", "--corpus", tiny_corpus, "--target", target, "--out", tmp_path / "pre", "--seq", 32,
        "--batch", 2, "--steps", 8, "--eval-every", 4, "--threads", 1)
    steps = [json.loads(line)["step"] for line in (tmp_path / "pre" / "log.jsonl").read_text().splitlines()]
    assert steps[-3:] == [6, 7, 8]

    synthetic = tmp_path / "synth.jsonl"
    args = ("synthesize", "--target", target, "--corpus", tiny_corpus, "--out", synthetic, "--code", 3,
            "--sharegpt", 3, "--self", 1, "--max-new-tokens", 8, "--batch", 4)
    run(*args)
    rows = [json.loads(line) for line in synthetic.read_text().splitlines()]
    assert len(rows) == 7 and {r["kind"] for r in rows} == {"code", "sharegpt", "self"}
    run(*args)  # resumable: nothing is answered twice
    assert len(synthetic.read_text().splitlines()) == 7
    run(*args[:8], 4, *args[9:])  # one more code prompt: the saved list grows, its answers stay
    grown = [json.loads(line) for line in synthetic.read_text().splitlines()]
    assert grown[:7] == rows and [r["id"] for r in grown[7:]] == ["code-3"]
    run(*args[:8], 4, "--code-raw", 2, *args[9:])  # code completion: seeds continued as plain text
    raw = [json.loads(line) for line in synthetic.read_text().splitlines()][8:]
    assert sorted(r["id"] for r in raw) == ["code-raw-0", "code-raw-1"]
    seeds = json.loads((tiny_corpus / "seeds.json").read_text())["code"]
    tok = data.TargetTokenizer(target)
    for r in raw:
        assert r["user"] == seeds[int(r["id"].rsplit("-", 1)[1])]
        assert data.model_input(tok, r) == r["user"]  # no chat template around a raw prompt
    assert data.model_input(tok, grown[7]) == tok.chat_prompt(grown[7]["user"])
    run(*args[:8], 4, "--code-raw", 2, "--sharegpt-later", 1, *args[9:])  # a later ShareGPT turn, as a chat turn
    later = [json.loads(line) for line in synthetic.read_text().splitlines()][10:]
    first_later = json.loads((tiny_corpus / "seeds.json").read_text())["sharegpt_later"][0]
    assert [(r["id"], r["user"]) for r in later] == [("sharegpt-later-0", first_later)]
    assert data.model_input(tok, later[0]) == tok.chat_prompt(first_later)

    align = ("align", "--init", tmp_path / "pre" / "last.pt", "--synthetic", synthetic, "--target", target,
             "--out", tmp_path / "align", "--val-percent", 50, "--seq", 48, "--batch", 2, "--eval-every", 3,
             "--threads", 1, "--distill-top", 4)
    run(*align, "--steps", 3)
    shards = sorted((tmp_path / "align" / "teacher").glob("shard-*.npz"))
    assert shards
    run(*align, "--steps", 4)  # resumes training; the target's distributions are not computed again
    assert sorted((tmp_path / "align" / "teacher").glob("shard-*.npz")) == shards
    draft = tmp_path / "draft"
    run("export", "--checkpoint", tmp_path / "align" / "last.pt", "--tokenizer-gguf", smollm2_gguf(),
        "--out", draft, "--verify-tokens", 16)
    entry = read_model_entry(draft, need_tokenizer=False)
    assert len(entry.vocab_map()) == 1024 and entry.vocab_size == 49152
    check = json.loads((draft / "export_check.json").read_text())
    assert check["own_text"]["argmax_agreement"] >= 0.9
    # the fixed reference text is tokenized with the target's tokenizer, which is then dropped from the folder
    assert check["reference_text"]["argmax_agreement"] >= 0.9 and check["reference_text"]["positions"] >= 48
    assert not (draft / "openvino_tokenizer.xml").exists()
    run("export", "--checkpoint", tmp_path / "align" / "last.pt", "--tokenizer-gguf", smollm2_gguf(),
        "--out", tmp_path / "draft-int4", "--weights", "int4", "--verify-tokens", 16)
    assert json.loads((tmp_path / "draft-int4" / "export_check.json").read_text())["weights"] == "int4"
    ir = (tmp_path / "draft-int4" / "openvino_model.xml").read_text()
    assert 'element_type="u4"' in ir or 'element_type="i4"' in ir

    evalset = tmp_path / "eval.jsonl"
    run("evalset", "--target", target, "--out", evalset, "--humaneval", 2, "--humaneval-raw", 2, "--mtbench", 2,
        "--max-new-tokens", 8)
    run("accept", "--draft", draft, "--target", target, "--evalset", evalset, "--max-new-tokens", 8,
        "--out", tmp_path / "acc.json")
    run("cost", draft, "--target", target, "--rounds", 1, "--no-npu", "--out", tmp_path / "cost.json")
    costs = json.loads((tmp_path / "cost.json").read_text())
    assert costs["draft/target"] == costs["draft (CPU)"]["ms_per_token"] / costs["target (CPU)"]["ms_per_token"] > 0
    between = costs["draft (CPU, between target calls)"]
    assert between["ms_per_token"] > 0 and between["draft_tokens"] == 2
    assert costs["draft/target between target calls"] == between["ms_per_token"] / costs["target (CPU)"]["ms_per_token"]
    acc = json.loads((tmp_path / "acc.json").read_text())
    assert set(acc) == {"humaneval", "humaneval-raw", "mtbench"}
    assert all(1.0 <= r["tokens_per_target_call"] <= 6.0 for r in acc.values())
    # a token the 1024-row head has no row for can never be matched
    assert all(0.0 <= r["outside_head"] <= 1.0 - r["token_match_rate"] for r in acc.values())
    run("card", "--draft", draft, "--checkpoint", tmp_path / "align" / "last.pt", "--log", tmp_path / "pre" / "log.jsonl",
        "--log", tmp_path / "align" / "log.jsonl", "--corpus", tiny_corpus, "--synthetic", synthetic,
        "--acceptance", tmp_path / "acc.json", "--costs", tmp_path / "cost.json", "--target-name", "tiny")
    card = (draft / "MODEL_CARD.md").read_text()
    assert card.startswith("# FastDraft draft for tiny") and "| align | 4 |" in card
    assert f"{acc['humaneval-raw']['tokens_per_target_call']:.2f} | {acc['humaneval-raw']['outside_head']:.3f} |" in card
    assert f"as in decoding (a draft step after a pause runs slower than back to back): " \
           f"{costs['draft/target between target calls']:.3f}" in card
    bench_json = tmp_path / "results.json"  # the part of an `edgespec bench` results.json that prices calls
    bench_json.write_text(json.dumps({"cost_curve": {"target": {"call_s": {"1": 0.01, "4": 0.012, "16": 0.03}},
                                                     "draft": {"call_s": {"1": 0.001}}}}))
    run("simulate", "--draft", draft, "--target", target, "--evalset", evalset, "--bench", bench_json,
        "--max-new-tokens", 8, "--draft-lengths", "1,5", "--out", tmp_path / "sim.json")
    sim = json.loads((tmp_path / "sim.json").read_text())["results"]
    assert {kind: sim[kind]["k=5"]["tokens_per_target_call"] for kind in sim} == pytest.approx(
        {kind: r["tokens_per_target_call"] for kind, r in acc.items()})
    # a newer bench prices each draft call after a target call, and dearer ones when catching up: slower, same calls
    curve = json.loads(bench_json.read_text())
    curve["cost_curve"]["draft_calls_s"] = {"plain": [0.002, 0.0015], "catch_up": [0.003, 0.002]}
    bench_json.write_text(json.dumps(curve))
    run("simulate", "--draft", draft, "--target", target, "--evalset", evalset, "--bench", bench_json,
        "--max-new-tokens", 8, "--draft-lengths", "1,5", "--out", tmp_path / "sim2.json")
    sim2 = json.loads((tmp_path / "sim2.json").read_text())
    assert sim2["draft_s"] == [0.002, 0.0015] and sim2["catch_up_s"] == [0.003, 0.002]
    for kind, rows in sim2["results"].items():
        assert rows["k=5"]["tokens_per_target_call"] == sim[kind]["k=5"]["tokens_per_target_call"]
        assert rows["k=5"]["tokens_per_s"] < sim[kind]["k=5"]["tokens_per_s"]
    # trees replayed with the real draft: a 1-node tree is the draft's argmax, i.e. the k = 1 chain, call for call
    run("simulate", "--draft", draft, "--target", target, "--evalset", evalset, "--bench", bench_json,
        "--max-new-tokens", 8, "--draft-lengths", "2", "--tree", "1,4", "--out", tmp_path / "tree.json")
    trees = json.loads((tmp_path / "tree.json").read_text())
    assert trees["budgets"] == [1, 4] and set(trees["results"]) == set(sim2["results"])
    for kind, r in trees["results"].items():
        assert set(r["chains"]["measured"]) >= {"target-only", "k=1", "k=2", "k=4"}
        assert r["trees"]["tree 1"]["tokens_per_target_call"] == r["chains"]["flat"]["k=1"]["tokens_per_target_call"]
        flat = r["trees"]["tree 4"]["flat"]
        # on a flat curve a call costs the 1-token step whatever its width; the draft's rounds are what is added
        assert flat["seconds"] > flat["target_calls"] * 0.01
        assert r["best"]["flat"]["tree"] in ("tree 1", "tree 4") and r["best"]["measured"]["tree_over_chain"] > 0
    with pytest.raises(AssertionError, match="training checkpoint"):
        run("simulate", "--draft", tmp_path / "align" / "last.pt", "--target", target, "--evalset", evalset,
            "--bench", bench_json, "--max-new-tokens", 8, "--tree", "4")

    # the runtime loads the exported draft (reduced head) beside its target and reports the same kind of numbers
    pair = tmp_path / "pair"
    pair.mkdir()
    shutil.copytree(target, pair / "target")
    shutil.copytree(draft, pair / "draft")
    write_manifest(pair, "tiny-fastdraft", {"dir": "target"}, {"dir": "draft"})
    run("runtime-accept", "--pair", pair, "--humaneval", 1, "--humaneval-raw", 1, "--mtbench", 1,
        "--max-new-tokens", 8, "--out", tmp_path / "rt.json")
    rt = json.loads((tmp_path / "rt.json").read_text())
    assert set(rt) == {"humaneval", "humaneval-raw", "mtbench"}
    assert all(r["new_tokens"] > 0 and 1.0 <= r["tokens_per_target_call"] <= 6.0 for r in rt.values())

    # OpenVINO GenAI runs the same reduced-head draft through the bench's full-vocabulary adapter
    import openvino_genai as ov_genai

    from edgespec.runtime.manifest import load_pair
    from edgespec.bench.modes import genai_draft_dir

    genai_draft = genai_draft_dir(load_pair(pair), tmp_path / "scratch")
    pipe = ov_genai.LLMPipeline(str(pair / "target"), "CPU", draft_model=ov_genai.draft_model(str(genai_draft), "CPU"))
    config = ov_genai.GenerationConfig()
    config.max_new_tokens, config.num_assistant_tokens = 8, 3
    result = pipe.generate(["def add(a, b):"], config)
    assert result.extended_perf_metrics.get_num_accepted_tokens() >= 0 and result.texts[0]


def test_shipped_draft_folder():
    """The shipped SmolLM2 draft: loadable, reduced head consistent with draft_vocab.npy, INT8 and small."""
    import openvino as ov

    folder = DRAFTS / "smollm2"
    if not (folder / "openvino_model.xml").exists():
        pytest.skip("shipped draft not present")
    entry = read_model_entry(folder, need_tokenizer=False)
    vocab_map = entry.vocab_map()
    model = ov.Core().read_model(folder / "openvino_model.xml")
    head_rows = model.output("logits").get_partial_shape()[-1].get_length()
    assert vocab_map is not None and len(vocab_map) == head_rows
    assert len(np.unique(vocab_map)) == len(vocab_map) and vocab_map.max() < entry.vocab_size == 49152
    assert 2 in vocab_map  # <|im_end|> must be draftable
    assert any(op.get_element_type() in (ov.Type.u8, ov.Type.i8) for op in model.get_ops()
               if op.get_type_name() == "Constant")
    assert (folder / "openvino_model.bin").stat().st_size < 60e6
    assert (folder / "MODEL_CARD.md").exists() and (folder / "loss.png").exists()


def test_qwen2_draft_matches_openvino(tmp_path):
    """qwen2 GGUFs (Q/K/V biases, NeoX RoPE) seed drafts too: torch reproduces GenAI's logits, and a
    reduced-head qwen2 draft survives the export route (GGUF -> GenAI -> IR)."""
    import dataclasses

    from edgespec.export.gguf_convert import convert_gguf
    from edgespec.draft.export import export_draft, verify_export
    from edgespec.draft.model import draft_from_target, read_gguf_model

    shape = dataclasses.replace(TINY_SHAPE, arch="qwen2")
    weights = random_llama_weights(shape, seed=3)
    gguf_path = write_llama_gguf(tmp_path / "q.gguf", shape, weights, read_tokenizer_fields(smollm2_gguf()))
    cfg, w = read_gguf_model(gguf_path)
    assert cfg.arch == "qwen2" and cfg.qkv_bias and cfg.rope_neox
    convert_gguf(gguf_path, tmp_path / "ir")
    assert_torch_matches_openvino(draft_from_target(cfg, w, list(range(cfg.layers)), None), tmp_path / "ir")

    vocab_map = np.sort(np.random.default_rng(0).permutation(cfg.target_vocab)[:512])
    vocab_map[0] = 2
    vocab_map.sort()
    draft = draft_from_target(cfg, w, [0], vocab_map)
    export_draft(draft, vocab_map, smollm2_gguf(), tmp_path / "draft", eos_token_ids=[2], weights="fp16")
    assert verify_export(draft, tmp_path / "draft", IDS)["argmax_agreement"] == 1.0


def test_target_tokenizer_frames_turns_with_the_targets_template(tiny_pair, tmp_path):
    tok = data.TargetTokenizer(tiny_pair / "target")
    prompt = tok.chat_prompt("Sort a list.")
    assert prompt.startswith(tok.before_user) and prompt.endswith(tok.after_user) and "Sort a list." in prompt
    assert tok.end_of_turn == "<|im_end|>" and tok.eos_id == 2
    assert tok.before_user.endswith("<|im_start|>user\n") and tok.after_user.endswith("<|im_start|>assistant\n")
    assert {1, 2} <= set(tok.special_ids())  # <|im_start|> and <|im_end|> are always in a reduced head


def test_token_files_keep_large_vocabulary_ids(tmp_path):
    ids = np.array([0, 65535, 65536, 151645])  # Qwen's ids pass uint16
    data.save_tokens(tmp_path / "t.npy", ids)
    assert np.load(tmp_path / "t.npy").tolist() == ids.tolist()
    data.save_tokens(tmp_path / "s.npy", np.array([1, 49151]))
    assert np.load(tmp_path / "s.npy").dtype == np.uint16  # SmolLM2-sized corpora stay small


@pytest.mark.parametrize("arch,weights", [("llama", "int8"), ("qwen2", "int8"), ("llama", "int4")])
def test_draft_rebuilt_from_its_ir(tmp_path, arch, weights):
    """A shipped draft keeps only its IR: import-ir rebuilds a float checkpoint whose weights are the
    exported ones up to INT8/INT4 rounding (Q/K back in the draft's RoPE layout, norms, biases, reduced head)."""
    import dataclasses

    from edgespec.draft.export import export_draft
    from edgespec.draft.model import draft_from_target, load_checkpoint, read_gguf_model

    shape = dataclasses.replace(TINY_SHAPE, arch=arch)
    gguf_path = write_llama_gguf(tmp_path / "t.gguf", shape, random_llama_weights(shape, seed=5),
                                 read_tokenizer_fields(smollm2_gguf()))
    cfg, w = read_gguf_model(gguf_path)
    vocab_map = np.unique(np.concatenate([[2], np.random.default_rng(1).permutation(cfg.target_vocab)[:511]]))
    draft = draft_from_target(cfg, w, [1, 0], vocab_map)
    with torch.no_grad():  # norms away from 1, so a norm read from the wrong place shows
        for name, p in draft.named_parameters():
            if "norm" in name:
                p.mul_(torch.linspace(0.5, 1.5, p.numel()))
        if arch == "qwen2":  # a draft that trained its own input embedding keeps it
            draft.token_embd.weight.add_(0.1 * draft.token_embd.weight.std())
    export_draft(draft, vocab_map, smollm2_gguf(), tmp_path / "ir", eos_token_ids=[2], weights=weights)

    run("import-ir", "--draft", tmp_path / "ir", "--target-gguf", gguf_path, "--out", tmp_path / "back.pt")
    model, state, back_map, _ = load_checkpoint(tmp_path / "back.pt")
    assert np.array_equal(back_map, vocab_map) and state["imported_from"] == str(tmp_path / "ir")
    # the IR's embedding is INT8, the rebuilt one the target's exact values: near-ties may differ, clear ones not
    assert state["import_check"]["argmax_agreement_clear"] == 1.0
    assert (model.cfg.layers, model.cfg.head_vocab, model.cfg.arch) == (2, len(vocab_map), arch)
    original, rebuilt = draft.gguf_weights(), model.gguf_weights()
    assert original.keys() == rebuilt.keys()
    for name, x in original.items():
        if weights == "int4" and name.startswith("blk.") and x.ndim == 2:
            # INT4 layers (groups of 64) round these random weights by ~10% of the matrix's norm (measured: up
            # to 9.6%); a layout or naming mistake moves them by ~140%
            assert np.linalg.norm(rebuilt[name] - x) <= 0.2 * np.linalg.norm(x), name
        else:
            # per-channel INT8 rounds each weight by at most half a step of its row's range (2 * max / 255)
            assert np.abs(rebuilt[name] - x).max() <= 0.005 * np.abs(x).max() + 1e-6, name
    # the target's own (frozen) embedding comes back exactly, from the target's GGUF
    assert np.array_equal(rebuilt["token_embd.weight"], w["token_embd.weight"]) == (arch == "llama")

    missing = runner.invoke(app, ["import-ir", "--draft", str(tmp_path), "--target-gguf", str(gguf_path),
                                  "--out", str(tmp_path / "x.pt")])
    assert isinstance(missing.exception, EdgespecError) and "no openvino_model.xml" in str(missing.exception)
