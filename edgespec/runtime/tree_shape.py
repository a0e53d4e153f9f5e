"""How big a tree to draft (0: today's chain), from the measured verify cost curve and per-rank acceptance.

Sequoia's model (Chen et al. 2024): the target's pick at a node equals the node's rank-r child with probability
a_r, whatever the depth. A node's chance of being reached is then the product of a_r along its path, and the best
tree of B nodes holds the B most likely nodes (values fall along every path, so best-first growth over ranks finds
it). Expected tokens per call = 1 + that sum; its cost is the target's (B + 1)-token call plus the draft's rounds.
The tuner compares that rate, per budget, with the chain policy's best k on the same cost curve.
"""

from __future__ import annotations

import heapq
import math
import statistics

from edgespec.runtime.draft_length import DraftLength, expected_tokens
from edgespec.runtime.errors import EdgespecError

BUDGETS = (4, 8, 16, 32)
BRANCHING = 4  # children scored per node: the draft's top 4 (rank 5+ is rarely the target's pick)


def parse_tree(value: str | int | None) -> str | int:
    """--tree: "off", "auto", or a node budget N >= 1."""
    if value is None or value == "off" or value == 0:
        return "off"
    if value == "auto":
        return "auto"
    try:
        budget = int(value)
    except (TypeError, ValueError):
        raise EdgespecError(f"--tree takes auto, off or a node budget, got {value!r}") from None
    if budget < 1:
        raise EdgespecError(f"a tree budget must be at least 1 node, got {budget}")
    return budget


def tree_width(budget: int) -> int:
    """Nodes added per draft round: about eight rounds for any budget, so a tree can reach depth eight (a tree is
    no deeper than its rounds). SmolLM2 on HumanEval, 15 nodes: 4.57 tokens per call with five rounds, 5.59 with
    fifteen, a 15-token chain 5.27; MT-bench 2.31-2.37 either way (docs/trees.md)."""
    return max(1, math.ceil(budget / 8))


def expected_tree_tokens(rank_acceptance: list[float], budget: int) -> float:
    """Tokens per call (accepted nodes + the target's own) of the best `budget`-node tree under per-rank acceptance."""
    frontier = [(-a, r) for r, a in enumerate(rank_acceptance)]  # (-reach probability, rank) of depth-0 nodes
    heapq.heapify(frontier)
    total = 0.0
    for _ in range(budget):
        if not frontier:
            break
        neg, _rank = heapq.heappop(frontier)
        total -= neg
        for a in rank_acceptance:  # its children become candidates
            heapq.heappush(frontier, (neg * a, 0))
    return 1.0 + total


class TreeShape:
    """Chooses the node budget per step: a fixed N, or (auto) the budget with the best predicted tokens per second,
    0 when the chain is predicted faster. Auto first probes trees for `probe` steps to measure rank acceptance."""

    def __init__(self, mode: str | int, hold: int = 16, probe: int = 4, probe_budget: int = 8):
        self.mode = mode
        self.hold, self.probe, self.probe_budget = hold, probe, probe_budget
        self.hits = [0.0] * BRANCHING  # decayed: walks that took the rank-r child
        self.visits = [0.0] * BRANCHING  # decayed: walk positions where a rank-r child was there to take
        self.round_cost: float | None = None  # seconds per draft round
        self.call_cost: dict[int, float] = {}  # seconds of a tree verify call, by tokens fed
        self.call_times: dict[int, list[float]] = {}
        self.chain_blocks = 0  # decisions for the chain in a row: every fourth, trees are probed again
        self.current, self.hold_left, self.probed = 0, 0, 0
        self.last_choice: dict = {}

    def restart(self) -> None:
        self.hold_left = 0

    def rank_acceptance(self) -> list[float]:
        # One pseudo-visit at a falling prior, so an unseen rank is not priced as certain or impossible.
        prior = [0.5, 0.15, 0.07, 0.04]
        return [(self.hits[r] + prior[r]) / (self.visits[r] + 1.0) for r in range(BRANCHING)]

    def record(self, ranks: list[int], visited_children: list[int], draft_calls: int, draft_s: float,
               fed: int = 0, target_s: float = 0.0) -> None:
        """One tree step: the rank taken at each accepted node, the children count at each node walked on, and the
        verify call's width (`fed` tokens) and seconds."""
        if fed:  # the median of the last 8 calls of this width: the first call of a new shape is slow
            self.call_times.setdefault(fed, []).append(target_s)
            del self.call_times[fed][:-8]
            self.call_cost[fed] = statistics.median(self.call_times[fed])
        for r in range(BRANCHING):
            self.hits[r] *= 0.95
            self.visits[r] *= 0.95
        for depth, children in enumerate(visited_children):
            for r in range(min(children, BRANCHING)):
                self.visits[r] += 1.0
            if depth < len(ranks) and ranks[depth] < BRANCHING:  # the pick was this rank's child (disjoint events)
                self.hits[ranks[depth]] += 1.0
        per_round = draft_s / max(1, draft_calls)
        self.round_cost = per_round if self.round_cost is None else 0.8 * self.round_cost + 0.2 * per_round

    def tree_rate(self, chain: DraftLength, budget: int, ranks: list[float] | None = None) -> float:
        rounds = 1 + math.ceil(budget / tree_width(budget)) - 1
        draft = rounds * (self.round_cost if self.round_cost is not None else (chain.draft_cost or 0.0))
        # The chain's cost curve, raised by what measured tree calls cost over it (the mask, the wider call).
        extra = [c - chain.target_seconds(n) for n, c in self.call_cost.items()]
        verify = chain.target_seconds(budget + 1) + max(0.0, sum(extra) / len(extra) if extra else 0.0)
        return expected_tree_tokens(ranks or self.rank_acceptance(), budget) / (verify + draft)

    def worth_probing(self, chain: DraftLength) -> bool:
        """Whether a tree could pay here at all: the best budget's predicted rate with the draft's top token kept as
        often as the chain's tokens are and the lower ranks at their (generous) prior, within 10% of the chain's.
        On a steep verify curve (this CPU: 16 tokens cost 3x one) it is not, and the probes' 8-node trees only
        cost time (7% over all sets in the 2026-12-03 bench); on a flat one they are run."""
        ranks = [max(chain.acceptance, 0.5), 0.15, 0.07, 0.04]
        _, best_chain = self.chain_rate(chain)
        return max(self.tree_rate(chain, b, ranks) for b in BUDGETS) >= 0.9 * best_chain

    def chain_rate(self, chain: DraftLength) -> tuple[int, float]:
        d = chain.draft_cost or 0.0
        rates = {k: expected_tokens(chain.acceptance, k) / (chain.target_seconds(k + 1) + k * d)
                 for k in range(0, chain.maximum + 1)}
        k = max(rates, key=rates.get)
        return k, rates[k]

    def budget(self, chain: DraftLength) -> int:
        """The next step's node budget (0: take a chain step)."""
        if self.mode != "auto":
            return int(self.mode)
        if self.probed < self.probe:
            if self.probed == 0 and chain.steady_cost and not self.worth_probing(chain):
                self.probed = self.probe  # measured costs say no tree could pay: decide at the prior (the chain)
            else:
                self.probed += 1
                return self.probe_budget
        if self.hold_left > 0:
            self.hold_left -= 1
            return self.current
        k, best_chain = self.chain_rate(chain)
        rates = {b: self.tree_rate(chain, b) for b in BUDGETS}
        best = max(rates, key=rates.get)
        self.current = best if rates[best] > best_chain else 0
        self.hold_left = self.hold - 1
        self.chain_blocks = self.chain_blocks + 1 if self.current == 0 else 0
        if self.chain_blocks and self.chain_blocks % 4 == 0:
            self.probed = 0  # acceptance by rank drifts with the text: measure it again now and then
        self.last_choice = {"chain_k": k, "chain_rate": best_chain, "tree_rates": rates, "budget": self.current,
                            "rank_acceptance": self.rank_acceptance()}
        return self.current

    def describe(self) -> str:
        """What auto chose last and why, in one line (for the stats and the CLI)."""
        c = self.last_choice
        if not c:
            return f"probing trees of {self.probe_budget} nodes (measuring acceptance by rank)"
        trees = ", ".join(f"{b} nodes {r:.0f}" for b, r in c["tree_rates"].items())
        ranks = ", ".join(f"{a:.2f}" for a in c["rank_acceptance"])
        pick = f"trees of {c['budget']} nodes" if c["budget"] else f"the chain (k = {c['chain_k']})"
        return (f"{pick}: predicted tokens/s chain {c['chain_rate']:.0f}, trees {trees}; "
                f"acceptance by rank {ranks}")
