"""Response bodies in OpenAI's schema: whole completions, stream chunks, usage, and server-sent events.

The speculative figures ride along in an extra top-level field, "edgespec", that OpenAI clients ignore.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field

from edgespec.runtime.config import GenerationStats
from edgespec.runtime.pipeline import GenerationResult

SSE_DONE = b"data: [DONE]\n\n"
# The runtime's stop reasons as OpenAI's finish reasons ("context": the context filled up, a length limit too).
FINISH = {"eos": "stop", "stop_string": "stop", "length": "length", "context": "length"}


def sse(obj: dict) -> bytes:
    return b"data: " + json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


def finish_reason(stats: GenerationStats) -> str:
    return FINISH.get(stats.stop_reason, "stop")


def usage(stats: GenerationStats) -> dict:
    return {"prompt_tokens": stats.prompt_tokens, "completion_tokens": stats.new_tokens,
            "total_tokens": stats.prompt_tokens + stats.new_tokens}


def figures(stats: GenerationStats, speculative: bool) -> dict:
    """The speculative figures of one answer, as the CLI prints them."""
    return {"mode": "speculative" if speculative else "target",
            "acceptance_rate": round(stats.acceptance_rate, 4),
            "tokens_per_target_call": round(stats.tokens_per_target_call, 4),
            "tokens_per_second": round(stats.new_tokens / stats.wall_s, 2) if stats.wall_s else 0.0,
            "time_to_first_token_s": round(stats.ttft_s, 4), "generation_s": round(stats.wall_s, 4),
            "target_calls": stats.target_calls, "draft_calls": stats.draft_calls}


@dataclass
class Reply:
    """The fixed fields of one response; `chat` picks chat.completion or text_completion shapes."""
    model: str
    chat: bool
    speculative: bool
    id: str = ""
    created: int = field(default_factory=lambda: int(time.time()))

    def __post_init__(self):
        self.id = self.id or ("chatcmpl-" if self.chat else "cmpl-") + uuid.uuid4().hex

    def whole(self, result: GenerationResult) -> dict:
        stats = result.stats
        if self.chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": result.text, "refusal": None},
                      "logprobs": None, "finish_reason": finish_reason(stats)}
        else:
            choice = {"index": 0, "text": result.text, "logprobs": None, "finish_reason": finish_reason(stats)}
        return {**self._head("chat.completion" if self.chat else "text_completion"), "choices": [choice],
                "usage": usage(stats), "edgespec": figures(stats, self.speculative)}

    def first_chunk(self) -> dict | None:
        """Chat streams open with the assistant's role and no text; text streams have no such chunk."""
        return self._chunk({"role": "assistant", "content": ""}) if self.chat else None

    def text_chunk(self, text: str) -> dict:
        return self._chunk({"content": text} if self.chat else text)

    def last_chunk(self, stats: GenerationStats) -> dict:
        chunk = self._chunk({} if self.chat else "", finish_reason(stats))
        chunk["edgespec"] = figures(stats, self.speculative)
        return chunk

    def usage_chunk(self, stats: GenerationStats) -> dict:
        """With stream_options.include_usage: a last chunk with no choices and the usage."""
        return {**self._head(self._chunk_object()), "choices": [], "usage": usage(stats)}

    def _chunk(self, delta: dict | str, finish: str | None = None) -> dict:
        if self.chat:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        else:
            choice = {"index": 0, "text": delta, "logprobs": None, "finish_reason": finish}
        return {**self._head(self._chunk_object()), "choices": [choice]}

    def _chunk_object(self) -> str:
        return "chat.completion.chunk" if self.chat else "text_completion"

    def _head(self, obj: str) -> dict:
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model}
