"""The decoding loop: prefill, draft k tokens, verify them in one target call, keep what the target agrees with.

Target-only decoding is the same loop with no draft (k = 0), so both modes share every line
that touches the target. Each model's KV cache always holds a prefix of `sequence`; a model
is fed `sequence[cached:]` plus whatever is being proposed or verified. Which drafted tokens
stay is the acceptance rule's business (acceptance.py); how many to draft, the policy's
(draft_length.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from edgespec.runtime.acceptance import GreedyRule, SamplingRule, rule_for
from edgespec.runtime.config import GenerationConfig, GenerationStats
from edgespec.runtime.draft_length import DraftLength
from edgespec.runtime.lookup import PromptLookup
from edgespec.runtime.model import StatefulLM
from edgespec.runtime.errors import EdgespecError
from edgespec.runtime.tree import tree_step
from edgespec.runtime.tree_shape import BRANCHING, TreeShape, tree_width

Rule = GreedyRule | SamplingRule


@dataclass
class Step:
    """What one speculative step did: plain data for the loop's stats and the draft-length policy."""
    drafted: list[int]
    kept: int
    new_tokens: list[int]
    draft_s: float
    target_s: float
    source: str = "draft"  # who proposed: "draft" (the draft model), "lookup" (prompt lookup) or "tree"
    catch_up_s: float = 0.0  # the draft reading text it had not seen, before it proposed (its prefill)
    draft_calls: int | None = None  # when not one per drafted token (a tree's rounds)


def propose(draft: StatefulLM, sequence: list[int], k: int, rule: Rule, rng: np.random.Generator,
            vocab_size: int) -> tuple[list[int], np.ndarray | None]:
    """Draft k tokens one by one; with sampling also return the draft's distributions [k, V_target]."""
    drafted: list[int] = []
    dists = []
    feed = draft.pending(sequence)
    for _ in range(k):
        index, probs = rule.choose(draft.forward(feed, last=1)[0], rng)
        token = int(draft.vocab_map[index]) if draft.vocab_map is not None else index
        drafted.append(token)
        dists.append(probs)
        feed = [token]
    if not rule.sampling:
        return drafted, None
    probs = np.stack(dists)
    if draft.vocab_map is None:
        return drafted, probs
    # A reduced draft head puts zero probability outside its subset; the acceptance rule stays exact.
    full = np.zeros((k, vocab_size), dtype=probs.dtype)
    full[:, draft.vocab_map] = probs
    return drafted, full


@dataclass(frozen=True)
class DraftWindow:
    """The part of a long prompt the draft reads: its first `head` tokens (system prompt, instruction) and the
    tokens from `tail_from` on. The draft's prefill of a long prompt costs as much as many decode steps, and
    the target verifies every token anyway, so a shorter draft context changes only acceptance."""
    head: int = 0
    tail_from: int = 0

    @classmethod
    def for_prompt(cls, prompt_tokens: int, window: int, head: int = 32) -> DraftWindow:
        if window <= 0 or prompt_tokens <= window:
            return cls()
        return cls(head, prompt_tokens - (window - head))

    def view(self, sequence: list[int]) -> list[int]:
        return sequence if self.tail_from <= self.head else sequence[:self.head] + sequence[self.tail_from:]


def prefill(target: StatefulLM, sequence: list[int], rule: Rule, rng: np.random.Generator) -> Step:
    """Feed the prompt (what the cache lacks of it) and pick the first new token."""
    t0 = time.perf_counter()
    logits = target.prefill(target.pending(sequence), last=1)
    t1 = time.perf_counter()
    return Step([], 0, [rule.first(logits, rng)], 0.0, t1 - t0)


def speculative_step(target: StatefulLM, draft: StatefulLM | None, sequence: list[int], k: int, rule: Rule,
                     rng: np.random.Generator, draft_sequence: list[int] | None = None) -> Step:
    """Propose k tokens with the draft, verify them in one target call, roll both caches back to what stays.
    draft_sequence: what the draft reads of `sequence` (a DraftWindow's view; all of it by default)."""
    draft_sequence = sequence if draft_sequence is None else draft_sequence
    t0 = time.perf_counter()
    drafted, draft_probs = propose(draft, draft_sequence, k, rule, rng, target.vocab_size) if k else ([], None)
    t1 = time.perf_counter()
    logits = target.forward(target.pending(sequence) + drafted, last=k + 1)
    t2 = time.perf_counter()
    kept, next_token = rule.verify(logits, drafted, draft_probs, rng)
    # The verified prefix stays cached; rejected drafts leave both caches.
    target.rollback(len(sequence) + kept)
    if draft is not None:
        draft.rollback(min(draft.cached, len(draft_sequence) + kept))
    return Step(drafted, kept, drafted[:kept] + [next_token], t1 - t0, t2 - t1)


# Below this many unseen tokens the draft reads them with its first proposal (one call less); above, in a call of
# their own, so their cost is measured apart from the per-token cost of drafting.
CATCH_UP_ALONE = 8


def unseen_by_draft(draft: StatefulLM, draft_sequence: list[int]) -> int:
    """Tokens of the text the draft has not read, less the last one (fed with its first proposal)."""
    return max(0, len(draft.pending(draft_sequence)) - 1)


def catch_up(draft: StatefulLM, draft_sequence: list[int]) -> tuple[int, float]:
    """Feed the draft what it has not read of the text but the last token; return (tokens, seconds)."""
    feed = draft.pending(draft_sequence)[:-1]
    if len(feed) <= CATCH_UP_ALONE:
        return 0, 0.0
    t0 = time.perf_counter()
    draft.forward(feed, last=1)
    return len(feed), time.perf_counter() - t0


def lookup_step(target: StatefulLM, draft: StatefulLM | None, sequence: list[int], proposed: list[int], rule: Rule,
                rng: np.random.Generator, draft_sequence: list[int] | None = None) -> Step:
    """Verify prompt-lookup tokens in one target call; the draft is not called (it catches up when next used)."""
    t0 = time.perf_counter()
    logits = target.forward(target.pending(sequence) + proposed, last=len(proposed) + 1)
    t1 = time.perf_counter()
    kept, next_token = rule.verify(logits, proposed, None, rng)  # a lookup proposal is certain: q = one-hot
    target.rollback(len(sequence) + kept)
    if draft is not None:
        draft.rollback(min(draft.cached, len(sequence if draft_sequence is None else draft_sequence)))
    return Step(proposed, kept, proposed[:kept] + [next_token], 0.0, t1 - t0, source="lookup")


# Answer tokens the draft reads to measure its acceptance after a generation that did not draft (with the prompt
# 15-45 ms for SmolLM2's draft here; all 128 tokens: 25-65 ms, for agreement within 0.1 of it on most prompts).
AGREEMENT_TOKENS = 48


def draft_agreement(draft: StatefulLM, draft_sequence: list[int], answer_tokens: int,
                    limit: int = AGREEMENT_TOKENS) -> float | None:
    """Share of an answer's tokens (the last `answer_tokens` of `draft_sequence`, at most `limit` of them) that the
    draft's greedy choice after the true text before each would have proposed: its per-token acceptance on this
    text, measured in one draft call after a generation that did not draft. None when too short to tell."""
    n = min(answer_tokens, limit + 1)
    start = len(draft_sequence) - answer_tokens
    if n < 9 or start < 1 or start + n > draft.context_length:
        return None
    text = draft_sequence[:start + n]
    draft.pending(text[:start])  # keeps at most the prompt: the rows predicting answer tokens 1..n-1 are fed now
    logits = draft.forward(text[draft.cached:-1], last=n - 1)
    choice = logits.argmax(axis=-1)
    if draft.vocab_map is not None:
        choice = np.asarray(draft.vocab_map)[choice]
    return float(np.mean(choice == np.asarray(text[start + 1:])))


def cut_at_eos(tokens: list[int], eos_ids: set[int]) -> tuple[list[int], bool]:
    for i, token in enumerate(tokens):
        if token in eos_ids:
            return tokens[:i + 1], True
    return tokens, False


def decode(target: StatefulLM, draft: StatefulLM | None, prompt: list[int], config: GenerationConfig,
           eos_ids: set[int], stats: GenerationStats, policy: DraftLength | None = None,
           shape: TreeShape | None = None) -> Iterator[list[int]]:
    """Yield new tokens as the target confirms them. The caller stops the generator to end early.
    `policy` carries call costs measured in earlier generations with the same models (it is restarted);
    `shape` the tree tuner's measurements (config.tree)."""
    rng = np.random.default_rng(config.seed)
    rule = rule_for(config.do_sample, config.warp)
    longest = config.max_draft_length
    if target.max_feed:
        # NPU: a verify call longer than the compiled generation length would be split in two.
        longest = min(longest, target.max_feed - 1)
    if policy is None:
        policy = DraftLength(min(config.draft_length, longest), longest, config.adaptive_draft)
    else:
        policy.restart(min(config.draft_length, longest), longest, config.adaptive_draft)
    start = time.perf_counter()
    stats.prompt_tokens = len(prompt)
    sequence = list(prompt)
    # Prompt lookup is a second proposer for speculative runs; target-only (no draft) stays the plain baseline.
    lookup = PromptLookup() if config.prompt_lookup and draft is not None else None
    window = DraftWindow.for_prompt(len(prompt), config.draft_window)
    shape = tree_shape_for(config, target, draft, shape)
    if config.tree == "auto" and shape is None and draft is not None:
        stats.tree_choice = "the chain: this model form has no tree mask (NPU and stateful forms draft chains only)"
    try:
        while stats.new_tokens < config.max_new_tokens:
            # Each step yields at most k + 1 tokens and places k + 1 tokens from position len(sequence) - 1.
            room = min(config.max_new_tokens - stats.new_tokens - 1, target.context_length - len(sequence))
            if room < 0:
                stats.stop_reason = "context"
                return
            if draft is not None and len(window.view(sequence)) + 1 > draft.context_length:
                # The draft's context is full: it sits out, the target goes on alone.
                stats.draft_stopped_at = stats.draft_stopped_at or len(sequence)
                draft = None
            if stats.new_tokens == 0:
                step = prefill(target, sequence, rule, rng)
            else:
                step = (tree_next(target, draft, shape, policy, sequence, window.view(sequence), room, config, rng)
                        if shape is not None and draft is not None else None)
                step = step or next_step(target, draft, lookup, policy, sequence, window.view(sequence), room, rule,
                                         rng, generated=stats.new_tokens)
                if draft is not None or lookup is not None:
                    stats.draft_lengths.append(len(step.drafted))
            record(stats, step)
            if stats.new_tokens == 0:
                stats.ttft_s = time.perf_counter() - start
            new_tokens, ended = step.new_tokens, False
            if not config.ignore_eos:
                new_tokens, ended = cut_at_eos(new_tokens, eos_ids)
            sequence.extend(new_tokens)
            stats.new_tokens += len(new_tokens)
            if ended:
                stats.stop_reason = "eos"
            yield new_tokens
            if ended:
                return
        stats.stop_reason = "length"
    finally:
        if not stats.stop_reason:
            stats.stop_reason = "stopped"
        stats.finish(start)
        policy.finish(stats.new_tokens)


def next_step(target: StatefulLM, draft: StatefulLM | None, lookup: PromptLookup | None, policy: DraftLength,
              sequence: list[int], draft_sequence: list[int], room: int, rule: Rule, rng: np.random.Generator,
              generated: int = 0) -> Step:
    """One step after the prefill: prompt-lookup tokens where they promise more tokens per second than the
    draft's k (the policy's call), else the draft's k tokens (k = 0: the target alone, with one looked-up token
    where the target's call has a free slot). The draft waits while reading what it has not seen (a long prompt)
    would cost more than the answer so far says it will save."""
    k = 0
    if draft is not None and policy.sitting_out():
        policy.next()  # counts the step of the sit-out; pricing a catch-up for no draft would only cost time
    elif draft is not None:
        unseen = unseen_by_draft(draft, draft_sequence)
        if unseen <= CATCH_UP_ALONE or policy.catch_up_now(unseen, generated, room):
            k = min(policy.next(), room, draft.context_length - len(draft_sequence))
    if lookup is not None:
        lookup.sync(sequence)
        candidate = lookup.propose(min(room, policy.maximum))
        m = policy.lookup_tokens(k, len(candidate))
        if m:
            step = lookup_step(target, draft, sequence, candidate[:m], rule, rng, draft_sequence)
            policy.record_lookup(m, step.kept, step.target_s)
            return step
        if k == 0 and room > 0 and free_slot(target):
            guess = candidate[:1] or lookup.propose(1, shortest=1)
            if guess:
                step = lookup_step(target, draft, sequence, guess, rule, rng, draft_sequence)
                policy.record(0, step.kept, step.target_s, 0.0)
                return step
    caught, catch_up_s = catch_up(draft, draft_sequence) if k else (0, 0.0)
    if caught:
        policy.record_catch_up(caught, catch_up_s)
    step = speculative_step(target, draft, sequence, k, rule, rng, draft_sequence)
    step.catch_up_s = catch_up_s
    if draft is not None:
        policy.record(k, step.kept, step.target_s, step.draft_s)
    return step


def free_slot(target: StatefulLM) -> bool:
    """Whether a one-token step has room for a proposed token at no cost: a target that feeds every call at least
    two tokens (PagedLM.min_feed, the exact fast kernels) feeds the last cached token again in a plain step; the
    token that followed the last occurrence of the current one in the text instead is right 5-30% of the time on
    free text (MT-bench 0.05, chat 0.13, math and long documents 0.25) and 50-90% where a 2-gram matches."""
    return getattr(target, "min_feed", 1) >= 2 and target.cached > 0


def tree_shape_for(config: GenerationConfig, target, draft, shape: TreeShape | None) -> TreeShape | None:
    """The tree tuner for this generation, or None (chain steps only)."""
    if config.tree == "off" or draft is None:
        return None
    if not (getattr(target, "tree", False) and getattr(draft, "tree", False)):
        if config.tree == "auto":
            return None  # auto means "a tree where it pays": on a form without tree masks, the chain
        where = ("NPU (NPUW static shapes)" if target.max_feed or draft.max_feed else
                 "a KV cache quantized by channel (u8 keys)" if getattr(target, "tree_inputs", False)
                 and getattr(draft, "tree_inputs", False) else "the stateful model form")
        raise EdgespecError(f"--tree {config.tree}: tree verification needs the paged-attention model form (CPU "
                            f"default) with a KV cache of one row a token; {where} runs chain speculation only: "
                            f"use --tree off or auto")
    if shape is None or shape.mode != config.tree:
        return TreeShape(config.tree)
    shape.restart()
    return shape


def tree_next(target, draft, shape: TreeShape, policy: DraftLength, sequence: list[int], draft_sequence: list[int],
              room: int, config: GenerationConfig, rng: np.random.Generator) -> Step | None:
    """A tree step when the tuner asks for one (None: take a chain step)."""
    budget = min(shape.budget(policy), room, draft.context_length - len(draft_sequence) - 1)
    if budget < 1:
        return None
    warp = config.warp if config.do_sample else None
    done = tree_step(target, draft, sequence, budget, tree_width(budget), BRANCHING, warp, rng, draft_sequence)
    # A tree's costs stay with the tuner: in the chain policy's table they moved its held k (docs/trees.md).
    shape.record(done.ranks, done.visited_children, done.draft_calls, done.draft_s, len(done.drafted) + 1,
                 done.target_s)
    return Step(done.drafted, len(done.path), done.new_tokens, done.draft_s, done.target_s, source="tree",
                draft_calls=done.draft_calls)


def record(stats: GenerationStats, step: Step) -> None:
    stats.target_calls += 1
    stats.target_s += step.target_s
    stats.draft_s += step.draft_s + step.catch_up_s
    if step.drafted:
        stats.drafted_tokens += len(step.drafted)
        stats.accepted_tokens += step.kept
        stats.rejected_steps += step.kept < len(step.drafted)
        if step.source == "lookup":
            stats.lookup_tokens += len(step.drafted)
            stats.lookup_accepted += step.kept
        elif step.source == "tree":
            stats.tree_steps += 1
            stats.draft_calls += step.draft_calls
        else:
            stats.draft_calls += len(step.drafted)
            stats.chain_accepted += step.kept
            stats.chain_rejected += step.kept < len(step.drafted)
