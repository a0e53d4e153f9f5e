"""Tree speculation replayed offline on cached target answers (greedy), priced on any verify cost curve.

A greedy decoder only ever extends the target's own text, so replaying a cached answer fixes every tree step's
outcome: the real draft grows the tree exactly as the runtime does (edgespec.runtime.tree.grow_tree, best-first,
one batched call per round), and a node is accepted iff its token is the answer's next one. What is modelled is
only the time: the target's (budget + 1)-token verify call from a cost curve (the bench's, or a flat one where
every call costs a one-token step, as on an iGPU/NPU or a memory-bound large target), and the draft's calls from
its own cost curve by tokens fed (a round feeds the whole tree so far), measured here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edgespec.runtime.errors import EdgespecError
from edgespec.runtime.tree import ROOT, Tree, grow_tree
from edgespec.runtime.tree_shape import BRANCHING, tree_width


class CountedCalls:
    """A model whose calls are logged by tokens fed, to be priced afterwards from its cost curve."""

    def __init__(self, lm):
        self.lm = lm
        self.fed: list[int] = []

    def __getattr__(self, name):
        return getattr(self.lm, name)

    def forward(self, tokens, last=None):
        self.fed.append(len(tokens))
        return self.lm.forward(tokens, last=last)

    def forward_tree(self, tokens, positions, mask, last=None):
        self.fed.append(len(tokens))
        return self.lm.forward_tree(tokens, positions, mask, last=last)


@dataclass
class TreeCall:
    """One replayed verify call: the tree's size, the tokens it yielded, and the draft's calls by tokens fed."""
    nodes: int
    new_tokens: int
    draft_fed: list[int]


def answer_path(tree: Tree, answer: list[int]) -> list[int]:
    """The nodes a greedy target accepts when its next tokens are `answer`: at each node the child holding the
    answer's next token, while there is one."""
    path, node = [], ROOT
    for token in answer:
        child = tree.children(node).get(token)
        if child is None:
            break
        path.append(child)
        node = child
    return path


def replay_answer(draft: CountedCalls, prompt: list[int], answer: list[int], budget: int) -> list[TreeCall]:
    """Decode one cached answer with `budget`-node trees: one TreeCall per target call. The last token of an
    answer is verified alone (nothing is drafted past the answer's end, as in simulate.block_step)."""
    calls, pos = [], 0
    width = tree_width(budget)
    draft.reset()
    if len(prompt) > 1:
        draft.lm.forward(prompt[:-1], last=1)  # the prompt's prefill is not a verify step (as in simulate._total)
    while pos < len(answer):
        sequence = prompt + answer[:pos]
        draft.fed.clear()
        if len(answer) - pos == 1:
            calls.append(TreeCall(0, 1, []))
            break
        tree, fed, _ = grow_tree(draft, sequence, budget, width, BRANCHING)
        path = answer_path(tree, answer[pos:])[:len(answer) - pos - 1]
        start = len(sequence)
        draft.keep_slots(start, [start + i for i in path if i < fed])  # as tree_step: the path stays cached
        calls.append(TreeCall(len(tree), len(path) + 1, list(draft.fed)))
        pos += len(path) + 1
    return calls


def curve_pricer(curve: dict[int, float], scale: float = 1.0) -> Callable[[int], float]:
    """Seconds of an n-token call, interpolated between measured shapes (and past the longest, linearly)."""
    shapes = sorted(curve)
    costs = [curve[n] * scale for n in shapes]

    def price(n: int) -> float:
        if n <= shapes[-1] or len(shapes) < 2:
            return float(np.interp(n, shapes, costs))
        slope = (costs[-1] - costs[-2]) / (shapes[-1] - shapes[-2])
        return costs[-1] + slope * (n - shapes[-1])
    return price


def priced(calls: list[list[TreeCall]], target: Callable[[int], float], draft: Callable[[int], float]) -> dict:
    """Totals over answers: tokens, target calls, seconds, tokens per call and per second."""
    tokens = sum(c.new_tokens for answer in calls for c in answer)
    n_calls = sum(len(answer) for answer in calls)
    seconds = sum(target(c.nodes + 1) + sum(draft(n) for n in c.draft_fed) for answer in calls for c in answer)
    return {"tokens": tokens, "target_calls": n_calls, "seconds": seconds,
            "tokens_per_target_call": tokens / max(1, n_calls), "tokens_per_s": tokens / seconds if seconds else 0.0}


def simulate_trees(draft_lm, samples: list[tuple[list[int], list[int]]], budgets: list[int],
                   curves: dict[str, dict[int, float]], draft_curve: dict[int, float], draft_scale: float = 1.0
                   ) -> dict[str, dict]:
    """Per budget: tokens per target call, and tokens/s on each named target cost curve (e.g. "measured",
    "flat"). draft_lm: a PagedLM draft (trees need the paged form's mask input)."""
    if not getattr(draft_lm, "tree", False):
        raise EdgespecError("tree simulation needs the draft in the paged form (an OpenVINO IR folder on CPU)")
    draft = CountedCalls(draft_lm)
    draft_price = curve_pricer(draft_curve, draft_scale)
    rows = {}
    for budget in budgets:
        if budget < 1:
            raise EdgespecError(f"a tree budget must be at least 1 node, got {budget}")
        calls = [replay_answer(draft, prompt, answer, budget) for prompt, answer in samples]
        steps = [c for answer in calls for c in answer]
        row = {"budget": budget, "rounds_width": tree_width(budget),
               "tokens_per_target_call": sum(c.new_tokens for c in steps) / max(1, len(steps))}
        for name, curve in curves.items():
            if budget + 1 > max(curve):
                raise EdgespecError(f"a {budget}-node tree needs the cost curve to reach {budget + 1} tokens "
                                    f"(it reaches {max(curve)})")
            row[name] = priced(calls, curve_pricer(curve), draft_price)
        rows[f"tree {budget}"] = row
    return rows
