"""Token-level distillation targets: the OpenVINO target's top-K next-token log-probabilities on answer windows.

Sequence-level distillation (training on the target's greedy answers) teaches one token per position;
the target's distribution teaches which near-misses it would also accept, which helps more per trained
token. The teacher is the target IR itself: a torch copy of a GGUF target is not the model the runtime
verifies with (for SmolLM2's Q4_1 greedy tokens agreed on only 84% of positions). It runs with the CPU's
default kernels, like the synthesis that wrote the answers: on SmolLM2 answers they were 1.6x faster than the
runtime's exact kernels at KL(exact || default) = 0.003 nats per token (top-1 agreement 98%).
Distributions are computed once per answer and cached in shards under the run folder, so a killed run,
or a rerun with more answers, only computes what is missing.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgespec.runtime.errors import EdgespecError


class Teacher:
    """One stateful infer request on the target; scores a token window in one call."""

    def __init__(self, target_dir: Path, threads: int = 0, exact: bool = False):
        import openvino as ov

        from edgespec.runtime.devices import compile_model

        xml = Path(target_dir) / "openvino_model.xml"
        if not xml.is_file():
            raise EdgespecError(f"{xml} not found: --target must be the target's IR folder")
        extra = {"INFERENCE_NUM_THREADS": threads} if threads else None
        compiled = compile_model(ov.Core(), str(xml), "CPU", exact=exact, extra=extra)
        self.request = compiled.create_infer_request()
        self.inputs = {port.get_any_name() for port in compiled.inputs}

    def logits(self, tokens: np.ndarray | list[int]) -> np.ndarray:
        """Logits [T, V] after every prefix of `tokens`, from a fresh state."""
        return all_position_logits(self.request, self.inputs, tokens)

    def top_logprobs(self, tokens: np.ndarray | list[int], top: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-`top` (ids, log-probs) of the next token after every prefix of `tokens` ([T] -> [T, top])."""
        logits = self.logits(tokens)
        ids = np.argpartition(-logits, top, axis=-1)[:, :top]
        peak = logits.max(-1, keepdims=True)
        log_z = peak + np.log(np.exp(logits - peak).sum(-1, keepdims=True))
        return ids.astype(np.int32), (np.take_along_axis(logits, ids, -1) - log_z).astype(np.float16)


def all_position_logits(request, input_names: set[str], tokens: np.ndarray | list[int]) -> np.ndarray:
    n = len(tokens)
    request.reset_state()
    inputs = {"input_ids": np.asarray(tokens, np.int64).reshape(1, n), "attention_mask": np.ones((1, n), np.int64),
              "position_ids": np.arange(n, dtype=np.int64).reshape(1, n)}
    if "beam_idx" in input_names:
        inputs["beam_idx"] = np.zeros(1, np.int32)
    request.infer(inputs)
    logits = np.array(request.get_tensor("logits").data[0], np.float32)
    if logits.shape[0] != n:
        raise EdgespecError(f"the model returns logits for {logits.shape[0]} of {n} positions; "
                            "this needs a model that returns every position's logits")
    return logits


def load_cache(folder: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """answer id -> (ids [T, K], log-probs [T, K]) from every shard in `folder`."""
    cache = {}
    for shard in sorted(folder.glob("shard-*.npz")):
        try:
            with np.load(shard) as z:
                for i, key in enumerate(z["keys"]):
                    cache[str(key)] = (z["ids"][i], z["logp"][i])
        except (OSError, ValueError, KeyError) as exc:
            raise EdgespecError(f"{shard} is unreadable ({exc.__class__.__name__}): delete it to recompute") from None
    return cache


def _write_shard(folder: Path, keys: list[str], ids: list[np.ndarray], logp: list[np.ndarray]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    index = len(list(folder.glob("shard-*.npz")))
    # np.savez insists on a .npz suffix; the temporary name must still not match load_cache's "shard-*.npz",
    # or a shard cut short by a kill would be read (or counted) as a whole one.
    tmp = folder / f"tmp-shard-{index:05d}.npz"
    np.savez(tmp, keys=np.array(keys), ids=np.stack(ids), logp=np.stack(logp))
    os.replace(tmp, folder / f"shard-{index:05d}.npz")  # a shard appears whole or not at all


def teacher_targets(keys: list[str], windows: np.ndarray, mask: np.ndarray, target_dir: Path, folder: Path,
                    top: int, threads: int = 0, shard_size: int = 64,
                    on_progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Teacher (ids, log-probs) [N, T, top] aligned with `windows` [N, T+1] (one answer window per key).

    Positions outside `mask` get log-prob -inf (no teacher there)."""
    cache = load_cache(folder)
    stale = [k for k in keys if k in cache and cache[k][0].shape != (windows.shape[1] - 1, top)]
    if stale:
        raise EdgespecError(f"{folder} holds distributions for another --seq or --distill-top: delete it")
    missing = [i for i, k in enumerate(keys) if k not in cache]
    if missing:
        teacher = Teacher(target_dir, threads)
        new_keys, new_ids, new_logp = [], [], []
        for done, i in enumerate(missing, 1):
            trained = np.nonzero(mask[i])[0]
            length = int(trained.max()) + 1 if len(trained) else 1  # answer windows are padded on the right
            ids, logp = teacher.top_logprobs(windows[i, :length], top)
            pad = windows.shape[1] - 1 - length
            new_ids.append(np.pad(ids, ((0, pad), (0, 0))))
            new_logp.append(np.pad(logp, ((0, pad), (0, 0)), constant_values=-np.inf))
            new_keys.append(keys[i])
            if len(new_keys) == shard_size or done == len(missing):
                _write_shard(folder, new_keys, new_ids, new_logp)
                cache.update({k: (a, b) for k, a, b in zip(new_keys, new_ids, new_logp)})
                new_keys, new_ids, new_logp = [], [], []
            if on_progress:
                on_progress(done, len(missing))
    ids = np.stack([cache[k][0] for k in keys])
    logp = np.stack([cache[k][1] for k in keys])
    logp[mask <= 0] = -np.inf
    return ids, logp
