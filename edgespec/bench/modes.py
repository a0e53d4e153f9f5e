"""The things the bench compares, behind one interface.

  genai-target     OpenVINO GenAI LLMPipeline, target only
  genai-spec       OpenVINO GenAI speculative decoding, same draft, num_assistant_tokens = k
  edgespec-target  edgespec SpeculativePipeline with use_draft=False
  edgespec-spec    edgespec SpeculativePipeline with the draft
  genai-spec2, edgespec-spec2   the two speculative modes again with a second draft (`--draft2`)
                   in place of the pair's own
  naive-ensemble, naive-contrastive   collaborative decoding of target and draft (edgespec.runtime.collab),
                   both models on every token: the baseline of
  cos-ensemble, cos-contrastive   the same combination made fast by speculation (CoS; one extra draft call for
                   the position after the last drafted token)
  cos-ensemble-alt, cos-contrastive-alt   CoS with its alternate proposal for that position instead
  llamacpp-target  llama.cpp (llama-cpp-python's own generate loop, greedy sampler) on the pair's GGUF, target only
  llamacpp-lookup  llama-cpp-python's prompt-lookup decoding (LlamaPromptLookupDecoding, its defaults) on the same
                   GGUF; llama-cpp-python offers no second-model draft, so llama.cpp's own draft-model speculation
                   (llama-speculative in llama.cpp's C++ tools) is not reachable from the package registries
  edgespec-llamacpp-target, edgespec-llamacpp   edgespec's loop with the target on llama.cpp (the same GGUF),
                   without and with the draft (on OpenVINO)
  edgespec-auto    edgespec speculative with the target's engine chosen by the probe (`--engine auto`)
  edgespec-tree-auto   tree speculation with --tree auto (edgespec.runtime.tree; a tree where it pays, else chain)
  edgespec-tree16, edgespec-chain16, edgespec-tree8, edgespec-chain8   16 (or 8) verified tokens per target call:
                   a tree of 15 (7) drafted nodes, and a fixed chain of 15 (7) drafted tokens (no prompt lookup),
                   the equal-width comparison of tokens per call

Each mode gets the prompt as token ids prepared by the bench, stops on the same eos ids,
and returns a RunRecord with its own counters. Wall time is measured here, around the call,
the same way for every mode.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgespec.bench.prompts import PreparedPrompt
from edgespec.runtime.config import CollabConfig, GenerationConfig
from edgespec.runtime.errors import EdgespecError
from edgespec.runtime.manifest import DRAFT_VOCAB, TOKENIZER_FILES, ModelEntry, Pair

MODES = ("genai-target", "genai-spec", "edgespec-target", "edgespec-spec")   # the default set
DRAFT2_MODES = ("genai-spec2", "edgespec-spec2")                               # added by --draft2
ALL_MODES = ("genai-target", "genai-spec", "genai-spec2", "edgespec-target", "edgespec-spec",
             "edgespec-spec2")                                                 # canonical order
# Collaborative decoding (edgespec only; on request): each CoS mode against the naive mode of its combination.
COLLAB_MODES = ("naive-ensemble", "cos-ensemble", "cos-ensemble-alt", "naive-contrastive", "cos-contrastive",
                "cos-contrastive-alt")
COLLAB_REFERENCE = {"cos-ensemble": "naive-ensemble", "cos-ensemble-alt": "naive-ensemble",
                    "cos-contrastive": "naive-contrastive", "cos-contrastive-alt": "naive-contrastive"}
# llama.cpp beside OpenVINO (on request; they need the edgespec[llamacpp] extra and a pair that records its GGUF).
LLAMACPP_MODES = ("llamacpp-target", "llamacpp-default", "llamacpp-lookup", "edgespec-llamacpp-target",
                  "edgespec-llamacpp", "edgespec-auto")
ENGINE_OF = {"edgespec-llamacpp-target": "llamacpp", "edgespec-llamacpp": "llamacpp", "edgespec-auto": "auto"}
# Tree speculation (edgespec only; on request): the GenerationConfig changes each mode makes.
TREE_MODES = {"edgespec-tree-auto": {"tree": "auto"},
              "edgespec-tree16": {"tree": 15}, "edgespec-chain16": {"draft_length": 15, "max_draft_length": 15,
                                                                    "adaptive_draft": False, "prompt_lookup": False},
              "edgespec-tree8": {"tree": 7}, "edgespec-chain8": {"draft_length": 7, "adaptive_draft": False,
                                                                 "prompt_lookup": False}}
KNOWN_MODES = ALL_MODES + COLLAB_MODES + LLAMACPP_MODES + tuple(TREE_MODES)     # canonical order of every mode
SPECULATIVE = {"genai-spec", "edgespec-spec", "genai-spec2", "edgespec-spec2", "edgespec-llamacpp", "edgespec-auto",
               *COLLAB_REFERENCE}
LABELS = {
    "genai-target": "GenAI target only",
    "genai-spec": "GenAI speculative",
    "genai-spec2": "GenAI speculative, draft 2",
    "edgespec-target": "edgespec target only",
    "edgespec-spec": "edgespec speculative",
    "edgespec-spec2": "edgespec speculative, draft 2",
    "naive-ensemble": "naive ensemble",
    "cos-ensemble": "CoS ensemble",
    "cos-ensemble-alt": "CoS ensemble, alternate proposal",
    "naive-contrastive": "naive contrastive",
    "cos-contrastive": "CoS contrastive",
    "cos-contrastive-alt": "CoS contrastive, alternate proposal",
    "llamacpp-target": "llama.cpp target only",
    "llamacpp-default": "llama.cpp target only, flash attention off",
    "llamacpp-lookup": "llama.cpp prompt lookup",
    "edgespec-llamacpp-target": "edgespec target only on llama.cpp",
    "edgespec-llamacpp": "edgespec speculative on llama.cpp",
    "edgespec-auto": "edgespec speculative, engine auto",
    "edgespec-tree-auto": "edgespec tree auto",
    "edgespec-tree16": "edgespec tree, 16 per call",
    "edgespec-chain16": "edgespec chain, 16 per call",
    "edgespec-tree8": "edgespec tree, 8 per call",
    "edgespec-chain8": "edgespec chain, 8 per call",
}


@dataclass
class RunRecord:
    mode: str
    prompt: str
    repeat: int
    draft_length: int | None
    phase: str                  # "warmup", "main" or "sweep"
    prompt_tokens: int
    new_tokens: int             # generated tokens, trailing end-of-sequence tokens not counted
    wall_s: float               # around the generate call, measured by the bench
    ttft_s: float | None
    tpot_s: float | None
    target_calls: int | None    # target forward calls, prefill included
    draft_calls: int | None
    drafted_tokens: int | None
    accepted_tokens: int | None
    stop_reason: str | None = None
    token_ids: list[int] = field(default_factory=list)
    engine: str | None = None   # edgespec modes: the engine that ran the target (auto chooses per prompt)
    lookup_tokens: int | None = None  # of drafted_tokens, those prompt lookup proposed
    engine_expected_s: dict | None = None  # edgespec auto with both targets: each engine's expected seconds
    draft_check_s: float | None = None  # of wall_s, auto's agreement check (the draft reading an undrafted answer)
    text: str = ""
    target_logprob: float | None = None  # sampled runs: mean log-prob per token of the output under the target

    @property
    def tokens_per_s(self) -> float:
        return self.new_tokens / self.wall_s if self.wall_s > 0 else 0.0

    def to_json(self) -> dict:
        return asdict(self)


def strip_eos(ids, eos: set[int]) -> list[int]:
    ids = [int(i) for i in ids]
    while ids and ids[-1] in eos:
        ids.pop()
    return ids


class Mode:
    name = ""

    def generate(self, pp: PreparedPrompt, settings: GenerationConfig, draft_length: int | None) -> dict:
        raise NotImplementedError

    def close(self) -> None:
        pass


# ----------------------------------------------------------------------------- OpenVINO GenAI


def genai_draft_dir(pair: Pair, scratch: Path) -> Path:
    """The draft as OpenVINO GenAI's draft_model can load it.

    GenAI wants tokenizer IR beside the draft (an edgespec draft may ship without one: the draft shares
    the target's vocabulary, so the target's tokenizer is linked in) and logits over the whole vocabulary
    (a reduced FR-Spec head is given a full-vocabulary output: export/full_head.py).
    """
    from edgespec.export.full_head import write_full_head_model

    draft = pair.draft.dir
    vocab_map = pair.draft.vocab_map()
    if vocab_map is None and all((draft / f).is_file() for f in TOKENIZER_FILES):
        return draft
    staged = scratch / "genai-draft"
    staged.mkdir(parents=True, exist_ok=True)
    for path in draft.iterdir():
        if vocab_map is not None and path.name in ("openvino_model.xml", "openvino_model.bin", DRAFT_VOCAB):
            continue
        _link(path, staged / path.name)
    for name in TOKENIZER_FILES:
        if not (staged / name).exists():
            _link(pair.target.dir / name, staged / name)
    if vocab_map is not None:
        vocab = pair.draft.vocab_size or pair.target.vocab_size
        if not vocab:
            raise EdgespecError(f"{draft}: vocabulary size unknown (edgespec_model.json lacks vocab_size)")
        write_full_head_model(pair.draft.xml, staged / "openvino_model.xml", vocab_map, vocab)
    return staged


def _link(src: Path, dst: Path) -> None:
    if dst.exists() or dst.is_symlink():
        dst.unlink()
    try:
        os.symlink(src.resolve(), dst)
    except OSError:
        import shutil
        shutil.copyfile(src, dst)


def _genai_config(settings: GenerationConfig, eos: set[int], draft_length: int | None):
    import openvino_genai as ov_genai

    cfg = ov_genai.GenerationConfig()
    cfg.max_new_tokens = settings.max_new_tokens
    # The bench applied the chat template itself; GenAI must not apply it a second time.
    cfg.apply_chat_template = False
    if eos:
        cfg.eos_token_id = min(eos)
        cfg.stop_token_ids = set(eos)
    cfg.do_sample = settings.do_sample
    if settings.do_sample:
        cfg.temperature = settings.temperature
        cfg.top_p = settings.top_p
        if settings.top_k > 0:  # GenAI's own default means "no top-k"; 0 is not that everywhere
            cfg.top_k = settings.top_k
        if settings.seed is not None:
            cfg.rng_seed = settings.seed
    if draft_length is not None:
        cfg.num_assistant_tokens = draft_length
    return cfg


def _tokenized(ids: list[int]):
    import openvino as ov
    import openvino_genai as ov_genai

    arr = np.asarray([ids], dtype=np.int64)
    return ov_genai.TokenizedInputs(ov.Tensor(arr), ov.Tensor(np.ones_like(arr)))


class GenAIMode(Mode):
    def __init__(self, pair: Pair, target_device: str, draft_device: str | None, eos: set[int],
                 scratch: Path | None = None, name: str | None = None, prefix_cache: bool = False,
                 sampling: bool = False):
        """prefix_cache: GenAI's default (reuse the KV cache of an identical earlier prompt), or every run cold:
        the bench repeats each prompt, and a repeat served from the cache measures no prefill at all.
        sampling: the runs sample. GenAI 2026.4's speculative pipeline then keeps tokens its target would not draw
        whenever a SchedulerConfig is passed, even a default one (docs/results.md, Stop 34), so a sampling
        speculative mode gets none and runs with GenAI's prefix caching on (`cold` False)."""
        import openvino_genai as ov_genai

        self.eos = eos
        self.speculative = draft_device is not None
        self.name = name or ("genai-spec" if self.speculative else "genai-target")
        self.cold = not prefix_cache and not (sampling and self.speculative)
        kwargs = {}
        if self.cold:
            scheduler = ov_genai.SchedulerConfig()
            scheduler.enable_prefix_caching = False
            scheduler.max_num_batched_tokens = 2**31 - 1  # LLMPipeline's own default: prompts are not chunked
            kwargs["scheduler_config"] = scheduler
        if self.speculative:
            if pair.draft is None:
                raise EdgespecError(f"{self.name} needs a pair with a draft model")
            self._tmp = tempfile.TemporaryDirectory(prefix="edgespec-bench-") if scratch is None else None
            draft_dir = genai_draft_dir(pair, Path(self._tmp.name) if self._tmp else scratch)
            kwargs["draft_model"] = ov_genai.draft_model(str(draft_dir), draft_device)
        try:
            self.pipe = ov_genai.LLMPipeline(str(pair.target.dir), target_device, **kwargs)
        except RuntimeError as exc:
            raise EdgespecError(f"OpenVINO GenAI could not load {pair.target.dir}: {_last_line(exc)}") from None

    def generate(self, pp: PreparedPrompt, settings: GenerationConfig, draft_length: int | None) -> dict:
        cfg = _genai_config(settings, self.eos, draft_length if self.speculative else None)
        inputs = _tokenized(pp.ids)
        t0 = time.perf_counter()
        res = self.pipe.generate(inputs, cfg)
        wall = time.perf_counter() - t0
        ids = strip_eos(res.tokens[0], self.eos)
        pm = res.perf_metrics
        out = {
            "prompt_tokens": len(pp.ids), "new_tokens": len(ids), "wall_s": wall,
            "ttft_s": _ms(pm.get_ttft().mean), "tpot_s": _ms(pm.get_tpot().mean) if len(ids) > 1 else None,
            "token_ids": ids, "stop_reason": _genai_stop(res),
        }
        if self.speculative:
            ext = res.extended_perf_metrics
            main_raw = ext.main_model_metrics.raw_metrics
            out.update(target_calls=len(main_raw.m_durations),
                       draft_calls=len(ext.draft_model_metrics.raw_metrics.m_durations),
                       drafted_tokens=int(ext.get_num_draft_tokens()),
                       accepted_tokens=int(ext.get_num_accepted_tokens()))
        else:
            # One target call per generated token (the first is the prefill).
            out.update(target_calls=int(pm.get_num_generated_tokens()), draft_calls=0,
                       drafted_tokens=None, accepted_tokens=None)
        return out

    def close(self) -> None:
        self.pipe = None
        tmp = getattr(self, "_tmp", None)
        if tmp is not None:
            tmp.cleanup()


def _genai_stop(res) -> str | None:
    reasons = getattr(res, "finish_reasons", None)
    if reasons:
        return str(reasons[0]).rsplit(".", 1)[-1].lower()
    return None


def _ms(value: float) -> float | None:
    if value is None or not np.isfinite(value) or value <= 0:
        return None
    return float(value) / 1000.0


def _last_line(exc: Exception) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return lines[-1] if lines else repr(exc)


# ----------------------------------------------------------------------------- edgespec


class EdgespecMode(Mode):
    def __init__(self, pair: Pair, target_device: str, draft_device: str, use_draft: bool, eos: set[int],
                 exact: bool | None = None, name: str | None = None, prefix_cache: bool = False,
                 engine: str = "openvino"):
        """exact: as SpeculativePipeline's (None: exact target kernels, fast draft; False: device defaults).
        prefix_cache: keep the KV cache between runs (a repeated prompt is not prefilled again) or start cold.
        engine: the target's engine (SpeculativePipeline's)."""
        from edgespec.runtime.pipeline import SpeculativePipeline

        self.name = name or ("edgespec-spec" if use_draft else "edgespec-target")
        if use_draft and pair.draft is None:
            raise EdgespecError(f"{self.name} needs a pair with a draft model")
        self.eos = eos
        self.speculative = use_draft
        self.pipe = SpeculativePipeline(pair, target_device, draft_device, use_draft=use_draft, exact=exact,
                                        engine=engine)
        self.prefix_cache = prefix_cache

    def generate(self, pp: PreparedPrompt, settings: GenerationConfig, draft_length: int | None) -> dict:
        cfg = dataclasses.replace(settings, draft_length=draft_length or settings.draft_length)
        if not self.prefix_cache:
            self.pipe.clear_cache()
        t0 = time.perf_counter()
        res = self.pipe.generate(_edgespec_input(self.pipe, pp), cfg, chat=False)
        wall = time.perf_counter() - t0
        st = res.stats
        if st.prompt_tokens != len(pp.ids):
            raise EdgespecError(f"prompt {pp.key}: edgespec saw {st.prompt_tokens} prompt tokens, the bench "
                                f"prepared {len(pp.ids)}; the two runtimes would not get the same input")
        ids = strip_eos(res.token_ids, self.eos)
        return {
            "prompt_tokens": st.prompt_tokens, "new_tokens": len(ids), "wall_s": wall,
            "ttft_s": st.ttft_s, "tpot_s": st.tpot_s if len(ids) > 1 else None,
            "target_calls": st.target_calls, "draft_calls": st.draft_calls,
            "drafted_tokens": st.drafted_tokens if self.speculative else None,
            "accepted_tokens": st.accepted_tokens if self.speculative else None,
            "token_ids": ids, "stop_reason": st.stop_reason, "engine": st.engine,
            "lookup_tokens": st.lookup_tokens if self.speculative else None,
            "engine_expected_s": st.engine_expected_s or None,
            "draft_check_s": st.draft_check_s if st.engine_expected_s else None,
        }

    def close(self) -> None:
        self.pipe = None


class CollabMode(EdgespecMode):
    """Collaborative decoding of the pair's target and draft, naive or CoS (edgespec.runtime.collab). The draft's
    logits enter the output, so both models compile exact (call-shape independent) unless exact=False
    (--fast-kernels): greedy CoS then equals naive collaborative decoding token for token."""

    def __init__(self, name: str, pair: Pair, target_device: str, draft_device: str, eos: set[int],
                 collab: CollabConfig, exact: bool | None = None, prefix_cache: bool = False):
        super().__init__(pair, target_device, draft_device, use_draft=True, eos=eos,
                         exact=True if exact is None else exact, name=name, prefix_cache=prefix_cache)
        self.collab = collab
        self.speculative = not collab.naive  # the naive modes draft nothing: no acceptance to report

    def generate(self, pp: PreparedPrompt, settings: GenerationConfig, draft_length: int | None) -> dict:
        return super().generate(pp, dataclasses.replace(settings, collab=self.collab), draft_length)


# ----------------------------------------------------------------------------- llama.cpp


class LlamaCppMode(Mode):
    """llama-cpp-python's own generation loop on the pair's GGUF: greedy (or its sampler chain), target only or with
    its prompt-lookup decoding. Same threads, context, batch size and flash attention (on) as edgespec's llama.cpp
    engine, so greedy outputs compare kernel for kernel; `llamacpp-default` keeps llama-cpp-python's own default
    attention (flash attention off: what `Llama(path)` runs), the baseline a user of the package gets untuned
    (0.92x of flash attention on in the stop-42 runs here: docs/results.md)."""

    def __init__(self, pair: Pair, target_device: str, eos: set[int], lookup: bool, prefix_cache: bool = False,
                 flash_attn: bool = True):
        from edgespec.runtime.engines import llamacpp_usable
        from edgespec.runtime.llamacpp import default_threads, require_llama_cpp

        self.name = "llamacpp-lookup" if lookup else "llamacpp-target" if flash_attn else "llamacpp-default"
        why = llamacpp_usable(pair.target, target_device)
        if why:
            raise EdgespecError(f"{self.name}: {why}")
        llama_cpp = require_llama_cpp()
        kwargs = {}
        if lookup:
            from llama_cpp.llama_speculative import LlamaPromptLookupDecoding
            kwargs["draft_model"] = LlamaPromptLookupDecoding()
            # With a draft model Llama keeps logits of every position, but sizes that buffer for all n_ctx of them
            # only when logits_all is passed: without it a prompt longer than n_batch fails (0.3.36).
            kwargs["logits_all"] = True
        threads = default_threads()
        self.llm = llama_cpp.Llama(str(pair.target.gguf), n_ctx=pair.target.context_length, n_batch=512,
                                   n_threads=threads, n_threads_batch=threads, flash_attn=flash_attn, verbose=False,
                                   **kwargs)
        self.eos = eos
        self.prefix_cache = prefix_cache

    def generate(self, pp: PreparedPrompt, settings: GenerationConfig, draft_length: int | None) -> dict:
        if not self.prefix_cache:
            self.llm.reset()  # generate() then prefills the whole prompt (no prefix kept from the last run)
        sampling = {"temp": settings.temperature, "top_k": settings.top_k, "top_p": settings.top_p,
                    "min_p": 0.0} if settings.do_sample else {"temp": 0.0}  # temp 0: llama.cpp's greedy sampler
        if settings.do_sample and settings.seed is not None:
            self.llm.set_seed(settings.seed)
        ids: list[int] = []
        ttft = None
        stop = None
        t0 = time.perf_counter()
        for token in self.llm.generate(pp.ids, repeat_penalty=1.0, **sampling):
            if ttft is None:
                ttft = time.perf_counter() - t0
            ids.append(int(token))
            if int(token) in self.eos:
                stop = "eos"
                break
            if len(ids) >= settings.max_new_tokens:
                stop = "length"
                break
        wall = time.perf_counter() - t0
        ids = strip_eos(ids, self.eos)
        lookup = self.name == "llamacpp-lookup"
        return {"prompt_tokens": len(pp.ids), "new_tokens": len(ids), "wall_s": wall, "ttft_s": ttft,
                "tpot_s": (wall - ttft) / (len(ids) - 1) if ttft is not None and len(ids) > 1 else None,
                # Target-only: one call per token (the first is the prefill); the lookup loop's calls are not counted.
                "target_calls": None if lookup else len(ids), "draft_calls": None if lookup else 0,
                "drafted_tokens": None, "accepted_tokens": None, "token_ids": ids, "stop_reason": stop}

    def close(self) -> None:
        if getattr(self, "llm", None) is not None:
            self.llm.close()
        self.llm = None
class TreeMode(EdgespecMode):
    """The pair with a tree or a fixed-width chain (TREE_MODES): greedy output still equals target-only."""

    def __init__(self, name: str, pair: Pair, target_device: str, draft_device: str, eos: set[int],
                 exact: bool | None = None, prefix_cache: bool = False):
        super().__init__(pair, target_device, draft_device, use_draft=True, eos=eos, exact=exact, name=name,
                         prefix_cache=prefix_cache)
        self.changes = TREE_MODES[name]

    def generate(self, pp: PreparedPrompt, settings: GenerationConfig, draft_length: int | None) -> dict:
        return super().generate(pp, dataclasses.replace(settings, **self.changes), None)


def collab_config(name: str, weight: float, alpha: float) -> CollabConfig:
    """The CollabConfig of a collaborative mode: naive-METHOD, cos-METHOD or cos-METHOD-alt."""
    kind, method = name.split("-")[:2]
    return CollabConfig(method, weight=weight, alpha=alpha, naive=kind == "naive",
                        bonus="alternate" if name.endswith("-alt") else "extra-call")


def _edgespec_input(pipe, pp: PreparedPrompt):
    """The rendered string; checked once against the bench's ids so both runtimes see the same tokens."""
    if not pp.checked:
        ids = [int(i) for i in pipe.tokenizer.encode(pp.rendered)]
        if ids != pp.ids:
            raise EdgespecError(f"prompt {pp.key}: edgespec's tokenizer gives different ids than GenAI's "
                                f"({len(ids)} vs {len(pp.ids)} tokens)")
        pp.checked = True
    return pp.rendered


def with_draft2(pair: Pair, draft2: ModelEntry | None) -> Pair:
    """The pair with its draft replaced by the second draft (same target, same folder)."""
    if draft2 is None:
        raise EdgespecError("the *-spec2 modes need a second draft: pass --draft2 PATH")
    return dataclasses.replace(pair, draft=draft2)


def load_mode(name: str, pair: Pair, target_device: str, draft_device: str, eos: set[int],
              draft2: ModelEntry | None = None, exact: bool | None = None, prefix_cache: bool = False,
              collab_weight: float = 0.5, collab_alpha: float = 0.1, sampling: bool = False) -> Mode:
    """exact applies to the edgespec modes only (GenAI compiles with its own defaults); prefix_cache to all;
    collab_weight (ensemble) and collab_alpha (contrastive) to the collaborative modes; sampling (the runs will
    sample) to GenAI's speculative modes (GenAIMode)."""
    genai = {"prefix_cache": prefix_cache, "sampling": sampling}
    edgespec = {"exact": exact, "prefix_cache": prefix_cache}
    if name == "genai-target":
        return GenAIMode(pair, target_device, None, eos, **genai)
    if name == "genai-spec":
        return GenAIMode(pair, target_device, draft_device, eos, **genai)
    if name == "genai-spec2":
        return GenAIMode(with_draft2(pair, draft2), target_device, draft_device, eos, name=name, **genai)
    if name == "edgespec-target":
        return EdgespecMode(pair, target_device, draft_device, use_draft=False, eos=eos, **edgespec)
    if name == "edgespec-spec":
        return EdgespecMode(pair, target_device, draft_device, use_draft=True, eos=eos, **edgespec)
    if name == "edgespec-spec2":
        return EdgespecMode(with_draft2(pair, draft2), target_device, draft_device, use_draft=True, eos=eos,
                            name=name, **edgespec)
    if name in ("llamacpp-target", "llamacpp-default", "llamacpp-lookup"):
        return LlamaCppMode(pair, target_device, eos, lookup=name == "llamacpp-lookup", prefix_cache=prefix_cache,
                            flash_attn=name != "llamacpp-default")
    if name in ENGINE_OF:
        return EdgespecMode(pair, target_device, draft_device, use_draft=name != "edgespec-llamacpp-target", eos=eos,
                            name=name, engine=ENGINE_OF[name], **edgespec)
    if name in COLLAB_MODES:
        if pair.draft is None:
            raise EdgespecError(f"{name} needs a pair with a draft model")
        return CollabMode(name, pair, target_device, draft_device, eos,
                          collab_config(name, collab_weight, collab_alpha), **edgespec)
    if name in TREE_MODES:
        if pair.draft is None:
            raise EdgespecError(f"{name} needs a pair with a draft model")
        return TreeMode(name, pair, target_device, draft_device, eos, **edgespec)
    raise EdgespecError(f"unknown mode {name!r}; choose from {', '.join(KNOWN_MODES)}")
