"""`edgespec serve`: the real server (uvicorn on a free loopback port) around the tiny pair, driven by the official
`openai` client and by raw HTTP: answers equal the Python API's, bad input gets OpenAI error objects, the queue
is bounded (429), clients that leave stop their generation, and a load of concurrent clients all get answers."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

httpx = pytest.importorskip("httpx")
openai = pytest.importorskip("openai")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from edgespec.runtime.pipeline import GenerationConfig, SpeculativePipeline  # noqa: E402
from edgespec.serve import create_app, running  # noqa: E402

MAX_WAITING = 4
PROMPTS = ["Once upon a time", "Hello there", "Write a haiku about caches.", "What is 2 + 2?"]


@dataclass
class Server:
    url: str
    app: object
    pipe: SpeculativePipeline

    @property
    def scheduler(self):
        return self.app.state.api.scheduler

    def client(self, **kwargs) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key="unused", max_retries=0, **kwargs)

    def post(self, path: str, body, timeout: float = 60) -> httpx.Response:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return httpx.post(f"{self.url}{path}", content=content, headers={"Content-Type": "application/json"},
                          timeout=timeout)

    def wait_idle(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.scheduler.busy or self.scheduler.waiting:
            assert time.monotonic() < deadline, "the worker never went idle"
            time.sleep(0.01)


@pytest.fixture(scope="module")
def server(tiny_pair):
    pipe = SpeculativePipeline.from_manifest(tiny_pair)
    app = create_app(pipe, max_waiting=MAX_WAITING)
    with running(app) as url:
        yield Server(url, app, pipe)


@pytest.fixture(scope="module")
def reference(tiny_pair):
    """A second pipeline on the same pair: what the Python API answers, for comparison."""
    pipe = SpeculativePipeline.from_manifest(tiny_pair)
    cache: dict = {}

    def answer(prompt: str, max_tokens: int, chat: bool = True, stop: tuple[str, ...] = ()) -> str:
        key = (prompt, max_tokens, chat, stop)
        if key not in cache:
            messages = [{"role": "user", "content": prompt}] if chat else prompt
            cache[key] = pipe.generate(messages, GenerationConfig(max_new_tokens=max_tokens, stop_strings=stop),
                                       chat=chat)
        return cache[key]

    return answer


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def chat_body(text: str = "Hello", **fields) -> dict:
    return {"model": "tiny", "messages": user(text), "max_tokens": 8, "temperature": 0, **fields}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def slow_steps(monkeypatch, pipe: SpeculativePipeline, seconds: float = 0.01) -> None:
    """Make each generation step take a while (the stream detokenizes once per step), so a test can act mid-answer."""
    decode = pipe.tokenizer.decode
    monkeypatch.setattr(pipe.tokenizer, "decode", lambda ids: time.sleep(seconds) or decode(ids))


# --- answers ---------------------------------------------------------------------------------------------------


def test_models_and_health(server):
    client = server.client()
    assert [m.id for m in client.models.list().data] == ["tiny"]
    assert client.models.retrieve("tiny").model_extra["edgespec"]["mode"] == "speculative"
    health = httpx.get(f"{server.url}/health").json()
    assert health["status"] == "ok" and health["model"] == "tiny" and health["waiting"] == 0


def test_chat_greedy_equals_edgespec_generate(server, tiny_pair):
    cli = subprocess.run([sys.executable, "-m", "edgespec", "generate", "Once upon a time", "--model", str(tiny_pair),
                          "-n", "24", "--json"], capture_output=True, text=True, timeout=300)
    assert cli.returncode == 0, cli.stderr
    expected = json.loads(cli.stdout)
    client = server.client()
    whole = client.chat.completions.create(model="tiny", messages=user("Once upon a time"), max_tokens=24,
                                           temperature=0)
    assert whole.choices[0].message.content == expected["text"]
    assert whole.choices[0].finish_reason == "length" and whole.object == "chat.completion"
    assert whole.id.startswith("chatcmpl-") and whole.created > 0 and whole.model == "tiny"
    assert whole.usage.completion_tokens == 24 == len(expected["token_ids"])
    assert whole.usage.prompt_tokens == expected["stats"]["prompt_tokens"]
    assert whole.usage.total_tokens == whole.usage.prompt_tokens + 24
    figures = whole.model_extra["edgespec"]
    assert figures["mode"] == "speculative" and figures["tokens_per_target_call"] >= 1
    assert figures["tokens_per_second"] > 0 and 0 <= figures["acceptance_rate"] <= 1

    chunks = list(client.chat.completions.create(model="tiny", messages=user("Once upon a time"), max_tokens=24,
                                                 temperature=0, stream=True,
                                                 stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == expected["text"]
    assert len({c.id for c in chunks}) == 1 and chunks[0].object == "chat.completion.chunk"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 24
    assert chunks[-2].model_extra["edgespec"]["mode"] == "speculative"


def test_stream_ends_with_done(server):
    with httpx.stream("POST", f"{server.url}/v1/chat/completions", json=chat_body(stream=True), timeout=60) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"
    assert "usage" not in json.loads(lines[-2][6:])  # no include_usage: no usage chunk


def test_completions_continue_a_raw_prompt(server, reference):
    client = server.client()
    expected = reference("Once upon a time", 16, chat=False)
    whole = client.completions.create(model="tiny", prompt="Once upon a time", max_tokens=16, temperature=0)
    assert whole.choices[0].text == expected.text and whole.object == "text_completion"
    assert whole.usage.prompt_tokens == expected.stats.prompt_tokens and whole.id.startswith("cmpl-")
    streamed = client.completions.create(model="tiny", prompt="Once upon a time", max_tokens=16, temperature=0,
                                         stream=True)
    assert "".join(c.choices[0].text for c in streamed) == expected.text
    ids = client.completions.create(model="tiny", prompt=server.pipe.prompt_ids("Once upon a time", chat=False),
                                    max_tokens=16, temperature=0)
    assert ids.choices[0].text == expected.text


def test_stop_strings_and_parts(server, reference):
    full = reference("Hello there", 24).text
    stop = full[8:12]
    expected = reference("Hello there", 24, stop=(stop,)).text
    client = server.client()
    cut = client.chat.completions.create(model="tiny", messages=user("Hello there"), max_tokens=24, temperature=0,
                                         stop=[stop])
    assert cut.choices[0].message.content == expected == full[:full.find(stop)]
    assert cut.choices[0].finish_reason == "stop"
    streamed = client.chat.completions.create(model="tiny", messages=user("Hello there"), max_tokens=24,
                                              temperature=0, stop=stop, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == expected
    parts = [{"role": "user", "content": [{"type": "text", "text": "Hello "}, {"type": "text", "text": "there"}]}]
    assert client.chat.completions.create(model="tiny", messages=parts, max_tokens=24,
                                          temperature=0).choices[0].message.content == full


def test_an_answer_that_fills_the_context_ends_with_length(server):
    prompt = ("word " * 240).strip()
    answer = server.client().completions.create(model="tiny", prompt=prompt, max_tokens=100, temperature=0)
    assert answer.choices[0].finish_reason == "length"
    assert answer.usage.prompt_tokens == 240 and answer.usage.total_tokens <= 257


def test_sampling(server):
    client = server.client()
    answer = client.chat.completions.create(model="tiny", messages=user("Hello"), max_tokens=12, temperature=0.8,
                                            top_p=0.9, seed=-3)
    assert answer.usage.completion_tokens == 12 and answer.choices[0].message.content


# --- bad input ---------------------------------------------------------------------------------------------------

BAD_CHAT = [
    (b"{not json", 400, None, "not valid JSON"),
    (b"[1, 2]", 400, None, "JSON object"),
    ({"messages": user("hi")}, 400, "model", "'model' is required"),
    ({"model": "gpt-4o", "messages": user("hi")}, 404, "model", "'gpt-4o' does not exist"),
    ({"model": "tiny"}, 400, "messages", "'messages' is required"),
    ({"model": "tiny", "messages": "hi"}, 400, "messages", "must be an array"),
    ({"model": "tiny", "messages": []}, 400, "messages", "at least one"),
    ({"model": "tiny", "messages": [{"content": "hi"}]}, 400, "messages[0].role", "role"),
    ({"model": "tiny", "messages": [{"role": "tool", "content": "hi"}]}, 400, "messages[0].role", "'tool'"),
    ({"model": "tiny", "messages": [{"role": "user", "content": 5}]}, 400, "messages[0].content", "string"),
    ({"model": "tiny", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
     400, "messages[0].content[0]", "text"),
    (chat_body(max_tokens="8"), 400, "max_tokens", "integer"),
    (chat_body(max_tokens=0), 400, "max_tokens", "at least 1"),
    (chat_body(max_completion_tokens=-1), 400, "max_completion_tokens", "at least 1"),
    (chat_body(temperature=3), 400, "temperature", "between 0 and 2"),
    (chat_body(temperature="hot"), 400, "temperature", "number"),
    (chat_body(top_p=0), 400, "top_p", "above 0"),
    (chat_body(stream="yes"), 400, "stream", "boolean"),
    (chat_body(stop=[1]), 400, "stop", "strings"),
    (chat_body(seed=1.5), 400, "seed", "integer"),
    (chat_body(n=2), 400, "n", "'n' must be 1"),
    (chat_body(tools=[{"type": "function", "function": {"name": "f"}}]), 400, "tools", "not supported"),
    (chat_body(logprobs=True), 400, "logprobs", "not supported"),
    (chat_body(frequency_penalty=0.5), 400, "frequency_penalty", "not supported"),
    (chat_body(response_format={"type": "json_object"}), 400, "response_format", "not supported"),
    (chat_body(mirostat=2), 400, "mirostat", "not supported"),
    (chat_body("word " * 400), 400, "messages", "context holds 256"),
    (chat_body("word " * 400, stream=True), 400, "messages", "context holds 256"),
]

BAD_TEXT = [
    ({"model": "tiny"}, 400, "prompt", "'prompt' is required"),
    ({"model": "tiny", "prompt": ["a", "b"]}, 400, "prompt", "one prompt per request"),
    ({"model": "tiny", "prompt": [1, 10 ** 9]}, 400, "prompt", "outside the vocabulary"),
    ({"model": "tiny", "prompt": {"text": "a"}}, 400, "prompt", "string or an array"),
    ({"model": "tiny", "prompt": "   "}, 400, "prompt", "empty prompt"),
    ({"model": "tiny", "prompt": ("word " * 400).strip()}, 400, "prompt",
     "prompt has 400 tokens but the context holds 256"),
    ({"model": "tiny", "prompt": "hi", "echo": True}, 400, "echo", "not supported"),
    ({"model": "tiny", "prompt": "hi", "best_of": 3}, 400, "best_of", "not supported"),
]


@pytest.mark.parametrize("path, body, status, param, needle",
                         [("/v1/chat/completions", *case) for case in BAD_CHAT]
                         + [("/v1/completions", *case) for case in BAD_TEXT])
def test_bad_input_gets_an_error_object(server, path, body, status, param, needle):
    response = server.post(path, body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert needle in error["message"] and error["param"] == param
    assert error["type"] == "invalid_request_error"


def test_the_server_keeps_serving_after_bad_input(server, reference):
    for body in [b"{", {"model": "tiny", "messages": []}, chat_body("word " * 400)]:
        assert server.post("/v1/chat/completions", body).status_code == 400
    answer = server.post("/v1/chat/completions", chat_body("Hello", max_tokens=12)).json()
    assert answer["choices"][0]["message"]["content"] == reference("Hello", 12).text


def test_neutral_values_and_bookkeeping_fields_are_accepted(server):
    body = chat_body(frequency_penalty=0, presence_penalty=0.0, logprobs=False, user="me", n=1, tools=None,
                     response_format={"type": "text"}, metadata={"app": "x"})
    assert server.post("/v1/chat/completions", body).status_code == 200


def test_the_openai_client_raises_typed_errors(server):
    client = server.client()
    with pytest.raises(openai.BadRequestError, match="one choice per request"):
        client.chat.completions.create(model="tiny", messages=user("hi"), n=2)
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.chat.completions.create(model="gpt-4o", messages=user("hi"))


def test_unknown_paths_and_methods(server):
    missing = httpx.get(f"{server.url}/v1/nothing")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "unknown_url"
    wrong = httpx.get(f"{server.url}/v1/chat/completions")
    assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "method_not_allowed"


# --- the queue and clients that leave ----------------------------------------------------------------------------


def test_a_full_queue_answers_429_and_the_rest_complete(server, reference):
    """The worker is held by a job that waits on a gate: MAX_WAITING requests queue, the others get 429 at once;
    health checks answer meanwhile; opening the gate lets the queued ones finish in order, correctly."""
    server.wait_idle()
    gate = threading.Event()
    server.scheduler.submit(gate.wait)
    total = MAX_WAITING + 2
    with ThreadPoolExecutor(total) as pool:
        futures = [pool.submit(server.post, "/v1/chat/completions", chat_body(PROMPTS[i % 4], max_tokens=8))
                   for i in range(total)]
        deadline = time.monotonic() + 20
        while sum(f.done() for f in futures) < total - MAX_WAITING:
            assert time.monotonic() < deadline, "the requests past the bound did not get an answer"
            time.sleep(0.01)
        health = httpx.get(f"{server.url}/health", timeout=5).json()
        assert health["busy"] and health["waiting"] == MAX_WAITING
        gate.set()
        responses = [f.result(timeout=60) for f in futures]
    refused = [r for r in responses if r.status_code == 429]
    assert len(refused) == total - MAX_WAITING
    for response in refused:
        assert int(response.headers["Retry-After"]) >= 1
        assert response.json()["error"]["code"] == "rate_limit_exceeded"
    for i, response in enumerate(responses):
        if response.status_code == 200:
            assert response.json()["choices"][0]["message"]["content"] == reference(PROMPTS[i % 4], 8).text


def test_a_client_that_leaves_mid_stream_stops_its_generation(server, reference, monkeypatch):
    server.wait_idle()
    slow_steps(monkeypatch, server.pipe)
    client = server.client()
    stream = client.chat.completions.create(model="tiny", messages=user("Once upon a time"), max_tokens=200,
                                            temperature=0, stream=True)
    received = 0
    for chunk in stream:
        received += bool(chunk.choices and chunk.choices[0].delta.content)
        if received == 3:
            break
    stream.close()
    server.wait_idle()
    stats = server.pipe.last_stats
    assert stats.stop_reason == "streamer" and stats.new_tokens < 100, stats
    monkeypatch.undo()
    again = client.chat.completions.create(model="tiny", messages=user("Once upon a time"), max_tokens=24,
                                           temperature=0)
    assert again.choices[0].message.content == reference("Once upon a time", 24).text


def test_a_client_that_leaves_a_whole_answer_stops_it(server, monkeypatch):
    server.wait_idle()
    slow_steps(monkeypatch, server.pipe)
    with pytest.raises(httpx.ReadTimeout):
        server.post("/v1/chat/completions", chat_body(max_tokens=200), timeout=0.5)
    server.wait_idle()
    assert server.pipe.last_stats.stop_reason == "streamer" and server.pipe.last_stats.new_tokens < 150


def test_a_client_that_leaves_the_queue_costs_nothing(server):
    server.wait_idle()
    before = server.pipe.last_stats
    gate = threading.Event()
    server.scheduler.submit(gate.wait)
    with pytest.raises(httpx.ReadTimeout):
        server.post("/v1/chat/completions", chat_body(max_tokens=200), timeout=0.3)
    queued = list(server.scheduler._line.queue)  # white-box: the job behind the gate
    assert len(queued) == 1
    deadline = time.monotonic() + 10
    while not queued[0].cancelled:  # the server notices the closed connection
        assert time.monotonic() < deadline, "the queued job was not cancelled"
        time.sleep(0.01)
    gate.set()
    server.wait_idle()
    assert server.pipe.last_stats is before  # the queued job was skipped, not run


# --- load ----------------------------------------------------------------------------------------------------------


def test_load_of_concurrent_clients(server, reference):
    """8 clients, 64 requests (chat and text, streamed and whole, every 7th left mid-stream; a refused request is
    tried again after a pause, up to 4 times): each gets the Python API's greedy answer or a clean 429; nothing
    hangs; health answers throughout; the server ends idle and answers correctly."""
    server.wait_idle()
    clients, requests_total = 8, 64
    expected = {(p, chat): reference(p, 24, chat=chat).text for p in PROMPTS for chat in (True, False)}
    health_s: list[float] = []
    refusals: list[int] = []
    done = threading.Event()
    local = threading.local()  # one client per thread, as an app keeps one

    def one(i: int) -> str:
        if not hasattr(local, "client"):
            local.client = server.client(timeout=60)
        for _ in range(4):
            try:
                return ask(local.client, i)
            except openai.RateLimitError as exc:
                assert int(exc.response.headers["Retry-After"]) >= 1
                assert exc.body["code"] == "rate_limit_exceeded"
                refusals.append(i)
                time.sleep(0.2)  # backing off (the Retry-After seconds themselves would make the test long)
        return "429"

    def ask(client: openai.OpenAI, i: int) -> str:
        prompt, chat, stream = PROMPTS[i % 4], i % 3 != 0, i % 2 == 0
        if chat:
            answer = client.chat.completions.create(model="tiny", messages=user(prompt), max_tokens=24,
                                                    temperature=0, stream=stream)
        else:
            answer = client.completions.create(model="tiny", prompt=prompt, max_tokens=24, temperature=0,
                                               stream=stream)
        if stream and i % 7 == 0:
            next(iter(answer))
            answer.close()
            return "left"
        if stream:
            text = "".join((c.choices[0].delta.content or "") if chat else c.choices[0].text
                           for c in answer if c.choices)
        else:
            text = answer.choices[0].message.content if chat else answer.choices[0].text
        assert text == expected[(prompt, chat)], (i, prompt, chat, stream)
        return "answered"

    def poll_health() -> None:
        with httpx.Client(timeout=5) as http:
            while not done.is_set():
                start = time.perf_counter()
                assert http.get(f"{server.url}/health").status_code == 200
                health_s.append(time.perf_counter() - start)
                time.sleep(0.05)

    poller = threading.Thread(target=poll_health, daemon=True)
    poller.start()
    order = list(range(requests_total))
    random.Random(0).shuffle(order)
    with ThreadPoolExecutor(clients) as pool:
        outcomes = list(pool.map(one, order, timeout=120))
    done.set()
    poller.join(10)
    assert len(outcomes) == requests_total and outcomes.count("answered") >= requests_total // 4, outcomes
    # Generous: the clients share this process's GIL with the server, on a machine that may be busy.
    assert health_s and max(health_s) < 1.0, max(health_s)
    server.wait_idle()
    assert httpx.get(f"{server.url}/health").json()["waiting"] == 0
    last = server.client().chat.completions.create(model="tiny", messages=user(PROMPTS[0]), max_tokens=24,
                                                   temperature=0)
    assert last.choices[0].message.content == expected[(PROMPTS[0], True)]


# --- the command ---------------------------------------------------------------------------------------------------


def test_edgespec_serve_command_with_an_api_key(tiny_pair):
    """`edgespec serve` from the command line, the key from EDGESPEC_API_KEY: 401 without it, answers with it."""
    port = free_port()
    env = {**os.environ, "EDGESPEC_API_KEY": "s3cret", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, "-m", "edgespec", "serve", "--model", str(tiny_pair), "--port",
                                str(port), "--no-draft", "--model-name", "tiny-target"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, "the server did not come up"
            try:
                first = httpx.get(f"{url}/health", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert first.status_code == 401 and first.json()["error"]["code"] == "invalid_api_key"
        assert first.headers["WWW-Authenticate"] == "Bearer"
        wrong = httpx.get(f"{url}/v1/models", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"{url}/v1", api_key="nope", max_retries=0).models.list()
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="s3cret", max_retries=0)
        assert [m.id for m in client.models.list().data] == ["tiny-target"]
        answer = client.chat.completions.create(model="tiny-target", messages=user("Hello"), max_tokens=8,
                                                temperature=0)
        assert answer.usage.completion_tokens == 8 and answer.model_extra["edgespec"]["mode"] == "target"
    finally:
        process.send_signal(signal.SIGINT)
        try:
            _, stderr = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert "base_url http://127.0.0.1" in stderr and "Traceback" not in stderr, stderr
