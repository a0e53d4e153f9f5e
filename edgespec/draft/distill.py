"""Online distillation on a GPU: the target itself, loaded from its GGUF into torch, writes the answers
and gives its next-token distribution on every trained token.

The CPU recipe (`synthesize` with the OpenVINO target, then `align` on the cached answers) gets about
400k target tokens per hour out of two cores. On one GPU the same target writes that many in seconds,
so the draft can learn from far more of the target's own text, and from its distribution rather than
a cached top-K. This side needs torch, numpy and gguf only (no OpenVINO): the prompts arrive already
tokenized, saved by `save_token_lists` (`draft pack-prompts`) where the target's OpenVINO tokenizer is.

The torch target is the GGUF's weights dequantized, not the OpenVINO IR the runtime decodes with, so
its greedy answers can part from the IR's at near-ties; `draft accept` on the IR's own answers is
the measure that counts, after export.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.nn.functional import linear, log_softmax

from edgespec.runtime.errors import EdgespecError
from edgespec.draft.model import DraftLM, read_gguf_model
from edgespec.draft.train import add_corpus_windows, autocast, held_out, train, windows_from_pairs


# --- prompts, tokenized where the OpenVINO tokenizer is ---------------------------------------------

def save_token_lists(path: Path, keys: list[str], token_ids: list[list[int]]) -> None:
    """Token lists under stable keys in one compressed file: prompts (chat format already applied) or answers."""
    if len(keys) != len(token_ids) or len(set(keys)) != len(keys):
        raise EdgespecError("token lists need one unique key each")
    flat = np.concatenate([np.asarray(t, np.int64) for t in token_ids]) if token_ids else np.zeros(0, np.int64)
    dtype = np.uint16 if not flat.size or flat.max() < 2 ** 16 else np.uint32
    offsets = np.cumsum([0] + [len(t) for t in token_ids]).astype(np.int64)
    np.savez_compressed(path, keys=np.array(keys, dtype=str), flat=flat.astype(dtype), offsets=offsets)


def read_token_lists(path: Path) -> tuple[list[str], list[np.ndarray]]:
    if not Path(path).is_file():
        raise EdgespecError(f"token list file not found: {path}")
    try:
        with np.load(path) as z:
            keys, flat, offsets = [str(k) for k in z["keys"]], z["flat"].astype(np.int64), z["offsets"]
    except Exception as exc:  # numpy raises several kinds for a damaged or foreign file
        raise EdgespecError(f"{path} is not a token list file ({exc.__class__.__name__}); "
                            "`edgespec draft pack-prompts` writes one") from None
    return keys, [flat[offsets[i]:offsets[i + 1]] for i in range(len(keys))]


# --- the target in torch ------------------------------------------------------------------------------

@torch.no_grad()
def greedy_answers(model: DraftLM, prompts: list[np.ndarray], max_new_tokens: int, stop_id: int, batch: int,
                   deadline: float | None = None, batch_tokens: int = 1 << 18) -> list[list[int] | None]:
    """Greedy answers with a KV cache, prompts batched by length (left-padded; at most `batch` rows and
    about `batch_tokens` cache slots per batch). An answer ends with stop_id when the model stopped;
    None for prompts not reached before `deadline` (time.time())."""
    device = model.token_embd.weight.device
    order = np.argsort([len(p) for p in prompts], kind="stable")
    answers: list[list[int] | None] = [None] * len(prompts)
    first = 0
    while first < len(order):
        if deadline is not None and time.time() > deadline:
            break
        picked = order[first:first + batch]
        width = len(prompts[picked[-1]])  # sorted by length: the last is the longest
        picked = picked[:max(1, batch_tokens // (width + max_new_tokens))]
        first += len(picked)
        rows = [np.asarray(prompts[i], np.int64) for i in picked]
        pad = torch.tensor([width - len(r) for r in rows])
        ids = torch.full((len(rows), width), stop_id, dtype=torch.long)
        key_ok = torch.ones((len(rows), width + max_new_tokens), dtype=torch.bool)
        for j, r in enumerate(rows):
            ids[j, pad[j]:] = torch.from_numpy(r)
            key_ok[j, :pad[j]] = False
        positions = (torch.arange(width)[None, :] - pad[:, None]).clamp(min=0)
        ids, key_ok, positions, pad = ids.to(device), key_ok.to(device), positions.to(device), pad.to(device)
        cache = model.new_cache(len(rows), width + max_new_tokens)
        logits = model.forward_cached(ids, positions, key_ok, cache, 0)
        out = torch.empty((len(rows), max_new_tokens), dtype=torch.long, device=device)
        done = torch.zeros(len(rows), dtype=torch.bool, device=device)
        made = 0
        for step in range(max_new_tokens):
            token = logits.argmax(-1)
            out[:, step] = token
            made += 1
            done |= token == stop_id
            if step == max_new_tokens - 1 or (step % 8 == 7 and bool(done.all())):
                break
            position = (width - pad + step)[:, None]
            logits = model.forward_cached(token[:, None], position, key_ok, cache, width + step)
        for j, i in enumerate(picked):
            answer = out[j, :made].tolist()
            answers[i] = answer[:answer.index(stop_id) + 1] if stop_id in answer else answer
    return answers


def online_teacher(target: DraftLM, vocab_map: np.ndarray | None, top: int, amp: bool
                   ) -> Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """Token windows -> the target's top-`top` next-token ids and log-probs, over the draft head's rows
    (a reduced head can only learn the mass on its own rows, so the distribution is renormalised there)."""
    device = target.token_embd.weight.device
    rows = torch.from_numpy(np.asarray(vocab_map, np.int64)).to(device) if vocab_map is not None else None
    head = target.output.weight if rows is None else target.output.weight[rows]  # only the rows the draft has

    @torch.no_grad()
    def teach(ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with autocast(device.type, amp):
            logits = linear(target.hidden_states(ids), head)
        logp = log_softmax(logits.float(), -1)
        best, where = logp.topk(top, dim=-1)
        return (where if rows is None else rows[where]), best

    return teach


def answers_file(path: Path, keys: list[str], answers: list[list[int] | None]) -> int:
    """Save the answers written so far (key -> ids) for reuse on a CPU run; returns how many."""
    done = [(k, a) for k, a in zip(keys, answers) if a is not None]
    save_token_lists(path, [k for k, _ in done], [a for _, a in done])
    return len(done)


def run_distill(target_gguf: Path, prompts_path: Path, out: Path, layers: list[int], head_map: np.ndarray | None,
                device: str, minutes: float, answer_minutes: float, max_new_tokens: int, stop_id: int,
                gen_batch: int = 512, seq: int = 512, batch: int = 64, lr: float = 3e-4, distill_weight: float = 0.5,
                top: int = 64, val_percent: int = 5, eval_every: int = 200, corpus: np.ndarray | None = None,
                chunk: int = 4096, max_steps: int = 20000, init: Path | None = None, answers_path: Path | None = None,
                gen_batch_tokens: int = 1 << 18, log: Callable[[str], None] = print) -> dict:
    """Answer the packed prompts with the target (until answer_minutes; those in `answers_path`, an earlier
    run's answers.npz, are not asked again), then train a draft on the answers (plus corpus windows) with
    online soft labels until `minutes`. The draft is `init` (a checkpoint) or made of the target's `layers`.
    Answers are saved after every chunk and the draft every 500 steps (out/last.pt); a run cut short goes on
    as a new run with `answers_path` and `init` pointing there."""
    from edgespec.draft.model import draft_from_target, load_checkpoint

    t0 = time.time()
    out.mkdir(parents=True, exist_ok=True)
    amp = torch.device(device).type == "cuda"
    if amp:  # TF32 matmuls for the answers: far below the IR-vs-GGUF differences already there
        torch.backends.cuda.matmul.allow_tf32 = True
    cfg, weights = read_gguf_model(target_gguf)
    target = DraftLM(cfg)  # the whole target, float32, for answers and soft labels
    target.load_gguf_weights(weights)
    target = target.to(device).eval().requires_grad_(False)
    layers = [i + cfg.layers if -cfg.layers <= i < 0 else i for i in layers]  # -1: the last layer
    if init is not None:
        draft, _, head_map, _ = load_checkpoint(init)
        draft = draft.to(device)
    else:
        draft = draft_from_target(cfg, weights, layers, head_map).to(device)
    del weights
    keys, prompts = read_token_lists(prompts_path)
    log(f"target {cfg.layers} layers on {device}; {len(prompts)} prompts; loaded in {time.time() - t0:.0f} s")

    answers: list[list[int] | None] = [None] * len(prompts)
    if answers_path is not None:
        earlier = dict(zip(*read_token_lists(answers_path)))
        answers = [earlier[k].tolist() if k in earlier else None for k in keys]
    todo = [i for i, a in enumerate(answers) if a is None]
    n_answers = answers_file(out / "answers.npz", keys, answers)  # the run's folder holds every answer it uses
    # The answer budget starts once the models are loaded: a slow load must not eat the time for answers.
    answer_deadline = time.time() + answer_minutes * 60
    for first in range(0, len(todo), chunk):  # in the packed order: earlier prompts are answered first
        if time.time() > answer_deadline:
            break
        picked = todo[first:first + chunk]
        part = greedy_answers(target, [prompts[i] for i in picked], max_new_tokens, stop_id, gen_batch,
                              deadline=answer_deadline, batch_tokens=gen_batch_tokens)
        for i, answer in zip(picked, part):
            answers[i] = answer
        # saved after every chunk: an interrupted run loses at most one chunk (rerun with --answers)
        n_answers = answers_file(out / "answers.npz", keys, answers)
        log(f"answers: {n_answers}/{len(prompts)} after {time.time() - t0:.0f} s")
    answer_tokens = sum(len(a) for a in answers if a is not None)

    pairs = {True: [], False: []}
    for key, prompt, answer in zip(keys, prompts, answers):
        if answer:
            pairs[held_out(key, val_percent)].append((prompt.tolist(), answer))
    if not pairs[True] or not pairs[False]:
        raise EdgespecError(f"{n_answers} answers leave no held-out or no training answers")
    train_set = windows_from_pairs(pairs[False], seq, pad=stop_id)
    val_set = windows_from_pairs(pairs[True][:2000], seq, pad=stop_id)
    if corpus is not None and len(corpus) > seq + 1:  # code replay, with the target's soft labels too
        train_set = add_corpus_windows(train_set, corpus, seq, len(train_set) // 3)
    log(f"training on {len(pairs[False])} answers + {len(train_set) - len(pairs[False])} corpus windows "
        f"({int(train_set.mask.sum())} tokens), {len(pairs[True])} held out")

    def on_step(step: int, row: dict) -> None:
        if "acceptance" in row:
            log(f"step {step}: " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                             for k, v in row.items() if k != "step"))

    result = train(draft, train_set, val_set, head_map, out, steps=max_steps, batch=batch, lr=lr, warmup=100,
                     save_every=500, eval_every=eval_every, on_step=on_step, soft_weight=distill_weight,
                     device=device, amp=amp, teacher=online_teacher(target, head_map, top, amp),
                     deadline=t0 + minutes * 60, eval_batch=64)
    summary = {"answers": n_answers, "answer_tokens": answer_tokens, "prompts": len(prompts),
               "held_out": len(pairs[True]), "trained_windows": len(train_set), "device": device,
               "wall_s": round(time.time() - t0, 1), **result}
    (out / "distill.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
