"""Collaborative decoding (edgespec.runtime.collab): greedy CoS equals naive collaborative decoding token for token,
CoS samples follow the combined distribution r, weight 0 is plain speculative decoding, and the CLI and bench
run it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from edgespec.runtime.collab import Combination, accept_collab, accept_proposal, collab_decode
from edgespec.runtime.config import CollabConfig, GenerationConfig, GenerationStats
from edgespec.runtime.errors import EdgespecError
from edgespec.runtime.model import StatefulLM
from edgespec.runtime.pipeline import SpeculativePipeline
from edgespec.runtime.sampling import Warp, probabilities

PROMPTS = ["Hello there, how are", "def fibonacci(n):", "The capital of France is", "1, 2, 3, 4,",
           "Q: What is 2+2?\nA:", "SELECT * FROM"]
METHODS = [CollabConfig("ensemble", weight=0.5), CollabConfig("contrastive", alpha=0.1)]


def chi_square_critical(df: int) -> float:
    # 99.9th percentile of chi-square (Wilson-Hilferty approximation); a false alarm once in 1000 runs.
    z = 3.090
    return df * (1 - 2 / (9 * df) + z * np.sqrt(2 / (9 * df))) ** 3


def chi_square(observed: dict, expected: dict, draws: int) -> tuple[float, int]:
    """Chi-square of observed counts against expected probabilities, cells under 5 expected draws pooled.
    Returns (statistic, degrees of freedom); a draw in a cell of probability 0 fails at once."""
    impossible = [cell for cell in observed if expected.get(cell, 0.0) <= 0.0]
    assert not impossible, f"drew cells of probability 0: {impossible[:5]}"
    cells = [(observed.get(cell, 0), p * draws) for cell, p in expected.items() if p > 0]
    big = [(o, e) for o, e in cells if e >= 5]
    small = [(o, e) for o, e in cells if e < 5]
    if small:
        big.append((sum(o for o, _ in small), sum(e for _, e in small)))
    stat = sum((o - e) ** 2 / e for o, e in big)
    return stat, len(big) - 1


# ----------------------------------------------------------------------------- the combination rules


def test_combinations_and_a_reduced_draft_head():
    rng = np.random.default_rng(0)
    target, head = rng.normal(size=8).astype(np.float32), rng.normal(size=5).astype(np.float32)
    vocab_map = np.array([0, 2, 3, 5, 6])
    warp = Warp(temperature=0.7)
    ens = Combination(CollabConfig("ensemble", weight=0.3), warp, vocab_map, 8)
    q = np.zeros(8)
    q[vocab_map] = probabilities(head, warp)
    np.testing.assert_allclose(ens.combined(target, head), 0.7 * probabilities(target, warp) + 0.3 * q)
    assert ens.combined(target, head).sum() == pytest.approx(1.0)
    con = Combination(CollabConfig("contrastive", alpha=0.5), warp, vocab_map, 8)
    z_draft = np.full(8, head.min(), dtype=np.float64)  # outside the head: the head's lowest logit
    z_draft[vocab_map] = head
    np.testing.assert_allclose(con.combined(target, head), probabilities(target - 0.5 * z_draft, warp))
    # greedy picks argmax r of the unwarped distributions; the draft proposes target ids through the map
    greedy = Combination(CollabConfig("ensemble", weight=0.3), None, vocab_map, 8)
    unwarped = 0.7 * probabilities(target, Warp())
    unwarped[vocab_map] += 0.3 * probabilities(head, Warp())
    assert greedy.best(target, head) == int(unwarped.argmax())
    assert greedy.propose(head, rng) == (int(vocab_map[head.argmax()]), None)
    assert Combination(CollabConfig("contrastive", alpha=0.5), None, vocab_map, 8).best(target, head) == int(
        (target - 0.5 * z_draft).argmax())


def test_collab_config_checks_and_round_trip():
    for bad in (dict(method="mean"), dict(weight=1.5), dict(alpha=-0.1), dict(bonus="later")):
        with pytest.raises(EdgespecError):
            CollabConfig(**bad)
    config = GenerationConfig(collab=CollabConfig("contrastive", alpha=0.2, naive=True))
    assert GenerationConfig(**dataclasses.asdict(config)) == config  # the bench's memory probe reads it back
    assert "alpha 0.2" in config.collab.describe() and "naive" in config.collab.describe()


@pytest.mark.parametrize("collab", METHODS, ids=lambda c: c.method)
def test_acceptance_rules_follow_r(collab):
    """A drafted x ~ q checked against r (accept_collab), and the target's own y ~ p checked against r
    (accept_proposal, CoS's alternate proposal): the settled token must follow r. Tokens outside the draft's
    reduced head (q = 0 there) must still appear, through the residual."""
    rng = np.random.default_rng(1)
    vocab_map = np.array([0, 1, 3, 4])
    combo = Combination(collab, Warp(temperature=1.2), vocab_map, 6)
    target, head = rng.normal(size=6) * 1.5, rng.normal(size=4) * 1.5
    r, p = combo.combined(target, head), probabilities(target, combo.warp)
    draws = 20000
    drafted, proposed = {}, {}
    for _ in range(draws):
        x, q = combo.propose(head, rng)
        kept, replacement = accept_collab(lambda i: r, [q], [x], rng)
        token = x if kept else replacement
        drafted[token] = drafted.get(token, 0) + 1
        y, _ = combo.own(target, rng)
        token = accept_proposal(r, p, y, rng)
        proposed[token] = proposed.get(token, 0) + 1
    expected = dict(enumerate(r))
    for observed in (drafted, proposed):
        stat, df = chi_square(observed, expected, draws)
        assert stat < chi_square_critical(df), (observed, r * draws)
    assert drafted.get(2, 0) > 0 and drafted.get(5, 0) > 0  # outside the head


# ----------------------------------------------------------------------------- the loop on stand-in models


class FakeLM:
    """A stand-in for StatefulLM with a tiny vocabulary: the logits after a prefix are a fixed random function of
    it (the draft's are the target's plus noise, over its head only), so r after any prefix is known exactly."""

    max_feed = None
    pending = StatefulLM.pending

    def __init__(self, vocab: int, noise: float, head: np.ndarray | None = None, context_length: int = 64):
        self.vocab_size, self.noise, self.vocab_map, self.context_length = vocab, noise, head, context_length
        self.tokens: list[int] = []
        self.rows: dict[tuple[int, ...], np.ndarray] = {}

    @property
    def cached(self) -> int:
        return len(self.tokens)

    def reset(self) -> None:
        self.tokens = []

    def rollback(self, keep: int) -> None:
        del self.tokens[keep:]

    def row(self, prefix: list[int]) -> np.ndarray:
        key = tuple(prefix)
        if key not in self.rows:
            logits = np.random.default_rng([0, *prefix]).normal(size=self.vocab_size) * 1.5
            if self.noise:
                logits += self.noise * np.random.default_rng([1, *prefix]).normal(size=self.vocab_size)
            self.rows[key] = (logits if self.vocab_map is None else logits[self.vocab_map]).astype(np.float32)
        return self.rows[key]

    def forward(self, tokens: list[int], last: int | None = None) -> np.ndarray:
        start = len(self.tokens)
        self.tokens.extend(int(t) for t in tokens)
        assert len(self.tokens) <= self.context_length
        rows = [self.row(self.tokens[:i + 1]) for i in range(start, len(self.tokens))]
        return np.stack(rows[-(last or len(rows)):])


def fake_pair(vocab: int = 6) -> tuple[FakeLM, FakeLM]:
    return FakeLM(vocab, 0.0), FakeLM(vocab, 1.0, head=np.array([0, 1, 2, 4]))


def run_fake(target: FakeLM, draft: FakeLM, prompt: list[int], config: GenerationConfig) -> list[int]:
    target.reset()
    draft.reset()
    stats = GenerationStats()
    out = [t for tokens in collab_decode(target, draft, prompt, config, {99}, stats) for t in tokens]
    assert stats.new_tokens == len(out)
    return out


@pytest.mark.parametrize("bonus", ["alternate", "extra-call"])
@pytest.mark.parametrize("collab", [CollabConfig("ensemble", weight=0.5), CollabConfig("contrastive", alpha=1.0)],
                         ids=lambda c: c.method)
def test_cos_samples_follow_r(collab, bonus):
    """Whole CoS generations on stand-in models: the joint distribution of the first three tokens must be the
    product of r's. Three tokens at draft length 2 pass through the prefill, drafted tokens kept and rejected,
    the bonus position (the target's proposal checked by the draft, or the extra draft call) and k = 0 at the end."""
    target, draft = fake_pair()
    collab = dataclasses.replace(collab, bonus=bonus)
    warp = Warp(temperature=1.3)
    combo = Combination(collab, warp, draft.vocab_map, target.vocab_size)
    prompt = [3, 1]
    draws = 5000
    observed: dict = {}
    for seed in range(draws):
        config = GenerationConfig(max_new_tokens=3, do_sample=True, temperature=1.3, seed=seed, draft_length=2,
                                  adaptive_draft=False, collab=collab)
        cell = tuple(run_fake(target, draft, prompt, config))
        observed[cell] = observed.get(cell, 0) + 1

    def r(prefix):
        return combo.combined(target.row(prefix), draft.row(prefix))

    expected = {}
    for a, pa in enumerate(r(prompt)):
        for b, pb in enumerate(r(prompt + [a])):
            for c, pc in enumerate(r(prompt + [a, b])):
                expected[(a, b, c)] = pa * pb * pc
    stat, df = chi_square(observed, expected, draws)
    assert stat < chi_square_critical(df), stat
    if collab.method == "ensemble":  # the test can tell r from the target's own distribution
        p = {}
        for a, pa in enumerate(probabilities(target.row(prompt), warp)):
            for b, pb in enumerate(probabilities(target.row(prompt + [a]), warp)):
                for c, pc in enumerate(probabilities(target.row(prompt + [a, b]), warp)):
                    p[(a, b, c)] = pa * pb * pc
        stat_p, df_p = chi_square(observed, p, draws)
        assert stat_p > 10 * chi_square_critical(df_p)


def test_greedy_cos_equals_naive_on_stand_in_models():
    """Many prompts, a reduced draft head, every draft length and both bonus handlings."""
    target, draft = FakeLM(12, 0.0), FakeLM(12, 1.0, head=np.array([0, 1, 2, 4, 5, 7, 8, 11]))
    rng = np.random.default_rng(3)
    for collab in METHODS:
        for _ in range(30):
            prompt = [int(t) for t in rng.integers(0, 12, size=3)]
            config = GenerationConfig(max_new_tokens=20, collab=dataclasses.replace(collab, naive=True))
            want = run_fake(target, draft, prompt, config)
            for bonus in ("alternate", "extra-call"):
                for k in (1, 2, 5):
                    cos = dataclasses.replace(collab, bonus=bonus)
                    config = GenerationConfig(max_new_tokens=20, draft_length=k, adaptive_draft=False, collab=cos)
                    assert run_fake(target, draft, prompt, config) == want, (collab, bonus, k, prompt)


def test_context_and_eos_end_collab_like_naive():
    target, draft = fake_pair()
    draft.context_length = 10
    for collab in (CollabConfig(naive=True), CollabConfig(bonus="alternate"), CollabConfig(bonus="extra-call")):
        stats = GenerationStats()
        out = [t for ts in collab_decode(target, draft, [1, 2, 3], GenerationConfig(max_new_tokens=50, collab=collab),
                                         set(), stats) for t in ts]
        assert len(out) == 7 and stats.stop_reason == "context"  # the sequence fills the shorter context
        target.reset()
        draft.reset()
    with pytest.raises(EdgespecError, match="draft's context"):
        collab_decode(target, draft, list(range(10)), GenerationConfig(collab=CollabConfig()), set(), GenerationStats())
    greedy = run_fake(target, draft, [1, 2], GenerationConfig(max_new_tokens=6, collab=CollabConfig(naive=True)))
    eos = greedy[2]
    for collab in (CollabConfig(naive=True), CollabConfig(bonus="alternate"), CollabConfig(bonus="extra-call")):
        stats = GenerationStats()
        target.reset()
        draft.reset()
        out = [t for ts in collab_decode(target, draft, [1, 2], GenerationConfig(max_new_tokens=6, collab=collab),
                                         {eos}, stats) for t in ts]
        assert out == greedy[:greedy.index(eos) + 1] and stats.stop_reason == "eos"


# ----------------------------------------------------------------------------- tiny OpenVINO models


@pytest.fixture(scope="module")
def tiny_pipes(tiny_pair, tiny_pair_far):
    return {"near": SpeculativePipeline.from_manifest(tiny_pair, exact=True),
            "far": SpeculativePipeline.from_manifest(tiny_pair_far, exact=True)}


@pytest.mark.parametrize("pair", ["near", "far"])
@pytest.mark.parametrize("collab", METHODS, ids=lambda c: c.method)
def test_greedy_cos_equals_naive(tiny_pipes, pair, collab):
    pipe = tiny_pipes[pair]
    stats = []
    for prompt in PROMPTS[:4]:
        naive = GenerationConfig(max_new_tokens=40, ignore_eos=True, collab=dataclasses.replace(collab, naive=True))
        want = pipe.generate(prompt, naive, chat=False)
        assert want.stats.target_calls == want.stats.draft_calls == 40 and want.stats.drafted_tokens == 0
        for bonus, k, adaptive in [("alternate", 1, False), ("alternate", 4, False), ("extra-call", 2, False),
                                   ("extra-call", 5, False), ("extra-call", 3, True)]:
            config = GenerationConfig(max_new_tokens=40, ignore_eos=True, draft_length=k, adaptive_draft=adaptive,
                                      collab=dataclasses.replace(collab, bonus=bonus))
            got = pipe.generate(prompt, config, chat=False)
            assert got.token_ids == want.token_ids, (prompt, bonus, k, adaptive)
            assert got.text == want.text
            stats.append(got.stats)
    s = stats[0]
    assert s.new_tokens == 40 and s.stop_reason == "length" and s.accepted_tokens <= s.drafted_tokens
    accepted, drafted = sum(s.accepted_tokens for s in stats), sum(s.drafted_tokens for s in stats)
    proposals = sum(s.alternate_tokens for s in stats)
    kept = sum(s.alternate_accepted for s in stats)
    assert proposals > 0 and kept <= proposals
    if pair == "near":  # both verdicts happen, on drafted tokens and on the target's own proposals; CoS makes
        assert 0 < accepted < drafted and 0 < kept < proposals  # fewer target calls than naive's one per token
        assert sum(s.target_calls for s in stats) < 0.8 * 40 * len(stats)


@pytest.mark.parametrize("bonus", ["alternate", "extra-call"])
def test_weight_zero_is_plain_speculative_decoding(tiny_pipes, bonus):
    """With weight 0 (ensemble) or alpha 0 (contrastive) r is the target's distribution: CoS must then be plain
    speculative decoding token for token, greedy and sampled with the same seed (the same draws in the same
    order), with the same acceptance."""
    pipe = tiny_pipes["near"]
    for do_sample in (False, True):
        for prompt in PROMPTS[:3]:
            base = dict(max_new_tokens=32, ignore_eos=True, draft_length=3, adaptive_draft=False, prompt_lookup=False,
                        do_sample=do_sample, seed=11, temperature=1.3, top_k=20)
            plain = pipe.generate(prompt, GenerationConfig(**base), chat=False)
            for collab in (CollabConfig("ensemble", weight=0.0, bonus=bonus),
                           CollabConfig("contrastive", alpha=0.0, bonus=bonus)):
                got = pipe.generate(prompt, GenerationConfig(**base, collab=collab), chat=False)
                assert got.token_ids == plain.token_ids, (do_sample, prompt, collab)
                assert (got.stats.drafted_tokens, got.stats.accepted_tokens) == (plain.stats.drafted_tokens,
                                                                                 plain.stats.accepted_tokens)
            if not do_sample:
                target_only = pipe.generate(prompt, GenerationConfig(max_new_tokens=32, ignore_eos=True,
                                                                     collab=CollabConfig(weight=0.0, naive=True)),
                                            chat=False)
                assert target_only.token_ids == plain.token_ids


def test_sampled_first_tokens_follow_r_on_tiny_models(tiny_pipes):
    """End to end through the pipeline (far pair, so r differs from p): the first token, which CoS's alternate
    proposal settles (the target proposes, the draft's first call verifies), follows r."""
    pipe = tiny_pipes["far"]
    collab = CollabConfig("ensemble", weight=0.5, bonus="alternate")
    warp = dict(temperature=1.5, top_k=6)
    ids = pipe.prompt_ids("The capital of France is", chat=False)
    draws = 300
    observed: dict = {}
    for seed in range(draws):
        config = GenerationConfig(max_new_tokens=1, do_sample=True, seed=seed, ignore_eos=True, collab=collab, **warp)
        token = pipe.generate(ids, config).token_ids[0]
        observed[token] = observed.get(token, 0) + 1
    pipe.target.reset()
    pipe.draft.reset()
    combo = Combination(collab, GenerationConfig(**warp).warp, pipe.draft.vocab_map, pipe.target.vocab_size)
    r = combo.combined(pipe.target.forward(ids)[-1], pipe.draft.forward(ids)[-1])
    stat, df = chi_square(observed, {int(t): float(r[t]) for t in np.flatnonzero(r)}, draws)
    assert stat < chi_square_critical(df), (observed, r[np.flatnonzero(r)] * draws)


def test_pipeline_compiles_an_exact_draft_for_collab(tiny_pair):
    """The default exact=None leaves the speculative draft on fast kernels; collaborative decoding gets an exact
    copy (its logits enter the output) and stays equal to naive."""
    pipe = SpeculativePipeline.from_manifest(tiny_pair)
    assert pipe.collab_draft is None
    for collab in METHODS:
        want = pipe.generate("def add(a, b):", GenerationConfig(max_new_tokens=24, collab=dataclasses.replace(
            collab, naive=True)), chat=False)
        got = pipe.generate("def add(a, b):", GenerationConfig(max_new_tokens=24, collab=collab), chat=False)
        assert got.token_ids == want.token_ids
    assert pipe.collab_draft is not None and pipe.collab_draft is not pipe.draft
    pipe.clear_cache()
    assert pipe.collab_draft.cached == 0
    target_only = SpeculativePipeline.from_manifest(tiny_pair, use_draft=False)
    with pytest.raises(EdgespecError, match="needs a draft model"):
        target_only.generate("hi", GenerationConfig(collab=CollabConfig()))


def test_real_pair_greedy_cos_equals_naive(default_pair):
    """SmolLM2-135M with its shipped draft (a reduced 8,192-row head) on bench prompts: CoS equals naive
    collaborative decoding for both combinations, and drafts are accepted."""
    pipe = SpeculativePipeline.from_manifest(default_pair, exact=True)
    prompts = []
    for name in ("mt_bench", "shortqa", "math"):
        path = Path(__file__).resolve().parents[1] / "edgespec" / "assets" / "prompts" / f"{name}.jsonl"
        row = json.loads(path.read_text().splitlines()[0])
        prompts.append(row["prompt"] if "prompt" in row else row["turns"][0])
    for collab in METHODS:
        accepted = 0
        for prompt in prompts:
            messages = [{"role": "user", "content": prompt}]
            naive = GenerationConfig(max_new_tokens=24, collab=dataclasses.replace(collab, naive=True))
            want = pipe.generate(messages, naive)
            got = pipe.generate(messages, GenerationConfig(max_new_tokens=24, collab=collab))
            assert got.token_ids == want.token_ids, (collab.method, prompt[:40])
            accepted += got.stats.accepted_tokens
        assert accepted > 0


# ----------------------------------------------------------------------------- CLI and bench


def test_cli_collab_options(tiny_pair):
    from typer.testing import CliRunner

    from edgespec.cli import app

    def run(*args):
        return CliRunner().invoke(app, ["generate", "Once upon a time", "--model", str(tiny_pair), "--raw", "-n", "16",
                                        "--json", *args])

    cos, naive = run("--collab", "ensemble", "--weight", "0.3"), run("--collab", "ensemble", "--weight", "0.3",
                                                                     "--collab-naive")
    assert cos.exit_code == 0 and naive.exit_code == 0, cos.output + naive.output
    cos_out, naive_out = json.loads(cos.stdout), json.loads(naive.stdout)
    assert cos_out["mode"] == "collaborative" and cos_out["collab"]["weight"] == 0.3
    assert cos_out["token_ids"] == naive_out["token_ids"]
    assert naive_out["stats"]["target_calls"] == 16 > cos_out["stats"]["target_calls"]
    for args, message in [(("--collab", "ensemble", "--alpha", "0.2"), "--alpha applies to --collab contrastive"),
                          (("--weight", "0.2"), "--weight needs --collab"),
                          (("--collab", "contrastive", "--no-draft"), "drop --no-draft")]:
        result = run(*args)
        assert result.exit_code != 0 and message in str(result.exception), (args, result.output)


def test_bench_collab_modes(tiny_pair, tmp_path):
    from typer.testing import CliRunner
    import typer

    from edgespec.bench.cli import bench_command

    app = typer.Typer()
    app.command()(bench_command)
    out = tmp_path / "bench"
    modes = "edgespec-target,naive-ensemble,cos-ensemble,naive-contrastive,cos-contrastive,cos-contrastive-alt"
    args = [str(tiny_pair), "--modes", modes, "--prompts", "mtbench", "--limit", "1", "--max-new-tokens", "12",
            "--repeats", "2", "--collab-weight", "0.4", "--collab-alpha", "0.2", "--no-memory", "--no-cost-curve",
            "--no-plots", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    if result.exception:
        raise result.exception
    res = json.loads((out / "results.json").read_text())
    assert res["modes"] == modes.split(",") and res["collab"] == {"weight": 0.4, "alpha": 0.2}
    assert "collab_draft" in res["engine_config"]["edgespec"]
    main = [r for r in res["runs"] if r["phase"] == "main"]
    assert len(main) == 2 * len(res["modes"])
    summary = res["summary"]["all"]
    for cos, naive in [("cos-ensemble", "naive-ensemble"), ("cos-contrastive", "naive-contrastive"),
                       ("cos-contrastive-alt", "naive-contrastive")]:
        row = summary[cos]
        assert row["speedup"][naive]["n"] == 2 and row["matches"][naive]["fraction"] == 1.0
        assert "edgespec-target" not in row["matches"]  # collaborative output is not the target's
        assert row["acceptance_rate"] is not None and row["tokens_per_target_call"] > 1.0
    naive_row = summary["naive-ensemble"]
    assert naive_row["tokens_per_target_call"] == 1.0 and naive_row["acceptance_rate"] is None
    assert all(r["draft_calls"] == r["target_calls"] for r in main if r["mode"] == "naive-ensemble")
    report = (out / "report.md").read_text()
    assert "**Collaborative decoding" in report and "speedup vs naive collaborative" in report
    assert "CoS contrastive, alternate proposal (alpha 0.2)" in report
