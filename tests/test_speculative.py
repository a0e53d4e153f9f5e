"""Correctness of the decoding loop on tiny random models (f32 inference, so comparisons are exact)."""

import numpy as np
import pytest

from edgespec.runtime.pipeline import GenerationConfig, SpeculativePipeline
from edgespec.runtime.acceptance import accept_drafted
from edgespec.runtime.sampling import Warp, probabilities

PROMPTS = [
    "Hello there, how are", "def fibonacci(n):", "The capital of France is", "1, 2, 3, 4,",
    "Once upon a time", "import numpy as np\n", "Q: What is 2+2?\nA:", "Les élèves du lycée",
    "🎉 party", "   leading spaces", "SELECT * FROM", "a",
]


@pytest.fixture(scope="module")
def tiny_pipes(tiny_pair, tiny_pair_far):
    # The default form on CPU is the paged one; "stateful" pipes cover the other form in the exactness tests.
    return {
        "stateful_target": SpeculativePipeline.from_manifest(tiny_pair, use_draft=False, exact=True, form="stateful"),
        "stateful_near": SpeculativePipeline.from_manifest(tiny_pair, exact=True, form="stateful"),
        "target": SpeculativePipeline.from_manifest(tiny_pair, use_draft=False, exact=True),
        "near": SpeculativePipeline.from_manifest(tiny_pair, exact=True),
        "far_target": SpeculativePipeline.from_manifest(tiny_pair_far, use_draft=False, exact=True),
        "far": SpeculativePipeline.from_manifest(tiny_pair_far, exact=True),
    }


@pytest.mark.parametrize("pair", ["near", "far", "stateful_near"])
def test_greedy_speculative_equals_target_only(tiny_pipes, pair):
    baseline = tiny_pipes[{"near": "target", "far": "far_target", "stateful_near": "stateful_target"}[pair]]
    spec = tiny_pipes[pair]
    accepted = drafted = 0
    for prompt in PROMPTS:
        want = baseline.generate(prompt, GenerationConfig(max_new_tokens=48, ignore_eos=True), chat=False)
        for k, adaptive in [(1, False), (2, False), (4, False), (7, False), (5, True)]:
            config = GenerationConfig(max_new_tokens=48, ignore_eos=True, draft_length=k, adaptive_draft=adaptive)
            got = spec.generate(prompt, config, chat=False)
            assert got.token_ids == want.token_ids, (prompt, k, adaptive)
            assert got.text == want.text
            accepted += got.stats.accepted_tokens
            drafted += got.stats.drafted_tokens
    rate = accepted / drafted
    # The near draft must exercise both acceptance and rejection; the far one mostly rejection.
    assert (0.2 < rate < 0.95) if pair != "far" else rate < 0.2


def test_greedy_equal_with_chat_template_and_eos(tiny_pipes):
    for prompt in PROMPTS[:4]:
        want = tiny_pipes["target"].generate(prompt, GenerationConfig(max_new_tokens=32))
        got = tiny_pipes["near"].generate(prompt, GenerationConfig(max_new_tokens=32, draft_length=3))
        assert got.token_ids == want.token_ids


def test_stats_are_consistent(tiny_pipes):
    result = tiny_pipes["near"].generate("Once upon a time", GenerationConfig(max_new_tokens=40, ignore_eos=True,
                                                                              draft_length=4, adaptive_draft=False),
                                         chat=False)
    s = result.stats
    assert s.new_tokens == len(result.token_ids) == 40 and s.stop_reason == "length"
    assert s.draft_calls == s.drafted_tokens and s.accepted_tokens <= s.drafted_tokens
    # every verification call yields its accepted drafts plus one token of the target's own
    assert s.new_tokens == 1 + (s.target_calls - 1) + s.accepted_tokens
    assert s.tokens_per_target_call == pytest.approx((s.new_tokens - 1) / (s.target_calls - 1))
    assert 0 < s.ttft_s <= s.wall_s
    # no prompt lookup here: every proposal was the draft's chain
    assert s.chain_accepted == s.accepted_tokens and s.chain_rejected == s.rejected_steps
    assert s.chain_acceptance() == pytest.approx(s.token_acceptance())


def test_draft_agreement_is_the_share_of_answer_tokens_the_draft_would_propose(tiny_pipes):
    """After a generation that did not draft, auto measures the draft's acceptance on the answer in one call: the
    share of answer tokens equal to the draft's greedy choice after the true text before each (token-by-token here)."""
    from edgespec.runtime.speculative import draft_agreement

    pipe = tiny_pipes["near"]
    prompt = pipe.prompt_ids("Once upon a time", chat=False)
    answer = tiny_pipes["target"].generate(prompt, GenerationConfig(max_new_tokens=30, ignore_eos=True)).token_ids
    draft = pipe.draft
    draft.reset()
    draft.forward(prompt)
    hits = []
    for i in range(1, 30):  # the draft's choice for answer token i after the prompt and answer tokens before it
        hits.append(int(draft.forward([answer[i - 1]], last=1)[0].argmax()) == answer[i])
    draft.forward([5, 6, 7])  # whatever the draft holds, the measure rolls back to what it needs
    assert draft_agreement(draft, prompt + answer, 30) == pytest.approx(np.mean(hits))
    assert draft_agreement(draft, prompt + answer, 30, limit=12) == pytest.approx(np.mean(hits[:12]))
    assert draft_agreement(draft, prompt + answer[:5], 5) is None  # too short to tell


def chi_square_critical(df: int) -> float:
    # 99.9th percentile of chi-square (Wilson-Hilferty approximation); a false alarm once in 1000 runs.
    z = 3.090
    return df * (1 - 2 / (9 * df) + z * np.sqrt(2 / (9 * df))) ** 3


def test_accept_drafted_is_lossless():
    rng = np.random.default_rng(0)
    vocab = 6
    p = rng.dirichlet(np.ones(vocab), size=3)  # target rows for positions 0..2
    q = rng.dirichlet(np.ones(vocab) * 0.5, size=2)  # draft rows for positions 0..1
    draws = 60000
    first = np.zeros(vocab)
    for _ in range(draws):
        drafted = [int(rng.choice(vocab, p=q[0])), 0]
        drafted[1] = int(rng.choice(vocab, p=q[1]))
        kept, nxt = accept_drafted(p, q, drafted, rng)
        first[drafted[0] if kept >= 1 else nxt] += 1
    expected = p[0] * draws
    stat = ((first - expected) ** 2 / expected).sum()
    assert stat < chi_square_critical(vocab - 1), (first / draws, p[0])


def test_accepting_a_certain_proposal_is_lossless():
    """Prompt-lookup tokens come with no distribution (q is all on the proposed token): kept with probability
    p(x), else replaced by a draw from p without x. The result must still follow p."""
    rng = np.random.default_rng(1)
    vocab = 6
    p = rng.dirichlet(np.ones(vocab), size=2)
    draws = 60000
    first = np.zeros(vocab)
    for i in range(draws):
        proposed = [i % vocab]  # any fixed choice, independent of the draw
        kept, nxt = accept_drafted(p, None, proposed, rng)
        first[proposed[0] if kept else nxt] += 1
    expected = p[0] * draws
    stat = ((first - expected) ** 2 / expected).sum()
    assert stat < chi_square_critical(vocab - 1), (first / draws, p[0])


def test_prompt_lookup_proposes_what_followed_the_last_match():
    from edgespec.runtime.lookup import PromptLookup

    lookup = PromptLookup(max_ngram=3, min_ngram=2)
    lookup.sync([7, 1, 2, 3, 4, 5, 9, 1, 2])
    assert lookup.propose(3) == [3, 4, 5]  # after the 2-gram (1, 2)
    lookup.sync([7, 1, 2, 3, 4, 5, 9, 1, 2, 3])
    assert lookup.propose(10) == [4, 5, 9, 1, 2, 3]  # the 3-gram (1, 2, 3), up to the end of the text
    lookup.sync([7, 1, 2, 3, 4, 5, 9, 1, 2, 3, 8, 8])
    assert lookup.propose(3) == []  # (3, 8, 8) and (8, 8) never occurred before
    assert lookup.propose(3, shortest=1) == [8]  # the 1-gram (8,): what followed the first 8
    assert lookup.propose(0) == []


def test_copy_walk_counts_the_steps_lookup_would_have_verified_on_a_finished_answer():
    """Pricing an engine that did not run a text needs what lookup would have copied there: an answer that repeats
    a span of its prompt gives steps with kept tokens; one that copies nothing gives none."""
    from edgespec.runtime.lookup import copy_walks

    def copy_walk(prompt, answer, limit):
        return copy_walks(prompt, answer, range(1, limit + 1))[limit]

    prompt = [50, 10, 11, 12, 13, 14, 15, 16, 51]
    answer = [60, 10, 11, 12, 13, 14, 15, 16, 61]
    steps, covered = copy_walk(prompt, answer, 3)
    # (60, 10) is new; after (10, 11) lookup proposes 12 13 14, all kept (+ the next token: 15), then 16 51 61 ->
    # 16 kept, 51 rejected (the answer has 61)
    assert steps == [(3, 3), (2, 1)]
    assert covered == 4 + 2
    assert copy_walk(prompt, [70, 71, 72, 73, 74], 3) == ([], 0)
    assert copy_walk(prompt, answer[:1], 3) == ([], 0)
    assert copy_walks(prompt, answer, range(1, 3))[1] == ([(1, 1)] * 3, 6)  # one token a step: 12, 14, 16


def test_prompt_lookup_keeps_greedy_exact(default_pair):
    """The real default pair asked to copy text: lookup proposes and is accepted, the output is target-only's."""
    spec = SpeculativePipeline.from_manifest(default_pair)
    baseline = SpeculativePipeline.from_manifest(default_pair, use_draft=False)
    text = ("The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs. "
            "How vexingly quick daft zebras jump!")
    prompt = [{"role": "user", "content": f"Repeat this text exactly, word for word:\n\n{text}"}]
    config = GenerationConfig(max_new_tokens=40)
    result = spec.generate(prompt, config)
    assert result.token_ids == baseline.generate(prompt, config).token_ids
    assert result.stats.lookup_accepted > 0 and result.stats.lookup_accepted <= result.stats.lookup_tokens
    off = spec.generate(prompt, GenerationConfig(max_new_tokens=40, prompt_lookup=False))
    assert off.token_ids == result.token_ids and off.stats.lookup_tokens == 0


def test_speculative_sampling_matches_target_distribution(tiny_pipes):
    """Token 2 is drafted and verified; its distribution given token 1 must be the target's."""
    prompt = "The capital of France is"
    spec = tiny_pipes["near"]
    warp = dict(temperature=1.5, top_k=6)
    pairs = []
    for seed in range(1500):
        config = GenerationConfig(max_new_tokens=3, do_sample=True, seed=seed, draft_length=1,
                                  adaptive_draft=False, ignore_eos=True, **warp)
        ids = spec.generate(prompt, config, chat=False).token_ids
        pairs.append((ids[0], ids[1]))
    firsts, counts = np.unique([a for a, _ in pairs], return_counts=True)
    first = int(firsts[counts.argmax()])
    seconds = np.array([b for a, b in pairs if a == first])
    assert len(seconds) >= 300
    # the target's exact warped distribution of token 2 after prompt + first
    target = tiny_pipes["target"].target
    target.reset()
    logits = target.forward(spec.prompt_ids(prompt, chat=False) + [first])[-1]
    p = probabilities(logits[None], Warp(**warp))[0]
    support = np.flatnonzero(p)
    observed = np.array([(seconds == t).sum() for t in support])
    assert observed.sum() == len(seconds), "sampled a token outside the target's top-k"
    expected = p[support] * len(seconds)
    stat = ((observed - expected) ** 2 / expected).sum()
    assert stat < chi_square_critical(len(support) - 1), (observed, expected)
    # and the draft was really used: some drafts accepted (a fixed k: on the tiny models' costs no draft pays, so
    # the adaptive policy would not draft at all)
    assert 0 < spec.generate(prompt, GenerationConfig(max_new_tokens=30, do_sample=True, seed=1, draft_length=3,
                                                      adaptive_draft=False, **warp), chat=False).stats.accepted_tokens


def test_prefill_model_writes_the_cache_the_exact_model_decodes_from(tiny_pair, monkeypatch):
    """Where the CPU has int8 dot products, an exact target prefills on a second compile (dynamic quantization)
    into the same cache tensors, and every later call runs the exact model. With that prefill compiled exact too,
    both paths give the same logits (the cache really is shared); and greedy speculative output equals target-only
    output with the prefill model in use (both read the prompt through it)."""
    import openvino as ov

    from edgespec.runtime import pipeline
    from edgespec.runtime.devices import compile_model
    from edgespec.runtime.manifest import load_pair
    from edgespec.runtime.model import read_ir
    from edgespec.runtime.paged import PagedLM, to_paged

    monkeypatch.setattr(pipeline, "fast_prefill_differs", lambda: True)  # whatever this CPU has
    monkeypatch.setenv("EDGESPEC_TWO_TOKEN", "0")  # the exact kernels' path (two-token calls: the next tests)
    target = SpeculativePipeline.from_manifest(tiny_pair, use_draft=False, exact=True)
    spec = SpeculativePipeline.from_manifest(tiny_pair, exact=True)
    assert target.target.prefill_request is not None and spec.target.prefill_request is not None
    for prompt in PROMPTS[:6]:
        want = target.generate(prompt, GenerationConfig(max_new_tokens=32, ignore_eos=True), chat=False)
        for k in (1, 3):
            config = GenerationConfig(max_new_tokens=32, ignore_eos=True, draft_length=k, adaptive_draft=False)
            assert spec.generate(prompt, config, chat=False).token_ids == want.token_ids, (prompt, k)
    # A chat's next turn extends the cache: read on the exact model (where the cached part ends differs between
    # speculative and target-only decoding), so the prefill model must not be asked.
    used = []
    real = spec.target.prefill_request
    spec.target.prefill_request = type("Spy", (), {"start_async": lambda self, *a, **k: used.append(1) or
                                                   real.start_async(*a, **k), "wait": lambda self: real.wait(),
                                                   "get_tensor": lambda self, name: real.get_tensor(name),
                                                   "set_tensor": lambda self, *a: real.set_tensor(*a)})()
    spec.clear_cache()
    history = [{"role": "user", "content": "Once upon a time"}]
    first = spec.generate(history, GenerationConfig(max_new_tokens=12, ignore_eos=True))
    assert used == [1]  # the first turn, on an empty cache
    history += [{"role": "assistant", "content": first.text}, {"role": "user", "content": "And then?"}]
    spec.generate(history, GenerationConfig(max_new_tokens=12, ignore_eos=True))
    assert used == [1]  # the second turn extended the cache: exact kernels
    spec.target.prefill_request = real

    core = ov.Core()
    model = read_ir(load_pair(tiny_pair).target.xml)
    to_paged(model)
    lm = PagedLM(compile_model(core, model, "CPU", exact=True), 256,
                 prefill_compiled=compile_model(core, model, "CPU", exact=True))
    ids = target.prompt_ids("Once upon a time there was", chat=False)
    first, step = lm.prefill(ids, last=1), lm.forward([777], last=1)
    lm.reset()
    np.testing.assert_allclose(first, lm.forward(ids, last=1), rtol=0, atol=1e-5)
    np.testing.assert_allclose(step, lm.forward([777], last=1), rtol=0, atol=1e-5)


def test_a_one_token_call_feeds_the_last_cached_token_again(tiny_pair):
    """min_feed = 2: a 1-token call is a 2-token call (the last cached token fed again, its row not returned), the
    cache then holds each token once; a tree call of one node gets the same treatment."""
    import openvino as ov

    from edgespec.runtime.devices import compile_model
    from edgespec.runtime.manifest import load_pair
    from edgespec.runtime.model import read_ir
    from edgespec.runtime.paged import PagedLM, to_paged

    model = read_ir(load_pair(tiny_pair).target.xml)
    to_paged(model)
    compiled = compile_model(ov.Core(), model, "CPU")
    two, one = PagedLM(compiled, 256, min_feed=2), PagedLM(compiled, 256)
    ids = [5, 17, 300, 41, 9, 77]
    two.forward(ids[:4], last=1)
    row = two.forward([ids[4]])
    assert row.shape[0] == 1 and two.tokens == ids[:5] and two.calls == 2
    one.forward(ids[:3], last=1)
    np.testing.assert_array_equal(row, one.forward(ids[3:5], last=1))  # the same call as the plain model's
    tree_row = two.forward_tree([ids[5]], np.array([5]), np.ones((1, 1), np.uint8))
    assert tree_row.shape[0] == 1 and two.tokens == ids
    one.rollback(4)
    np.testing.assert_array_equal(tree_row, one.forward(ids[4:6], last=1))
    fresh = PagedLM(compiled, 256, min_feed=2)
    assert fresh.forward([ids[0]]).shape[0] == 1 and fresh.tokens == ids[:1]  # nothing cached to feed again


def test_a_plain_step_verifies_a_looked_up_token_only_where_the_call_has_a_free_slot(tiny_pair, monkeypatch):
    """A step that drafts nothing on a target whose calls feed at least two tokens (PagedLM.min_feed) carries one
    looked-up token in the slot the last cached token would fill again; on other targets it stays a plain step."""
    from edgespec.runtime.draft_length import DraftLength

    monkeypatch.setattr(DraftLength, "lookup_tokens", lambda self, k, available: 0)  # no priced lookups: free only
    pipe = SpeculativePipeline.from_manifest(tiny_pair)
    assert hasattr(pipe.target, "min_feed")  # the paged form on the CPU
    config = GenerationConfig(max_new_tokens=32, ignore_eos=True, draft_length=0, adaptive_draft=False)
    found = {}
    for feed in (1, 2):
        pipe.target.min_feed = feed
        pipe.clear_cache()
        found[feed] = [pipe.generate(p, config, chat=False).stats for p in PROMPTS[:3]]
    assert all(st.lookup_tokens == 0 and st.target_calls == st.new_tokens for st in found[1])
    assert sum(st.lookup_tokens for st in found[2]) > 0
    assert all(st.draft_calls == 0 and st.lookup_accepted <= st.lookup_tokens for st in found[2])
    kept = sum(st.lookup_accepted for st in found[2])
    assert sum(st.target_calls for st in found[2]) == sum(st.new_tokens for st in found[2]) - kept


def test_two_token_calls_are_used_only_where_they_are_bitwise_exact(tiny_pair, monkeypatch, tmp_path):
    """An exact target on a CPU with int8 dot products runs the fast kernels with two-token calls when the check
    finds every call width >= 2 bitwise equal (remembered per machine and model), else the exact kernels; greedy
    speculative output equals target-only output either way."""
    from edgespec.runtime import pipeline

    monkeypatch.setenv("EDGESPEC_CACHE", str(tmp_path))
    monkeypatch.setattr(pipeline, "fast_prefill_differs", lambda: True)
    checks = []
    real = pipeline.bitwise_same_across_widths
    monkeypatch.setattr(pipeline, "bitwise_same_across_widths", lambda lm: checks.append(1) or real(lm))
    first = SpeculativePipeline.from_manifest(tiny_pair, use_draft=False, exact=True)
    again = SpeculativePipeline.from_manifest(tiny_pair, exact=True)
    assert checks == [1]  # the second load read the answer from the cache
    assert first.target.min_feed == again.target.min_feed == (2 if real(first.target) else 1)
    free = []
    for prompt in PROMPTS[:4]:
        want = first.generate(prompt, GenerationConfig(max_new_tokens=24, ignore_eos=True), chat=False)
        for k in (1, 4):
            config = GenerationConfig(max_new_tokens=24, ignore_eos=True, draft_length=k, adaptive_draft=False)
            assert again.generate(prompt, config, chat=False).token_ids == want.token_ids, (prompt, k)
        # no drafting: with two-token calls each plain step verifies one looked-up token in the padded slot
        plain = again.generate(prompt, GenerationConfig(max_new_tokens=24, ignore_eos=True, draft_length=0,
                                                        adaptive_draft=False), chat=False)
        assert plain.token_ids == want.token_ids and plain.stats.draft_calls == 0
        free.append(plain.stats.lookup_tokens)
    if again.target.min_feed == 2:  # else plain steps have no free slot (prompt lookup may still propose)
        assert sum(free) > 0
    monkeypatch.setattr(pipeline, "bitwise_same_across_widths", lambda lm: checks.append(0) or False)
    monkeypatch.setenv("EDGESPEC_CACHE", str(tmp_path / "other"))
    fallback = SpeculativePipeline.from_manifest(tiny_pair, use_draft=False, exact=True)
    assert fallback.target.min_feed == 1 and fallback.target.prefill_request is not None
    from edgespec.runtime.paged import PagedLM

    compiled = []
    monkeypatch.setattr(pipeline, "PagedLM", lambda *a, **k: compiled.append(k.get("min_feed", 1)) or PagedLM(*a, **k))
    SpeculativePipeline.from_manifest(tiny_pair, use_draft=False, exact=True)
    assert checks == [1, 0] and 2 not in compiled  # a remembered "no" compiles no fast-kernel copy


@pytest.mark.parametrize("form, mode", [("stateful", "mask"), ("stateful", "trim"), ("paged", "mask")])
def test_rollback_leaves_cache_as_if_never_fed(tiny_pair, form, mode):
    pipe = SpeculativePipeline.from_manifest(tiny_pair, use_draft=False, exact=True, rollback=mode, form=form)
    lm = pipe.target
    prompt = pipe.prompt_ids("Once upon a time there was", chat=False)
    extra = [100, 200, 300, 400, 500]
    lm.reset()
    lm.forward(prompt)
    lm.forward(extra)
    lm.rollback(len(prompt) + 2)
    rolled = lm.kv_snapshot()
    after_rolled = lm.forward([777])
    lm.reset()
    lm.forward(prompt)
    lm.forward(extra[:2])
    fresh = lm.kv_snapshot()
    after_fresh = lm.forward([777])
    assert [a.shape for a in rolled] == [b.shape for b in fresh]
    for a, b in zip(rolled, fresh):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
    np.testing.assert_allclose(after_rolled, after_fresh, rtol=0, atol=1e-4)
    assert lm.tokens == prompt + extra[:2] + [777]


@pytest.mark.parametrize("mode", ["mask", "trim"])
@pytest.mark.parametrize("kv", ["u8", "f16"])
def test_rollback_with_a_compressed_kv_cache(tiny_pair, mode, kv):
    """The device's default KV cache (u8 or f16, used by drafts and --fast-kernels) is handed out as an f32
    copy: a rollback must write back a dense copy (an ROI of it came back as garbage: logits off by ~25)."""
    import openvino as ov

    from edgespec.runtime.devices import compile_model
    from edgespec.runtime.manifest import load_pair
    from edgespec.runtime.model import StatefulLM

    compiled = compile_model(ov.Core(), str(load_pair(tiny_pair).target.dir / "openvino_model.xml"), "CPU",
                             exact=True, extra={"KV_CACHE_PRECISION": kv})
    lm = StatefulLM(compiled, 256, rollback_mode=mode, max_dead=4)
    prompt = list(range(40, 70))
    lm.forward(prompt)
    for step in range(6):  # rejected drafts pile up dead slots; mask mode compacts them past max_dead
        lm.forward([300 + step, 301, 302])
        lm.rollback(len(prompt) + step)
        lm.forward([500 + step])
    rolled = lm.forward([777, 778], last=2)
    fresh = StatefulLM(compiled, 256)
    fresh.forward(prompt + [500 + step for step in range(6)])
    want = fresh.forward([777, 778], last=2)
    assert np.abs(rolled - want).max() < 0.05 * np.abs(want).max()
    assert (rolled.argmax(-1) == want.argmax(-1)).all()


def test_masked_rollback_compacts_and_stays_exact(tiny_pair):
    """Many rollbacks in mask mode: dead slots are compacted away and outputs stay target-only's."""
    want = SpeculativePipeline.from_manifest(tiny_pair, use_draft=False, exact=True, form="stateful")
    spec = SpeculativePipeline.from_manifest(tiny_pair, exact=True, rollback="mask", form="stateful")
    spec.target.max_dead = spec.draft.max_dead = 8
    config = GenerationConfig(max_new_tokens=100, ignore_eos=True, draft_length=6, adaptive_draft=False)
    got = spec.generate("Once upon a time", config, chat=False)
    assert got.token_ids == want.generate("Once upon a time", config, chat=False).token_ids
    assert len(spec.target.alive) - spec.target.cached <= 8 + 6
    assert got.stats.accepted_tokens < got.stats.drafted_tokens  # there were rejections to roll back


def test_greedy_equal_with_trim_rollback(tiny_pair):
    want = SpeculativePipeline.from_manifest(tiny_pair, use_draft=False, exact=True, form="stateful")
    spec = SpeculativePipeline.from_manifest(tiny_pair, exact=True, rollback="trim", form="stateful")
    for prompt in PROMPTS[:6]:
        config = GenerationConfig(max_new_tokens=40, ignore_eos=True, draft_length=3)
        assert spec.generate(prompt, config, chat=False).token_ids == want.generate(prompt, config,
                                                                                    chat=False).token_ids


def test_token_id_prompt_and_call_times(tiny_pipes):
    spec = tiny_pipes["near"]
    ids = spec.prompt_ids("Once upon a time", chat=False)
    config = GenerationConfig(max_new_tokens=20, ignore_eos=True)
    by_ids = spec.generate(ids, config)
    assert by_ids.token_ids == spec.generate("Once upon a time", config, chat=False).token_ids
    assert 0 < by_ids.stats.target_s + by_ids.stats.draft_s <= by_ids.stats.wall_s


def test_default_kernels_keep_greedy_speculation_exact(tiny_pair):
    """Without exact=True the target still compiles with call-shape-independent kernels (the draft does not)."""
    target = SpeculativePipeline.from_manifest(tiny_pair, use_draft=False)
    spec = SpeculativePipeline.from_manifest(tiny_pair)
    for prompt in ("def add(a, b):", "The capital of France is"):
        cfg = GenerationConfig(max_new_tokens=24, draft_length=4, adaptive_draft=False)
        assert spec.generate(prompt, cfg, chat=False).token_ids == target.generate(prompt, cfg, chat=False).token_ids


def test_draft_length_policy_benches_a_draft_that_does_not_pay():
    from edgespec.runtime.draft_length import DraftLength

    policy = DraftLength(initial=5, maximum=8, adaptive=True, hold=16, probe=4)
    for n in (2, 0):  # drafts rejected at once; a verify costs more than a plain step
        for _ in range(10):
            policy.record(drafted=n, kept=0, target_seconds=0.020 + 0.002 * n, draft_seconds=0.002 * n)
    choices = [policy.next() for _ in range(40)]
    # the target alone in blocks of 16 steps, then a 4-step probe with k = 1; a failed probe doubles the next
    # block: few changes of call shape
    assert choices == [0] * 16 + [1] * 4 + [0] * 20

    for _ in range(20):  # the draft starts agreeing: speculation resumes with k > 1 at the next decision
        policy.record(drafted=4, kept=4, target_seconds=0.030, draft_seconds=0.008)
    assert max(policy.next() for _ in range(17)) > 1


def test_draft_length_policy_does_not_probe_where_no_draft_could_pay():
    """llama.cpp's cost curve for SmolLM2 here (10, 16.4, 23.9, 27.7 ms for 1-4 tokens) with a 3.9 ms draft token:
    even a draft right 9 times in 10 yields at best 4.1 tokens per 43 ms (k = 4) against 1 per 10 ms alone, so
    the 4-step probes a sat-out draft otherwise makes every block only cost time."""
    from edgespec.runtime.draft_length import DraftLength

    steep = DraftLength(initial=1, maximum=8, adaptive=True, hold=16, probe=4)
    steep.seed({1: 0.0100, 2: 0.0164, 3: 0.0239, 4: 0.0277, 5: 0.0355})
    for _ in range(10):
        steep.record(drafted=1, kept=0, target_seconds=0.0164, draft_seconds=0.0039)
        steep.record(drafted=0, kept=0, target_seconds=0.0100, draft_seconds=0.0)
    assert not steep.could_pay()
    assert [steep.next() for _ in range(80)] == [0] * 80
    # A draft that would win 5% only at acceptance 0.9 (k = 1: 20.6 ms for 1.9 tokens against 11.4 ms a token:
    # the curve timed in the loop in one auto run, 3.1 ms draft tokens) is not probed either
    marginal = DraftLength(initial=1, maximum=8, adaptive=True, hold=16, probe=4)
    marginal.seed({1: 0.0114, 2: 0.0175, 3: 0.0266, 4: 0.0270, 5: 0.0350}, 0.0031)
    assert marginal.drafting_seconds_per_token(0.9) < marginal.step_seconds(0) and not marginal.could_pay()
    # OpenVINO's flatter curve (14.5, 17.4, 19.5 ms): a right draft would pay, so the sat-out draft is probed
    flat = DraftLength(initial=1, maximum=8, adaptive=True, hold=16, probe=4)
    flat.seed({1: 0.0145, 2: 0.0174, 3: 0.0195, 4: 0.0216, 5: 0.0240})
    for _ in range(10):
        flat.record(drafted=1, kept=0, target_seconds=0.0174, draft_seconds=0.0039)
        flat.record(drafted=0, kept=0, target_seconds=0.0145, draft_seconds=0.0)
    assert flat.could_pay()
    assert 1 in [flat.next() for _ in range(40)]


def test_draft_length_policy_stops_drafting_where_steps_really_run_slower():
    """The cost model prices calls from steady runs timed beforehand and moves only 20% a call toward what the loop
    measures (llama.cpp's 2-token verify of Qwen 1.5B: 86 ms timed, 100 ms in the loop). Drafting steps that really
    run slower per token than plain ones end the block within a few steps and keep the draft out after it."""
    from edgespec.runtime.draft_length import DraftLength

    def run(per_drafted_s: float) -> list[int]:
        policy = DraftLength(initial=1, maximum=8, adaptive=True, hold=16, probe=4, realized_guard=True)
        policy.seed({1: 0.010, 2: 0.011, 3: 0.012, 4: 0.013, 5: 0.014}, draft_token_s=0.002)
        for _ in range(10):
            policy.record(drafted=0, kept=0, target_seconds=0.010, draft_seconds=0.0)
        policy.restart(1, 8, True)
        choices = []
        for _ in range(80):
            k = policy.next()
            choices.append(k)
            if k:
                policy.record(drafted=k, kept=k, target_seconds=0.010 + per_drafted_s * k, draft_seconds=0.002 * k)
            else:
                policy.record(drafted=0, kept=0, target_seconds=0.010, draft_seconds=0.0)
        return choices

    cheap = run(0.001)
    assert sum(k > 0 for k in cheap) >= 70  # every draft kept, cheap steps: it drafts throughout
    costly = run(0.020)  # each drafted token really adds 20 ms to the verify (priced at 1 ms): slower at every k
    # stopped within a few steps (the first step of a block pays the switch and is not counted), then it sits out
    stop = costly.index(0)
    assert stop <= 8 and costly[stop:stop + 32] == [0] * 32
    assert sum(k > 0 for k in costly) <= 12


def test_a_sat_out_draft_stays_out_across_answers_on_the_guarded_policy():
    """With the realized-rate guard (llama.cpp targets) a draft whose probe lost sits out its whole sit-out even
    when a new answer starts; without it (OpenVINO) each answer opens with a probe, as before."""
    from edgespec.runtime.draft_length import DraftLength

    def answers(guard: bool) -> list[list[int]]:
        policy = DraftLength(initial=1, maximum=8, adaptive=True, hold=16, probe=4, realized_guard=guard)
        policy.seed({1: 0.010, 2: 0.011, 3: 0.012, 4: 0.013, 5: 0.014}, draft_token_s=0.002)
        out = []
        for _ in range(3):
            policy.restart(1, 8, True)
            choices = []
            for _ in range(12):  # short answers: a new one starts before the sit-out ends
                k = policy.next()
                choices.append(k)
                # each drafted token adds 20 ms to the verify and is never kept: drafting loses at every k
                policy.record(drafted=k, kept=0, target_seconds=0.010 + 0.020 * k, draft_seconds=0.002 * k)
            out.append(choices)
        return out

    guarded, unguarded = answers(True), answers(False)
    # the guarded draft probes once, then sits out its 16 steps across the answer's end: the next answer opens
    # without a probe (it may probe again once the sit-out is over)
    assert guarded[0][:4] == [1] * 4 and guarded[1][:4] == [0] * 4
    assert sum(k > 0 for choices in guarded for k in choices) <= 12
    assert all(choices[0] for choices in unguarded)  # without the guard each answer opens with a probe


def test_lookup_stops_where_its_steps_really_run_slower():
    from edgespec.runtime.draft_length import DraftLength

    policy = DraftLength(initial=0, maximum=8, adaptive=True, hold=16, probe=4, realized_guard=True)
    policy.seed({1: 0.010, 2: 0.011, 3: 0.012}, draft_token_s=0.002)
    for _ in range(10):
        policy.record(drafted=0, kept=0, target_seconds=0.010, draft_seconds=0.0)
    assert policy.lookup_tokens(0, 2) > 0  # priced as a 2-token call at 11 ms: it pays at the prior acceptance
    for _ in range(4):  # but each lookup step really took 30 ms for 1.5 tokens
        policy.record_lookup(2, 1, 0.030)
    assert policy.loses("lookup") and policy.lookup_tokens(0, 2) == 0
    refusals = 1
    while policy.loses("lookup"):  # each refusal fades the evidence: lookup gets another chance later
        assert policy.lookup_tokens(0, 2) == 0
        refusals += 1
        assert refusals < 40
    assert refusals >= 4


def test_one_kept_lookup_token_does_not_buy_a_long_lookup_on_a_steep_curve():
    """llama.cpp's SmolLM2 curve as timed in one auto run (10.8 ms for one token, 17.9 for two, 27.9 for four): after
    one lookup token was kept, a 3-token lookup is no win (it was priced at acceptance 0.75 and lost on math)."""
    from edgespec.runtime.draft_length import DraftLength

    policy = DraftLength(initial=0, maximum=8, adaptive=True, hold=16, probe=4)
    policy.seed({1: 0.0108, 2: 0.0179, 3: 0.0270, 4: 0.0279, 5: 0.0357}, draft_token_s=0.003)
    policy.record_lookup(1, 1, 0.0179)
    assert policy.lookup_tokens(0, 4) <= 1
    for _ in range(6):  # a lookup that keeps being right earns longer proposals
        policy.record_lookup(3, 3, 0.0279)
    assert policy.lookup_tokens(0, 4) >= 3


def test_draft_length_policy_prices_calls_in_steady_runs():
    """A call right after a change of call shape costs more on the CPU; that price is paid once per held
    block, so it must not decide k (measured on SmolLM2: 17 ms per 1-token call in a row, 19 ms per 2-token
    call in a row, ~5 ms more for either right after the other)."""
    from edgespec.runtime.draft_length import DraftLength

    policy = DraftLength(initial=1, maximum=8, adaptive=True, hold=4, probe=4)
    for drafted, kept in [(1, 0), (1, 1), (1, 0), (1, 0), (1, 1)] * 3 + [(0, 0)] * 4:  # acceptance 0.4
        switched = drafted + 1 != policy.last_feed
        target_ms = (17 if drafted == 0 else 19) + (5 if switched else 0)
        policy.record(drafted, kept, target_ms / 1000, 0.0012 * drafted)
    assert abs(policy.target_seconds(1) - 0.017) < 0.001 and abs(policy.target_seconds(2) - 0.019) < 0.001
    # with k = 1: 1.4 tokens per 20.2 ms against 1 token per 17 ms for the target alone
    assert policy.best() == 1


def test_draft_length_policy_tries_longer_drafts_it_has_not_measured():
    """Started at k = 1 with a draft the target mostly agrees with, the policy must measure longer drafts
    and settle where tokens per second peak, not stay at the one call shape it has measured (SmolLM2's
    steady verify costs on this CPU: 15.9, 17.6, 18.3, 19.6, 21.5, 24.3 ms for 1-6 tokens, ~5 ms more right
    after a change of shape; draft 1.4 ms per token; 70% of drafted tokens accepted)."""
    from edgespec.runtime.draft_length import DraftLength, expected_tokens

    steady_ms = {1: 15.9, 2: 17.6, 3: 18.3, 4: 19.6, 5: 21.5, 6: 24.3, 7: 27.0, 8: 29.7, 9: 32.4}
    rate = {k: expected_tokens(0.7, k) / (steady_ms[k + 1] + 1.4 * k) for k in range(9)}
    best_k = max(rate, key=rate.get)
    assert best_k == 3
    rng = np.random.default_rng(0)
    policy = DraftLength(initial=1, maximum=8, adaptive=True)
    choices = []
    for _ in range(300):
        k = policy.next()
        kept = next((i for i in range(k) if rng.random() >= 0.7), k)
        switched = k + 1 != policy.last_feed
        policy.record(k, kept, (steady_ms[k + 1] + (5 if switched else 0)) / 1000, 0.0014 * k)
        choices.append(k)
    settled = choices[-100:]
    assert max(settled, key=settled.count) in (best_k - 1, best_k, best_k + 1)
    assert rate[max(settled, key=settled.count)] > 1.1 * rate[1]


def test_draft_length_policy_grows_k_one_step_past_what_it_measured():
    """A per-prompt probe whose every draft was kept must not send k to the maximum: a long call is priced
    from the measured ones only one token beyond them (SmolLM2's bench cost curve: 15.1, 15.6, 15.7, 16.0 ms
    for 1-4 tokens, 22.5 ms for 6; the old linear fit priced a 13-token call at ~17 ms and, with acceptance
    read as 1.0 after four clean steps, held k = 12 for 16 steps)."""
    from edgespec.runtime.draft_length import DraftLength

    policy = DraftLength(initial=2, maximum=12, adaptive=True)
    policy.steady_cost = {1: 0.0151, 2: 0.0156, 3: 0.0157, 4: 0.0160}
    policy.draft_cost = 0.0022
    policy.restart(2, 12, True)
    for _ in range(4):
        assert policy.next() == 2
        policy.record(drafted=2, kept=2, target_seconds=0.0156, draft_seconds=0.0044)
    assert 0.85 < policy.acceptance < 0.95
    assert 2 <= policy.next() <= 4
    policy.steady_cost[6] = 0.0225
    assert abs(policy.target_seconds(5) - 0.01925) < 1e-6  # between measured shapes: a straight line
    policy.steady_cost = {3: 0.0157, 4: 0.0160}
    assert abs(policy.target_seconds(1) - 0.0151) < 1e-6  # below them: the first segment carried on


def test_draft_length_policy_keeps_costs_across_generations(tiny_pair):
    """The pipeline's policy carries measured call costs into the next generation; acceptance starts over, with
    the last generation's counts as a weak prior."""
    spec = SpeculativePipeline.from_manifest(tiny_pair)
    cfg = GenerationConfig(max_new_tokens=24, draft_length=3)
    spec.generate("def add(a, b):", cfg, chat=False)
    costs = dict(spec.draft_policy.steady_cost | spec.draft_policy.switch_cost)
    assert costs and spec.draft_policy.draft_cost is not None
    seen = spec.draft_policy.seen
    spec.draft_policy.restart(2, 8, True)
    assert spec.draft_policy.seen == pytest.approx(0.25 * seen) and seen > 0
    assert spec.draft_policy.steady_cost | spec.draft_policy.switch_cost == costs
    # the new prompt's acceptance is measured over a 4-step probe at a k of at least 1, at most the initial one,
    # before the costs can rule the draft out (for a draft that could pay: the tiny draft costs as much as the
    # tiny target, so it is given a negligible cost here)
    spec.draft_policy.draft_cost = 1e-7
    spec.draft_policy.restart(2, 8, True)
    probe = [spec.draft_policy.next() for _ in range(4)]
    assert len(set(probe)) == 1 and 1 <= probe[0] <= 2
    spec.draft_policy.draft_cost = 1.0  # one that could never pay: no probe at all
    spec.draft_policy.restart(2, 8, True)
    assert [spec.draft_policy.next() for _ in range(20)] == [0] * 20


def test_draft_sits_out_past_its_context(tiny_pair, tiny_pipes, tmp_path):
    """A prompt longer than the draft's context: the target goes on alone, exactly as target-only, and says so."""
    import json
    import shutil

    short = tmp_path / "short-draft"
    shutil.copytree(tiny_pair, short)
    info = short / "draft" / "edgespec_model.json"
    info.write_text(json.dumps(json.loads(info.read_text()) | {"context_length": 48}))
    spec = SpeculativePipeline.from_manifest(short, exact=True)
    config = GenerationConfig(max_new_tokens=32, ignore_eos=True)
    for prompt, past_draft in [("word " * 20, False), ("word " * 60, True)]:
        result = spec.generate(prompt, config, chat=False)
        want = tiny_pipes["target"].generate(prompt, config, chat=False)
        assert result.token_ids == want.token_ids and len(result.token_ids) == 32
        stopped = result.stats.draft_stopped_at
        if past_draft:  # the draft never ran: its context is shorter than the prompt
            assert stopped == result.stats.prompt_tokens and result.stats.draft_calls == 0
        else:  # it drafted until the text filled its context
            assert stopped is not None and stopped >= 48 and result.stats.draft_calls > 0


def test_draft_reads_a_window_of_a_long_prompt(tiny_pipes):
    """With a draft window the draft reads the prompt's head and tail only; the output stays target-only's."""
    from edgespec.runtime.speculative import DraftWindow

    window = DraftWindow.for_prompt(100, 40, head=8)
    sequence = list(range(100)) + [7, 7]
    assert window.view(sequence) == list(range(8)) + list(range(68, 100)) + [7, 7]
    assert DraftWindow.for_prompt(30, 40).view(sequence) == sequence
    spec, baseline = tiny_pipes["near"], tiny_pipes["target"]
    prompt = "Once upon a time there was a little robot who liked to count: one, two, three, four. " * 5
    for draft_window in (0, 40):
        # a fixed k: the tiny draft costs as much as the tiny target, so the adaptive policy would not draft
        config = GenerationConfig(max_new_tokens=32, ignore_eos=True, draft_window=draft_window, draft_length=3,
                                  adaptive_draft=False)
        result = spec.generate(prompt, config, chat=False)
        assert result.token_ids == baseline.generate(prompt, config, chat=False).token_ids
        assert result.stats.draft_calls > 0 and result.stats.prompt_tokens > 40
        read = spec.draft.cached  # what the draft's cache holds at the end: the window plus the answer, or all
        assert read <= (40 + 32 if draft_window else result.stats.prompt_tokens + 32)


def test_lookup_is_chosen_by_expected_tokens_per_second():
    """Lookup tokens replace a draft where they promise more tokens per second, counting the shape switch a call
    of another width costs (there and back)."""
    from edgespec.runtime.draft_length import DraftLength

    policy = DraftLength(3, 12, adaptive=True)
    policy.steady_cost, policy.draft_cost = {1: 0.025, 4: 0.035}, 0.005
    policy.switch_cost = {1: 0.037, 4: 0.046}
    policy.lookup_kept, policy.lookup_seen = 8.0, 10.0  # lookup proposals mostly kept
    assert policy.switch_seconds() > 0.01
    assert policy.lookup_tokens(3, 3) == 3  # same width as the draft's call, no draft calls: lookup wins
    assert policy.lookup_tokens(3, 0) == 0  # nothing to copy
    assert policy.lookup_tokens(3, 1) == 0  # a 2-token call between 4-token ones pays two switches: draft
    policy.lookup_kept, policy.lookup_seen = 0.0, 10.0  # lookup keeps failing: the draft goes on
    assert policy.lookup_tokens(3, 3) == 0


def test_one_slow_draft_step_does_not_price_a_paying_draft_out():
    """The draft's cost is the median of its recent steps: a mean let one stalled step (14 ms among 3-5 ms ones)
    lift it past what could pay, and a draft that no longer drafts is never timed again (an AVX-512 EPYC bench:
    no draft call after the warm-up, 0.68x of GenAI's speculative pipeline on HumanEval)."""
    from edgespec.runtime.draft_length import DraftLength

    policy = DraftLength(3, 8, adaptive=True)
    policy.seed({1: 0.0112, 2: 0.0144, 3: 0.0162, 4: 0.0168})  # the target's costs timed on that machine
    for draft_s in (0.003, 0.004, 0.003, 0.060, 0.0035):  # k = 1 steps, one of them stalled
        policy.record(1, 1, 0.0144, draft_s)
    assert policy.draft_cost == pytest.approx(0.0035)
    assert policy.could_pay() and policy.best() > 0
    policy.load *= 1.5  # the machine got busier: the draft's cost moves with the target's
    assert policy.draft_cost == pytest.approx(0.0035 * 1.5)
    policy.draft_cost = 0.002  # set by hand (tests, the engine probe's seed): that value, at today's load
    assert policy.draft_cost == pytest.approx(0.002)


def test_draft_waits_to_read_a_long_prompt_until_the_answer_pays_for_it():
    """The draft's prefill of a long prompt is paid back only by a long enough answer: it starts once the tokens
    so far would have paid for it (SmolLM2 here: a 256-token draft prefill 106 ms, about five target steps)."""
    from edgespec.runtime.draft_length import DraftLength

    policy = DraftLength(3, 8, adaptive=True)
    assert policy.catch_up_pays(256, 0)  # nothing measured: draft, and measure the costs
    policy.steady_cost = {1: 0.020, 2: 0.022, 3: 0.024, 4: 0.026}
    policy.draft_cost, policy.kept, policy.seen = 0.002, 14.0, 20.0  # acceptance 0.7
    policy.record_catch_up(256, 0.106)
    gain = policy.gain_per_token()
    assert 0.005 < gain < 0.020  # fewer seconds per token with the draft than the target's 20 ms alone
    start = next(n for n in range(200) if policy.catch_up_pays(256, n))
    assert start == round(0.106 / gain + 0.5)
    assert policy.catch_up_pays(20, 2)  # a short prompt is read at once
    policy.kept = 0.0  # the last answer's draft was rejected: this prompt's acceptance is still unknown, so the
    assert policy.gain_per_token() == pytest.approx(gain) and policy.catch_up_pays(256, start)  # draft still reads (and probes)
    policy.draft_cost = 0.050  # a draft slower than the target pays at no acceptance: never worth reading for
    assert policy.gain_per_token() == 0.0 and not policy.catch_up_pays(256, 1000)


def test_catch_up_reads_at_once_when_answers_run_long_and_never_for_short_ones():
    """After answers that ran to 128 tokens the draft reads a long prompt before its first proposal; after
    10-token answers (retrieval) it does not, nor when the length limit leaves too little room to pay it back."""
    from edgespec.runtime.draft_length import DraftLength

    policy = DraftLength(3, 8, adaptive=True)
    policy.steady_cost = {1: 0.020, 2: 0.022, 3: 0.024, 4: 0.026}
    policy.draft_cost, policy.kept, policy.seen = 0.002, 14.0, 20.0
    policy.record_catch_up(256, 0.106)
    policy.finish(128)
    assert policy.catch_up_pays(256, 1, room=126)
    assert not policy.catch_up_pays(256, 1, room=8)  # 8 tokens left cannot pay a 106 ms prefill
    policy.finish(10)  # one short answer after long ones: the next is guessed short (guessing long costs more)
    assert policy.answer_tokens > 80 and policy.expected_answer() == 10
    assert not any(policy.catch_up_pays(256, n, room=126 - n) for n in range(1, 10))
    # a long answer guessed short reads the prompt once the answer so far pays for it
    assert not policy.catch_up_pays(256, 5, room=120) and policy.catch_up_pays(256, 40, room=80)
    policy.finish(128)  # then long again: the mean (47) says the next pays at once
    assert policy.catch_up_pays(256, 1, room=126)


def test_a_catch_up_that_does_not_pay_is_priced_again_only_every_few_steps():
    """The loop asks every step whether the draft should read the prompt; a "no" stands for the next steps unpriced
    (pricing it every step cost 0.03-0.1 ms of a 10 ms llama.cpp step), and a new generation prices it afresh."""
    from edgespec.runtime.draft_length import CATCH_UP_RECHECK, DraftLength

    policy = DraftLength(3, 8, adaptive=True)
    policy.steady_cost = {1: 0.020, 2: 0.022, 3: 0.024, 4: 0.026}
    policy.draft_cost, policy.kept, policy.seen = 0.002, 14.0, 20.0
    policy.record_catch_up(256, 0.106)
    policy.finish(10)  # short answers: a 256-token read does not pay
    assert not policy.catch_up_now(256, 1, room=126)
    policy.finish(128)
    policy.finish(128)  # now it would pay, but the "no" stands for a few more steps
    assert policy.catch_up_pays(256, 2, room=125)
    answers = [policy.catch_up_now(256, n, room=126 - n) for n in range(2, 2 + CATCH_UP_RECHECK)]
    assert answers == [False] * (CATCH_UP_RECHECK - 1) + [True]
    assert not policy.catch_up_now(10_000, 20)  # a "no" again ...
    policy.restart(3, 8, True)
    assert policy.catch_up_now(256, 1, room=126)  # ... forgotten by the next generation


def test_costs_of_widths_not_verified_lately_follow_the_load_and_a_stall_counts_little():
    """A width the loop stopped verifying is priced at today's load (not at the load when it was last timed), and
    one stalled call (another process took the cores) does not price a width out."""
    from edgespec.runtime.draft_length import DraftLength

    policy = DraftLength(3, 8, adaptive=True)
    for n, cost in ((1, 0.020), (1, 0.020), (3, 0.030), (3, 0.030)):
        policy.record_target(n, cost)
    assert policy.target_seconds(3) == pytest.approx(0.030)
    policy.record_target(1, 0.020)
    for _ in range(30):  # the machine got twice as slow; only single-token calls ran since
        policy.record_target(1, 0.040)
    assert policy.target_seconds(1) == pytest.approx(0.040, rel=0.02)
    assert policy.target_seconds(3) == pytest.approx(0.060, rel=0.1)
    policy.record_target(1, 0.400)  # a stall: ten times the cost
    assert policy.target_seconds(1) < 1.25 * 0.040 and policy.target_seconds(3) < 1.25 * 0.060


def test_jittery_calls_of_one_width_do_not_cheapen_the_widths_not_run():
    """Hundreds of one-token steps whose cost jitters (and answer starts, each a shape switch) leave the price of a
    2-token call where the timed curve put it, against the 1-token price: an arithmetic update of the running
    width's price drifted it up against the load, until llama.cpp's 2-token verify was priced at 1.3x a 1-token
    step (timed 1.9x; a bench trace of SmolLM2) and at 0.9x for Qwen, where probes then lost (docs/draft-length.md)."""
    from edgespec.runtime.draft_length import DraftLength

    rng = np.random.default_rng(0)
    policy = DraftLength(3, 8, adaptive=True)
    policy.seed({1: 0.0098, 2: 0.0184, 3: 0.0278})
    for answer in range(12):
        policy.last_feed = 0  # a new answer: its first call switches shape
        for step in range(80):
            grows = 0.0075 + 0.0012 * step / 80  # each answer's context grows
            policy.record_target(1, grows * rng.lognormal(0.0, 0.15))
    assert policy.target_seconds(1) == pytest.approx(0.0087, rel=0.15)
    assert policy.target_seconds(2) / policy.target_seconds(1) == pytest.approx(0.0184 / 0.0098, rel=0.1)
    assert policy.target_seconds(3) / policy.target_seconds(1) == pytest.approx(0.0278 / 0.0098, rel=0.1)


def test_draft_reads_are_priced_from_a_warm_read_not_the_first_one():
    """The catch-up's price starts from a read timed warm before decoding; the process's first read in the loop
    (a new shape's first inference: 58 ms for 125 tokens of SmolLM2's draft against 16 ms later) is not priced,
    and later reads enter as a median. Priced as a mean from the first read, 0.73 ms a token refused every read on
    HumanEval prompts (answers of 57 tokens) on an AVX-512 EPYC, and nothing drafted there again."""
    from edgespec.runtime.draft_length import DraftLength

    policy = DraftLength(3, 8, adaptive=True)
    policy.seed({1: 0.0131, 2: 0.0171, 3: 0.0190, 4: 0.0197}, 0.0035, catch_up_token_s=0.00013)
    policy.kept, policy.seen = 14.0, 20.0  # acceptance 0.7
    policy.finish(57)
    policy.record_catch_up(125, 0.058)  # the first read: one-time costs
    assert policy.catch_up_cost == pytest.approx(0.00013)
    assert policy.catch_up_pays(125, 1, room=127)
    for seconds in (0.016, 0.019, 0.090, 0.015):  # later reads, one of them stalled
        policy.record_catch_up(125, seconds)
    assert policy.catch_up_cost == pytest.approx(0.016 / 125, rel=0.05)
    assert policy.catch_up_pays(125, 1, room=127)
    assert not policy.catch_up_pays(900, 1, room=127)  # a retrieval prompt after short answers still waits


def test_draft_catch_up_is_timed_apart_and_keeps_greedy_exact(tiny_pipes):
    """The draft's prefill is measured on its own (per-token drafting costs stay what drafting costs) and a
    waiting draft leaves the output target-only's."""
    spec, baseline = tiny_pipes["near"], tiny_pipes["target"]
    prompt = "Once upon a time there was a little robot who liked to count: one, two, three, four. " * 5
    config = GenerationConfig(max_new_tokens=24, ignore_eos=True, draft_window=0, prompt_lookup=False)
    spec.draft_policy.catch_up_cost = None
    spec.draft_policy.draft_cost = None  # unmeasured: the first generation drafts at the initial k
    spec.clear_cache()
    first = spec.generate(prompt, config, chat=False)
    assert spec.draft_policy.catch_up_cost is not None and first.stats.draft_calls > 0
    spec.draft_policy.catch_up_cost = 1.0  # a draft prefill that an answer of 24 tokens never pays for
    spec.draft_policy.draft_cost = 1e-7  # a draft that would pay once it has read the prompt
    spec.clear_cache()  # (the draft's cache kept the prompt: a second run would have nothing to catch up)
    waited = spec.generate(prompt, config, chat=False)
    assert waited.stats.draft_calls == 0
    assert waited.token_ids == first.token_ids == baseline.generate(prompt, config, chat=False).token_ids
    spec.draft_policy.catch_up_cost = None


def test_seeded_costs_price_the_one_token_step_and_shorten_k():
    """With only the held k's calls measured, a one-token step is extrapolated dear (18.1 ms for a 14.5 ms step
    on the AVX2 EPYC), which held k = 3 through whole short-answer sets at 0.87x of target-only; the steady costs
    timed before decoding price it right and the policy drafts less."""
    from edgespec.runtime.draft_length import DraftLength

    policy = DraftLength(3, 12, True)
    policy.record_target(4, 0.0208)
    policy.record_target(4, 0.0208)
    policy.kept, policy.seen, policy.draft_cost = 55.0, 100.0, 0.0027
    assert policy.target_seconds(1) == pytest.approx(0.0208 / 1.15)
    before = policy.best()
    policy.seed({1: 0.0145, 2: 0.0174, 3: 0.0190, 4: 0.0216})
    assert policy.steady_cost[4] == 0.0208  # measured in the loop: kept
    assert policy.target_seconds(1) == 0.0145 and policy.target_seconds(3) == 0.0190
    assert policy.best() < before


def test_first_speculative_generation_times_the_targets_calls(tiny_pair, tmp_path, monkeypatch):
    from edgespec.runtime import pipeline as pipeline_module

    monkeypatch.setenv("EDGESPEC_CACHE", str(tmp_path))
    pipe = SpeculativePipeline.from_manifest(tiny_pair, exact=True)
    assert not pipe.draft_policy.steady_cost
    base = SpeculativePipeline.from_manifest(tiny_pair, use_draft=False, exact=True)
    config = GenerationConfig(max_new_tokens=12)
    assert pipe.generate("Hello there", config, chat=False).token_ids == \
        base.generate("Hello there", config, chat=False).token_ids
    assert set(range(1, 6)) <= set(pipe.draft_policy.steady_cost)
    assert not base.draft_policy.steady_cost  # target only: nothing to choose
    # kept in the cache: the next pipeline on this machine starts from them without timing anything
    timed = pipe.draft_policy.steady_cost
    monkeypatch.setattr(pipeline_module, "time_calls", lambda *a, **k: pytest.fail("timed again"))
    again = SpeculativePipeline.from_manifest(tiny_pair, exact=True)
    again.generate("Hello there", config, chat=False)
    assert all(again.draft_policy.steady_cost[n] > 0 for n in range(1, 6))
    assert (tmp_path / "call-costs.json").is_file() and len(timed) >= 5


def test_per_token_acceptance_counts_rejections_not_unseen_tokens():
    """A chain's tokens after its first rejection are never tried: per-token acceptance (what the expected-tokens
    formula and the engine choice take) is kept over kept + rejections, not kept over drafted (0.8, not 0.67)."""
    from edgespec.runtime.config import GenerationStats
    from edgespec.runtime.speculative import Step, record

    stats = GenerationStats()
    assert stats.token_acceptance() is None  # nothing proposed
    record(stats, Step([5, 6, 7], 1, [5, 9], 0.0, 0.01))  # one kept, then a rejection
    record(stats, Step([5, 6, 7], 3, [5, 6, 7, 8], 0.0, 0.01))  # all kept: no rejection
    record(stats, Step([], 0, [4], 0.0, 0.01))  # a plain step: no trial
    stats.finish(0.0)
    assert stats.rejected_steps == 1
    assert stats.token_acceptance() == pytest.approx(0.8)
    assert stats.acceptance_rate == pytest.approx(4 / 6)


def test_bound_inputs_follow_every_call_and_reuse_small_tensors():
    """A call's inputs are written into tensors bound to the request: each call reads its own values whatever the
    shapes before it, small tensors are reused by shape, large ones (a prompt's ids) are not kept."""
    import openvino as ov
    import openvino.opset13 as ops

    from edgespec.runtime.bound_inputs import POOLED, BoundInputs

    a, b = ops.parameter([-1], np.float32, name="a"), ops.parameter([-1], np.float32, name="b")
    request = ov.Core().compile_model(ov.Model([ops.add(a, b)], [a, b]), "CPU").create_infer_request()
    inputs = BoundInputs()
    rng = np.random.default_rng(0)
    for n in (2, 3, 2, POOLED + 1, 2, 3):
        x, y = rng.random(n, dtype=np.float32), rng.random(n, dtype=np.float32)
        inputs.feed(request, {"a": x, "b": y})
        request.infer()
        np.testing.assert_array_equal(request.get_output_tensor().data, x + y)
    assert sorted({shape for _, shape, _ in inputs.pool}) == [(2,), (3,)]
    assert request.get_tensor("a").data.ctypes.data == inputs.pool["a", (3,), "<f4"].data.ctypes.data


def test_paged_block_size_with_a_key_cache_quantized_by_channel(tiny_pair):
    """A u8 key cache quantized by channel keeps its scales as extra rows of each block ([..., 32 + 8, head]): the
    block size comes from the value cache, a call lists every block its positions use, and such a cache carries no
    tree (a kept path cannot be moved token by token). Read from the key cache (40 rows), calls listed too few
    blocks and the kernel read past the block table (Qwen2.5 on the CPU defaults)."""
    import openvino as ov

    from edgespec.runtime.manifest import load_pair
    from edgespec.runtime.model import read_ir
    from edgespec.runtime.paged import PagedLM, to_paged

    def paged(kv: str) -> PagedLM:
        model = read_ir(load_pair(tiny_pair).target.xml)
        to_paged(model)
        return PagedLM(ov.Core().compile_model(model, "CPU", {"KV_CACHE_PRECISION": kv}), 512)

    u8, f16 = paged("u8"), paged("f16")
    assert u8.cache_ports[0].get_partial_shape()[2].get_length() == 40  # the layout this test is about
    assert (u8.block_size, u8.tree) == (32, False) and (f16.block_size, f16.tree) == (32, True)
    prompt = [int(t) for t in np.random.default_rng(1).integers(3, 200, 150)]
    rows = {}
    for name, lm in (("u8", u8), ("f16", f16)):
        lm.forward(prompt, last=1)
        rows[name] = np.concatenate([lm.forward([40 + i], last=1) for i in range(20)])
    assert np.abs(rows["u8"] - rows["f16"]).max() < 0.1 * np.abs(rows["f16"]).max()


def test_the_agreement_check_runs_only_within_its_budget(tiny_pipes):
    """auto's agreement check (the draft reading an answer it did not draft) may add at most CHECK_BUDGET of the
    generation's time at the draft's measured read cost; with no cost measured yet it runs."""
    from edgespec.runtime.pipeline import CHECK_BUDGET

    pipe = tiny_pipes["near"]
    policy = next(iter(pipe.policies.values()))
    saved = policy.catch_up_cost
    try:
        policy.catch_up_cost = None
        assert pipe._check_affordable(10_000, 0.1)
        policy.catch_up_cost = 0.002  # Qwen2.5's 0.5B draft here: 2 ms a token
        assert not pipe._check_affordable(90, 3.0)  # a short answer's check: 180 ms of 3 s
        assert pipe._check_affordable(40, 3.0) and 40 * 0.002 <= CHECK_BUDGET * 3.0
    finally:
        policy.catch_up_cost = saved


def test_loaded_models_ran_once_and_start_empty(tiny_pair):
    """The CPU plugin prepares a model's weights at its first inference (Qwen2.5-Coder-1.5B INT4: 4.6 s): load_lm
    runs it then, so the first prompt's time to first token (and auto's timing of it) does not carry that."""
    import openvino as ov

    from edgespec.runtime.manifest import load_pair
    from edgespec.runtime.pipeline import load_lm

    entry = load_pair(tiny_pair).draft  # a draft: no width check runs the model before the warm-up does
    for form in ("paged", "stateful"):
        lm = load_lm(ov.Core(), entry, "CPU", False, "mask", draft=True, form=form)
        assert lm.cached == 0 and lm.calls == 0
        assert lm.request.get_tensor("logits").size > 0  # an inference ran: its output is there
        assert lm.forward([5, 17, 300], last=1).shape[0] == 1 and lm.tokens == [5, 17, 300]
