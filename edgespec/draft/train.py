"""Training loops for FastDraft (torch): pretrain on corpus tokens, align on target-written answers.

One loop serves both: batches of fixed-length windows, AdamW, cosine schedule, a checkpoint every
`save_every` steps (atomic, with optimizer state and the data cursor) so a killed run resumes at the
step it reached. Every `eval_every` steps it logs held-out loss and greedy acceptance: the share of
positions where the draft's argmax equals the next token of held-out target-written text (for
aligned data that *is* the target's greedy choice given the target's own prefix).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn.functional import cross_entropy, log_softmax

from edgespec.runtime.errors import EdgespecError
from edgespec.draft.model import DraftLM, cosine_lr, save_checkpoint


@dataclass
class TrainSet:
    """Token windows and per-token loss masks (1 = train on predicting this token), optionally with the
    target's top-K next-token distribution per position (token-level distillation; -inf where absent)."""
    tokens: np.ndarray  # [N, T+1] int64
    mask: np.ndarray  # [N, T] float32, aligned with targets tokens[:, 1:]
    soft_ids: np.ndarray | None = None  # [N, T, K] int32 target ids
    soft_logp: np.ndarray | None = None  # [N, T, K] float16 target log-probs

    def __len__(self) -> int:
        return len(self.tokens)

    def batch(self, idx: np.ndarray) -> tuple:
        soft = None
        if self.soft_ids is not None:
            soft = (torch.from_numpy(self.soft_ids[idx]).long(), torch.from_numpy(self.soft_logp[idx].astype(np.float32)))
        return torch.from_numpy(self.tokens[idx]), torch.from_numpy(self.mask[idx]), soft

    def __add__(self, other: TrainSet) -> TrainSet:
        """Concatenate; windows of a set without teacher distributions get none (-inf log-probs)."""
        sets = (self, other)
        if all(s.soft_ids is None for s in sets):
            return TrainSet(np.concatenate([s.tokens for s in sets]), np.concatenate([s.mask for s in sets]))
        k = next(s.soft_ids.shape[2] for s in sets if s.soft_ids is not None)
        ids = [s.soft_ids if s.soft_ids is not None else np.zeros((*s.mask.shape, k), np.int32) for s in sets]
        logp = [s.soft_logp if s.soft_logp is not None else np.full((*s.mask.shape, k), -np.inf, np.float16)
                for s in sets]
        return TrainSet(np.concatenate([s.tokens for s in sets]), np.concatenate([s.mask for s in sets]),
                        np.concatenate(ids), np.concatenate(logp))


def windows_from_stream(stream: np.ndarray, length: int) -> TrainSet:
    """Cut a token stream into non-overlapping windows of length+1 (every target token trained)."""
    n = (len(stream) - 1) // length
    if n < 1:
        raise EdgespecError(f"corpus too small: {len(stream)} tokens for windows of {length}")
    idx = np.arange(n)[:, None] * length + np.arange(length + 1)[None, :]
    toks = stream.astype(np.int64)[idx]
    return TrainSet(toks, np.ones((n, length), np.float32))


def add_corpus_windows(train_set: TrainSet, stream: np.ndarray, length: int, count: int) -> TrainSet:
    """`train_set` plus `count` windows of a corpus token stream, picked at random (seed 0)."""
    corpus = windows_from_stream(stream, length)
    pick = np.random.default_rng(0).permutation(len(corpus))[:count]
    return train_set + TrainSet(corpus.tokens[pick], corpus.mask[pick])


def windows_from_pairs(pairs: list[tuple[list[int], list[int]]], length: int, pad: int) -> TrainSet:
    """Prompt+answer samples, exactly one window per pair in order (left-truncated prompt), loss on the
    answer tokens only (an empty answer trains nothing; keeping its window keeps row i = pair i)."""
    toks, masks = [], []
    for prompt, answer in pairs:
        seq = (prompt + answer)[-(length + 1):]
        n_answer = min(len(answer), len(seq) - 1)
        row = np.full(length + 1, pad, np.int64)
        row[:len(seq)] = seq
        m = np.zeros(length, np.float32)
        m[len(seq) - 1 - n_answer:len(seq) - 1] = 1.0
        toks.append(row)
        masks.append(m)
    if not any(m.any() for m in masks):
        raise EdgespecError("no usable prompt/answer pairs")
    return TrainSet(np.stack(toks), np.stack(masks))


def to_head(targets: torch.Tensor, inverse: torch.Tensor | None) -> torch.Tensor:
    """Target ids -> head indices; ids outside a reduced head become -100 (ignored)."""
    return targets if inverse is None else inverse[targets]


def inverse_map(vocab_map: np.ndarray | None, vocab: int) -> torch.Tensor | None:
    if vocab_map is None:
        return None
    inv = torch.full((vocab,), -100, dtype=torch.long)
    inv[torch.from_numpy(np.asarray(vocab_map, np.int64))] = torch.arange(len(vocab_map))
    return inv


def batch_loss(model: DraftLM, toks: torch.Tensor, mask: torch.Tensor, inverse: torch.Tensor | None,
               soft: tuple[torch.Tensor, torch.Tensor] | None = None, soft_weight: float = 0.0
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Masked cross-entropy; also (correct, counted) greedy-match counts over every masked target token.

    A target outside the reduced head counts as a miss for acceptance but is left out of the loss.
    With `soft` (target top-K ids and log-probs), positions that have them mix in `soft_weight` of the
    cross-entropy against the target's distribution, renormalised over the top-K ids the head holds.
    """
    logits = model(toks[:, :-1])
    tgt = to_head(toks[:, 1:], inverse)
    keep = (mask > 0) & (tgt >= 0)
    hard = cross_entropy(logits[keep], tgt[keep]) if keep.any() else logits.sum() * 0
    loss = hard
    if soft is not None and soft_weight > 0:
        ids, logp = soft
        head = to_head(ids, inverse)
        weight = torch.where(head >= 0, logp.exp(), torch.zeros_like(logp))  # -inf log-prob: no teacher
        total = weight.sum(-1)
        has = (mask > 0) & (total > 0)
        if has.any():
            p = weight[has] / total[has, None]
            log_q = log_softmax(logits[has], -1).gather(-1, head[has].clamp(min=0))
            loss = (1 - soft_weight) * hard + soft_weight * -(p * log_q).sum(-1).mean()
    correct = ((logits.argmax(-1) == tgt) & keep).sum()
    return loss, correct, (mask > 0).sum()


@torch.no_grad()
def evaluate(model: DraftLM, data: TrainSet, inverse: torch.Tensor | None, batch: int = 8, device: str = "cpu",
             amp: bool = False) -> dict:
    model.eval()
    losses, correct, counted = [], 0, 0
    for i in range(0, len(data), batch):
        toks, mask, _ = data.batch(np.arange(i, min(i + batch, len(data))))
        with autocast(device, amp):
            loss, c, n = batch_loss(model, toks.to(device), mask.to(device), inverse)
        losses.append(float(loss) * int(n))
        correct += int(c)
        counted += int(n)
    model.train()
    return {"val_loss": sum(losses) / max(1, counted), "acceptance": correct / max(1, counted)}


def autocast(device: str, amp: bool):
    """bf16 autocast on `device` when amp, else a no-op context."""
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16, enabled=amp)


def held_out(key: str, percent: int) -> bool:
    """Held-out split by a hash of the answer's id: it stays put when later runs see more answers, so an
    answer held out once is never trained on (align and distill split alike)."""
    return int(hashlib.sha1(key.encode()).hexdigest()[:8], 16) % 100 < percent


def split_held_out(rows: list[dict], percent: int) -> tuple[list[dict], list[dict]]:
    """(training rows, held-out rows) of answer rows, split by `held_out` on their ids."""
    # Ordered by a hash of the id, not by file order: synthesis may still be appending to the set.
    rows = sorted(rows, key=lambda r: hashlib.sha1(r["id"].encode()).hexdigest())
    val_rows = [r for r in rows if held_out(r["id"], percent)]
    if not val_rows or len(val_rows) == len(rows):
        raise EdgespecError(f"--val-percent {percent} leaves no held-out or no training answers")
    val_ids = {r["id"] for r in val_rows}
    return [r for r in rows if r["id"] not in val_ids], val_rows


OnlineTeacher = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def train(model: DraftLM, train_set: TrainSet, val_set: TrainSet, vocab_map: np.ndarray | None, out_dir: Path,
          steps: int, batch: int, lr: float, warmup: int = 20, save_every: int = 50, eval_every: int = 50,
          state: dict | None = None, optimizer_state: dict | None = None, freeze_embedding: bool = True,
          on_step: Callable[[int, dict], None] | None = None, seed: int = 0, soft_weight: float = 0.0,
          device: str = "cpu", amp: bool = False, teacher: OnlineTeacher | None = None, deadline: float | None = None,
          eval_batch: int = 8) -> dict:
    """Run (or resume) training to `steps`; writes out_dir/last.pt and appends out_dir/log.jsonl.

    `teacher` (token windows [B, T] -> the target's top-K ids and log-probs [B, T, K]) supplies the soft
    targets online instead of the set's cached ones. With `deadline` (time.time()), the run is shortened
    after its first steps so that it ends by then; the warm-up must outlast those steps so the
    learning-rate schedule is unchanged by it.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    state = dict(state or {})
    step = int(state.get("step", 0))
    model.token_embd.weight.requires_grad_(not freeze_embedding)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.95), weight_decay=0.0)
    if optimizer_state:
        opt.load_state_dict(optimizer_state)
    inverse = inverse_map(vocab_map, model.cfg.target_vocab)
    inverse = inverse.to(device) if inverse is not None else None
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(len(train_set)) for _ in range(steps * batch // len(train_set) + 2)])
    log_path = out_dir / "log.jsonl"
    if step == 0:
        first = {"step": 0, "tokens": 0, "elapsed_s": 0.0} | evaluate(model, val_set, inverse, eval_batch, device, amp)
        _append(log_path, first)
        if on_step:
            on_step(0, first)
    elapsed = float(state.get("elapsed_s", 0.0))
    tokens_seen = int(state.get("tokens", 0))
    model.train()
    t_last = time.time()
    # Step time is measured over steps 10..30 of this run: the first steps also pay for allocator and
    # kernel warm-up, which made a deadline end a GPU run with half its time unused.
    calibrate, first_step, t_first = (min(30, max(2, warmup)) // 3, min(30, max(2, warmup))), step, time.time()
    while step < steps:
        idx = order[step * batch:(step + 1) * batch]
        toks, mask, soft = train_set.batch(idx)
        toks, mask = toks.to(device), mask.to(device)
        if teacher is not None:
            soft = teacher(toks[:, :-1])
        elif soft is not None:
            soft = (soft[0].to(device), soft[1].to(device))
        for group in opt.param_groups:
            group["lr"] = cosine_lr(step, steps, lr, warmup)
        with autocast(device, amp):
            loss, _, n = batch_loss(model, toks, mask, inverse, soft, soft_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        tokens_seen += int(n)
        if deadline is not None and step - first_step == calibrate[0]:
            t_first = time.time()
        if deadline is not None and step - first_step == calibrate[1]:
            per_step = (time.time() - t_first) / (calibrate[1] - calibrate[0]) * 1.1  # a tenth more for evaluations
            steps = min(steps, step + max(1, int((deadline - time.time()) / per_step)))
        now = time.time()
        elapsed += now - t_last
        t_last = now
        row = {"step": step, "loss": float(loss.detach()), "tokens": tokens_seen, "elapsed_s": round(elapsed, 1)}
        if step % eval_every == 0 or step == steps:
            row |= evaluate(model, val_set, inverse, eval_batch, device, amp)
            t_last = time.time()  # evaluation time is not training time
            if row["acceptance"] > float(state.get("best_acceptance", -1.0)):
                # small alignment sets overfit: keep the checkpoint with the best held-out greedy match
                state["best_acceptance"] = row["acceptance"]
                save_checkpoint(out_dir / "best.pt", model, None,
                                {"step": step, "tokens": tokens_seen, "elapsed_s": elapsed, "steps": steps,
                                 "best_acceptance": row["acceptance"]}, vocab_map)
        if step % save_every == 0 or step == steps:
            save_checkpoint(out_dir / "last.pt", model, opt,
                            {"step": step, "tokens": tokens_seen, "elapsed_s": elapsed, "steps": steps,
                             "best_acceptance": state.get("best_acceptance", -1.0)}, vocab_map)
        _append(log_path, row)
        if on_step:
            on_step(step, row)
    return {"step": step, "tokens": tokens_seen, "elapsed_s": elapsed}


def _append(path: Path, row: dict) -> None:
    with path.open("a") as f:
        f.write(json.dumps(row) + "\n")


def read_log(path: Path) -> list[dict]:
    """Rows of a run's log; rows that a killed run wrote after its last checkpoint are superseded by the
    resumed run's rows for the same steps."""
    if not path.exists():
        return []
    rows: list[dict] = []
    for line in path.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            while rows and rows[-1]["step"] >= row["step"]:
                rows.pop()
            rows.append(row)
    return rows
