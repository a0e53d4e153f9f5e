"""Is a chain call on the tree-capable model (qq_bias inputs, fed empty) as fast as on the plain paged model?

The SmolLM2 target (exact kernels, as edgespec compiles it) in both forms, one call of n new tokens after a
200-token past, the two models alternated call by call (order flipped every repeat), median of 41 calls each;
plus a tree-masked call of the same width on the qq_bias model.

    flock /tmp/edgespec-bench.lock python docs/results/trees-smollm2/chain_cost.py > docs/results/trees-smollm2/chain_cost.txt
"""

import statistics
import time

import numpy as np
import openvino as ov
from openvino._offline_transformations import paged_attention_transformation

import edgespec
from edgespec.runtime.devices import cpu_config
from edgespec.runtime.model import head_matmul, read_ir, slice_head_input
from edgespec.runtime.paged import PagedLM
from edgespec.runtime.tree import call_mask

PAST, REPEATS = 200, 41


def load(xml: str, qq_bias: bool) -> PagedLM:
    model = read_ir(xml)
    paged_attention_transformation(model, allow_qq_bias=qq_bias)
    head = head_matmul(model)
    slice_head_input(model, head, 0 if head.input_value(0).get_partial_shape()[1].is_static else 1)
    model.validate_nodes_and_infer_types()
    return PagedLM(ov.Core().compile_model(model, "CPU", cpu_config(True)), 2048)


def call(lm: PagedLM, n: int, tree: bool) -> float:
    new = list(range(300, 300 + n))
    parents = [-1] + [(i - 1) // 2 for i in range(1, n - 1)]  # the root token, then a binary tree of n - 1 nodes
    depths = []
    for p in parents:
        depths.append(0 if p < 0 else depths[p] + 1)
    t = time.perf_counter()
    if tree:
        lm.forward_tree(new, np.array([PAST] + [PAST + 1 + d for d in depths]), call_mask(1, parents), last=n)
    else:
        lm.forward(new, last=n)
    seconds = time.perf_counter() - t
    lm.rollback(PAST)
    return seconds * 1000


def main() -> None:
    xml = str(edgespec.default_pair() / "target" / "openvino_model.xml")
    plain, qq = load(xml, False), load(xml, True)
    assert not plain.tree and qq.tree
    past = list(np.resize(np.arange(100, 1000, 7), PAST))
    for lm in (plain, qq):
        lm.forward(past, last=1)
    print(f"SmolLM2 target, exact kernels, {PAST}-token past; median ms of {REPEATS} calls, alternated")
    print("  n | plain paged, chain | qq_bias model, chain | ratio | qq_bias model, tree mask")
    for n in (1, 2, 3, 4, 6, 8, 16, 32):
        times = {"plain": [], "qq": [], "tree": []}
        for rep in range(REPEATS + 2):
            order = [("plain", plain, False), ("qq", qq, False), ("tree", qq, True)]
            for name, lm, tree in (order if rep % 2 else order[::-1]):
                times[name].append(call(lm, n, tree and n > 1))
        m = {k: statistics.median(v[2:]) for k, v in times.items()}
        print(f"{n:3d} | {m['plain']:7.1f} | {m['qq']:7.1f} | {m['qq'] / m['plain']:.3f} | {m['tree']:7.1f}")


if __name__ == "__main__":
    main()
