"""Text in and out through OpenVINO GenAI's Tokenizer (tokenizer/detokenizer IR + chat template)."""

from __future__ import annotations

from pathlib import Path

import openvino_genai

from edgespec.runtime.errors import EdgespecError


CHECK_FROM = 2048  # ids this long may have been cut by the tokenizer IR: count again in pieces
PIECE_CHARS = 4000  # at least one character per token, so a piece stays below any cut-off length


class TextTooLong(EdgespecError):
    def __init__(self, tokens: int):
        super().__init__(f"text has {tokens} tokens")
        self.tokens = tokens


class TextTokenizer:
    def __init__(self, folder: str | Path):
        try:
            self.tokenizer = openvino_genai.Tokenizer(str(folder))
        except RuntimeError as exc:
            raise EdgespecError(f"cannot load the tokenizer in {folder}: {_last_line(exc)}") from None
        self.has_chat_template = bool(self.tokenizer.chat_template.strip())

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`. Raises TextTooLong (with the real count) where the tokenizer IR would cut the
        text at its built-in maximum length (8,192 for SmolLM2's) instead of saying so."""
        ids = self._encode(text)
        if len(ids) >= CHECK_FROM:
            total = self.count(text)
            if total > len(ids):
                raise TextTooLong(total)
        return ids

    def _encode(self, text: str) -> list[int]:
        # Chat-formatted prompts already carry their special tokens; raw text gets none added either,
        # so both edgespec and the GenAI baseline see the same ids.
        ids = self.tokenizer.encode(text, add_special_tokens=False).input_ids.data
        return [int(i) for i in ids[0]]

    def count(self, text: str) -> int:
        """Tokens in `text`, counted in pieces cut at line ends or spaces, each far below any truncation
        length (a piece boundary can merge or split one token, so this is exact to a token per piece)."""
        total, start = 0, 0
        while start < len(text):
            end = min(len(text), start + PIECE_CHARS)
            if end < len(text):
                # Cut before the space or line end: the next piece starts with it, as words do in the whole text.
                cut = max(text.rfind("\n", start, end), text.rfind(" ", start, end))
                end = cut if cut > start else end
            total += len(self._encode(text[start:end]))
            start = end
        return total

    def decode(self, ids: list[int]) -> str:
        if not ids:
            return ""
        return self.tokenizer.decode(list(map(int, ids)), skip_special_tokens=True)

    def apply_chat_template(self, messages: list[dict]) -> str:
        if not self.has_chat_template:
            raise EdgespecError("this model has no chat template: pass plain text")
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True)

    def chat_marker(self) -> int | None:
        """The special token a chat-formatted prompt opens with (the template's first, e.g. <|im_start|>), which
        plain text does not hold; None without a chat template or where its first token is ordinary text."""
        if not self.has_chat_template:
            return None
        try:
            ids = self.encode(self.apply_chat_template([{"role": "user", "content": "x"}]))
        except (RuntimeError, EdgespecError):
            return None
        if not ids or self.tokenizer.decode([ids[0]], skip_special_tokens=True):
            return None
        return ids[0]

    def token_id(self, text: str) -> int | None:
        ids = self.encode(text)
        return ids[0] if len(ids) == 1 else None


class TextStream:
    """Turns a growing list of token ids into text pieces without splitting a multi-byte character.

    A token may hold only part of a UTF-8 character; the detokenizer then yields U+FFFD at the end,
    so the piece is held back until the following tokens complete it.
    """

    def __init__(self, tokenizer: TextTokenizer):
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.start = 0  # index of the first token not yet fully emitted
        self.printed = 0  # characters already emitted from decode(ids[start:])

    def push(self, new_ids: list[int]) -> str:
        self.ids.extend(new_ids)
        text = self.tokenizer.decode(self.ids[self.start:])
        if text.endswith("\ufffd"):
            return ""
        piece = text[self.printed:]
        if text.endswith("\n"):
            # Restart the window at line ends so decoding cost stays bounded on long answers.
            self.start, self.printed = len(self.ids), 0
        else:
            self.printed = len(text)
        return piece


def _last_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return lines[-1] if lines else exc.__class__.__name__
