"""Tree speculation (SpecExec, Svirschevski et al. 2024): draft a tree of likely continuations, verify every node
in one target call, keep the longest path the target agrees with.

The draft grows the tree best-first by cumulative log-probability up to a node budget, adding the `width` best
candidates per round and scoring all of them in one batched draft call. The target sees the tree through the
paged-attention op's qq_bias mask: a node attends to the cached sequence and its own ancestors, at position
(sequence length + depth). The walk then takes the target's own pick at each node (argmax, or a sample from its
distribution) and follows the child holding that token: exact for greedy and lossless for sampling, whatever
the tree, because every kept token is the target's own pick.
"""

from __future__ import annotations

import heapq
import time
from dataclasses import dataclass, field

import numpy as np

from edgespec.runtime.sampling import Warp, probabilities, sample

ROOT = -1  # the parent of depth-0 nodes: the last token of the sequence


@dataclass
class Tree:
    """Drafted nodes in topological order (a parent before its children)."""
    tokens: list[int] = field(default_factory=list)
    parents: list[int] = field(default_factory=list)  # index of the parent node, ROOT for depth 0
    depths: list[int] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)  # cumulative draft log-probability of the path to the node
    ranks: list[int] = field(default_factory=list)  # the node's rank among its parent's children (0: the draft's top)

    def __len__(self) -> int:
        return len(self.tokens)

    def add(self, token: int, parent: int, score: float, rank: int) -> int:
        self.tokens.append(token)
        self.parents.append(parent)
        self.depths.append(0 if parent == ROOT else self.depths[parent] + 1)
        self.scores.append(score)
        self.ranks.append(rank)
        return len(self.tokens) - 1

    def children(self, node: int) -> dict[int, int]:
        """token -> child index, for the children of `node` (ROOT for the depth-0 nodes)."""
        return {self.tokens[i]: i for i, p in enumerate(self.parents) if p == node}

    def path(self, node: int) -> list[int]:
        """Node indices from depth 0 down to `node`."""
        out = []
        while node != ROOT:
            out.append(node)
            node = self.parents[node]
        return out[::-1]


def ancestor_mask(parents: list[int]) -> np.ndarray:
    """[n, n] u8: row i has ones at node i and at its ancestors (parents come before children)."""
    n = len(parents)
    mask = np.zeros((n, n), np.uint8)
    for i, parent in enumerate(parents):
        if parent != ROOT:
            mask[i] = mask[parent]
        mask[i, i] = 1
    return mask


def call_mask(prefix: int, parents: list[int]) -> np.ndarray:
    """The mask of one call feeding `prefix` sequence tokens (causal) followed by the tree's nodes (each seeing the
    whole prefix and its ancestors)."""
    n = prefix + len(parents)
    mask = np.zeros((n, n), np.uint8)
    mask[:prefix, :prefix] = np.tril(np.ones((prefix, prefix), np.uint8))
    mask[prefix:, :prefix] = 1
    mask[prefix:, prefix:] = ancestor_mask(parents)
    return mask


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def feed_tree(lm, prefix: list[int], tree: Tree, last: int) -> np.ndarray:
    """One call: the prefix tokens the cache lacks, then every tree node; logits of the last `last` rows."""
    start = lm.cached
    positions = np.concatenate([np.arange(start, start + len(prefix)),
                                start + len(prefix) + np.asarray(tree.depths, dtype=np.int64)])
    return lm.forward_tree(prefix + tree.tokens, positions, call_mask(len(prefix), tree.parents), last=last)


def grow_tree(draft, sequence: list[int], budget: int, width: int, branching: int) -> tuple[Tree, int, int]:
    """Best-first growth by cumulative draft log-probability: each round adds the `width` best candidates (children
    of scored nodes, `branching` per node), then one draft call scores the whole tree so far (its cached part is
    only `sequence`: every round feeds all nodes again under the tree mask). Stops at `budget` nodes.
    Returns the tree, how many of its first nodes the draft's cache holds after `sequence`, and the draft calls."""
    tree = Tree()
    fed, calls = 0, 1
    candidates: list[tuple[float, int, int, int]] = []  # (-score, parent, token, rank): a max-heap by score

    def push_children(parent: int, logits: np.ndarray, base: float) -> None:
        logp = log_softmax(logits.astype(np.float64))
        top = np.argpartition(-logp, branching)[:branching] if branching < len(logp) else np.arange(len(logp))
        top = top[np.argsort(-logp[top])]
        for rank, index in enumerate(top):
            token = int(draft.vocab_map[index]) if draft.vocab_map is not None else int(index)
            heapq.heappush(candidates, (-(base + logp[index]), parent, token, rank))

    push_children(ROOT, draft.forward(draft.pending(sequence), last=1)[0], 0.0)
    while len(tree) < budget and candidates:
        added, quota = [], min(width, budget - len(tree))
        while candidates and len(added) < quota:
            neg, parent, token, rank = heapq.heappop(candidates)
            added.append(tree.add(token, parent, -neg, rank))
        if len(tree) >= budget:
            break  # the last round's nodes need no scores
        draft.rollback(len(sequence))
        logits = feed_tree(draft, [], tree, last=len(added))
        fed, calls = len(tree), calls + 1
        for row, node in zip(logits, added):
            push_children(node, row, tree.scores[node])
    return tree, fed, calls


def pick_token(logits: np.ndarray, warp: Warp | None, rng: np.random.Generator) -> int:
    """The target's own token at a node: its argmax, or a sample from its warped distribution."""
    if warp is None:
        return int(logits.argmax())
    return sample(probabilities(logits, warp), rng)


def walk(tree: Tree, logits: np.ndarray, warp: Warp | None, rng: np.random.Generator) -> tuple[list[int], int]:
    """Follow the target's picks down the tree. logits: row 0 for the root, row 1 + i for node i.
    Returns the accepted node indices (a path from depth 0) and the target's token after them."""
    path, node = [], ROOT
    while True:
        token = pick_token(logits[node + 1], warp, rng)
        child = tree.children(node).get(token)
        if child is None:
            return path, token
        path.append(child)
        node = child


@dataclass
class TreeStep:
    """What one tree step did, for the loop's stats and the shape policy."""
    drafted: list[int]  # the tree's tokens
    draft_calls: int
    path: list[int]  # accepted node indices
    new_tokens: list[int]
    ranks: list[int]  # rank of each accepted node among its siblings
    visited_children: list[int]  # children count at each node the walk stood on (root first)
    draft_s: float
    target_s: float


def tree_step(target, draft, sequence: list[int], budget: int, width: int, branching: int, warp: Warp | None,
              rng: np.random.Generator, draft_sequence: list[int] | None = None) -> TreeStep:
    """Draft a tree of `budget` nodes, verify it in one target call, keep the accepted path in both caches."""
    draft_sequence = sequence if draft_sequence is None else draft_sequence
    t0 = time.perf_counter()
    tree, fed, draft_calls = grow_tree(draft, draft_sequence, budget, width, branching)
    t1 = time.perf_counter()
    prefix = target.pending(sequence)
    base = target.cached + len(prefix)  # the first node's slot; the root's is base - 1
    logits = feed_tree(target, prefix, tree, last=len(tree) + 1)
    t2 = time.perf_counter()
    path, next_token = walk(tree, logits, warp, rng)
    # The accepted nodes move to follow the sequence, the rest are forgotten (paged: free).
    target.keep_slots(base, [base + i for i in path])
    # The draft keeps the accepted nodes it holds from its last round (a path's nodes ascend, so a prefix of it).
    start = len(draft_sequence)
    draft.keep_slots(start, [start + i for i in path if i < fed])
    visited = [len(tree.children(node)) for node in [ROOT, *path]]
    tokens = [tree.tokens[i] for i in path]
    return TreeStep(tree.tokens, draft_calls, path, tokens + [next_token], [tree.ranks[i] for i in path], visited,
                    t1 - t0, t2 - t1)
