"""Shared helpers for the perf experiments (issue 18). Run with
EDGESPEC_REF=<checkout of ed165e2> EDGESPEC_PAIR=<pair folder> PYTHONPATH=$EDGESPEC_REF:scripts/perf python <script>"""
import os, time, subprocess, statistics, inspect
import numpy as np
import openvino as ov
import openvino_genai
import edgespec
from edgespec.model import StatefulLM, slice_logits

REF = os.environ["EDGESPEC_REF"]  # the pre-layout tree these scripts import
assert edgespec.__file__.startswith(REF), edgespec.__file__
PAIR = os.environ["EDGESPEC_PAIR"]
TARGET = PAIR + "/target"
XML = TARGET + "/openvino_model.xml"
EXACT = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1", "INFERENCE_PRECISION_HINT": "f32",
         "DYNAMIC_QUANTIZATION_GROUP_SIZE": "0", "KV_CACHE_PRECISION": "f32"}
core = ov.Core()
_tok = None


def tokenizer():
    global _tok
    if _tok is None:
        _tok = openvino_genai.Tokenizer(TARGET)
    return _tok


def encode(text):
    return [int(i) for i in tokenizer().encode(text, add_special_tokens=False).input_ids.data[0]]


def long_text():
    import argparse, collections, difflib, email.message, textwrap
    parts = [inspect.getdoc(m) or "" for m in (argparse, difflib, collections)]
    parts += [inspect.getsource(textwrap.TextWrapper)]
    parts += [inspect.getsource(difflib.SequenceMatcher), inspect.getsource(argparse.ArgumentParser)]
    return "\n\n".join(parts)


PREFIXES = ["Summarise the following text.", "Explain what this code and documentation do.",
            "List the main ideas below.", "Read this carefully and answer briefly.", "What is this about?",
            "Give a short overview of the text.", "Find the key functions described here.",
            "Describe this for a beginner.", "Rewrite the gist in two sentences.", "Which modules are these?",
            "Point out anything surprising.", "Write a title for this material."]


def chat_prompt(i=0, target_tokens=660, body_offset=0):
    """A ~target_tokens chat prompt; i picks a different opening sentence (defeats prefix caching)."""
    body = long_text()[body_offset:]
    head = f"{PREFIXES[i % len(PREFIXES)]} (request {i})\n\n"
    lo, hi = 100, len(body)
    while lo < hi:  # binary search on characters for the token count
        mid = (lo + hi + 1) // 2
        n = len(encode(f"<|im_start|>user\n{head}{body[:mid]}<|im_end|>\n<|im_start|>assistant\n"))
        lo, hi = (mid, hi) if n <= target_tokens else (lo, mid - 1)
    text = f"<|im_start|>user\n{head}{body[:lo]}<|im_end|>\n<|im_start|>assistant\n"
    return text, encode(text)


def stateful(props=EXACT, rollback="mask", context=8192, slice_=True):
    m = core.read_model(XML)
    if slice_:
        slice_logits(m)
    c = core.compile_model(m, "CPU", props)
    return StatefulLM(c, context, rollback_mode=rollback)


def load():
    return subprocess.run(["cat", "/proc/loadavg"], capture_output=True, text=True).stdout.strip()


def med(xs):
    xs = sorted(xs)
    return f"{statistics.median(xs)*1e3:.1f} ms [{xs[0]*1e3:.1f}-{xs[-1]*1e3:.1f}] n={len(xs)}"


def now():
    return time.perf_counter()
