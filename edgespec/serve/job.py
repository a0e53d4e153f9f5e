"""One generation as a scheduler job: it runs on the worker thread and hands its events to the event loop.

Events, in order: ("start", prompt_tokens) once the prompt is tokenized and fits, then ("text", piece) per
streamed piece, then ("done", GenerationResult); or ("error", APIError) at any point. A cancelled job (its
client went away) skips the generation if it has not started, or stops it at the next step.
"""

from __future__ import annotations

import asyncio
import logging
import threading

from edgespec.runtime.errors import EdgespecError
from edgespec.runtime.pipeline import SpeculativePipeline
from edgespec.serve.errors import bad_request, server_error
from edgespec.serve.params import GenerationRequest

log = logging.getLogger("edgespec.serve")

Event = tuple[str, object]


class GenerationJob:
    def __init__(self, pipe: SpeculativePipeline, request: GenerationRequest, loop: asyncio.AbstractEventLoop):
        self.pipe = pipe
        self.request = request
        self.loop = loop
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        self._cancelled = threading.Event()

    def cancel(self) -> None:
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    async def next_events(self) -> list[Event]:
        """The events posted since the last call (at least one): a slow reader gets them in one batch."""
        batch = [await self.events.get()]
        while not self.events.empty():
            batch.append(self.events.get_nowait())
        return batch

    def __call__(self) -> None:  # on the worker thread
        if self.cancelled:
            return
        request = self.request
        try:
            ids = self.pipe.prompt_ids(request.prompt, chat=request.chat)
        except EdgespecError as exc:  # empty, or past the context: the message names the numbers
            self._post(("error", bad_request(str(exc), "messages" if request.chat else "prompt")))
            return
        except RuntimeError as exc:  # the chat template refused the messages
            self._post(("error", bad_request(f"cannot build the prompt: {_last_line(exc)}", "messages")))
            return
        self._post(("start", len(ids)))
        try:
            # The streamer runs after every step: it hands the piece over and stops a cancelled generation.
            result = self.pipe.generate(ids, request.config, streamer=self._on_piece)
        except Exception as exc:
            log.exception("generation failed")
            self._post(("error", server_error(f"generation failed: {_last_line(exc)}")))
            return
        self._post(("done", result))

    def _on_piece(self, piece: str) -> bool:
        self._post(("text", piece))
        return self.cancelled

    def _post(self, event: Event) -> None:
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)
        except RuntimeError:  # the loop has closed (server shutting down): nobody is listening
            self.cancel()


def _last_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return lines[-1] if lines else exc.__class__.__name__
