"""The Python API: load a pair, generate text with or without the draft, stream it."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import openvino as ov

from edgespec.runtime.call_width import bitwise_same_across_widths
from edgespec.runtime.costs import time_calls, time_prefills
from edgespec.runtime.devices import compile_model, fast_prefill_differs, is_cpu, is_npu, prefill_config
from edgespec.runtime.cache import cache_root
from edgespec.runtime.engines import (CHAT, TEXT, EngineChoice, check_engine, decide, llamacpp_usable, load_llamacpp,
                                      probe_calls, probe_draft, probe_file, probe_key, probe_prefill, read_probes,
                                      remember, remembered)
from edgespec.runtime.errors import EdgespecError
from edgespec.runtime.llamacpp import LlamaCppLM
from edgespec.runtime.manifest import ModelEntry, Pair, load_pair
from edgespec.runtime.model import StatefulLM, common_prefix, read_ir, slice_logits, warm_up
from edgespec.runtime.paged import PagedLM, to_paged
from edgespec.runtime.npu import NPUConfig
from edgespec.runtime.collab import collab_decode
from edgespec.runtime.config import CollabConfig, GenerationConfig, GenerationStats
from edgespec.runtime.draft_length import DraftLength, decayed_length
from edgespec.runtime.speculative import DraftWindow, decode, draft_agreement
from edgespec.runtime.tree_shape import TreeShape
from edgespec.runtime.tokenizer import TextStream, TextTokenizer, TextTooLong

# A streamer gets each new piece of text; returning True asks generation to stop.
Streamer = Callable[[str], bool | None]

__all__ = ["CollabConfig", "GenerationConfig", "GenerationResult", "GenerationStats", "NPUConfig",
           "SpeculativePipeline"]


@dataclass
class GenerationResult:
    text: str
    token_ids: list[int]
    stats: GenerationStats


MODEL_FORMS = ("auto", "paged", "stateful")


def load_lm(core: ov.Core, entry: ModelEntry, device: str, exact: bool, rollback: str,
            npu: NPUConfig | None = None, draft: bool = False, form: str = "auto") -> StatefulLM | PagedLM:
    """One model of a pair compiled for `device` and run once (model.warm_up): NPU through NPUW (StatefulLM,
    position rollback), CPU in the paged form by default (PagedLM: trees, free rollback), else the stateful form
    with sliced logits (StatefulLM)."""
    lm = _compiled_lm(core, entry, device, exact, rollback, npu, draft, form)
    if not is_npu(device):
        warm_up(lm)
    return lm


def _compiled_lm(core: ov.Core, entry: ModelEntry, device: str, exact: bool, rollback: str,
                 npu: NPUConfig | None, draft: bool, form: str) -> StatefulLM | PagedLM:
    if form not in MODEL_FORMS:
        raise EdgespecError(f"unknown model form {form!r} (choose from {', '.join(MODEL_FORMS)})")
    model = read_ir(entry.xml)
    names = {port.any_name for port in model.inputs}
    if not {"input_ids", "attention_mask", "position_ids"} <= names or not model.get_sinks():
        raise EdgespecError(f"{entry.xml} is not a stateful LLM (inputs: {', '.join(sorted(names))})")
    if is_npu(device):
        # NPUW slices the logits itself and keeps the KV cache: no logits_count input, "position" rollback.
        npu = npu or NPUConfig()
        feed = npu.draft_generation_tokens if draft else npu.max_generation_tokens
        compiled = compile_model(core, model, device, npu=npu, generation_tokens=feed)
        return StatefulLM(compiled, min(entry.context_length, npu.context_length), vocab_map=entry.vocab_map(),
                          rollback_mode="position", max_prompt_len=npu.max_prompt_len, max_feed=feed)
    if form == "paged" or (form == "auto" and is_cpu(device)):
        # The form GenAI runs on CPU: faster long prefills and long-context steps, free rollback.
        to_paged(model)
        int8_target = exact and not draft and fast_prefill_differs()
        if int8_target:
            # Where the CPU has int8 dot products, the fast kernels are exact across calls of 2+ tokens (call_width.py).
            lm = two_token_target(lambda: PagedLM(compile_model(core, model, device, extra=TWO_TOKEN_CACHE),
                                                  entry.context_length, vocab_map=entry.vocab_map(), min_feed=2),
                                  entry, device)
            if lm is not None:
                return lm
        # Else exact kernels; an exact target still prefills with int8 activations where the CPU has int8 dot products
        # (2x faster prompts), into the same f32 cache (devices.prefill_config).
        prefill = compile_model(core, model, device, extra=prefill_config()) if int8_target else None
        return PagedLM(compile_model(core, model, device, exact=exact), entry.context_length,
                       vocab_map=entry.vocab_map(), prefill_compiled=prefill)
    slice_logits(model)
    compiled = compile_model(core, model, device, exact=exact)
    return StatefulLM(compiled, entry.context_length, vocab_map=entry.vocab_map(), rollback_mode=rollback)


# The fast kernels' KV cache in 16 bits (bf16 where the math is bf16): the CPU default for Qwen2.5-Coder-1.5B is u8
# with keys quantized by channel over each block, which gives a token other logits in calls of other widths; in 16
# bits its two-token calls are bitwise exact, its 4-token verify 74 ms against 111 exact (performance.md Q12).
TWO_TOKEN_CACHE = {"KV_CACHE_PRECISION": "f16"}


def two_token_target(make: Callable[[], PagedLM], entry: ModelEntry, device: str) -> PagedLM | None:
    """The target `make` compiles on the fast kernels, where they give it bitwise the same logits in every call of 2
    or more tokens; else None. Checked once per machine and model (about 1 s for SmolLM2 on 2 cores), then read from
    the cache before anything is compiled. EDGESPEC_TWO_TOKEN=0: None."""
    if os.environ.get("EDGESPEC_TWO_TOKEN", "1") == "0":
        return None
    made: list[PagedLM] = []

    def check() -> dict:
        made.append(make())
        return {"exact": bitwise_same_across_widths(made[0])}
    if not remembered_costs(probe_key(entry, None, f"{device}/two-token-calls", ""), check)["exact"]:
        return None
    return made[0] if made else make()


LM = StatefulLM | PagedLM | LlamaCppLM
# Token ids the engine probe feeds (any ids in the vocabulary: the values do not change a call's cost).
PROBE_SEED = list(range(1000, 1064))
CALIBRATION_WIDTHS = 5  # target call widths timed before the first speculative generation (1..5 tokens)
CALIBRATION_PAST = 128
COSTS_FILE = "call-costs.json"


def remembered_costs(key: str, measure: Callable[[], dict]) -> dict:
    """Costs kept in the cache beside the engine probes (a one-shot `edgespec generate` would pay them every time):
    what is stored under `key`, else `measure()`, stored."""
    path = cache_root() / COSTS_FILE
    known = read_probes(path).get(key)
    if known:
        return known
    timed = measure()
    try:
        remember(path, key, timed)
    except OSError:
        pass  # a read-only cache: time them again next time
    return timed


# auto: of the generations that did not draft, every CHECK_EVERY-th has the draft read its answer (15-45 ms for
# SmolLM2's draft here, 1-3% of a 128-token answer on llama.cpp) to price the engine that did not run.
CHECK_EVERY = 2
CHECK_BUDGET = 0.03  # the most of a generation's time its agreement check may add
# A check that leaves the other engines CHECK_FAR times the ran one's expected seconds or more doubles the spacing of
# that kind's checks, up to CHECK_EVERY_MAX: short questions, where the draft never paid, paid 1.5% every second
# answer for checks that moved nothing (v32: 0.98x of llama.cpp, its own loop alone 0.99x).
CHECK_FAR = 1.2
CHECK_EVERY_MAX = 8


class SpeculativePipeline:
    def __init__(self, pair: Pair, target_device: str = "CPU", draft_device: str = "CPU", use_draft: bool = True,
                 exact: bool | None = None, rollback: str = "mask", npu: NPUConfig | None = None,
                 form: str = "auto", engine: str = "openvino", draft_engine: str = "openvino"):
        self.pair = pair
        check_engine(engine)
        if check_engine(draft_engine) == "auto":
            raise EdgespecError("the draft's engine is openvino or llamacpp (auto chooses the target's)")
        core = ov.Core()
        self.tokenizer = TextTokenizer(pair.target.dir)
        # The draft's numerics only move acceptance, so it keeps the fast device defaults unless exact=True asks
        # for both (comparisons in tests).
        self.draft_engine = draft_engine
        self.draft: LM | None = None
        if use_draft and pair.draft:
            self.draft = (load_llamacpp(pair.draft, "draft") if draft_engine == "llamacpp" else
                          load_lm(core, pair.draft, draft_device, bool(exact), rollback, npu, draft=True, form=form))
        # The target's logits must not depend on how many tokens a call feeds, or greedy speculative output
        # drifts from target-only output (OpenVINO: two-token calls or exact kernels; llama.cpp: docs/llamacpp.md).
        self.engine_probe: dict | None = None  # what auto measured (or remembered) to choose the target's engine
        probed: dict[str, LM] = {}  # targets the probe loaded, reused rather than loaded again

        def load_target(name: str) -> LM:
            if name not in probed:
                probed[name] = (load_llamacpp(pair.target) if name == "llamacpp" else
                                load_lm(core, pair.target, target_device, exact is not False, rollback, npu, form=form))
            return probed[name]

        self.target_device = target_device
        self.engine = self._target_engine(engine, target_device, draft_device, load_target)
        # auto, where one engine decodes faster and the other prefills faster: both stay, chosen per generation.
        names = ("openvino", "llamacpp") if (self.engine_probe or {}).get("per_prompt") else (self.engine,)
        self.targets: dict[str, LM] = {name: load_target(name) for name in names}
        for name, lm in probed.items():
            if name not in self.targets and hasattr(lm, "close"):
                lm.close()
        probed.clear()
        self.last_stats: GenerationStats | None = None
        self.eos_ids = set(pair.target.eos_token_ids) or {self.tokenizer.tokenizer.get_eos_token_id()}
        # Call costs measured while choosing draft lengths, carried from one generation to the next (per engine:
        # each target has its own cost curve). Collaborative decoding has its own policies.
        self.policies = {name: DraftLength(GenerationConfig.draft_length, GenerationConfig.max_draft_length, True,
                                           realized_guard=name == "llamacpp") for name in self.targets}
        self.collab_policies = {name: DraftLength(GenerationConfig.draft_length, GenerationConfig.max_draft_length,
                                                  True, always_drafts=True, realized_guard=name == "llamacpp")
                                for name in self.targets}
        # Per kind of prompt (chat-formatted or plain text): the decayed length of the last answers, the engine
        # choice's guess (HumanEval's completions end after 40-70 tokens, chat answers run to the limit).
        self.answer_tokens: dict[str, float] = {}
        self.engine_choice = EngineChoice(self.engine_probe) if len(self.targets) > 1 else None
        self.chat_marker = self.tokenizer.chat_marker() if self.engine_choice is not None else None
        # Per kind: generations without drafts since the draft last read an answer, and the checks' spacing.
        self.since_check: dict[str, int] = {}
        self.check_every: dict[str, int] = {}
        self._use_engine(self.engine)
        self.tree_shape: TreeShape | None = None  # the tree tuner's measurements, kept like the policy's
        # An exact copy of the draft for collaborative decoding when this one has fast kernels (see _collab_draft).
        self.collab_draft: LM | None = None
        self._draft_load = (core, draft_device, exact, rollback, npu, form)
        if self.draft is not None and self.draft.vocab_map is None and self.draft.vocab_size != self.target.vocab_size:
            raise EdgespecError(f"draft vocabulary ({self.draft.vocab_size}) differs from the target's "
                                f"({self.target.vocab_size}): export the pair again with `edgespec export`")

    def _use_engine(self, name: str) -> None:
        self.engine, self.target = name, self.targets[name]
        self.draft_policy, self.collab_policy = self.policies[name], self.collab_policies[name]

    def _time_target_calls(self, config: GenerationConfig) -> None:
        """Before the first speculative generation on a target: its steady cost per call width (calls of one width
        in a row after a short past, median of 2), the draft-length policy's starting costs. About 0.3 s for
        SmolLM2 on 2 cores, once per machine and model (then from the cache); the target's cache is left empty
        when they are timed (a chat's history is fed again once)."""
        longest = min(config.max_draft_length + 1, CALIBRATION_WIDTHS, self.target.max_feed or CALIBRATION_WIDTHS)
        past = min(CALIBRATION_PAST, self.target.context_length - longest - 1)
        if past < 1:
            return
        # Keyed by the model files, versions, CPU, threads, devices, kernels and engine.
        _, draft_device, exact, _, _, form = self._draft_load
        feed = getattr(self.target, "min_feed", 1)
        key = probe_key(self.pair.target, None, f"{self.target_device}/{self.engine}/exact={exact}/{form}/{feed}",
                        draft_device) + f"/calls-1-{longest}"
        seed = np.resize(np.asarray(PROBE_SEED, dtype=np.int64), past)
        timed = remembered_costs(key, lambda: {"call_s": time_calls(self.target, seed, list(range(1, longest + 1)),
                                                                    repeats=2)["call_s"]})
        call_s = {int(n): float(t) for n, t in timed["call_s"].items()}
        self.draft_policy.seed(call_s, (self.engine_probe or {}).get("draft_token_s"), self._time_draft_read(past))

    def _time_draft_read(self, past: int) -> float | None:
        """Seconds per token of the draft reading `past` tokens warm (median of 2 after a warm-up; cached like the
        target's costs): the catch-up's starting price. The first read in a process pays one-time costs (3.6x a
        later one for SmolLM2's draft); taken as the price, it kept the draft from ever reading HumanEval prompts."""
        if self.draft is None or self.draft.max_feed:
            return None  # an NPU draft reads prompts through its own static prefill shape
        past = min(past, self.draft.context_length - 1)
        if past < 2:
            return None
        _, draft_device, exact, _, _, form = self._draft_load
        key = probe_key(self.pair.target, self.pair.draft, f"{self.target_device}/exact={exact}/{form}",
                        draft_device) + f"/draft-read-{past}"
        ids = np.resize(np.asarray(PROBE_SEED, dtype=np.int64), past)

        def read() -> dict:
            return {"token_s": time_prefills(self.draft, ids, 2)[0] / past}
        return float(remembered_costs(key, read)["token_s"])

    def _pending(self, ids: list[int]) -> dict[str, int]:
        """Per target engine: the prompt tokens its cache lacks."""
        return {name: len(ids) - common_prefix(lm.tokens, ids) for name, lm in self.targets.items()}

    def prompt_kind(self, ids: list[int]) -> str:
        """Chat-formatted (holds the chat template's opening token) or plain text: workloads the engine choice
        follows apart (engines.CHAT, TEXT)."""
        return CHAT if self.chat_marker is not None and self.chat_marker in ids else TEXT

    def _engine_for(self, ids: list[int], pending: dict[str, int], config: GenerationConfig,
                    kind: str) -> dict[str, float]:
        """With both targets loaded (auto): the seconds each engine is expected to take on this generation, from the
        prompt tokens its cache lacks and the expected answer (as long as the last ones of its kind ran, up to the
        limit); the least runs it."""
        answer = min(config.max_new_tokens, self.answer_tokens.get(kind) or config.max_new_tokens)
        return self.engine_choice.expected_by_engine(pending, len(ids), answer, kind)

    def _target_engine(self, engine: str, target_device: str, draft_device: str,
                       load_target: Callable[[str], LM]) -> str:
        """The target's engine: as asked, or for auto the one the probe (run now or remembered) finds faster."""
        if engine != "auto":
            if engine == "llamacpp" and (why := llamacpp_usable(self.pair.target, target_device)):
                raise EdgespecError(f"--engine llamacpp: {why}")
            return engine
        if llamacpp_usable(self.pair.target, target_device):
            return "openvino"
        key = probe_key(self.pair.target, self.pair.draft if self.draft is not None else None, target_device,
                        f"{draft_device}/{self.draft_engine}")
        verdict = remembered(key)
        if verdict is None:
            verdict = self._probe_engines(load_target)
            remember(probe_file(), key, verdict)
        self.engine_probe = verdict
        return verdict["engine"]

    def _probe_engines(self, load_target: Callable[[str], LM]) -> dict:
        """Time the target on both engines (decode-shaped calls and a prefill), and the draft's step."""
        ov_target, llama_target = load_target("openvino"), load_target("llamacpp")
        draft_s = probe_draft(self.draft, PROBE_SEED) if self.draft is not None else None
        # OpenVINO's prefill before llama.cpp's first call: its OpenMP threads spin a while after each call, and on
        # 2 cores OpenVINO steps timed in that spin read 15.8 ms against 12 (the engine choice's input).
        timed = {"openvino": probe_prefill(ov_target, PROBE_SEED)}
        calls = probe_calls({"openvino": ov_target, "llamacpp": llama_target}, PROBE_SEED)
        timed["llamacpp"] = probe_prefill(llama_target, PROBE_SEED)
        return decide(calls["openvino"], calls["llamacpp"], draft_s, {e: t[0] for e, t in timed.items()},
                      {e: t[1] for e, t in timed.items()}, {e: t[2] for e, t in timed.items()})

    @classmethod
    def from_manifest(cls, path: str | Path, target_device: str = "CPU", draft_device: str = "CPU",
                      use_draft: bool = True, exact: bool | None = None, rollback: str = "mask",
                      npu: NPUConfig | None = None, form: str = "auto", engine: str = "openvino",
                      draft_engine: str = "openvino") -> SpeculativePipeline:
        """Load a pair folder (edgespec.json) or a bare model folder.

        exact: None (default) gives the target call-shape-independent kernels so greedy speculative output equals
        target-only output (on CPUs with int8 dot products the fast defaults with two-token calls where a check finds
        them bitwise width-independent, call_width.py; else f32, no dynamic quantization, f32 KV cache), the draft
        the device's fast defaults; True makes both exact; False leaves both on the device defaults (faster on
        CPUs with bf16/VNNI, or with an f16 KV cache, but verifying k tokens at once may then flip the target's
        choice).
        rollback: "mask" or "trim" (see StatefulLM), for the stateful form.
        npu: static shapes for a model on device NPU (emulated on the CPU when there is none; see edgespec.runtime.npu).
        form: "paged" (OpenVINO's paged-attention form, PagedLM), "stateful" (StatefulLM), or "auto": paged on
        CPU, stateful elsewhere (NPU always runs stateful through NPUW).
        engine: the target's engine: "openvino", "llamacpp" (the GGUF the pair records, on llama.cpp; needs the
        edgespec[llamacpp] extra), or "auto": the faster of the two on this machine, from a short probe kept in
        the cache (OpenVINO when llama.cpp cannot run the target). draft_engine: the draft's, "openvino" or
        "llamacpp" (needs a GGUF of the draft).
        """
        return cls(load_pair(path), target_device, draft_device, use_draft, exact, rollback, npu, form, engine,
                   draft_engine)

    def _collab_draft(self) -> LM:
        """The draft collaborative decoding runs. Its logits enter the output, so unlike a speculative draft it
        needs call-shape-independent (exact) kernels for greedy CoS to equal naive collaborative decoding: with
        the default exact=None (fast draft) an exact copy is compiled once; exact=True has one already;
        exact=False (the device defaults for both) and NPU drafts are taken as they are."""
        if self.draft is None:
            raise EdgespecError("collaborative decoding needs a draft model: " + (
                "this pair has none" if self.pair.draft is None else "the pipeline has use_draft=False"))
        core, device, exact, rollback, npu, form = self._draft_load
        if exact is not None or is_npu(device) or self.draft_engine == "llamacpp":
            return self.draft
        if self.collab_draft is None:
            self.collab_draft = load_lm(core, self.pair.draft, device, True, rollback, npu, draft=True, form=form)
        return self.collab_draft

    def clear_cache(self) -> None:
        """Forget every cached position of every model: the next prompt is prefilled from scratch."""
        for target in self.targets.values():
            target.reset()
        for draft in (self.draft, self.collab_draft):
            if draft is not None:
                draft.reset()

    def prompt_ids(self, prompt: str | list[dict] | list[int], chat: bool | None = None) -> list[int]:
        """Token ids for a text prompt, chat messages, or ids given as they are."""
        context = self.target.context_length
        if isinstance(prompt, list) and prompt and all(isinstance(t, int) for t in prompt):
            ids = list(prompt)
        else:
            try:
                ids = self.tokenizer.encode(self._prompt_text(prompt, chat))
            except TextTooLong as exc:
                raise EdgespecError(f"prompt has {exc.tokens} tokens but the context holds {context}") from None
        if not ids:
            raise EdgespecError("empty prompt")
        if len(ids) >= context:  # a prompt that fills the context leaves no room for a single new token
            raise EdgespecError(f"prompt has {len(ids)} tokens but the context holds {context} "
                                f"(prompt and answer together)")
        return ids

    def _prompt_text(self, prompt: str | list[dict], chat: bool | None) -> str:
        if isinstance(prompt, list):
            return self.tokenizer.apply_chat_template(prompt)
        if not prompt.strip():
            raise EdgespecError("empty prompt")
        use_chat = self.tokenizer.has_chat_template if chat is None else chat
        return self.tokenizer.apply_chat_template([{"role": "user", "content": prompt}]) if use_chat else prompt

    def generate(self, prompt: str | list[dict] | list[int], config: GenerationConfig | None = None,
                 streamer: Streamer | None = None, chat: bool | None = None) -> GenerationResult:
        """Generate a continuation of `prompt`: text, chat messages ([{"role", "content"}]) or token ids."""
        config = config or GenerationConfig()
        ids = self.prompt_ids(prompt, chat)
        # auto with both targets: the prompt tokens each one's cache lacks choose the engine, and correct it after
        pending = self._pending(ids) if self.engine_choice is not None else None
        kind = self.prompt_kind(ids)
        if pending is not None:
            expected = self._engine_for(ids, pending, config, kind)
            self._use_engine(min(expected, key=expected.get))
        if self.draft is not None and config.adaptive_draft and not self.draft_policy.steady_cost:
            # Every loaded target's calls at once (auto): timed inside the first generation on the other engine, they
            # made it 0.8 s slower than llama.cpp's own (MT-bench, 16.3 against 10.2 ms a token: v22, v23).
            chosen = self.engine
            for name in self.targets:
                if not self.policies[name].steady_cost:
                    self._use_engine(name)
                    self._time_target_calls(config)
            self._use_engine(chosen)
        stats = self.last_stats = GenerationStats(engine=self.engine)  # readable after an interruption too
        if pending is not None:
            stats.engine_expected_s = expected
        stream = TextStream(self.tokenizer)
        generated: list[int] = []
        text = ""
        if config.collab is not None:
            steps = collab_decode(self.target, self._collab_draft(), ids, config, self.eos_ids, stats,
                                  self.collab_policy)
        else:
            if config.tree != "off" and (self.tree_shape is None or self.tree_shape.mode != config.tree):
                self.tree_shape = TreeShape(config.tree)
            steps = decode(self.target, self.draft, ids, config, self.eos_ids, stats, self.draft_policy,
                           self.tree_shape)
        # Detokenizing every step costs ~2 ms on this CPU; do it only when someone reads the pieces.
        incremental = streamer is not None or bool(config.stop_strings)
        try:
            for new_tokens in steps:
                generated.extend(new_tokens)
                if not incremental:
                    continue
                piece = stream.push(new_tokens)
                text += piece
                hit = _find_stop(text, config.stop_strings)
                if hit is not None:
                    piece = piece[:max(0, len(piece) - (len(text) - hit))]
                    text = text[:hit]
                    stats.stop_reason = "stop_string"
                if streamer is not None and piece and streamer(piece):
                    stats.stop_reason = stats.stop_reason or "streamer"
                if stats.stop_reason in ("stop_string", "streamer"):
                    break
        finally:
            steps.close()
            self.answer_tokens[kind] = decayed_length(self.answer_tokens.get(kind), len(generated))
            if pending is not None:
                finished = config.collab is None and stats.stop_reason in ("eos", "length", "stop_string")
                checked = finished and self._record_acceptance(ids, generated, config, stats, kind)
                # Where prompt lookup ran, the answer's copies are priced on every engine (EngineChoice.lift).
                copied = finished and self.draft is not None and config.prompt_lookup
                self.engine_choice.record(self.engine, pending[self.engine], len(ids), stats.ttft_s,
                                          stats.new_tokens, stats.wall_s,
                                          [n + 1 for n in stats.draft_lengths] or None, stats.draft_calls, kind,
                                          (ids, generated) if copied else None)
                if checked:  # after the record: the ran engine priced at the rate this generation gave it
                    self._space_checks(len(ids), len(generated), kind)
            if config.tree == "auto" and self.tree_shape is not None and not stats.tree_choice and not config.collab:
                stats.tree_choice = self.tree_shape.describe()
        if stats.stop_reason != "stop_string":
            final = self.tokenizer.decode(generated)  # the stream may still hold back a last piece
            if streamer is not None and final.startswith(text) and len(final) > len(text):
                streamer(final[len(text):])
            text = final
        return GenerationResult(text=text, token_ids=generated, stats=stats)

    def _record_acceptance(self, ids: list[int], generated: list[int], config: GenerationConfig,
                           stats: GenerationStats, kind: str) -> bool:
        """auto with both targets: tell the engine choice how well the draft did on this text (its chains' per-token
        acceptance; after a generation that did not draft, its agreement with the answer, read in one draft call
        whose time counts as this generation's; for a draft whose acceptance cannot move the choice, none). True
        where it ran an agreement check."""
        acceptance = stats.chain_acceptance()
        checked = False
        if acceptance is not None:
            # A fresh measure: the next check comes after CHECK_EVERY undrafted answers, not at the next one (in
            # mixed order every short question, after drafted math or chat, paid its 1-2% check).
            self.since_check[kind], self.check_every[kind] = 0, CHECK_EVERY
        elif (self.draft is not None and not stats.draft_calls and not config.do_sample and len(generated) >= 16
              and self.engine_choice.acceptance_matters(self.engine)):
            # Greedy agreement is the greedy acceptance; sampled text's would need the draft's distributions.
            every = self.check_every.get(kind, CHECK_EVERY)
            self.since_check[kind] = self.since_check.get(kind, every) + 1
            if self.since_check[kind] < every:
                return False
            # The draft's whole window as context: with 32 tokens, translations read 0.2 for 0.5 (the source text).
            view = DraftWindow.for_prompt(len(ids), config.draft_window).view(ids + generated)
            if not self._check_affordable(len(view), stats.wall_s):
                return False
            self.since_check[kind] = 0
            start = time.perf_counter()
            acceptance = draft_agreement(self.draft, view, len(generated))
            stats.draft_check_s = time.perf_counter() - start
            checked = True
        if acceptance is not None:
            self.engine_choice.record_acceptance(self.engine, acceptance, kind)
        return checked

    def _space_checks(self, prompt_tokens: int, answer_tokens: int, kind: str) -> None:
        """After an agreement check on `kind` text: its checks spaced twice as far apart where every other engine
        is still expected CHECK_FAR times slower at the acceptance just read (decoding alone, for an answer like this
        one), back to every CHECK_EVERY-th where the check brought the choice near."""
        expected = self.engine_choice.expected_by_engine({name: 0 for name in self.targets}, prompt_tokens,
                                                         answer_tokens, kind)
        others = min(seconds for name, seconds in expected.items() if name != self.engine)
        far = others >= CHECK_FAR * expected[self.engine]
        every = self.check_every.get(kind, CHECK_EVERY)
        self.check_every[kind] = min(2 * every, CHECK_EVERY_MAX) if far else CHECK_EVERY

    def _check_affordable(self, tokens: int, wall_s: float) -> bool:
        """Whether the draft can read `tokens` tokens for the agreement check within CHECK_BUDGET of the generation
        it follows, at its measured read cost (unknown: yes). SmolLM2's draft reads 0.1 ms a token here (a check of
        150 tokens: 15 ms of a 1.3 s answer); Qwen's 0.5B draft 2.0 ms, 5-10% of a short answer on llama.cpp, where
        auto's short questions ran at 0.89x of llama.cpp's own loop (Qwen v5)."""
        known = [policy.catch_up_cost for policy in self.policies.values() if policy.catch_up_cost]
        return not known or tokens * min(known) <= CHECK_BUDGET * wall_s


def _find_stop(text: str, stop_strings: tuple[str, ...]) -> int | None:
    hits = [text.find(s) for s in stop_strings if s and s in text]
    return min(hits) if hits else None
