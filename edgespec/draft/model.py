"""The FastDraft draft: a plain llama/qwen2 decoder in torch (nanoGPT style, no transformers).

Weights use GGUF naming and layout end to end (token_embd.weight, blk.N.attn_q.weight, ...,
matrices as [out, in]), so a draft can start from layers of a GGUF (the target's own, or a smaller
model sharing its tokenizer) and be written back with edgespec.export.gguf_llama.write_llama_gguf
unchanged. RoPE follows each architecture's GGUF convention: llama rotates adjacent pairs
(llama.cpp's converter permutes Q/K rows for it), qwen2 rotates the two halves (NeoX style) and
adds biases to Q, K and V.

The output head may cover only the N most frequent target tokens (FR-Spec): logits index i
means target token vocab_map[i]. The input embedding always covers the whole target vocab.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.nn.functional import scaled_dot_product_attention, silu
from torch import nn

from edgespec.runtime.errors import EdgespecError
from edgespec.export.gguf_llama import LlamaShape
from edgespec.export.gguf_tools import llama_settings, open_gguf


@dataclass
class DraftConfig:
    target_vocab: int = 49152
    head_vocab: int = 49152  # rows of the output head; < target_vocab means a reduced (FR-Spec) head
    hidden: int = 576
    layers: int = 2
    heads: int = 9
    kv_heads: int = 3
    ffn: int = 1536
    context: int = 2048
    rope_theta: float = 100000.0
    rms_eps: float = 1e-5
    init_layers: list[int] = field(default_factory=list)  # target layers copied in, for the record
    arch: str = "llama"  # GGUF architecture: "llama" or "qwen2"
    init_source: str = ""  # the GGUF whose layers seeded the draft, for the record

    @property
    def qkv_bias(self) -> bool:
        return self.arch == "qwen2"

    @property
    def rope_neox(self) -> bool:
        return self.arch == "qwen2"

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    def shape(self) -> LlamaShape:
        return LlamaShape(vocab_size=self.target_vocab, hidden=self.hidden, layers=self.layers, heads=self.heads,
                          kv_heads=self.kv_heads, ffn=self.ffn, context=self.context, rope_theta=self.rope_theta,
                          rms_eps=self.rms_eps, arch=self.arch)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) * self.weight


def rope_tables(cfg: DraftConfig, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    inv = 1.0 / (cfg.rope_theta ** (torch.arange(0, cfg.head_dim, 2).float() / cfg.head_dim))
    angles = torch.outer(torch.arange(length).float(), inv)  # [T, head_dim/2]
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, neox: bool = False) -> torch.Tensor:
    """x: [B, H, T, D]; rotate pairs (x[2i], x[2i+1]) as GGUF llama does, or (x[i], x[i+D/2]) as NeoX/qwen2 does."""
    if neox:
        x0, x1 = x.chunk(2, dim=-1)
        return torch.cat((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1)
    x0, x1 = x[..., 0::2], x[..., 1::2]
    out = torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1)
    return out.flatten(-2)


class Block(nn.Module):
    def __init__(self, cfg: DraftConfig):
        super().__init__()
        kv = cfg.kv_heads * cfg.head_dim
        self.cfg = cfg
        self.attn_norm = RMSNorm(cfg.hidden, cfg.rms_eps)
        self.attn_q = nn.Linear(cfg.hidden, cfg.hidden, bias=cfg.qkv_bias)
        self.attn_k = nn.Linear(cfg.hidden, kv, bias=cfg.qkv_bias)
        self.attn_v = nn.Linear(cfg.hidden, kv, bias=cfg.qkv_bias)
        self.attn_output = nn.Linear(cfg.hidden, cfg.hidden, bias=False)
        self.ffn_norm = RMSNorm(cfg.hidden, cfg.rms_eps)
        self.ffn_gate = nn.Linear(cfg.hidden, cfg.ffn, bias=False)
        self.ffn_up = nn.Linear(cfg.hidden, cfg.ffn, bias=False)
        self.ffn_down = nn.Linear(cfg.ffn, cfg.hidden, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                cache: tuple[torch.Tensor, torch.Tensor] | None = None, start: int = 0,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """Causal over x alone, or with `cache` (K, V buffers [B, KV heads, S, D]): x's keys/values are
        written at slots start.. and x attends to slots [0, start + T) where `mask` [B, 1, T, start + T] allows."""
        b, t, _ = x.shape
        c = self.cfg
        h = self.attn_norm(x)
        q = self.attn_q(h).view(b, t, c.heads, c.head_dim).transpose(1, 2)
        k = self.attn_k(h).view(b, t, c.kv_heads, c.head_dim).transpose(1, 2)
        v = self.attn_v(h).view(b, t, c.kv_heads, c.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin, c.rope_neox), apply_rope(k, cos, sin, c.rope_neox)
        rep = c.heads // c.kv_heads
        if cache is None:
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
            y = scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            cache_k, cache_v = cache
            cache_k[:, :, start:start + t] = k
            cache_v[:, :, start:start + t] = v
            # The query heads that share a KV head go in as extra query rows, so the cache is read as it
            # is instead of copied `rep` times per step (query head h uses KV head h // rep).
            q = q.reshape(b, c.kv_heads, rep * t, c.head_dim)
            y = scaled_dot_product_attention(q, cache_k[:, :, :start + t], cache_v[:, :, :start + t],
                                               attn_mask=mask.repeat(1, 1, rep, 1))
            y = y.view(b, c.kv_heads, rep, t, c.head_dim).reshape(b, c.heads, t, c.head_dim)
        x = x + self.attn_output(y.transpose(1, 2).reshape(b, t, c.hidden))
        h = self.ffn_norm(x)
        return x + self.ffn_down(silu(self.ffn_gate(h)) * self.ffn_up(h))


class DraftLM(nn.Module):
    def __init__(self, cfg: DraftConfig):
        super().__init__()
        self.cfg = cfg
        self.token_embd = nn.Embedding(cfg.target_vocab, cfg.hidden)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.output_norm = RMSNorm(cfg.hidden, cfg.rms_eps)
        self.output = nn.Linear(cfg.hidden, cfg.head_vocab, bias=False)
        cos, sin = rope_tables(cfg, cfg.context)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(self._init)

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def hidden_states(self, ids: torch.Tensor) -> torch.Tensor:
        t = ids.shape[1]
        if t > self.cfg.context:
            raise EdgespecError(f"sequence of {t} tokens exceeds the draft's context {self.cfg.context}")
        x = self.token_embd(ids)
        cos, sin = self.rope_cos[:t], self.rope_sin[:t]
        for block in self.blocks:
            x = block(x, cos, sin)
        return self.output_norm(x)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Logits over the head's vocabulary, [B, T, head_vocab]."""
        return self.output(self.hidden_states(ids))

    def new_cache(self, batch: int, length: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        w = self.token_embd.weight
        shape = (batch, self.cfg.kv_heads, length, self.cfg.head_dim)
        return [(torch.zeros(shape, dtype=w.dtype, device=w.device), torch.zeros(shape, dtype=w.dtype, device=w.device))
                for _ in self.blocks]

    def forward_cached(self, ids: torch.Tensor, positions: torch.Tensor, key_ok: torch.Tensor,
                       cache: list[tuple[torch.Tensor, torch.Tensor]], start: int) -> torch.Tensor:
        """Logits of the last position, [B, head_vocab], for ids [B, T] at cache slots start.. .

        Rows may be left-padded: `positions` [B, T] are each row's own RoPE positions, and `key_ok`
        [B, S] marks the cache slots that hold real tokens (pads are never attended to).
        """
        t = ids.shape[1]
        end = start + t
        if end > self.cfg.context or end > cache[0][0].shape[2]:
            raise EdgespecError(f"{end} tokens exceed the context ({self.cfg.context}) or the cache")
        query_slot = torch.arange(start, end, device=ids.device)
        key_slot = torch.arange(end, device=ids.device)
        allowed = (key_slot[None, :] <= query_slot[:, None])[None] & key_ok[:, None, :end]
        allowed |= (key_slot[None, :] == query_slot[:, None])[None]  # a pad query sees itself: no empty row
        mask = allowed[:, None]
        x = self.token_embd(ids)
        cos, sin = self.rope_cos[positions].unsqueeze(1), self.rope_sin[positions].unsqueeze(1)
        for block, layer_cache in zip(self.blocks, cache):
            x = block(x, cos, sin, layer_cache, start, mask)
        return self.output(self.output_norm(x[:, -1]))

    def num_params(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    # --- GGUF naming ---------------------------------------------------------------------------
    def gguf_weights(self) -> dict[str, np.ndarray]:
        """All weights as numpy arrays in GGUF naming ([out, in] matrices)."""
        out = {}
        for name, tensor in self.state_dict().items():
            if name.startswith("rope_"):
                continue
            if name.startswith("blocks."):
                _, i, rest = name.split(".", 2)
                name = f"blk.{i}.{rest}"
            out[name] = tensor.detach().float().cpu().numpy()
        return out

    def load_gguf_weights(self, weights: dict[str, np.ndarray], strict: bool = True) -> None:
        state = {}
        for name, array in weights.items():
            if name.startswith("blk."):
                _, i, rest = name.split(".", 2)
                name = f"blocks.{i}.{rest}"
            state[name] = torch.from_numpy(np.array(array, dtype=np.float32))  # a writable copy
        missing, unexpected = self.load_state_dict(state, strict=False)
        missing = [m for m in missing if not m.startswith("rope_")]
        if strict and (missing or unexpected):
            raise EdgespecError(f"weights do not fit the draft (missing {missing[:3]}, unexpected {unexpected[:3]})")


# --- targets and checkpoints -------------------------------------------------------------------

ARCHITECTURES = ("llama", "qwen2")


def _open_gguf(path: Path):
    reader = open_gguf(path)
    arch = str(reader.fields["general.architecture"].contents())
    if arch not in ARCHITECTURES:
        raise EdgespecError(f"{path}: a {arch} GGUF cannot seed a draft (supported: {', '.join(ARCHITECTURES)})")
    return reader, arch


def _gguf_config(reader, arch: str, path: Path) -> DraftConfig:
    s = llama_settings(reader)
    return DraftConfig(target_vocab=s["vocab"], head_vocab=s["vocab"], hidden=s["hidden"], layers=s["layers"],
                       heads=s["heads"], kv_heads=s["kv_heads"], ffn=s["ffn"], context=s["context"],
                       rope_theta=s["rope_theta"], rms_eps=s["rms_eps"], arch=arch, init_source=Path(path).name)


def _dequantized(tensor) -> np.ndarray:
    from gguf.quants import dequantize

    return np.asarray(dequantize(tensor.data, tensor.tensor_type), dtype=np.float32).reshape(
        [int(d) for d in reversed(tensor.shape)])


def read_gguf_tensor(path: Path, name: str) -> np.ndarray:
    """One tensor of a GGUF as float32 (the rest is not dequantized)."""
    reader, _ = _open_gguf(path)
    for tensor in reader.tensors:
        if tensor.name == name:
            return _dequantized(tensor)
    raise EdgespecError(f"{path} has no tensor {name}")


def read_gguf_config(path: Path) -> DraftConfig:
    """A llama or qwen2 GGUF's shape and settings, without reading its weights."""
    reader, arch = _open_gguf(path)
    return _gguf_config(reader, arch, path)


def read_gguf_model(path: Path) -> tuple[DraftConfig, dict[str, np.ndarray]]:
    """A llama or qwen2 GGUF (any quantization gguf-py can dequantize) as a config and float32 weights."""
    reader, arch = _open_gguf(path)
    weights = {t.name: _dequantized(t) for t in reader.tensors}
    cfg = _gguf_config(reader, arch, path)
    if "output.weight" not in weights:  # tied embeddings
        weights["output.weight"] = weights["token_embd.weight"]
    return cfg, weights


def draft_from_target(target_cfg: DraftConfig, target_weights: dict[str, np.ndarray], layers: list[int],
                      vocab_map: np.ndarray | None, context: int = 2048) -> DraftLM:
    """A draft made of some target layers, the target's embedding/final norm, and its head
    restricted to the rows in vocab_map (all rows if None)."""
    for i in layers:
        if not 0 <= i < target_cfg.layers:
            raise EdgespecError(f"target has {target_cfg.layers} layers; cannot take layer {i}")
    head_vocab = len(vocab_map) if vocab_map is not None else target_cfg.target_vocab
    cfg = DraftConfig(**{**asdict(target_cfg), "layers": len(layers), "head_vocab": head_vocab,
                         "context": min(context, target_cfg.context), "init_layers": list(layers)})
    weights = {"token_embd.weight": target_weights["token_embd.weight"],
               "output_norm.weight": target_weights["output_norm.weight"]}
    head = target_weights["output.weight"]
    weights["output.weight"] = head[vocab_map] if vocab_map is not None else head
    for new, old in enumerate(layers):
        prefix = f"blk.{old}."
        weights |= {f"blk.{new}.{k[len(prefix):]}": v for k, v in target_weights.items() if k.startswith(prefix)}
    model = DraftLM(cfg)
    model.load_gguf_weights(weights)
    return model


def read_seed_model(path: Path, vocab: int) -> tuple[DraftConfig, dict[str, np.ndarray]]:
    """A GGUF whose layers seed a draft (read_gguf_model); it must have the target's `vocab` ids."""
    cfg, weights = read_gguf_model(path)
    if cfg.target_vocab != vocab:
        raise EdgespecError(f"{path} has a vocabulary of {cfg.target_vocab}, the target {vocab}")
    return cfg, weights


def new_draft(vocab: int, vocab_map: np.ndarray | None, seed: tuple[DraftConfig, dict[str, np.ndarray]] | None,
              seed_layers: list[int], **shape) -> DraftLM:
    """A draft over `vocab` target ids with head rows `vocab_map` (None: all): the `seed_layers` of a seed
    model (read_seed_model), or without one random weights of `shape` (DraftConfig fields)."""
    if seed is not None:
        return draft_from_target(*seed, seed_layers, vocab_map, context=2048)
    head_vocab = len(vocab_map) if vocab_map is not None else vocab
    return DraftLM(DraftConfig(target_vocab=vocab, head_vocab=head_vocab, rope_theta=100000.0, **shape))


def save_checkpoint(path: Path, model: DraftLM, optimizer: torch.optim.Optimizer | None, state: dict,
                    vocab_map: np.ndarray | None) -> None:
    """Atomic write: a kill mid-save leaves the previous checkpoint intact."""
    tmp = path.with_suffix(".tmp")
    torch.save({"config": asdict(model.cfg), "model": model.state_dict(),
                "optimizer": optimizer.state_dict() if optimizer is not None else None,
                "state": state, "vocab_map": vocab_map}, tmp)
    tmp.replace(path)


def load_checkpoint(path: Path) -> tuple[DraftLM, dict, np.ndarray | None, dict | None]:
    if not path.exists():
        raise EdgespecError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many kinds for a damaged file
        raise EdgespecError(f"{path} is not a readable checkpoint ({exc.__class__.__name__})") from None
    model = DraftLM(DraftConfig(**ckpt["config"]))
    model.load_state_dict(ckpt["model"], strict=False)
    return model, ckpt.get("state") or {}, ckpt.get("vocab_map"), ckpt.get("optimizer")


def top_tokens(token_arrays: list[np.ndarray], n: int, vocab: int, always: list[int]) -> np.ndarray:
    """The n most frequent ids (FR-Spec head), always including `always` (e.g. end-of-turn), sorted by id."""
    counts = np.zeros(vocab, np.int64)
    for arr in token_arrays:
        counts += np.bincount(arr.astype(np.int64), minlength=vocab)[:vocab]
    for t in always:
        counts[t] = counts.max() + 1
    chosen = np.argsort(-counts, kind="stable")[:n]
    return np.sort(chosen).astype(np.int64)


def token_frequencies(token_arrays: list[np.ndarray], vocab: int) -> np.ndarray:
    """Relative frequency per id, each array weighted equally (so a small target-written set counts as
    much as a large code corpus)."""
    freq = np.zeros(vocab, np.float64)
    for arr in token_arrays:
        if len(arr):
            freq += np.bincount(np.asarray(arr, np.int64), minlength=vocab)[:vocab] / len(arr)
    return freq


def remap_head(model: DraftLM, old_map: np.ndarray | None, new_map: np.ndarray) -> DraftLM:
    """Swap the FR-Spec head for one over new_map: rows already trained are kept, new rows start from the
    (frozen, target-tied) input embedding as SmolLM2's own head does."""
    old_rows = {int(t): i for i, t in enumerate(old_map)} if old_map is not None else None
    weight = model.output.weight.detach()
    rows = []
    for t in np.asarray(new_map, np.int64):
        if old_rows is None:
            rows.append(weight[t])
        elif int(t) in old_rows:
            rows.append(weight[old_rows[int(t)]])
        else:
            rows.append(model.token_embd.weight.detach()[t])
    model.cfg.head_vocab = len(new_map)
    model.output = nn.Linear(model.cfg.hidden, len(new_map), bias=False)
    with torch.no_grad():
        model.output.weight.copy_(torch.stack(rows))
    return model


def param_count_str(n: int) -> str:
    return f"{n / 1e6:.1f}M"


def cosine_lr(step: int, total: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    frac = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
