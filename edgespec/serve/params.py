"""Request bodies of /v1/chat/completions and /v1/completions, checked and turned into a GenerationConfig.

Every field is checked for presence and type before anything runs, so a bad request costs no model time and
gets one error naming the field (`param`), as OpenAI's API does. JSON null counts as absent.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgespec.runtime.config import GenerationConfig
from edgespec.serve.errors import bad_request, model_not_found

# Fields that tune the answer and are honoured.
COMMON = {"model", "stream", "stream_options", "max_tokens", "temperature", "top_p", "top_k", "seed", "stop", "n"}
CHAT_FIELDS = COMMON | {"messages", "max_completion_tokens"}
TEXT_FIELDS = COMMON | {"prompt"}
# Bookkeeping that does not change the answer: accepted and ignored, as clients send them routinely.
IGNORED = {"user", "metadata", "store", "safety_identifier", "prompt_cache_key", "service_tier", "parallel_tool_calls"}
# Features this server lacks, accepted only at the value that means "off".
NEUTRAL: dict[str, tuple] = {
    "frequency_penalty": (0,), "presence_penalty": (0,), "logprobs": (False, 0), "top_logprobs": (0,),
    "logit_bias": ({},), "tools": ([],), "functions": ([],), "tool_choice": ("none", "auto"),
    "response_format": ({"type": "text"},), "echo": (False,), "best_of": (1,), "suffix": ("",),
}
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
# OpenAI seeds are signed 64-bit; numpy's generator takes non-negative ones.
SEED_RANGE = 2 ** 64


@dataclass(frozen=True)
class ServedModel:
    """What requests are checked against: the one model's name and sizes."""
    id: str
    context_length: int
    vocab_size: int


@dataclass
class GenerationRequest:
    prompt: str | list[dict] | list[int]
    chat: bool  # chat messages through the target's template, or a raw prompt continued as it is
    config: GenerationConfig
    stream: bool
    include_usage: bool


def chat_request(body: dict, model: ServedModel) -> GenerationRequest:
    fields = _present(body)
    _check_fields(fields, CHAT_FIELDS)
    _check_model(fields, model.id)
    messages = _messages(fields.get("messages"))
    max_tokens = _positive_int(fields, "max_completion_tokens")
    if max_tokens is None:
        max_tokens = _positive_int(fields, "max_tokens")
    return _request(fields, model, messages, max_tokens, chat=True)


def completion_request(body: dict, model: ServedModel) -> GenerationRequest:
    fields = _present(body)
    _check_fields(fields, TEXT_FIELDS)
    _check_model(fields, model.id)
    prompt = _prompt(fields.get("prompt"), model.vocab_size)
    return _request(fields, model, prompt, _positive_int(fields, "max_tokens"), chat=False)


def _request(fields: dict, model: ServedModel, prompt, max_tokens: int | None, chat: bool) -> GenerationRequest:
    n = _integer(fields, "n")
    if n is not None and n != 1:
        raise bad_request(f"'n' must be 1 (got {n}): this server generates one choice per request", "n",
                          "unsupported_value")
    stream = _typed(fields, "stream", bool, "a boolean") or False
    options = _typed(fields, "stream_options", dict, "an object") or {}
    include_usage = options.get("include_usage") or False
    if not isinstance(include_usage, bool):
        raise bad_request("'stream_options.include_usage' must be a boolean", "stream_options.include_usage")
    # No max_tokens: the answer may run to the end of the context, where the runtime stops.
    config = _config(fields, max_tokens or model.context_length)
    return GenerationRequest(prompt, chat, config, stream, stream and include_usage)


def _config(fields: dict, max_tokens: int) -> GenerationConfig:
    temperature = _number(fields, "temperature", 0.0, 2.0)
    top_p = _number(fields, "top_p", 0.0, 1.0)
    if top_p == 0.0:
        raise bad_request("'top_p' must be above 0 and at most 1", "top_p")
    top_k = _integer(fields, "top_k")
    if top_k is not None and top_k < 0:
        raise bad_request("'top_k' must be 0 (all tokens) or more", "top_k")
    seed = _integer(fields, "seed")
    # OpenAI's default temperature is 1 (sampling); 0 asks for greedy decoding, the target's exact output.
    greedy = temperature == 0.0
    return GenerationConfig(max_new_tokens=max_tokens, do_sample=not greedy,
                            temperature=1.0 if temperature is None or greedy else temperature,
                            top_p=1.0 if top_p is None else top_p, top_k=top_k or 0,
                            seed=None if seed is None else seed % SEED_RANGE, stop_strings=_stop(fields))


def _present(body: dict) -> dict:
    return {name: value for name, value in body.items() if value is not None}


def _check_fields(fields: dict, supported: set[str]) -> None:
    for name, value in fields.items():
        if name in supported or name in IGNORED:
            continue
        if name in NEUTRAL:
            if value in NEUTRAL[name]:
                continue
            raise bad_request(f"'{name}' is not supported by this server (only {NEUTRAL[name][0]!r}, its "
                              f"default)", name, "unsupported_parameter")
        raise bad_request(f"'{name}' is not supported by this server", name, "unsupported_parameter")


def _check_model(fields: dict, model_id: str) -> None:
    name = _typed(fields, "model", str, "a string")
    if name is None:
        raise bad_request("'model' is required", "model", "missing_required_parameter")
    if name != model_id:
        raise model_not_found(name, model_id)


def _messages(value) -> list[dict]:
    if value is None:
        raise bad_request("'messages' is required", "messages", "missing_required_parameter")
    if not isinstance(value, list):
        raise bad_request(f"'messages' must be an array, got {_json_type(value)}", "messages")
    if not value:
        raise bad_request("'messages' must hold at least one message", "messages")
    return [_message(message, f"messages[{i}]") for i, message in enumerate(value)]


def _message(message, where: str) -> dict:
    if not isinstance(message, dict):
        raise bad_request(f"'{where}' must be an object, got {_json_type(message)}", where)
    role = message.get("role")
    if not isinstance(role, str):
        raise bad_request(f"'{where}.role' is required and must be a string", f"{where}.role")
    if role not in ROLES:
        raise bad_request(f"'{where}.role' '{role}' is not supported (system, developer, user, assistant)",
                          f"{where}.role", "unsupported_value")
    if message.get("tool_calls") or message.get("function_call"):
        raise bad_request(f"'{where}' has tool calls: this server has no tools", where, "unsupported_parameter")
    return {"role": ROLES[role], "content": _content(message.get("content"), f"{where}.content")}


def _content(content, where: str) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise bad_request(f"'{where}' must be a string or an array of text parts, got {_json_type(content)}", where)
    texts = []
    for i, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise bad_request(f"'{where}[{i}]' must be a text part ({{\"type\": \"text\", \"text\": ...}}): this "
                              f"server reads text only", f"{where}[{i}]")
        texts.append(part["text"])
    return "".join(texts)


def _prompt(value, vocab_size: int) -> str | list[int]:
    if value is None:
        raise bad_request("'prompt' is required", "prompt", "missing_required_parameter")
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], (str, list)):
        value = value[0]  # a batch of one
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(t, int) and not isinstance(t, bool) for t in value):
        if not all(0 <= t < vocab_size for t in value):
            raise bad_request(f"'prompt' holds token ids outside the vocabulary (0..{vocab_size - 1})", "prompt")
        return value
    if isinstance(value, list) and len(value) > 1 and all(isinstance(p, (str, list)) for p in value):
        raise bad_request(f"'prompt' holds {len(value)} prompts: send one prompt per request", "prompt",
                          "unsupported_value")
    raise bad_request("'prompt' must be a string or an array of token ids", "prompt")


def _stop(fields: dict) -> tuple[str, ...]:
    stop = fields.get("stop")
    if stop is None:
        return ()
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise bad_request("'stop' must be a string or an array of strings", "stop")
    return tuple(s for s in stop if s)


def _typed(fields: dict, name: str, kind: type, described: str):
    value = fields.get(name)
    if value is not None and not isinstance(value, kind):
        raise bad_request(f"'{name}' must be {described}, got {_json_type(value)}", name)
    return value


def _integer(fields: dict, name: str) -> int | None:
    value = fields.get(name)
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)  # JSON writers may print 64 as 64.0
    if not isinstance(value, int) or isinstance(value, bool):
        raise bad_request(f"'{name}' must be an integer, got {_json_type(value)}", name)
    return value


def _positive_int(fields: dict, name: str) -> int | None:
    value = _integer(fields, name)
    if value is not None and value < 1:
        raise bad_request(f"'{name}' must be at least 1 (got {value})", name)
    return value


def _number(fields: dict, name: str, low: float, high: float) -> float | None:
    value = fields.get(name)
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise bad_request(f"'{name}' must be a number, got {_json_type(value)}", name)
    if not low <= value <= high:
        raise bad_request(f"'{name}' must be between {low:g} and {high:g} (got {value})", name)
    return float(value)


def _json_type(value) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array",
             dict: "an object"}
    return names.get(type(value), type(value).__name__)

