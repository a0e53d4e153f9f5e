"""Tree speculation (edgespec/runtime/tree.py) on tiny random models: the tree mask, the cache after a verified
path, greedy exactness, and the sampled distribution."""

import numpy as np
import pytest

from edgespec.runtime.draft_length import DraftLength, expected_tokens
from edgespec.runtime.errors import EdgespecError
from edgespec.runtime.pipeline import GenerationConfig, SpeculativePipeline
from edgespec.runtime.sampling import Warp, probabilities
from edgespec.runtime.tree import ROOT, Tree, ancestor_mask, call_mask, feed_tree, grow_tree
from edgespec.runtime.tree_shape import TreeShape, expected_tree_tokens, parse_tree

PROMPTS = ["Hello there, how are", "def fibonacci(n):", "1, 2, 3, 4,"]


@pytest.fixture(scope="module")
def pipes(tiny_pair, tiny_pair_far):
    return {
        "target": SpeculativePipeline.from_manifest(tiny_pair, use_draft=False, exact=True),
        "near": SpeculativePipeline.from_manifest(tiny_pair, exact=True),
        "far_target": SpeculativePipeline.from_manifest(tiny_pair_far, use_draft=False, exact=True),
        "far": SpeculativePipeline.from_manifest(tiny_pair_far, exact=True),
    }


def test_masks_hold_each_node_and_its_ancestors():
    parents = [ROOT, ROOT, 0, 0, 2]
    want = np.array([[1, 0, 0, 0, 0],
                     [0, 1, 0, 0, 0],
                     [1, 0, 1, 0, 0],
                     [1, 0, 0, 1, 0],
                     [1, 0, 1, 0, 1]], np.uint8)
    np.testing.assert_array_equal(ancestor_mask(parents), want)
    full = call_mask(2, parents)
    np.testing.assert_array_equal(full[:2, :2], [[1, 0], [1, 1]])  # the prefix is causal
    assert (full[:2, 2:] == 0).all() and (full[2:, :2] == 1).all()
    np.testing.assert_array_equal(full[2:, 2:], want)


def tree_of(paths: list[list[int]]) -> Tree:
    """A tree holding every prefix of the given token paths, in topological order."""
    tree, index = Tree(), {}
    for path in paths:
        for depth in range(len(path)):
            key = tuple(path[:depth + 1])
            if key not in index:
                index[key] = tree.add(path[depth], index.get(key[:-1], ROOT), 0.0, 0)
    return tree


def test_tree_logits_and_kept_path_equal_the_chain(pipes):
    """Each node's logits are those of its path fed as a chain; after keep_slots the cache (and the logits of the
    next token) equal the cache after feeding the accepted path as a chain."""
    lm = pipes["target"].target
    prompt = pipes["target"].prompt_ids("Once upon a time there was", chat=False)
    paths = [[11, 22, 33, 44], [11, 55], [66, 77, 88], [11, 22, 99]]
    tree = tree_of(paths)
    lm.reset()
    lm.forward(prompt[:-1])
    logits = feed_tree(lm, prompt[-1:], tree, last=len(tree) + 1)
    accepted = [i for i in range(len(tree)) if tree.path(i) and [tree.tokens[j] for j in tree.path(i)] == [11, 22, 99]]
    path = tree.path(accepted[0])
    lm.keep_slots(len(prompt), [len(prompt) + i for i in path])
    kept_cache = lm.kv_snapshot()
    after_tree = lm.forward([123])
    assert lm.tokens == prompt + [11, 22, 99, 123]
    for node in range(len(tree)):
        lm.reset()
        chain = lm.forward(prompt + [tree.tokens[j] for j in tree.path(node)], last=1)[0]
        np.testing.assert_allclose(logits[node + 1], chain, rtol=0, atol=1e-4)
    lm.reset()
    lm.forward(prompt + [11, 22, 99])
    for a, b in zip(kept_cache, lm.kv_snapshot()):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
    np.testing.assert_allclose(after_tree, lm.forward([123]), rtol=0, atol=1e-4)


def test_grow_tree_is_best_first_within_budget(pipes):
    draft = pipes["near"].draft
    sequence = pipes["near"].prompt_ids("def fibonacci(n):", chat=False)
    draft.reset()
    tree, fed, calls = grow_tree(draft, sequence, budget=12, width=3, branching=4)
    assert len(tree) == 12 and calls == 4 and fed == 9  # root call + rounds of 3, 6, 9 nodes; the last 3 unscored
    assert draft.cached == len(sequence) + fed
    assert all(p < i for i, p in enumerate(tree.parents))
    # a child never scores above its parent, and siblings come in the draft's rank order
    assert all(tree.scores[i] <= tree.scores[p] + 1e-9 for i, p in enumerate(tree.parents) if p != ROOT)
    # the top child of the root is the draft's own greedy token
    draft.reset()
    first = int(draft.forward(sequence, last=1)[0].argmax())
    assert tree.tokens[0] == first and tree.ranks[0] == 0


@pytest.mark.parametrize("pair", ["near", "far"])
def test_greedy_tree_equals_target_only(pipes, pair):
    baseline = pipes["target" if pair == "near" else "far_target"]
    spec = pipes[pair]
    kept = nodes = 0
    for prompt in PROMPTS:
        want = baseline.generate(prompt, GenerationConfig(max_new_tokens=32, ignore_eos=True), chat=False)
        for tree in (1, 4, 16, "auto"):
            got = spec.generate(prompt, GenerationConfig(max_new_tokens=32, ignore_eos=True, tree=tree), chat=False)
            assert got.token_ids == want.token_ids, (prompt, tree)
            # auto drafts trees only where measured costs say one could pay (this CPU: the chain) and says so
            assert got.stats.tree_steps > 0 if tree != "auto" else got.stats.tree_choice
            s = got.stats
            assert s.new_tokens == 1 + (s.target_calls - 1) + s.accepted_tokens
            kept += s.accepted_tokens
            nodes += s.tree_steps
    assert kept > 0 and (pair == "far" or kept / nodes > 1.0)  # the near draft keeps more than a node per tree


def test_greedy_tree_equals_target_only_on_the_default_pair(default_pair):
    """The real SmolLM2 pair on two bench prompts (one MT-bench, one HumanEval): token for token."""
    from edgespec.bench.prompts import load_prompt_set

    spec = SpeculativePipeline.from_manifest(default_pair)
    baseline = SpeculativePipeline.from_manifest(default_pair, use_draft=False)
    for set_name in ("mtbench", "humaneval"):
        prompt = load_prompt_set(set_name, 1)[0]
        want = baseline.generate(prompt.text, GenerationConfig(max_new_tokens=48), chat=prompt.chat).token_ids
        for tree in (15, "auto"):
            # From the same (empty) cache as the baseline: on CPUs with int8 dot products a prompt read on an empty
            # cache takes the fast prefill and one extending a cache the exact kernels (docs/performance.md Q7).
            spec.clear_cache()
            got = spec.generate(prompt.text, GenerationConfig(max_new_tokens=48, tree=tree), chat=prompt.chat)
            assert got.token_ids == want, (set_name, tree)
            assert got.stats.accepted_tokens > 0
            assert got.stats.tree_steps > 0 if tree != "auto" else got.stats.tree_choice


def test_tree_sampling_matches_target_distribution(pipes):
    """Token 2 comes from a tree walk; its distribution given token 1 must be the target's."""
    prompt = "The capital of France is"
    spec = pipes["near"]
    warp = dict(temperature=1.5, top_k=6)
    pairs = []
    for seed in range(1000):
        config = GenerationConfig(max_new_tokens=3, do_sample=True, seed=seed, ignore_eos=True, tree=4, **warp)
        ids = spec.generate(prompt, config, chat=False).token_ids
        pairs.append((ids[0], ids[1]))
    firsts, counts = np.unique([a for a, _ in pairs], return_counts=True)
    first = int(firsts[counts.argmax()])
    seconds = np.array([b for a, b in pairs if a == first])
    assert len(seconds) >= 200
    target = pipes["target"].target
    target.reset()
    p = probabilities(target.forward(spec.prompt_ids(prompt, chat=False) + [first])[-1][None], Warp(**warp))[0]
    support = np.flatnonzero(p)
    observed = np.array([(seconds == t).sum() for t in support])
    assert observed.sum() == len(seconds), "sampled a token outside the target's top-k"
    expected = p[support] * len(seconds)
    stat = ((observed - expected) ** 2 / expected).sum()
    df = len(support) - 1
    assert stat < df * (1 - 2 / (9 * df) + 3.090 * np.sqrt(2 / (9 * df))) ** 3, (observed, expected)
    sampled = spec.generate(prompt, GenerationConfig(max_new_tokens=30, do_sample=True, seed=1, tree=4, **warp),
                            chat=False)
    assert sampled.stats.accepted_tokens > 0


def test_expected_tree_tokens_reduce_to_the_chain():
    # only rank 0 ever accepted: the best tree is the chain, and its value the chain's formula
    for a in (0.3, 0.6, 0.9):
        for budget in (1, 4, 12):
            assert expected_tree_tokens([a, 0.0, 0.0, 0.0], budget) == pytest.approx(expected_tokens(a, budget))
    # a second rank worth taking: the tree beats the chain at the same budget
    assert expected_tree_tokens([0.5, 0.3, 0.0, 0.0], 8) > expected_tokens(0.5, 8) + 0.2


def chain_policy(costs: dict[int, float], acceptance: float) -> DraftLength:
    policy = DraftLength(3, 12, True)
    policy.steady_cost = dict(costs)
    policy.draft_cost = 0.001
    policy.kept, policy.seen = 100 * acceptance, 100.0
    return policy


def test_auto_picks_no_tree_on_a_steep_curve_and_a_tree_on_a_flat_one():
    steep = {n: 0.030 + 0.008 * (n - 1) for n in (1, 2, 4, 8, 16, 33)}
    flat = {n: 0.030 for n in (1, 2, 4, 8, 16, 33)}
    for costs, want_tree in ((steep, False), (flat, True)):
        shape = TreeShape("auto", probe=0)
        shape.round_cost = 0.001
        for _ in range(40):  # at each node: rank 0 taken half the time, rank 1 a quarter, none a quarter
            shape.record([0, 1, 0], [4, 4, 4, 4], 1, 0.001)  # ranks 0, 1, 0 taken, then none at the fourth node
        a = shape.rank_acceptance()
        assert a[0] == pytest.approx(0.5, abs=0.02) and a[1] == pytest.approx(0.25, abs=0.02)
        assert (shape.budget(chain_policy(costs, 0.5)) > 0) == want_tree, shape.last_choice


def test_tree_option_values():
    assert parse_tree("auto") == "auto" and parse_tree("off") == "off" and parse_tree(None) == "off"
    assert parse_tree("16") == 16 and GenerationConfig(tree="8").tree == 8
    for bad in ("wide", "0.5", -2):
        with pytest.raises(EdgespecError):
            parse_tree(bad)


def test_a_forced_tree_on_the_stateful_form_says_why(tiny_pair):
    pipe = SpeculativePipeline.from_manifest(tiny_pair, exact=True, form="stateful")
    with pytest.raises(EdgespecError, match="paged-attention"):
        pipe.generate("Hello", GenerationConfig(max_new_tokens=4, tree=4), chat=False)
    # auto falls back to the chain there, and says why
    stats = pipe.generate("Hello", GenerationConfig(max_new_tokens=4, tree="auto"), chat=False).stats
    assert stats.tree_steps == 0 and "no tree mask" in stats.tree_choice


def test_bench_runs_tree_modes_beside_chain_and_target(tiny_pair, tmp_path):
    import json

    import typer
    from typer.testing import CliRunner

    from edgespec.bench.cli import bench_command

    app = typer.Typer()
    app.command()(bench_command)
    out = tmp_path / "trees"
    modes = "edgespec-target,edgespec-spec,edgespec-tree-auto,edgespec-tree8,edgespec-chain8"
    args = [str(tiny_pair), "--modes", modes, "--prompts", "humaneval", "--limit", "1", "--max-new-tokens", "12",
            "--repeats", "1", "--no-memory", "--no-cost-curve", "--no-plots", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    if result.exception:
        raise result.exception
    res = json.loads((out / "results.json").read_text())
    main = [r for r in res["runs"] if r["phase"] == "main"]
    assert {r["mode"] for r in main} == set(modes.split(","))
    for mode in ("edgespec-tree8", "edgespec-chain8"):
        row = res["summary"]["all"][mode]
        assert row["matches"] and all(m["equal"] == m["total"] for m in row["matches"].values()), row["matches"]
    tree8 = next(r for r in main if r["mode"] == "edgespec-tree8")
    assert 0 < tree8["drafted_tokens"] <= 7 * (tree8["target_calls"] - 1)  # at most 7 nodes a step


def test_replayed_trees_accept_the_drafts_own_text(pipes):
    """`draft simulate --tree` replays cached answers: on the draft's own greedy text every tree holds the draft's
    argmax child of the root, so a 1-node tree keeps 2 tokens per call; bigger trees keep at least as many over
    the answer, and the draft's calls are logged by tokens fed (one token, then the tree so far per round)."""
    from edgespec.draft.simulate_tree import CountedCalls, answer_path, replay_answer

    draft = pipes["near"].draft
    prompt = pipes["near"].prompt_ids("def fibonacci(n):", chat=False)
    draft.reset()
    answer = []
    for _ in range(9):
        answer.append(int(draft.forward(prompt + answer if not answer else answer[-1:], last=1)[0].argmax()))
    counted = CountedCalls(draft)
    one = replay_answer(counted, prompt, answer, 1)
    assert [c.new_tokens for c in one] == [2, 2, 2, 2, 1] and [c.nodes for c in one] == [1, 1, 1, 1, 0]
    # budget 1: the root's scores only (no round after), so the kept node is fed with the next token
    assert [c.draft_fed for c in one[:-1]] == [[1], [2], [2], [2]]
    eight = replay_answer(counted, prompt, answer, 8)
    assert sum(c.new_tokens for c in eight) == len(answer) and len(eight) <= len(one)
    assert all(c.draft_fed[0] in (1, 2) and c.draft_fed[1:] == list(range(1, len(c.draft_fed))) for c in eight[:-1])
    tree = tree_of([[5, 6, 7], [5, 8]])
    assert answer_path(tree, [5, 8, 9]) == [0, 3] and answer_path(tree, [6]) == []


def test_auto_probes_trees_only_where_one_could_pay():
    """On this CPU's steep verify curve (SmolLM2, AVX2 EPYC: 1 token 14.6 ms, 16 tokens 43 ms, 32: 72) the probes'
    8-node trees only cost time: auto skips them and takes the chain; on a flat curve it probes."""
    measured = {1: 0.0146, 2: 0.0174, 4: 0.0216, 8: 0.0300, 16: 0.0426, 32: 0.0722, 64: 0.115}
    flat = {n: 0.0146 for n in measured}
    for costs, probes in ((measured, False), (flat, True)):
        chain = chain_policy(costs, 0.55)
        chain.draft_cost = 0.0027
        shape = TreeShape("auto")
        assert shape.worth_probing(chain) == probes
        assert (shape.budget(chain) == shape.probe_budget) == probes
