"""One LLM on llama.cpp (through llama-cpp-python's C API), behind StatefulLM's interface.

A GGUF is loaded with llama.cpp's own kernels; `forward` decodes a batch of tokens at consecutive positions of one
sequence and asks llama.cpp for the logits of the last `last` of them only (llama.cpp computes the output head
for the flagged rows alone), and `rollback` removes the forgotten positions from its KV cache. So the speculative
loop runs unchanged with a llama.cpp target (or draft). The extra `edgespec[llamacpp]` provides llama_cpp; it is
imported only when a model is loaded here.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from edgespec.runtime.errors import EdgespecError
from edgespec.runtime.model import common_prefix

EXTRA_HINT = "pip install 'edgespec[llamacpp]' (builds llama-cpp-python from source: about 10 minutes on 2 cores)"


def require_llama_cpp():
    """The llama_cpp module, or a one-line error saying how to get it."""
    try:
        import llama_cpp
    except ImportError:
        raise EdgespecError(f"the llama.cpp engine needs llama-cpp-python: {EXTRA_HINT}") from None
    # llama.cpp logs every tensor at load to stderr unless the binding's logger is raised above INFO.
    logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)
    return llama_cpp


def available() -> bool:
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return False
    return True


def llama_cpp_version() -> str | None:
    try:
        import llama_cpp
    except ImportError:
        return None
    return getattr(llama_cpp, "__version__", "unknown")


def default_threads() -> int:
    """One thread per CPU this process may run on (llama-cpp-python's own default is half of them)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


class LlamaCppLM:
    """A GGUF model in a llama.cpp context holding one sequence (id 0)."""

    rollback_mode = "llamacpp"
    max_feed = None  # NPU only (StatefulLM's "position" mode)

    def __init__(self, gguf: str | Path, context_length: int, vocab_map: np.ndarray | None = None,
                 threads: int | None = None, batch: int = 512, ubatch: int = 512, flash_attn: bool = True):
        """batch/ubatch: llama.cpp's logical and physical batch sizes (longer feeds are split into calls of
        `batch` tokens). flash_attn: llama.cpp's fused attention. On (the default), a call of 2 to 63 tokens gives the
        same logits as one-token calls while the cache holds at most 256 positions; past that, llama.cpp splits a
        one-token call's attention over the threads (its split-KV path) and logits move by up to about 1 (one thread:
        equal again). Off, its plain attention path differs by up to 1.3 at any length (docs/llamacpp.md)."""
        llama_cpp = require_llama_cpp()
        self.lib = llama_cpp
        self.gguf = Path(gguf)
        if not self.gguf.is_file():
            raise EdgespecError(f"GGUF file not found: {self.gguf}")
        self.threads = threads or default_threads()
        self.batch_size = max(1, batch)
        llama_cpp.llama_backend_init()
        model_params = llama_cpp.llama_model_default_params()
        model_params.n_gpu_layers = 0
        self.model = llama_cpp.llama_model_load_from_file(str(self.gguf).encode(), model_params)
        if not self.model:
            raise EdgespecError(f"llama.cpp could not load {self.gguf} (not a GGUF it reads)")
        self.context_length = min(int(context_length), int(llama_cpp.llama_model_n_ctx_train(self.model)))
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = self.context_length
        params.n_batch = self.batch_size
        params.n_ubatch = min(self.batch_size, max(1, ubatch))
        params.n_seq_max = 1
        params.n_threads = params.n_threads_batch = self.threads
        params.flash_attn_type = (llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED if flash_attn
                                  else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED)
        params.no_perf = True
        self.ctx = llama_cpp.llama_init_from_model(self.model, params)
        if not self.ctx:
            llama_cpp.llama_model_free(self.model)
            self.model = None
            raise EdgespecError(f"llama.cpp could not create a context of {self.context_length} positions "
                                f"for {self.gguf}")
        self.memory = llama_cpp.llama_get_memory(self.ctx)
        self.vocab_size = int(llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(self.model)))
        # A reduced draft head predicts indices into vocab_map; a GGUF has the full head, so its logits are
        # gathered at those ids (the same distribution the reduced head's softmax sees).
        self.vocab_map = vocab_map
        self.flash_attn = flash_attn
        self.ubatch = params.n_ubatch
        self.batch = llama_cpp.llama_batch_init(self.batch_size, 0, 1)
        for i in range(self.batch_size):  # every token of a call belongs to sequence 0 alone: set once
            self.batch.n_seq_id[i] = 1
            self.batch.seq_id[i][0] = 0
        # The batch's arrays as ctypes pointers, held: each attribute read through the struct builds a new one.
        self.batch_token, self.batch_pos, self.batch_logits = self.batch.token, self.batch.pos, self.batch.logits
        self.calls = 0
        self.reset()

    @property
    def cached(self) -> int:
        return len(self.tokens)

    def reset(self) -> None:
        self.lib.llama_memory_clear(self.memory, True)
        self.tokens: list[int] = []  # what the KV cache holds, position by position

    def pending(self, sequence: list[int]) -> list[int]:
        """Roll back to the longest cached prefix of `sequence`; return the tokens still to feed."""
        common = common_prefix(self.tokens, sequence)
        self.rollback(common)
        return sequence[common:]

    def rollback(self, keep: int) -> None:
        """Forget every cached position from `keep` on (removed from llama.cpp's KV cache)."""
        keep = max(keep, 0)
        if keep >= self.cached:
            return
        if keep == 0:
            self.reset()
            return
        self.lib.llama_memory_seq_rm(self.memory, 0, keep, -1)
        del self.tokens[keep:]

    def prefill(self, tokens: np.ndarray | list[int], last: int | None = None) -> np.ndarray:
        """A prompt's feed: `forward` (PagedLM may run it on faster kernels)."""
        return self.forward(tokens, last)

    def forward(self, tokens: np.ndarray | list[int], last: int | None = None) -> np.ndarray:
        """Append `tokens` to the cache; return the logits of the last `last` of them (all by default)."""
        tokens = np.asarray(tokens).reshape(-1).tolist()
        n, past = len(tokens), self.cached
        if n == 0:
            raise EdgespecError("forward needs at least one token")
        if past + n > self.context_length:
            raise EdgespecError(f"context length {self.context_length} reached ({past} cached + {n} new tokens)")
        rows = n if last is None else min(last, n)
        try:
            logits = self._decode(tokens, past, rows) if n <= self.batch_size else self._decode_chunks(tokens, rows)
        except BaseException:
            self.reset()  # an interrupted or failed call leaves the cache in an unknown state: start clean
            raise
        self.tokens.extend(tokens)
        self.calls += 1
        return logits

    def _decode_chunks(self, tokens: list[int], rows: int) -> np.ndarray:
        """A feed longer than the batch (a long prompt) in calls of `batch_size` tokens."""
        out = []
        for start in range(0, len(tokens), self.batch_size):
            chunk = tokens[start:start + self.batch_size]
            # Rows wanted in this chunk: the positions from len(tokens) - rows on.
            wanted = max(0, start + len(chunk) - (len(tokens) - rows))
            out.append(self._decode(chunk, self.cached + start, min(wanted, len(chunk))))
        rows_out = [o for o in out if len(o)]
        return np.concatenate(rows_out) if rows_out else out[-1]

    def _decode(self, chunk: list[int], position: int, rows: int) -> np.ndarray:
        n = len(chunk)
        self.batch.n_tokens = n
        token, pos, wanted = self.batch_token, self.batch_pos, self.batch_logits
        first_row = n - rows
        for i, t in enumerate(chunk):
            token[i] = t
            pos[i] = position + i
            wanted[i] = i >= first_row
        code = self.lib.llama_decode(self.ctx, self.batch)
        if code != 0:
            raise EdgespecError(f"llama.cpp decode failed (code {code}) at position {position} with {n} tokens")
        if not rows:
            return np.zeros((0, self._out_width()), np.float32)
        logits = np.ctypeslib.as_array(self.lib.llama_get_logits(self.ctx), shape=(rows, self.vocab_size))
        if self.vocab_map is not None:
            return np.ascontiguousarray(logits[:, self.vocab_map], dtype=np.float32)
        return np.array(logits, dtype=np.float32)

    def tokenize(self, text: str, special: bool = True) -> list[int]:
        """The GGUF tokenizer's ids for `text` (special tokens such as <|im_start|> parsed), no BOS added."""
        vocab = self.lib.llama_model_get_vocab(self.model)
        data = text.encode()
        room = len(data) + 8
        ids = (self.lib.llama_token * room)()
        n = self.lib.llama_tokenize(vocab, data, len(data), ids, room, False, special)
        if n < 0:
            raise EdgespecError(f"llama.cpp could not tokenize {len(data)} bytes of text")
        return list(ids[:n])

    def _out_width(self) -> int:
        return self.vocab_size if self.vocab_map is None else len(self.vocab_map)

    def close(self) -> None:
        """Free the context and the model (also done when the object is collected)."""
        lib = getattr(self, "lib", None)
        if lib is None:
            return
        if getattr(self, "batch", None) is not None:
            lib.llama_batch_free(self.batch)
            self.batch = None
        if getattr(self, "ctx", None):
            lib.llama_free(self.ctx)
            self.ctx = None
        if getattr(self, "model", None):
            lib.llama_model_free(self.model)
            self.model = None

    def __del__(self):
        self.close()
