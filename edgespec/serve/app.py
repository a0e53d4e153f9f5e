"""The ASGI app: OpenAI's /v1/chat/completions, /v1/completions and /v1/models, plus /health.

A request is checked, queued as one GenerationJob, and answered from the job's events: as one JSON body, or
as server-sent events ending in `data: [DONE]`. A client that goes away cancels its job.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from edgespec.runtime.pipeline import SpeculativePipeline
from edgespec.serve.auth import BearerAuth
from edgespec.serve.errors import APIError, bad_request, busy, model_not_found, server_error
from edgespec.serve.job import GenerationJob
from edgespec.serve.params import GenerationRequest, ServedModel, chat_request, completion_request
from edgespec.serve.responses import SSE_DONE, Reply, sse
from edgespec.serve.scheduler import QueueFull, Scheduler

log = logging.getLogger("edgespec.serve")

Parse = Callable[[dict, ServedModel], GenerationRequest]


class API:
    """The handlers, around one pipeline and the scheduler that feeds it."""

    def __init__(self, pipe: SpeculativePipeline, scheduler: Scheduler, name: str | None = None):
        self.pipe = pipe
        self.scheduler = scheduler
        self.model = ServedModel(name or pipe.pair.name, pipe.target.context_length, pipe.target.vocab_size)
        self.speculative = pipe.draft is not None
        self.created = int(time.time())

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "model": self.model.id, "busy": self.scheduler.busy,
                             "waiting": self.scheduler.waiting})

    async def models(self, request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [self._card()]})

    async def retrieve_model(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name != self.model.id:
            raise model_not_found(name, self.model.id)
        return JSONResponse(self._card())

    async def chat_completions(self, request: Request) -> Response:
        return await self._generate(request, chat_request)

    async def completions(self, request: Request) -> Response:
        return await self._generate(request, completion_request)

    def _card(self) -> dict:
        return {"id": self.model.id, "object": "model", "created": self.created, "owned_by": "edgespec",
                "edgespec": {"mode": "speculative" if self.speculative else "target",
                             "context_length": self.model.context_length}}

    async def _generate(self, request: Request, parse: Parse) -> Response:
        generation = parse(await _json_body(request), self.model)
        job = GenerationJob(self.pipe, generation, asyncio.get_running_loop())
        try:
            self.scheduler.submit(job)
        except QueueFull as full:
            raise busy(full.waiting, full.retry_after) from None
        reply = Reply(self.model.id, generation.chat, self.speculative)
        # Until the answer starts streaming, this task notices a client that leaves (while queued, or while a
        # whole answer is being made); a streamed response watches for that itself.
        watcher = asyncio.create_task(_cancel_on_disconnect(request, job))
        streaming = False
        try:
            kind, value = await job.events.get()
            if kind == "start" and generation.stream:
                watcher.cancel()
                streaming = True
                return EventStream(_events(job, reply, generation.include_usage), job)
            if kind == "start":
                kind, value = await _outcome(job)
            if kind == "error":
                raise value
            if kind == "gone":
                return Response(status_code=499)  # nobody reads it; uvicorn logs the code
            return JSONResponse(reply.whole(value))
        finally:
            watcher.cancel()
            if not streaming:
                job.cancel()  # no-op when it finished; stops it when this handler was itself cancelled


class EventStream(StreamingResponse):
    """Server-sent events; however the response ends (done, client gone, shutdown), the job stops."""

    media_type = "text/event-stream"

    def __init__(self, content: AsyncIterator[bytes], job: GenerationJob):
        super().__init__(content, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self.job = job

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.job.cancel()


async def _events(job: GenerationJob, reply: Reply, include_usage: bool) -> AsyncIterator[bytes]:
    first = reply.first_chunk()
    if first is not None:
        yield sse(first)
    while True:
        # Pieces that piled up while the loop was busy go out in one write.
        out = []
        for kind, value in await job.next_events():
            if kind == "text":
                out.append(sse(reply.text_chunk(value)))
            elif kind == "done":
                out.append(sse(reply.last_chunk(value.stats)))
                if include_usage:
                    out.append(sse(reply.usage_chunk(value.stats)))
                yield b"".join(out) + SSE_DONE
                return
            elif kind == "error":  # the status line has gone out: the error travels as an event
                yield b"".join(out) + sse(value.body())
                return
            elif kind == "gone":
                return
        yield b"".join(out)


async def _outcome(job: GenerationJob) -> tuple[str, object]:
    """Wait past the streamed pieces for how the job ended: done, error or gone."""
    while True:
        for kind, value in await job.next_events():
            if kind != "text":
                return kind, value


async def _cancel_on_disconnect(request: Request, job: GenerationJob) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass
    job.cancel()
    job.events.put_nowait(("gone", None))


async def _json_body(request: Request) -> dict:
    raw = await request.body()
    try:
        body = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise bad_request(f"the body is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except UnicodeDecodeError:
        raise bad_request("the body is not valid JSON (not UTF-8 text)") from None
    if not isinstance(body, dict):
        raise bad_request("the body must be a JSON object")
    return body


def _error_response(error: APIError) -> JSONResponse:
    return JSONResponse(error.body(), error.status, headers=error.headers)


async def _on_api_error(request: Request, exc: Exception) -> Response:
    return _error_response(exc)


async def _on_http_error(request: Request, exc: Exception) -> Response:
    # Unknown paths and wrong methods get error objects too, so clients show a message instead of a parse error.
    code = {404: "unknown_url", 405: "method_not_allowed"}.get(exc.status_code)
    message = f"{request.method} {request.url.path}: {exc.detail}"
    return _error_response(APIError(exc.status_code, message, code=code, headers=exc.headers))


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error")
    return _error_response(server_error(f"internal error: {exc.__class__.__name__}: {exc}"))


def create_app(pipe: SpeculativePipeline, api_key: str | None = None, max_waiting: int = 8,
               name: str | None = None) -> Starlette:
    """The server around a loaded pipeline. max_waiting: requests that may wait behind the running one before
    the next gets a 429; name: the model id clients send (default: the pair's name)."""
    api = API(pipe, Scheduler(max_waiting), name)

    @asynccontextmanager
    async def lifespan(app: Starlette):
        yield
        api.scheduler.close()

    routes = [
        Route("/health", api.health, methods=["GET"]),
        Route("/v1/models", api.models, methods=["GET"]),
        Route("/v1/models/{name:path}", api.retrieve_model, methods=["GET"]),
        Route("/v1/chat/completions", api.chat_completions, methods=["POST"]),
        Route("/v1/completions", api.completions, methods=["POST"]),
    ]
    middleware = [Middleware(BearerAuth, api_key=api_key)] if api_key else []
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan,
                    exception_handlers={APIError: _on_api_error, HTTPException: _on_http_error,
                                        Exception: _on_unexpected})
    app.state.api = api
    return app
