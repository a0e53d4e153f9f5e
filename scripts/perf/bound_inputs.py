"""A PagedLM call's cost with its inputs handed to start_async (the binding's data dispatcher) against inputs
written into tensors bound to the request (runtime/bound_inputs.py), docs/performance.md Q11. One-token calls of
the default pair's draft at past 150, the two ways interleaved in rounds; the outputs must be bitwise equal. A
timing: run it under the bench lock.

    flock /tmp/edgespec-bench.lock python scripts/perf/bound_inputs.py
"""
import os
import statistics
import time

import numpy as np
import openvino as ov

from edgespec.runtime.devices import cpu_config
from edgespec.runtime.manifest import load_pair
from edgespec.runtime.model import read_ir
from edgespec.runtime.paged import NO_TREE, PagedLM, to_paged

pair = load_pair(os.path.expanduser("~/.cache/edgespec/pairs/smollm2-int8-v1"))
model = read_ir(pair.draft.xml)
to_paged(model)
lm = PagedLM(ov.Core().compile_model(model, "CPU", cpu_config(False)), 2048)
ids = [int(i) for i in np.random.default_rng(0).integers(100, 8000, 200)]
lm.forward(ids[:150], last=1)
request = lm.request


def inputs_for(past: int) -> dict:
    blocks = -(-(past + 1) // lm.block_size)
    inputs = {"input_ids": np.array([ids[past]], np.int64), "position_ids": np.array([past], np.int64),
              "past_lens": np.array([past], np.int32), "subsequence_begins": np.array([0, 1], np.int32),
              "block_indices": lm.block_ids[:blocks], "block_indices_begins": np.array([0, blocks], np.int32),
              "max_context_len": np.array(past + 1, np.int32), "logits_count": np.array([1], np.int64)}
    return inputs | NO_TREE if lm.tree_inputs else inputs


def dispatched(inputs: dict) -> np.ndarray:
    lm.inputs.forget()  # the request's tensors are replaced: feed must set its own again
    request.start_async(inputs, share_inputs=True)
    request.wait()
    return np.array(request.get_tensor("logits").data[0, -1:])


def bound(inputs: dict) -> np.ndarray:
    lm.inputs.feed(request, inputs)
    request.start_async()
    request.wait()
    return np.array(request.get_tensor("logits").data[0, -1:])


times: dict[str, list[float]] = {"dispatcher": [], "bound": []}
outputs: dict[str, np.ndarray] = {}
for _ in range(6):
    for name, call in (("dispatcher", dispatched), ("bound", bound)):
        for i in range(60):
            inputs = inputs_for(150 + i % 10)
            start = time.perf_counter()
            out = call(inputs)
            if i >= 5:
                times[name].append(time.perf_counter() - start)
            if i == 12:
                outputs.setdefault(name, out)
assert np.array_equal(outputs["dispatcher"], outputs["bound"]), "bound inputs changed the logits"
for name, values in times.items():
    print(f"{name}: median {statistics.median(values) * 1e3:.3f} ms, p25 {np.percentile(values, 25) * 1e3:.3f} ms")
