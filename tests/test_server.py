"""`agentkit serve` over real HTTP on 127.0.0.1, driven by the official `cloudflare` and `openai`
SDKs, with test runtimes behind it (the real model is in test_server_model.py)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack
from typing import Any

import anyio
import cloudflare
import httpx
import openai
import pytest

from agentkit import (
    Capabilities,
    FunctionRuntime,
    Generation,
    GenerationRequest,
    ScriptedRuntime,
    StreamChunk,
    ToolCall,
    Usage,
    tool,
)
from agentkit.cli import main as cli_main
from agentkit.model_api import DEFAULT_MODEL
from agentkit.server import create_app
from agentkit.server.background import BackgroundServer

ACCOUNT = "acc"
TOKEN = "test-token-123"
WEATHER = {
    "name": "get_weather",
    "description": "Get the current weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string", "description": "The city."}},
        "required": ["city"],
    },
}


@pytest.fixture
def serve() -> Iterator[Callable[..., BackgroundServer]]:
    """`serve(runtime, **create_app_options)`: a running server, stopped after the test."""
    with ExitStack() as stack:

        def start(runtime: Any, **options: Any) -> BackgroundServer:
            return stack.enter_context(BackgroundServer(create_app(runtime, **options)))

        yield start


def cf_client(server: BackgroundServer, token: str = TOKEN) -> cloudflare.Cloudflare:
    return cloudflare.Cloudflare(api_token=token, base_url=server.url + "/client/v4", max_retries=0)


def oa_client(server: BackgroundServer, token: str = TOKEN) -> openai.OpenAI:
    return openai.OpenAI(
        api_key=token, base_url=f"{server.url}/client/v4/accounts/{ACCOUNT}/ai/v1", max_retries=0
    )


def run_url(server: BackgroundServer, model: str = DEFAULT_MODEL) -> str:
    return f"{server.url}/client/v4/accounts/{ACCOUNT}/ai/run/{model}"


def events(lines: Iterator[str]) -> list[Any]:
    """The `data:` payloads of an SSE body, JSON-decoded ("[DONE]" kept as is)."""
    out: list[Any] = []
    for line in lines:
        if line.startswith("data: "):
            payload = line[len("data: ") :]
            out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out


class HangingRuntime:
    """Streams one word then waits until cancelled (or `release` is set); records both ends."""

    name = "hanging"
    capabilities = Capabilities()

    def __init__(self) -> None:
        self.started = threading.Event()
        self.stopped = threading.Event()
        self.release = threading.Event()
        self.calls = 0

    async def _wait(self) -> None:
        # `release` is set from the test's thread, where an anyio.Event cannot be set.
        while not self.release.is_set():  # noqa: ASYNC110
            await anyio.sleep(0.01)

    async def generate(self, request: GenerationRequest) -> Generation:
        self.calls += 1
        self.started.set()
        try:
            await self._wait()
            return Generation(response="released")
        finally:
            self.stopped.set()

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamChunk]:
        self.calls += 1
        self.started.set()
        try:
            yield StreamChunk(response="Hello")
            await self._wait()
            yield StreamChunk(response=" world", usage=Usage.of(3, 2))
        finally:
            self.stopped.set()

    async def aclose(self) -> None:
        return None


# -- the Workers AI endpoint, through the cloudflare SDK ----------------------------------------


def test_cloudflare_sdk_runs_a_prompt(serve: Callable[..., BackgroundServer]) -> None:
    runtime = ScriptedRuntime([ScriptedRuntime.answer("Hi there!", Usage.of(5, 3))])
    server = serve(runtime, api_token=TOKEN)
    result = cf_client(server).ai.run(
        DEFAULT_MODEL, account_id=ACCOUNT, prompt="Say hi", max_tokens=20, temperature=0.2, seed=7
    )
    assert result == {
        "response": "Hi there!",
        "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
    }
    sent = runtime.requests[0]
    assert (sent.prompt, sent.max_tokens, sent.temperature, sent.seed) == ("Say hi", 20, 0.2, 7)


def test_model_name_raw_or_percent_encoded(serve: Callable[..., BackgroundServer]) -> None:
    server = serve(ScriptedRuntime(["one", "two", "three"]))
    encoded = httpx.URL(run_url(server, "@cf%2Fmeta%2Fllama-3.1-8b-instruct"))
    assert b"%2F" in encoded.raw_path  # really sent encoded, as the cloudflare SDK 5.x does
    for url in (run_url(server), encoded, run_url(server, "@agentkit/scripted")):
        answer = httpx.post(url, json={"prompt": "hi"})
        assert answer.status_code == 200, answer.text
        assert answer.json()["success"] is True


def test_messages_and_tools_answer_legacy_tool_calls(
    serve: Callable[..., BackgroundServer],
) -> None:
    runtime = ScriptedRuntime([ScriptedRuntime.call("get_weather", city="Paris")])
    server = serve(runtime)
    result = cf_client(server).ai.run(
        DEFAULT_MODEL,
        account_id=ACCOUNT,
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER],
    )
    assert result is not None
    assert result["tool_calls"] == [{"name": "get_weather", "arguments": {"city": "Paris"}}]
    request = runtime.requests[0]
    assert request.tools is not None and request.tools[0].name == "get_weather"
    assert request.messages is not None and request.messages[0].content == "Weather in Paris?"


def test_stream_has_the_workers_ai_shape(serve: Callable[..., BackgroundServer]) -> None:
    server = serve(ScriptedRuntime([ScriptedRuntime.answer("New York City", Usage.of(10, 3))]))
    with cf_client(server).ai.with_streaming_response.run(
        DEFAULT_MODEL, account_id=ACCOUNT, prompt="A city?", stream=True
    ) as answer:
        assert answer.headers["content-type"].startswith("text/event-stream")
        assert answer.headers["cf-ai-req-id"]
        data = events(answer.iter_lines())
    assert data[-1] == "[DONE]"
    assert data[-2] == {
        "response": "",
        "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13},
    }
    deltas = [d["response"] for d in data[:-2]]
    assert len(deltas) == 3 and "".join(deltas) == "New York City"


def test_stream_flushes_each_token_as_it_comes(serve: Callable[..., BackgroundServer]) -> None:
    # The runtime holds its second token until the client has read the first one: if the
    # server buffered, the client would never see it and the test would time out.
    runtime = HangingRuntime()
    server = serve(runtime)
    with httpx.stream("POST", run_url(server), json={"prompt": "hi", "stream": True}) as answer:
        lines = answer.iter_lines()
        assert next(lines) == 'data: {"response":"Hello"}'
        runtime.release.set()
        rest = events(lines)
    assert rest == [
        {
            "response": " world",
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
        },
        "[DONE]",
    ]


def test_client_leaving_a_stream_cancels_the_generation(
    serve: Callable[..., BackgroundServer],
) -> None:
    runtime = HangingRuntime()
    server = serve(runtime, max_queue=0)
    with httpx.stream("POST", run_url(server), json={"prompt": "hi", "stream": True}) as answer:
        lines = answer.iter_lines()
        assert next(lines) == 'data: {"response":"Hello"}'
        assert not runtime.stopped.is_set()
    # Leaving the block closes the connection mid-stream.
    assert runtime.stopped.wait(5), "the runtime's stream was not closed"
    assert not runtime.release.is_set()
    # The model is free again: a new request is served rather than refused.
    runtime.release.set()
    assert httpx.post(run_url(server), json={"prompt": "again"}).json()["result"]["response"] == (
        "released"
    )


def test_client_leaving_a_plain_request_cancels_it(serve: Callable[..., BackgroundServer]) -> None:
    runtime = HangingRuntime()
    server = serve(runtime, max_queue=0)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(run_url(server), json={"prompt": "hi"}, timeout=0.5)
    assert runtime.stopped.wait(5), "the generation was not cancelled"
    runtime.release.set()
    answer = httpx.post(run_url(server), json={"prompt": "again"})
    assert answer.status_code == 200


def test_a_full_queue_answers_429_with_code_3040(serve: Callable[..., BackgroundServer]) -> None:
    runtime = HangingRuntime()
    server = serve(runtime, max_queue=1)
    waiting: list[httpx.Response] = []
    with httpx.stream("POST", run_url(server), json={"prompt": "1", "stream": True}) as first:
        lines = first.iter_lines()  # kept: dropping a half-read iterator closes the connection
        assert next(lines).startswith("data: ")
        # The second request waits for the model...
        second = threading.Thread(
            target=lambda: waiting.append(httpx.post(run_url(server), json={"prompt": "2"}))
        )
        second.start()
        while app_waiting(server) < 1:
            time.sleep(0.01)
        # ...so the third finds the queue full.
        with pytest.raises(cloudflare.RateLimitError) as refused:
            cf_client(server).ai.run(DEFAULT_MODEL, account_id=ACCOUNT, prompt="3")
        runtime.release.set()
    second.join(10)
    assert refused.value.status_code == 429
    assert refused.value.response.headers["retry-after"] == "1"
    error = refused.value.body["errors"][0]
    assert error["code"] == 3040
    assert "max_queue=1" in error["message"] and "retry" in error["message"]
    assert waiting[0].status_code == 200
    assert waiting[0].json()["result"]["response"] == "released"


def app_waiting(server: BackgroundServer) -> int:
    """How many requests wait in the server's queue."""
    app: Any = server._server.config.app
    return int(app.state.agentkit.runtime.queue.waiting)


# -- bad input: status, code and a message naming the field, the bound and the value -----------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"prompt": "hi", "temperature": 6}, "Bad input: temperature: must be <= 5 (got 6)"),
        ({"prompt": "hi", "top_k": 51}, "Bad input: top_k: must be <= 50 (got 51)"),
        ({"prompt": "hi", "top_p": -0.5}, "Bad input: top_p: must be >= 0 (got -0.5)"),
        ({"prompt": "hi", "seed": 0}, "Bad input: seed: must be >= 1 (got 0)"),
        ({"prompt": "hi", "max_tokens": 0}, "Bad input: max_tokens: must be >= 1 (got 0)"),
        (
            {"prompt": "hi", "presence_penalty": 2.5},
            "Bad input: presence_penalty: must be <= 2 (got 2.5)",
        ),
        ({"prompt": ""}, "Bad input: prompt: must not be empty"),
        (
            {"prompt": "x" * 131_073},
            "Bad input: prompt: must be at most 131072 characters (got 131073)",
        ),
        (
            {"messages": [{"role": "robot", "content": "hi"}]},
            "Bad input: messages[0].role: must be one of 'system', 'user', 'assistant' or 'tool'"
            ' (got "robot")',
        ),
    ],
)
def test_bad_input_is_400_with_code_5006(
    serve: Callable[..., BackgroundServer], fields: dict[str, Any], message: str
) -> None:
    runtime = ScriptedRuntime()
    server = serve(runtime)
    with pytest.raises(cloudflare.BadRequestError) as refused:
        cf_client(server).ai.run(DEFAULT_MODEL, account_id=ACCOUNT, **fields)
    assert refused.value.status_code == 400
    body: Any = refused.value.body
    assert body["success"] is False and body["result"] is None
    assert body["errors"] == [{"code": 5006, "message": message}]
    assert runtime.requests == []


def test_every_bad_field_is_named(serve: Callable[..., BackgroundServer]) -> None:
    server = serve(ScriptedRuntime())
    answer = httpx.post(run_url(server), json={"prompt": "hi", "temperature": 9, "top_k": 0})
    assert answer.status_code == 400
    assert [e["message"] for e in answer.json()["errors"]] == [
        "Bad input: temperature: must be <= 5 (got 9)",
        "Bad input: top_k: must be >= 1 (got 0)",
    ]


def test_prompt_and_messages_together_are_refused(serve: Callable[..., BackgroundServer]) -> None:
    server = serve(ScriptedRuntime())
    answer = httpx.post(
        run_url(server), json={"prompt": "hi", "messages": [{"role": "user", "content": "hi"}]}
    )
    assert answer.status_code == 400
    assert answer.json()["errors"] == [
        {
            "code": 5006,
            "message": "Bad input: exactly one of prompt or messages is required (got both)",
        }
    ]


def test_unknown_model_is_400_with_code_5007(serve: Callable[..., BackgroundServer]) -> None:
    server = serve(ScriptedRuntime())
    with pytest.raises(cloudflare.BadRequestError) as refused:
        cf_client(server).ai.run("@cf/mistral/nope", account_id=ACCOUNT, prompt="hi")
    assert refused.value.status_code == 400
    assert refused.value.body["errors"] == [
        {
            "code": 5007,
            "message": "No such model @cf/mistral/nope or task; this server serves: "
            "@cf/meta/llama-3.1-8b-instruct, @agentkit/scripted",
        }
    ]


def test_configured_model_names_replace_the_defaults(
    serve: Callable[..., BackgroundServer],
) -> None:
    server = serve(ScriptedRuntime(["ok"]), models=["@hf/mine"])
    assert httpx.post(run_url(server, "@hf/mine"), json={"prompt": "hi"}).status_code == 200
    refused = httpx.post(run_url(server), json={"prompt": "hi"})
    assert (refused.status_code, refused.json()["errors"][0]["code"]) == (400, 5007)


def test_a_body_too_large_is_413_with_code_3006(serve: Callable[..., BackgroundServer]) -> None:
    runtime = ScriptedRuntime()
    server = serve(runtime, max_body=1000)
    with pytest.raises(cloudflare.APIStatusError) as refused:
        cf_client(server).ai.run(DEFAULT_MODEL, account_id=ACCOUNT, prompt="x" * 2000)
    assert refused.value.status_code == 413
    error = refused.value.body["errors"][0]
    assert error["code"] == 3006
    assert error["message"].startswith("Request is too large: ")
    assert error["message"].endswith("bytes (max_body is 1000)")

    # Without a Content-Length (chunked), the reader stops at the bound too.
    def chunks() -> Iterator[bytes]:
        yield b'{"prompt": "'
        for _ in range(20):
            yield b"x" * 100
        yield b'"}'

    answer = httpx.post(run_url(server), content=chunks())
    assert answer.status_code == 413
    assert answer.json()["errors"][0]["code"] == 3006
    assert runtime.requests == []


def test_missing_or_wrong_token_is_401_with_code_10000(
    serve: Callable[..., BackgroundServer],
) -> None:
    runtime = ScriptedRuntime(["ok"])
    server = serve(runtime, api_token=TOKEN)
    with pytest.raises(cloudflare.AuthenticationError) as wrong:
        cf_client(server, token="not-the-token").ai.run(
            DEFAULT_MODEL, account_id=ACCOUNT, prompt="hi"
        )
    assert wrong.value.status_code == 401
    assert wrong.value.body["errors"] == [
        {"code": 10000, "message": "Authentication error: the token is not valid"}
    ]
    missing = httpx.post(run_url(server), json={"prompt": "hi"})
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert missing.json()["errors"] == [
        {"code": 10000, "message": "Authentication error: send Authorization: Bearer <token>"}
    ]
    assert TOKEN not in wrong.value.response.text + missing.text
    assert runtime.requests == []
    assert cf_client(server).ai.run(DEFAULT_MODEL, account_id=ACCOUNT, prompt="hi") is not None


def test_lora_on_a_runtime_without_lora_is_405_with_code_5005(
    serve: Callable[..., BackgroundServer],
) -> None:
    server = serve(ScriptedRuntime(capabilities=Capabilities(lora=False)))
    with pytest.raises(cloudflare.APIStatusError) as refused:
        cf_client(server).ai.run(DEFAULT_MODEL, account_id=ACCOUNT, prompt="hi", lora="my-adapter")
    assert refused.value.status_code == 405
    assert refused.value.body["errors"] == [
        {
            "code": 5005,
            "message": "lora: not supported by the scripted runtime: "
            "this runtime cannot apply LoRA adapters",
        }
    ]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"prompt": "What is this?", "image": [137, 80, 78, 71]},
            "Bad input: image: not supported by the scripted runtime: this model reads text only",
        ),
        (
            {
                "messages": [{"role": "user", "content": "hi"}],
                "functions": [{"name": "f", "code": "print(1)"}],
            },
            "Bad input: functions: not supported by the scripted runtime: "
            "agentkit does not execute code strings",
        ),
    ],
)
def test_unsupported_features_are_refused_by_name(
    serve: Callable[..., BackgroundServer], fields: dict[str, Any], message: str
) -> None:
    server = serve(ScriptedRuntime())
    answer = httpx.post(run_url(server), json=fields)
    assert answer.status_code == 400
    assert answer.json()["errors"] == [{"code": 5006, "message": message}]


def test_empty_or_broken_bodies_are_refused(serve: Callable[..., BackgroundServer]) -> None:
    server = serve(ScriptedRuntime())
    empty = httpx.post(run_url(server))
    assert empty.status_code == 400
    assert empty.json()["errors"] == [
        {"code": 3003, "message": "Request is missing headers or body: body"}
    ]
    broken = httpx.post(run_url(server), content=b'{"prompt": "hi"')
    assert broken.status_code == 400
    assert broken.json()["errors"][0]["code"] == 5006
    assert broken.json()["errors"][0]["message"].startswith("Bad input: the body is not valid JSON")
    array = httpx.post(run_url(server), json=["hi"])
    assert array.json()["errors"] == [
        {"code": 5006, "message": "Bad input: the body must be a JSON object (got list)"}
    ]


def test_a_failing_runtime_answers_500_and_a_cut_stream(
    serve: Callable[..., BackgroundServer],
) -> None:
    def fail(request: GenerationRequest) -> str:
        raise RuntimeError("the model fell over")

    server = serve(FunctionRuntime(fail))
    plain = httpx.post(run_url(server), json={"prompt": "hi"})
    assert plain.status_code == 500
    assert plain.json()["errors"] == [
        {"code": 5000, "message": "internal error: RuntimeError: the model fell over"}
    ]

    class Breaks(ScriptedRuntime):
        async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamChunk]:
            yield StreamChunk(response="Half an")
            raise RuntimeError("out of memory")

    server = serve(Breaks())
    with httpx.stream("POST", run_url(server), json={"prompt": "hi", "stream": True}) as answer:
        assert answer.status_code == 200
        body = answer.read().decode()
    assert body.startswith('data: {"response":"Half an"}\n\nevent: error\ndata: ')
    assert "[DONE]" not in body  # a client sees the stream as cut
    error = json.loads(body.split("event: error\ndata: ")[1])
    assert error["errors"] == [
        {"code": 5000, "message": "internal error: RuntimeError: out of memory"}
    ]


def test_every_response_carries_a_request_id(serve: Callable[..., BackgroundServer]) -> None:
    server = serve(ScriptedRuntime(["a", "b"]), api_token=TOKEN)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    answers = [
        httpx.post(run_url(server), json={"prompt": "hi"}, headers=auth),
        httpx.post(run_url(server), json={"prompt": "hi", "stream": True}, headers=auth),
        httpx.post(run_url(server), json={"prompt": "hi", "top_k": 99}, headers=auth),
        httpx.post(run_url(server), json={"prompt": "hi"}),
        httpx.get(server.url + "/client/v4/nowhere"),
        httpx.get(server.url + "/"),
    ]
    assert [a.status_code for a in answers] == [200, 200, 400, 401, 404, 200]
    ids = [a.headers["cf-ai-req-id"] for a in answers]
    assert len(set(ids)) == len(ids) and all(len(i) == 36 for i in ids)
    assert answers[4].json()["errors"] == [
        {"code": 7000, "message": "No route for that URI: /client/v4/nowhere"}
    ]


# -- the OpenAI-compatible endpoint, through the openai SDK -------------------------------------


def test_openai_sdk_chat_completion(serve: Callable[..., BackgroundServer]) -> None:
    runtime = ScriptedRuntime([ScriptedRuntime.answer("Bonjour !", Usage.of(9, 4))])
    server = serve(runtime, api_token=TOKEN)
    completion = oa_client(server).chat.completions.create(
        model=DEFAULT_MODEL,
        messages=[
            {"role": "developer", "content": "Answer in French."},
            {"role": "user", "content": "Hello"},
        ],
        max_completion_tokens=32,
        temperature=0,
    )
    assert completion.object == "chat.completion"
    assert completion.model == DEFAULT_MODEL
    choice = completion.choices[0]
    assert (choice.message.role, choice.message.content) == ("assistant", "Bonjour !")
    assert choice.finish_reason == "stop"
    assert completion.usage is not None and completion.usage.total_tokens == 13
    sent = runtime.requests[0]
    assert sent.max_tokens == 32 and sent.temperature == 0
    assert sent.messages is not None and sent.messages[0].role == "system"


def test_openai_sdk_tool_calls(serve: Callable[..., BackgroundServer]) -> None:
    runtime = ScriptedRuntime([ScriptedRuntime.call("get_weather", city="Paris"), "Sunny."])
    server = serve(runtime)
    client = oa_client(server)
    messages: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    tools: Any = [{"type": "function", "function": WEATHER}]
    first = client.chat.completions.create(
        model=DEFAULT_MODEL, messages=messages, tools=tools, tool_choice="required"
    )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    call = choice.message.tool_calls[0]
    assert call.id.startswith("call_") and call.type == "function"
    assert (call.function.name, json.loads(call.function.arguments)) == (
        "get_weather",
        {"city": "Paris"},
    )
    assert runtime.requests[0].tool_choice == "required"
    # The conversation goes on with the call and its result, OpenAI style.
    messages += [choice.message.model_dump(exclude_none=True)]
    messages += [{"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 °C"}]
    second = client.chat.completions.create(model=DEFAULT_MODEL, messages=messages, tools=tools)
    assert second.choices[0].message.content == "Sunny."
    history = runtime.requests[1].messages
    assert history is not None
    assert history[1].tool_calls[0] == ToolCall(
        id=call.id, name="get_weather", arguments={"city": "Paris"}
    )
    assert (history[2].role, history[2].tool_call_id) == ("tool", call.id)


def test_openai_sdk_stream_with_tool_calls_and_usage(
    serve: Callable[..., BackgroundServer],
) -> None:
    turn = Generation(
        response="Let me check.",
        tool_calls=[
            ToolCall(name="get_weather", arguments={"city": "Paris"}),
            ToolCall(name="get_weather", arguments={"city": "Rome"}),
        ],
        usage=Usage.of(20, 12),
        finish_reason="tool_calls",
    )
    server = serve(ScriptedRuntime([turn]))
    stream = oa_client(server).chat.completions.create(
        model="@agentkit/scripted",
        messages=[{"role": "user", "content": "Paris and Rome?"}],
        tools=[{"type": "function", "function": WEATHER}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Let me check."
    calls = [t for c in chunks if c.choices for t in c.choices[0].delta.tool_calls or []]
    assert [(t.index, t.function.name, t.function.arguments) for t in calls] == [
        (0, "get_weather", '{"city":"Paris"}'),
        (1, "get_weather", '{"city":"Rome"}'),
    ]
    assert all(t.id and t.id.startswith("call_") for t in calls)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "tool_calls" and set(finishes[:-1]) == {None}
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 32


@pytest.mark.parametrize(
    ("fields", "status", "code", "message"),
    [
        (
            {"model": DEFAULT_MODEL, "temperature": 6},
            400,
            5006,
            "Bad input: temperature: must be <= 5 (got 6)",
        ),
        (
            {"model": DEFAULT_MODEL, "max_completion_tokens": 0},
            400,
            5006,
            "Bad input: max_completion_tokens: must be >= 1 (got 0)",
        ),
        (
            {"model": DEFAULT_MODEL, "n": 3},
            400,
            5006,
            "Bad input: n: only 1 choice is generated (got 3)",
        ),
        (
            {"model": "gpt-4o"},
            400,
            5007,
            "No such model gpt-4o or task; this server serves: "
            "@cf/meta/llama-3.1-8b-instruct, @agentkit/scripted",
        ),
    ],
)
def test_openai_bad_input(
    serve: Callable[..., BackgroundServer],
    fields: dict[str, Any],
    status: int,
    code: int,
    message: str,
) -> None:
    server = serve(ScriptedRuntime())
    with pytest.raises(openai.APIStatusError) as refused:
        oa_client(server).chat.completions.create(
            messages=[{"role": "user", "content": "hi"}], **fields
        )
    assert refused.value.status_code == status
    # The openai SDK reads the `error` object; Workers AI clients read `errors`.
    assert refused.value.body == {
        "message": message,
        "type": "invalid_request_error",
        "code": str(code),
    }
    assert refused.value.response.json()["errors"] == [{"code": code, "message": message}]


def test_openai_sdk_lists_the_served_models(serve: Callable[..., BackgroundServer]) -> None:
    server = serve(ScriptedRuntime(), api_token=TOKEN)
    assert [m.id for m in oa_client(server).models.list()] == [
        DEFAULT_MODEL,
        "@agentkit/scripted",
    ]
    with pytest.raises(openai.AuthenticationError):
        oa_client(server, token="wrong").models.list()


# -- the playground's agent endpoint ----------------------------------------------------------


@tool
def get_weather(city: str) -> str:
    """Get the current weather in a city.

    Args:
        city: The city.
    """
    return f"{city}: sunny, 21 °C"


def test_playground_agent_streams_the_run_as_events(
    serve: Callable[..., BackgroundServer],
) -> None:
    runtime = ScriptedRuntime([ScriptedRuntime.call("get_weather", city="Paris"), "It is sunny."])
    server = serve(runtime, tools=[get_weather])
    info = httpx.get(server.url + "/playground/info").json()
    assert [t["function"]["name"] for t in info["tools"]] == ["get_weather"]
    body = {"messages": [{"role": "user", "content": "Weather?"}], "temperature": 0.1}
    with httpx.stream("POST", server.url + "/playground/agent", json=body) as answer:
        frames = answer.read().decode().strip().split("\n\n")
    kinds = [f.split("\n")[0].removeprefix("event: ") for f in frames]
    assert kinds == [
        "step_started",
        "tool_call_started",
        "tool_call_finished",
        "step_finished",
        "step_started",
        "text_delta",
        "text_delta",
        "text_delta",
        "step_finished",
        "run_finished",
    ]
    data = [json.loads(f.split("\ndata: ")[1]) for f in frames]
    assert data[2]["record"]["output"] == "Paris: sunny, 21 °C"
    assert data[-1]["output"] == "It is sunny."
    assert [m["role"] for m in data[-1]["messages"]] == ["user", "assistant", "tool", "assistant"]
    assert runtime.requests[0].temperature == 0.1


def test_playground_agent_refuses_bad_settings(serve: Callable[..., BackgroundServer]) -> None:
    server = serve(ScriptedRuntime())
    body = {"messages": [{"role": "user", "content": "hi"}], "top_k": 100}
    answer = httpx.post(server.url + "/playground/agent", json=body)
    assert answer.status_code == 400
    assert answer.json()["errors"] == [
        {"code": 5006, "message": "Bad input: top_k: must be <= 50 (got 100)"}
    ]


# -- the command line -------------------------------------------------------------------------


def test_serve_refuses_bad_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["serve", "--max-queue", "-1"]) == 2
    assert "--max-queue: must be >= 0 (got -1)" in capsys.readouterr().err
    assert cli_main(["serve", "--port", "70000"]) == 2
    assert "--port: must be between 0 and 65535 (got 70000)" in capsys.readouterr().err


def test_a_client_giving_up_leaves_the_queue(serve: Callable[..., BackgroundServer]) -> None:
    runtime = HangingRuntime()
    server = serve(runtime, max_queue=1)
    with httpx.stream("POST", run_url(server), json={"prompt": "1", "stream": True}) as first:
        lines = first.iter_lines()
        assert next(lines).startswith("data: ")
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(run_url(server), json={"prompt": "2"}, timeout=0.3)
        deadline = time.monotonic() + 5
        while app_waiting(server) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert app_waiting(server) == 0
        runtime.release.set()
    assert runtime.calls == 1  # the request that gave up never reached the model
