"""Which engine runs a model: OpenVINO, llama.cpp, or the faster of the two on this machine (auto).

auto times both engines on the target (calls of 1, 2 and 4 tokens after a short past, as verification makes them, a
prompt's prefill, and a one-token step after it: how a step's cost grows with the context) and the draft's one-token
step, predicts the tokens per second each engine would decode at with the draft at a prior acceptance (and alone),
and picks the higher. Where the other engine prefills faster or decodes faster at long contexts (llama.cpp decodes
SmolLM2 Q4_1 faster here but prefills it at half OpenVINO's speed, and its step grows with the context where
OpenVINO's paged form hardly does), or decodes faster where the draft does poorly, both stay loaded and each
generation takes the engine with the least expected time (EngineChoice): the prompt tokens its cache lacks at its
prefill rate plus the expected answer at its decode rate for that context, both corrected by what the last
generations on that engine really took, the decode rate following the workload (the last generation's realized rate,
and the draft's measured acceptance). The verdict is kept in the cache, keyed by the model files, the library
versions, the CPU and the thread count, so it is measured again only when one of those changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import statistics
import time
from collections import deque
from pathlib import Path

import numpy as np

from edgespec.runtime import costs
from edgespec.runtime.cache import cache_root
from edgespec.runtime.draft_length import CEILING, PROBE_GAIN, expected_tokens
from edgespec.runtime.errors import EdgespecError
from edgespec.runtime.llamacpp import LlamaCppLM, available, default_threads, llama_cpp_version
from edgespec.runtime.lookup import copy_walks
from edgespec.runtime.manifest import ModelEntry

ENGINES = ("openvino", "llamacpp", "auto")
PROBE_NS = (1, 2, 4)
PROBE_PAST = 128
PROBE_REPEATS = 5
PROBE_ROUNDS = 3  # the engines' calls timed in turns, three rounds of CALL_REPEATS each
CALL_REPEATS = 3
# Per-token acceptance assumed before any is measured: about what the shipped SmolLM2 draft reaches (its greedy
# token match is 0.56 on MT-bench and 0.73 on HumanEval); the adaptive policy corrects k once decoding runs.
PRIOR_ACCEPTANCE = 0.6
# A workload the draft does poorly on (MT-bench's questions: 0.3-0.4 a token with the shipped draft): where the other
# engine decodes faster there, both stay loaded. At the prior alone, SmolLM2's probe kept OpenVINO only (129 against
# 123 tokens/s) and MT-bench ran there at 0.90x of llama.cpp's plain decoding (v24).
LOW_ACCEPTANCE = 0.3
PROBE_FILE = "engine-probes.json"
# 2: prefill timed too; 3: a step after the prefill (the cost's growth with the context); 4: a steady one;
# 5: every width warmed up before any is timed, median of 5; 6: the engines timed in turns, median over rounds;
# 7: the step's growth from steps timed alike after 32 and 256 prompt tokens; 8: per_prompt also where the other
# engine decodes faster at LOW_ACCEPTANCE; 9: OpenVINO calls with their inputs bound to the request (0.3-0.5 ms less);
# 10: the two-token target's KV cache in 16 bits (Qwen2.5's passes the check)
PROBE_VERSION = 10
PREFILL_TOKENS = 256  # the probe's prompt (prefill time grows about linearly with the prompt here)
SHORT_PREFILL = 32  # the short prompt a step is timed after too (the step's growth from 32 to 256 positions)
STEPS_AFTER = 4
LONG_CONTEXT = 2048  # a context where both engines are compared too (per_prompt when the faster one differs)
# Decoding around more positions than this is corrected apart: the probe times steps up to PREFILL_TOKENS, and
# OpenVINO speculation after 600-1000-token prompts ran 1.5x its prediction, which priced chat prompts of 250-300
# tokens (1.1x faster on OpenVINO, from its prefill) onto llama.cpp (SmolLM2 v12).
LONG_DECODE = 2 * PREFILL_TOKENS
# Kinds of prompt whose workloads the engine choice follows apart: chat-formatted prompts and plain text (code
# completion, continuation). Priced by the code answers before it (their drafts accepted at 0.75-0.95), the first
# MT-bench question after HumanEval's completions ran on OpenVINO at 0.66x of llama.cpp's speed (v27, v28).
CHAT, TEXT = "chat", "text"
# Prompt lookup copies from the prompt, so how much an answer copies depends on how much text it was given: a
# prompt's copying is expected from the recent prompts of its kind within this factor of its length (code edits
# and long documents copy a third to all of their answer, translations and short questions next to nothing).
LIFT_SPAN = 2.0
LIFT_HISTORY = 32  # generations whose copying is remembered


def check_engine(engine: str) -> str:
    if engine not in ENGINES:
        raise EdgespecError(f"unknown engine {engine!r} (choose from {', '.join(ENGINES)})")
    return engine


def load_llamacpp(entry: ModelEntry, role: str = "target") -> LlamaCppLM:
    """The model of `entry` on llama.cpp, from the GGUF the pair records for it."""
    if entry.gguf is None:
        raise EdgespecError(f"the {role} in {entry.dir} has no GGUF recorded (the llama.cpp engine reads GGUF: "
                            f"export the pair from a GGUF, or use --engine openvino)")
    if not entry.gguf.is_file():
        raise EdgespecError(f"the {role}'s GGUF is missing: {entry.gguf}")
    lm = LlamaCppLM(entry.gguf, entry.context_length, vocab_map=entry.vocab_map())
    if entry.vocab_size and lm.vocab_size != entry.vocab_size:
        raise EdgespecError(f"{entry.gguf} has a vocabulary of {lm.vocab_size} tokens, the {role}'s OpenVINO "
                            f"model {entry.vocab_size}: not the same model")
    return lm


def llamacpp_usable(entry: ModelEntry, device: str) -> str | None:
    """Why the llama.cpp engine cannot run `entry` on `device` (None: it can)."""
    if device.split(".")[0].split(":")[0].upper() != "CPU":
        return f"the llama.cpp engine runs on the CPU here, not {device}"
    if not available():
        return "llama-cpp-python is not installed (the edgespec[llamacpp] extra)"
    if entry.gguf is None or not entry.gguf.is_file():
        return "the pair records no GGUF for this model"
    return None


def _file_stamp(path: Path | None) -> list:
    if path is None or not path.is_file():
        return [str(path), None]
    stat = path.stat()
    return [str(path.resolve()), stat.st_size, int(stat.st_mtime)]


def probe_key(target: ModelEntry, draft: ModelEntry | None, device: str, draft_device: str) -> str:
    """What the probe's answer depends on: model files, library versions, CPU, threads, devices."""
    import openvino as ov

    from edgespec.runtime.hardware import cpu_flags, cpu_name

    facts = {"version": PROBE_VERSION, "target": [_file_stamp(target.xml), _file_stamp(target.gguf)],
             "draft": _file_stamp(draft.xml) if draft else None, "devices": [device, draft_device],
             "openvino": ov.get_version(), "llama_cpp": llama_cpp_version(), "cpu": cpu_name(),
             "machine": platform.machine(), "threads": default_threads(),
             # One model name covers CPUs with and without AVX-512 (this project's EPYCs): the kernels differ.
             "isa": sorted(f for f in cpu_flags() if f.startswith(("avx", "amx")))}
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:24]


def predicted_rate(call_s: dict[int, float], draft_token_s: float | None, acceptance: float = PRIOR_ACCEPTANCE,
                   max_k: int = 3) -> tuple[float, int]:
    """(tokens per second, k) of the best draft length 0..max_k for a target with these call costs (k = 0 only
    without a draft)."""
    best = (1.0 / costs.interp_call(call_s, 1), 0)
    if draft_token_s is None:
        return best
    for k in range(1, max_k + 1):
        rate = expected_tokens(acceptance, k) / (costs.interp_call(call_s, k + 1) + k * draft_token_s)
        best = max(best, (rate, k))
    return best


# Longest prompt-lookup proposal priced for an engine that did not run a text (the loop's own cap is the policy's
# maximum); calls wider than the probe's widest are priced on the slope of its last two widths.
LOOKUP_PRICED = 7


def call_seconds(call_s: dict[int, float], n: int) -> float:
    """A call of n tokens at these probed costs, extended past the widest probed call on the slope of the last two
    (np.interp would price 8 tokens as 4)."""
    widths = sorted(int(w) for w in call_s)
    if n <= widths[-1] or len(widths) < 2:
        return costs.interp_call(call_s, n)
    (a, ca), (b, cb) = [(w, float(call_s.get(w, call_s.get(str(w))))) for w in widths[-2:]]
    return cb + (n - b) * (cb - ca) / (b - a)


def lookup_rate(call_s: dict[int, float], plain_rate: float, walks: dict[int, tuple[list, int]], tokens: int) -> float:
    """Tokens per second a target with these call costs would have decoded an answer of `tokens` tokens after the
    first at, with prompt lookup verifying the steps of `walks` (lookup.copy_walks: per proposal limit) and the other
    tokens at `plain_rate`: the best over the limits, or `plain_rate` where copying does not pay (the draft-length
    policy leaves lookup alone there)."""
    best = plain_rate
    for steps, covered in walks.values():
        if steps:
            seconds = (sum(call_seconds(call_s, proposed + 1) for proposed, _ in steps)
                       + (tokens - covered) / plain_rate)
            best = max(best, tokens / seconds)
    return best


def answer_walks(prompt: list[int], answer: list[int]) -> dict[int, tuple[list, int]]:
    """What prompt lookup would have verified on `answer`, per proposal limit up to LOOKUP_PRICED."""
    return copy_walks(prompt, answer, range(1, LOOKUP_PRICED + 1))


def probe_calls(lms: dict, seed_ids: list[int], rounds: int = PROBE_ROUNDS) -> dict[str, dict[int, float]]:
    """Per model, median seconds of target calls of PROBE_NS tokens after a PROBE_PAST-token past, the models timed
    in turns (each round times every one), per width the median over rounds: this shared VM's speed moves by up to
    25% within a minute, and one engine timed in a slow moment (OpenVINO's step read 22.5 ms against 13-17 in the
    bench's loop) priced it out of every short prompt."""
    pasts = {name: np.resize(np.asarray(seed_ids, dtype=np.int64),
                             min(PROBE_PAST, lm.context_length - max(PROBE_NS) - 1)) for name, lm in lms.items()}
    for name, lm in lms.items():
        # A first pass warms every shape up: the probe runs once, at load, and a cold 1-token step read as 20 ms
        # against 12 (the machine settling) chose the engine for good.
        costs.time_calls(lm, pasts[name], list(PROBE_NS), 1)
    timed: dict[str, list[dict]] = {name: [] for name in lms}
    for _ in range(rounds):
        for name, lm in lms.items():
            timed[name].append(costs.time_calls(lm, pasts[name], list(PROBE_NS), CALL_REPEATS)["call_s"])
    return {name: {n: statistics.median(r[n] for r in runs) for n in PROBE_NS} for name, runs in timed.items()}


def probe_draft(draft, seed_ids: list[int]) -> float:
    """Median seconds of one draft token after a short past."""
    past = np.resize(np.asarray(seed_ids, dtype=np.int64), min(PROBE_PAST, draft.context_length - 2))
    return costs.time_calls(draft, past, [1], PROBE_REPEATS)["call_s"][1]


def probe_prefill(lm, seed_ids: list[int]) -> tuple[float, float, float]:
    """Median seconds of a PREFILL_TOKENS-token prompt fed to an empty cache (the first is a warm-up), and of a
    steady one-token step after it and after a SHORT_PREFILL-token one, timed alike: the step's growth with the
    context is their difference."""
    ids = np.resize(np.asarray(seed_ids, dtype=np.int64), min(PREFILL_TOKENS, lm.context_length - STEPS_AFTER - 2))
    prefill_s, steps = costs.time_prefills(lm, ids, PROBE_REPEATS, steady_step)
    _, short = costs.time_prefills(lm, ids[:SHORT_PREFILL], PROBE_REPEATS, steady_step)
    return prefill_s, statistics.median(steps), statistics.median(short)


def steady_step(lm) -> float:
    """Median seconds of STEPS_AFTER one-token steps after the cached text, the first (untimed) not counted: it pays
    OpenVINO's shape switch (about 8 ms here). One timed step against the calls' probe (another timing pattern) read
    Qwen's OpenVINO growth at 1e-4 s a position, ten times what its steps show, and priced a step after a
    1000-token prompt at 150 ms against 65 ms measured: long prompts went to llama.cpp at 0.7x OpenVINO's speed."""
    lm.forward([lm.tokens[-1]], last=1)
    times = []
    for _ in range(STEPS_AFTER):
        start = time.perf_counter()
        lm.forward([lm.tokens[-1]], last=1)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def decide(openvino_calls: dict[int, float], llamacpp_calls: dict[int, float], draft_token_s: float | None,
           prefill_s: dict[str, float] | None = None, long_step_s: dict[str, float] | None = None,
           short_step_s: dict[str, float] | None = None) -> dict:
    """The probe's verdict from measured costs: each engine's predicted decode rate, the faster engine, and whether
    the other one prefills faster or decodes faster at LONG_CONTEXT (per_prompt: keep both, choose per generation
    with EngineChoice). long_step_s: a one-token step after PREFILL_TOKENS (None: steps taken not to grow);
    short_step_s: the same after SHORT_PREFILL (None: the growth is taken from the calls' one-token step)."""
    calls = {"openvino": openvino_calls, "llamacpp": llamacpp_calls}
    rates = {e: predicted_rate(c, draft_token_s) for e, c in calls.items()}
    engine = max(rates, key=lambda e: rates[e][0])
    verdict = {"engine": engine, "predicted_tokens_per_s": {e: r for e, (r, _) in rates.items()},
               "predicted_k": {e: k for e, (_, k) in rates.items()}, "acceptance_prior": PRIOR_ACCEPTANCE,
               "call_s": calls, "draft_token_s": draft_token_s, "prefill_s": prefill_s,
               "prefill_tokens": PREFILL_TOKENS, "probe_past": PROBE_PAST}
    # Seconds a one-token step gains per position of context (llama.cpp's grows about 8 us here, OpenVINO's
    # paged form's hardly at all: docs/llamacpp.md).
    if long_step_s and short_step_s:
        growth = {e: (long_step_s[e] - short_step_s[e]) / (PREFILL_TOKENS - SHORT_PREFILL) for e in calls}
    elif long_step_s:
        growth = {e: (long_step_s[e] - costs.interp_call(c, 1)) / (PREFILL_TOKENS - PROBE_PAST)
                  for e, c in calls.items()}
    else:
        growth = {e: 0.0 for e in calls}
    verdict["step_growth_s"] = {e: max(0.0, g) for e, g in growth.items()}
    long_decoder = min(calls, key=lambda e: per_token_s(verdict, e, LONG_CONTEXT))
    low_decoder = max(calls, key=lambda e: predicted_rate(calls[e], draft_token_s, LOW_ACCEPTANCE)[0])
    prefiller = min(prefill_s, key=prefill_s.get) if prefill_s else engine
    verdict["per_prompt"] = bool(prefill_s) and any(e != engine for e in (prefiller, long_decoder, low_decoder))
    return verdict


def context_growth(verdict: dict, engine: str, context: float) -> float:
    """How much dearer a step on `engine` is around `context` positions than at the probe's past: its one-token
    step grown by the measured cost per position of context, over the step as probed."""
    step = costs.interp_call(verdict["call_s"][engine], 1)
    return (step + verdict["step_growth_s"][engine] * max(0.0, context - verdict["probe_past"])) / step


def per_token_s(verdict: dict, engine: str, context: float) -> float:
    """Predicted seconds per answer token on `engine` around `context` positions: the probe's predicted decode
    rate, grown with the context."""
    return context_growth(verdict, engine, context) / verdict["predicted_tokens_per_s"][engine]


def prefill_seconds(verdict: dict, engine: str, prompt_tokens: int) -> float:
    """Predicted seconds to prefill `prompt_tokens` on `engine` (linear in the prompt, as measured here)."""
    return verdict["prefill_s"][engine] * prompt_tokens / verdict["prefill_tokens"]


class EngineChoice:
    """Chooses the engine for each generation (auto with both targets loaded) from the probe's verdict, corrected
    by what the generations on each engine really took: a generation's prefill over the predicted one, and its
    decoding time over what the probe's costs price the calls it really made at (each step's call width, its draft
    calls; the probe prices one prompt's context, real answers run longer), each the median of the last few.

    The answer is priced at the decode rate the last generations point to, not at the prior acceptance: the engine
    that ran gives its realized rate (tokens per probe-priced second of the calls it made: acceptance and prompt
    lookup included), and the draft's measured acceptance on that text (its chains, or after a generation that did
    not draft, its agreement with the answer: draft_agreement) prices every other engine's best draft length. At
    the prior alone, MT-bench's questions (acceptance 0.3-0.55) stayed on OpenVINO, 0.87x of llama.cpp's plain
    decoding (v20). Carried from one generation to the next, one workload's rate misprices the first prompt of the
    next (code at 0.8, then questions at 0.4: v8); measured again after every generation, it misprices only that
    one. Acceptance alone, without the realized rate, failed on prompt lookup: a code edit at per-token acceptance
    0.88 (lookup tokens, one-token and wide calls mixed) ran at twice what 0.88 predicts (v13). Chat-formatted
    prompts and plain text (code completion) keep their rates apart (`kind`): a chat question after code
    completions is priced by the chat before it, or by the probe. Prompt lookup's copies are the prompt's, not the
    workload's: the rates hold each engine's speed without them, and each answer's copies, priced on every engine,
    are a lift expected for prompts of the same kind and a like length (`lift`)."""

    # A correction is the median of the last WINDOW generations' ratios, the probe's own price counted as the first:
    # a running mean kept one stalled generation (1.48 s for 73 HumanEval tokens against 0.66 s for 128) in
    # OpenVINO's decode correction (1.85) for good, since an engine no longer chosen is no longer measured.
    WINDOW = 5
    # Weight of the old rate: the last generation says most about the next (a user's next prompt is most often of
    # the same kind); at 0.5, two code answers kept the next two MT-bench questions on OpenVINO.
    KEEP_RATE = 0.25
    BOUNDS = (0.25, 4.0)  # one stalled generation (other work on the cores) must not rule an engine out for good

    def __init__(self, verdict: dict):
        self.verdict = verdict
        # The last ratios of each correction ("prefill", "decode", and "long" for decoding past LONG_DECODE, whose
        # window starts at the first long run: see record), per engine.
        self.ratios = {(correction, e): deque([1.0], maxlen=self.WINDOW) for correction in ("prefill", "decode")
                       for e in verdict["call_s"]}
        # Per kind of prompt (CHAT, TEXT): tokens per second each engine is expected to decode at, at the probe's
        # context, for that kind's current workload; a kind not seen yet starts from the probe's prediction.
        self.rates: dict[str, dict[str, float]] = {}
        self.acceptance: dict[str, float] = {}  # per kind, the draft's last measured per-token acceptance
        # (prompt tokens, kind, {engine: lift}): how much faster than its rate without copies each engine would have
        # decoded the recent answers with prompt lookup (lookup_rate over the plain rate), newest last.
        self.lifts: deque[tuple[int, str, dict[str, float]]] = deque(maxlen=LIFT_HISTORY)

    def rates_for(self, kind: str) -> dict[str, float]:
        if kind not in self.rates:
            self.rates[kind] = {e: float(r) for e, r in self.verdict["predicted_tokens_per_s"].items()}
        return self.rates[kind]

    @property
    def rate(self) -> dict[str, float]:
        """The rates of plain-text prompts (the kind a caller that does not say gets)."""
        return self.rates_for(TEXT)

    @rate.setter
    def rate(self, rates: dict[str, float]) -> None:
        self.rates[TEXT] = dict(rates)

    def expected(self, engine: str, pending: int, prompt_tokens: int, answer_tokens: float,
                 kind: str = TEXT) -> float:
        """Expected seconds on `engine` for a prompt of `prompt_tokens` of which `pending` are not cached there."""
        prefill = prefill_seconds(self.verdict, engine, pending) * self.factor("prefill", engine)
        context = prompt_tokens + answer_tokens / 2
        rate = self.rates_for(kind)[engine] * self.lift(engine, prompt_tokens, kind)
        decode = context_growth(self.verdict, engine, context) / rate
        return prefill + answer_tokens * decode * self._decode_factor(engine, context)

    def lift(self, engine: str, prompt_tokens: int, kind: str = TEXT) -> float:
        """How many times its rate without copies `engine` is expected to decode a `kind` prompt of `prompt_tokens`
        at: the median lift of the remembered prompts of that kind within LIFT_SPAN of its length, 1 without any.
        Carried in the rate from the last prompt whatever its length, a code edit's copies sent the translation
        after it to OpenVINO (Qwen: 0.8x of llama.cpp), and a short question's lack of them the long document after
        it to llama.cpp."""
        near = [lifts[engine] for n, k, lifts in self.lifts
                if k == kind and max(n, prompt_tokens) <= LIFT_SPAN * max(1, min(n, prompt_tokens))]
        return statistics.median(near) if near else 1.0

    def factor(self, correction: str, engine: str) -> float | None:
        """How many times its price `engine`'s last generations took, for `correction`: "prefill", "decode" or
        "long" (None before the first long run)."""
        window = self.ratios.get((correction, engine))
        return statistics.median(window) if window else None

    @property
    def prefill_factor(self) -> dict[str, float]:
        return {e: self.factor("prefill", e) for e in self.verdict["call_s"]}

    @property
    def decode_factor(self) -> dict[str, float]:
        return {e: self.factor("decode", e) for e in self.verdict["call_s"]}

    @property
    def long_decode_factor(self) -> dict[str, float | None]:
        return {e: self.factor("long", e) for e in self.verdict["call_s"]}

    def _decode_factor(self, engine: str, context: float) -> float:
        long = self.factor("long", engine)
        return long if context > LONG_DECODE and long is not None else self.factor("decode", engine)

    def expected_by_engine(self, pending: dict[str, int], prompt_tokens: int, answer_tokens: float,
                           kind: str = TEXT) -> dict[str, float]:
        """Expected seconds on each engine, `pending` holding the prompt tokens its cache lacks."""
        return {e: self.expected(e, n, prompt_tokens, answer_tokens, kind) for e, n in pending.items()}

    def choose(self, pending: dict[str, int], prompt_tokens: int, answer_tokens: float, kind: str = TEXT) -> str:
        expected = self.expected_by_engine(pending, prompt_tokens, answer_tokens, kind)
        return min(expected, key=expected.get)

    def record(self, engine: str, pending: int, prompt_tokens: int, ttft_s: float, new_tokens: int,
               wall_s: float, widths: list[int] | None = None, draft_calls: int = 0, kind: str = TEXT,
               text: tuple[list[int], list[int]] | None = None) -> None:
        """A generation of a `kind` prompt ran on `engine`: `pending` prompt tokens prefilled, `new_tokens` in
        `wall_s` seconds, its steps after the prefill feeding `widths` tokens each (None: one token each) with
        `draft_calls` draft calls; `text` (the prompt and the answer) where prompt lookup ran. The engine's
        corrections are the engine's, whatever the kind; the rate is the kind's, without the answer's copies: they
        are the prompt's (`lift`), remembered apart."""
        copied = bool(text) and len(text[1]) >= 2
        measured = new_tokens >= 8 and wall_s > ttft_s  # the ran engine's lift is then its realized one
        lifts = self._answer_lifts(kind, *text, skip=engine if measured else None) if copied else {}
        # Only prompts as long as the probe's: a short one's time to first token is mostly fixed costs (a new input
        # shape, the first step: 0.3 s for 53 tokens predicted at 0.09 here), which priced long prompts 3x too dear.
        if pending >= self.verdict["prefill_tokens"] and ttft_s > 0:
            self._update("prefill", engine, ttft_s / prefill_seconds(self.verdict, engine, pending))
        if measured:
            context = prompt_tokens + new_tokens / 2
            steps = widths or [1] * (new_tokens - 1)
            # At the probe's past; lookup steps of up to 8 tokens priced past the probe's widest call on its slope.
            calls_s = sum(call_seconds(self.verdict["call_s"][engine], w) for w in steps)
            ratio = (wall_s - ttft_s) / self._priced_decoding(engine, context, calls_s, draft_calls)
            if context > LONG_DECODE:
                if ("long", engine) not in self.ratios:  # the first long run starts from the short ones' factor
                    self.ratios["long", engine] = deque([self.factor("decode", engine)], maxlen=self.WINDOW)
                self._update("long", engine, ratio)
            else:
                self._update("decode", engine, ratio)
            priced = self._priced_decoding(engine, self.verdict["probe_past"], calls_s, draft_calls)
            rate = (new_tokens - 1) / priced
            if copied:
                rate = self._without_copies(engine, rate, kind, lifts)
            self._move_rate(kind, engine, rate)
        if copied:
            self.lifts.append((prompt_tokens, kind, lifts))

    def _without_copies(self, engine: str, rate: float, kind: str, lifts: dict[str, float]) -> float:
        """The rate of the engine that ran, without the answer's copies: its best at the draft's measured acceptance
        on this kind, as every other engine's; and in `lifts` its realized rate over that in place of the one its
        calls price the answer's copies at (the copies, and what the engine did beyond its price). Its steps that
        verified no lookup tokens are no measure of it: on a copied answer they are the hard tokens (a code edit's
        changes), and priced at them a translation after code edits went to llama.cpp at 3.5 s expected where
        OpenVINO took 0.7 (SmolLM2)."""
        plain = self._plain_rate(self.verdict["call_s"][engine], self.acceptance.get(kind))
        lifts[engine] = rate / plain
        return plain

    def _answer_lifts(self, kind: str, prompt: list[int], answer: list[int],
                      skip: str | None = None) -> dict[str, float]:
        """Each engine's lift on this answer but `skip`'s: its lookup_rate over its rate at the draft's last measured
        acceptance on this kind."""
        lifts, walks = {}, answer_walks(prompt, answer)  # the walks are the text's: one for every engine
        for engine, call_s in self.verdict["call_s"].items():
            if engine == skip:
                continue
            plain = self._plain_rate(call_s, self.acceptance.get(kind))
            lifts[engine] = lookup_rate(call_s, plain, walks, len(answer) - 1) / plain
        return lifts

    def _plain_rate(self, call_s: dict[int, float], acceptance: float | None) -> float:
        """The best rate these calls give at this acceptance (None: the target alone)."""
        if acceptance is None:
            return 1.0 / costs.interp_call(call_s, 1)
        return predicted_rate(call_s, self.verdict["draft_token_s"], acceptance)[0]

    def acceptance_matters(self, ran: str) -> bool:
        """Whether the draft's acceptance could price another engine than `ran` above its target alone (by
        PROBE_GAIN at an acceptance of CEILING): if not (Qwen's 0.5B draft, half a target step), measuring it is
        time lost."""
        draft_s = self.verdict["draft_token_s"]
        return draft_s is not None and any(
            predicted_rate(call_s, draft_s, CEILING)[0] > PROBE_GAIN / costs.interp_call(call_s, 1)
            for engine, call_s in self.verdict["call_s"].items() if engine != ran)

    def record_acceptance(self, ran: str, acceptance: float, kind: str = TEXT) -> None:
        """The draft's per-token acceptance on the `kind` text `ran` just decoded: the rate every other engine
        would decode such text at without copies (its best draft length at that acceptance, or its target alone).
        Recorded before the generation itself (`record`), whose copies are priced at it."""
        self.acceptance[kind] = acceptance
        for engine, call_s in self.verdict["call_s"].items():
            if engine != ran:
                self._move_rate(kind, engine, self._plain_rate(call_s, acceptance))

    def _move_rate(self, kind: str, engine: str, rate: float) -> None:
        """Weigh in a new rate by its seconds per token, what an answer's expected time is linear in: as a mean of
        tokens per second, code edits' rate (lifted 3-6x by prompt lookup) kept a quarter of its pull on the next
        generation, a translation that sat the draft out (Qwen: 58 tokens/s in the probe's prices, then 21)."""
        rates = self.rates_for(kind)
        rates[engine] = 1.0 / (self.KEEP_RATE / rates[engine] + (1 - self.KEEP_RATE) / rate)

    def _priced_decoding(self, engine: str, context: float, calls_s: float, draft_calls: int) -> float:
        """Seconds the probe's costs give target calls priced `calls_s` at the probe's past, grown to `context`,
        and `draft_calls` draft calls."""
        draft_s = draft_calls * (self.verdict["draft_token_s"] or 0.0)
        return calls_s * context_growth(self.verdict, engine, context) + draft_s

    def _update(self, correction: str, engine: str, ratio: float) -> None:
        """A generation on `engine` took `ratio` times what was predicted: one more of `correction`'s last ratios."""
        low, high = self.BOUNDS
        self.ratios[correction, engine].append(min(max(ratio, low), high))


def read_probes(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def remember(path: Path, key: str, verdict: dict) -> None:
    """Add one verdict to the probe file (written aside and renamed: readers never see half a file)."""
    data = read_probes(path)
    data[key] = {**verdict, "measured": time.strftime("%Y-%m-%dT%H:%M:%S")}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1, default=str) + "\n")
    os.replace(tmp, path)


def remembered(key: str, cache_dir: str | Path | None = None) -> dict | None:
    return read_probes(cache_root(cache_dir) / PROBE_FILE).get(key)


def probe_file(cache_dir: str | Path | None = None) -> Path:
    return cache_root(cache_dir) / PROBE_FILE
