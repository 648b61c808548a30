"""The Workers AI runtime: configuration, the request and answer on the wire, streams, and
whole agent runs against a loopback server speaking the Workers AI API."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import aclosing
from typing import Any

import httpx
import pytest

from agentkit import (
    Agent,
    AuthError,
    ConfigurationError,
    FunctionRuntime,
    Generation,
    Message,
    ModelRequest,
    ModelTimeout,
    RateLimited,
    ScriptedRuntime,
    StreamChunk,
    StreamInterrupted,
    ToolCall,
    TransportError,
    UnsupportedFeature,
    get_runtime,
)
from agentkit.events import RunFinished, TextDelta, ToolCallFinished
from agentkit.runtimes.workers_ai import WorkersAI
from agentkit.wire import GenerationRequest

from support.helpers import add, mocked_client
from support.helpers import answers as replies
from support.loopback import USAGE, LoopbackServer, Reply, Sleeps, sse

TOKEN = "cf-token-5ecret-value"
RUN_URL = "https://api.cloudflare.com/client/v4/accounts/acc/ai/run/@cf/meta/llama-3.1-8b-instruct"


def envelope(result: dict[str, Any]) -> dict[str, Any]:
    return {"result": result, "success": True, "errors": [], "messages": []}


def mocked(
    answer: Callable[[httpx.Request], httpx.Response], **options: Any
) -> tuple[WorkersAI, list[httpx.Request]]:
    """A runtime whose HTTP goes to `answer`; the requests it sent are collected."""
    client, sent = mocked_client(answer)
    return WorkersAI("acc", TOKEN, client=client, **options), sent


def answers(result: dict[str, Any]) -> Callable[[httpx.Request], httpx.Response]:
    return replies(envelope(result))


@pytest.fixture(autouse=True)
def _no_cloudflare_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CLOUDFLARE_ACCOUNT_ID", "CLOUDFLARE_API_TOKEN", "CLOUDFLARE_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


# -- configuration ----------------------------------------------------------------------------


def test_missing_settings_are_named_exactly() -> None:
    with pytest.raises(ConfigurationError) as both:
        WorkersAI()
    assert str(both.value) == (
        "workers-ai runtime: set CLOUDFLARE_ACCOUNT_ID (or pass account_id=) "
        "and CLOUDFLARE_API_TOKEN (or pass api_token=)"
    )
    with pytest.raises(ConfigurationError) as token:
        WorkersAI(account_id="acc")
    assert str(token.value) == "workers-ai runtime: set CLOUDFLARE_API_TOKEN (or pass api_token=)"
    with pytest.raises(ConfigurationError) as account:
        get_runtime("workers-ai", api_token=TOKEN)
    assert str(account.value) == (
        "workers-ai runtime: set CLOUDFLARE_ACCOUNT_ID (or pass account_id=)"
    )


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLOUDFLARE_ACCOUNT_ID", "acc-env")
    monkeypatch.setenv("CLOUDFLARE_API_TOKEN", TOKEN)
    monkeypatch.setenv("CLOUDFLARE_BASE_URL", "http://127.0.0.1:9/client/v4/")
    runtime = get_runtime("workers-ai", model="@cf/meta/llama-3.2-3b-instruct")
    assert isinstance(runtime, WorkersAI)
    assert runtime.account_id == "acc-env"
    assert runtime.model == "@cf/meta/llama-3.2-3b-instruct"
    assert runtime._run_url == (
        "http://127.0.0.1:9/client/v4/accounts/acc-env/ai/run/@cf/meta/llama-3.2-3b-instruct"
    )


def test_an_ai_gateway_url_needs_no_account_id() -> None:
    gateway = "https://gateway.ai.cloudflare.com/v1/acc/my-gateway/workers-ai"
    runtime = WorkersAI(api_token=TOKEN, base_url=gateway)
    assert runtime._run_url == gateway + "/@cf/meta/llama-3.1-8b-instruct"


def test_the_token_never_shows() -> None:
    runtime = WorkersAI("acc", TOKEN)
    assert TOKEN not in repr(runtime)
    assert TOKEN not in str(vars(runtime))
    assert TOKEN not in str(vars(runtime._http))
    assert repr(runtime) == (
        "WorkersAI(account_id='acc', model='@cf/meta/llama-3.1-8b-instruct', "
        "base_url='https://api.cloudflare.com/client/v4', endpoint='run')"
    )


async def test_the_token_stays_out_of_errors_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        body = {"success": False, "errors": [{"code": 10000, "message": f"bad token {TOKEN}"}]}
        return httpx.Response(401, json=body)

    runtime, sent = mocked(refuse)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(AuthError) as caught:
        await runtime.generate(GenerationRequest.build(prompt="hi"))
    assert sent[0].headers["authorization"] == f"Bearer {TOKEN}"
    assert caught.value.status == 401
    assert caught.value.code == 10000
    assert str(caught.value) == "[HTTP 401 10000] bad token [redacted]"
    assert TOKEN not in caplog.text
    assert TOKEN not in repr(caught.value)


# -- the request ------------------------------------------------------------------------------


async def test_a_request_carries_exactly_the_contract_fields() -> None:
    runtime, sent = mocked(answers({"response": "Hi!", "usage": USAGE}))
    request = GenerationRequest.build(
        messages=[{"role": "user", "content": "Hello"}], temperature=0.2, seed=7, top_k=5
    )
    generation = await runtime.generate(request)
    assert str(sent[0].url) == RUN_URL
    assert b"/ai/run/@cf/meta/llama-3.1-8b-instruct" in sent[0].url.raw_path
    assert json.loads(sent[0].content) == {
        "messages": [{"role": "user", "content": "Hello"}],
        "max_tokens": 256,
        "temperature": 0.2,
        "top_k": 5,
        "seed": 7,
    }
    assert generation.response == "Hi!"
    assert generation.usage.total_tokens == 26
    assert generation.finish_reason == "stop"


def _history() -> list[Message]:
    call = ToolCall(id="call_1", name="add", arguments={"a": 2, "b": 3})
    return [
        Message.user("2 + 3?"),
        Message.assistant("", [call]),
        Message.tool("5", tool_call_id="call_1", name="add"),
    ]


async def test_history_is_sent_in_a_form_the_service_accepts() -> None:
    runtime, sent = mocked(answers({"response": "5"}))
    request = GenerationRequest.build(messages=_history(), tools=_tools())
    await runtime.generate(request)
    body = json.loads(sent[0].content)
    assert body["messages"] == [
        {"role": "user", "content": "2 + 3?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"name": "add", "arguments": {"a": 2, "b": 3}}],
        },
        {"role": "tool", "content": "5", "tool_call_id": "call_1", "name": "add"},
    ]
    assert all(isinstance(m["content"], str) for m in body["messages"])


def _tools() -> list[dict[str, Any]]:
    return [
        {
            "name": "add",
            "description": "Add two integers.",
            "parameters": {
                "type": "object",
                "properties": {"a": {"type": "integer", "description": "The first number."}},
                "required": ["a"],
            },
        }
    ]


async def test_tools_go_in_the_legacy_shape_by_default_and_the_function_shape_on_request() -> None:
    legacy, sent_legacy = mocked(answers({"response": "ok"}))
    function, sent_function = mocked(answers({"response": "ok"}), tool_shape="function")
    request = GenerationRequest.build(messages=_history(), tools=_tools())
    await legacy.generate(request)
    await function.generate(request)
    assert json.loads(sent_legacy[0].content)["tools"] == _tools()
    body = json.loads(sent_function[0].content)
    assert body["tools"] == [{"type": "function", "function": _tools()[0]}]
    assert body["messages"][1]["tool_calls"] == [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "add", "arguments": '{"a":2,"b":3}'},
        }
    ]


async def test_what_the_service_cannot_do_is_refused_before_sending() -> None:
    runtime, sent = mocked(answers({"response": "ok"}))
    request = GenerationRequest.build(messages=_history(), tools=_tools(), tool_choice="required")
    with pytest.raises(UnsupportedFeature, match="tool_choice: not supported by the workers-ai"):
        await runtime.generate(request)
    assert sent == []


# -- the answer -------------------------------------------------------------------------------


async def test_legacy_tool_calls_get_ids_that_are_stable_per_exchange() -> None:
    call = {"name": "add", "arguments": {"a": 2, "b": 3}}
    runtime, _ = mocked(answers({"response": None, "tool_calls": [call, call]}))
    request = GenerationRequest.build(messages=[Message.user("2+3, twice")], tools=_tools())
    first = await runtime.generate(request)
    again = await runtime.generate(request)
    other = await runtime.generate(GenerationRequest.build(prompt="other", tools=_tools()))
    assert [c.name for c in first.tool_calls] == ["add", "add"]
    assert first.tool_calls[0].arguments == {"a": 2, "b": 3}
    assert first.response == ""
    assert first.finish_reason == "tool_calls"
    ids = [c.id for c in first.tool_calls]
    assert len(set(ids)) == 2
    assert [c.id for c in again.tool_calls] == ids
    assert not set(ids) & {c.id for c in other.tool_calls}


async def test_openai_shaped_tool_calls_with_string_arguments_are_read() -> None:
    call = {
        "id": "call_9",
        "type": "function",
        "function": {"name": "add", "arguments": '{"a": 1}'},
    }
    runtime, _ = mocked(answers({"response": "", "tool_calls": [call]}))
    generation = await runtime.generate(GenerationRequest.build(prompt="x", tools=_tools()))
    assert generation.tool_calls == [ToolCall(id="call_9", name="add", arguments={"a": 1})]


async def test_a_json_mode_answer_object_becomes_text() -> None:
    runtime, _ = mocked(answers({"response": {"city": "Paris"}}))
    generation = await runtime.generate(GenerationRequest.build(prompt="city as JSON"))
    assert json.loads(generation.response) == {"city": "Paris"}


async def test_a_cut_off_answer_says_length() -> None:
    usage = {"prompt_tokens": 5, "completion_tokens": 16, "total_tokens": 21}
    runtime, _ = mocked(answers({"response": "a long story", "usage": usage}))
    generation = await runtime.generate(GenerationRequest.build(prompt="story", max_tokens=16))
    assert generation.finish_reason == "length"


async def test_success_false_with_200_is_an_error_and_capacity_is_retried() -> None:
    replies = iter(
        [
            httpx.Response(
                200, json={"success": False, "errors": [{"code": 3040, "message": "Capacity"}]}
            ),
            httpx.Response(200, json=envelope({"response": "at last"})),
        ]
    )
    sleeps = Sleeps()
    runtime, sent = mocked(lambda request: next(replies), sleep=sleeps)
    generation = await runtime.generate(GenerationRequest.build(prompt="hi"))
    assert generation.response == "at last"
    assert len(sent) == 2
    assert len(sleeps.delays) == 1


async def test_the_daily_limit_is_raised_at_once() -> None:
    body = {"success": False, "errors": [{"code": 3036, "message": "daily free allocation"}]}
    sleeps = Sleeps()
    runtime, sent = mocked(lambda request: httpx.Response(429, json=body), sleep=sleeps)
    with pytest.raises(RateLimited, match="daily free allocation") as caught:
        await runtime.generate(GenerationRequest.build(prompt="hi"))
    assert caught.value.code == 3036
    assert (len(sent), sleeps.delays) == (1, [])


# -- the OpenAI-compatible endpoint of Workers AI ---------------------------------------------


async def test_the_openai_endpoint_of_workers_ai() -> None:
    completion = {
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_x",
                            "type": "function",
                            "function": {"name": "add", "arguments": '{"a":2}'},
                        }
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": USAGE,
    }
    runtime, sent = mocked(lambda r: httpx.Response(200, json=completion), endpoint="openai")
    generation = await runtime.generate(
        GenerationRequest.build(prompt="2+?", tools=_tools(), tool_choice="required")
    )
    assert str(sent[0].url) == (
        "https://api.cloudflare.com/client/v4/accounts/acc/ai/v1/chat/completions"
    )
    assert sent[0].headers["authorization"] == f"Bearer {TOKEN}"
    body = json.loads(sent[0].content)
    assert body["model"] == "@cf/meta/llama-3.1-8b-instruct"
    assert body["tool_choice"] == "required"
    assert generation.tool_calls == [ToolCall(id="call_x", name="add", arguments={"a": 2})]
    assert runtime.capabilities.tool_choice


# -- streams over real HTTP -------------------------------------------------------------------


def on(server: LoopbackServer, **options: Any) -> WorkersAI:
    return WorkersAI("acc", TOKEN, base_url=server.url + "/client/v4", **options)


async def test_a_stream_with_padding_tool_calls_and_usage(server: LoopbackServer) -> None:
    call = {"name": "add", "arguments": {"a": 2, "b": 3}}
    server.script(
        Reply(
            sse=[
                *sse({"response": "Let me", "p": "abcdefgh"}, done=False),
                ': a comment\r\ndata: {"response": " add",\r\ndata:  "extra": 1}\r\n\r\n',
                *sse({"response": "", "tool_calls": [call]}, {"response": "", "usage": USAGE}),
            ]
        )
    )
    runtime = on(server)
    request = GenerationRequest.build(prompt="2+3", tools=_tools(), stream=True)
    chunks = [chunk async for chunk in runtime.stream(request)]
    await runtime.aclose()
    seen = server.requests[0]
    assert seen.path == "/client/v4/accounts/acc/ai/run/@cf/meta/llama-3.1-8b-instruct"
    assert seen.json["stream"] is True
    assert [c.response for c in chunks if c.response] == ["Let me", " add"]
    generation = StreamChunk.join(chunks)
    assert generation.response == "Let me add"
    assert [(c.name, c.arguments) for c in generation.tool_calls] == [("add", {"a": 2, "b": 3})]
    assert generation.usage.total_tokens == 26
    assert generation.finish_reason == "tool_calls"


async def test_a_cut_stream_is_an_error_not_a_short_answer(server: LoopbackServer) -> None:
    server.script(Reply(sse=sse({"response": "The capital"}, done=False)))
    runtime = on(server)
    texts: list[str] = []
    with pytest.raises(StreamInterrupted):
        async for chunk in runtime.stream(GenerationRequest.build(prompt="capital?")):
            texts.append(chunk.response)
    await runtime.aclose()
    assert texts == ["The capital"]


async def test_an_error_inside_a_stream_is_raised(server: LoopbackServer) -> None:
    error = {"errors": [{"code": 3040, "message": "out of capacity"}], "success": False}
    server.script(Reply(sse=sse({"response": "Hel"}, error)))
    runtime = on(server)
    with pytest.raises(RateLimited, match="out of capacity"):
        async for _ in runtime.stream(GenerationRequest.build(prompt="hi")):
            pass
    await runtime.aclose()


# -- whole agent runs -------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ["run", "openai"])
async def test_an_agent_run_with_a_tool_end_to_end(service: LoopbackServer, endpoint: str) -> None:
    runtime = WorkersAI("acc", TOKEN, base_url=service.url + "/client/v4", endpoint=endpoint)  # type: ignore[arg-type]
    agent = Agent(runtime, tools=[add])
    result = await agent.run("What is 2 + 3?")
    await agent.aclose()
    assert result.output == "The result is 5."
    assert [(r.call.name, r.output) for r in result.tool_calls] == [("add", "5")]
    assert result.steps == 2
    assert result.usage.total_tokens == 52
    sent = service.requests[-1].json["messages"]
    assert sent[-1]["role"] == "tool"
    assert sent[-1]["tool_call_id"] == result.tool_calls[0].call.id
    assert sent[-1]["name"] == "add"


@pytest.mark.parametrize("endpoint", ["run", "openai"])
async def test_a_streamed_agent_run_end_to_end(service: LoopbackServer, endpoint: str) -> None:
    runtime = WorkersAI("acc", TOKEN, base_url=service.url + "/client/v4", endpoint=endpoint)  # type: ignore[arg-type]
    agent = Agent(runtime, tools=[add])
    deltas: list[str] = []
    finished: list[str] = []
    async with aclosing(agent.stream("What is 2 + 3?")) as events:
        async for event in events:
            if isinstance(event, TextDelta):
                deltas.append(event.text)
            elif isinstance(event, ToolCallFinished):
                finished.append(str(event.record.output))
            elif isinstance(event, RunFinished):
                result = event.result
    await agent.aclose()
    assert finished == ["5"]
    assert "".join(deltas) == "The result is 5."
    assert len(deltas) == 4
    assert result.output == "The result is 5."
    assert result.usage.total_tokens == 52


# -- tool calls written into the text ---------------------------------------------------------


async def test_a_call_leaked_into_the_text_is_salvaged() -> None:
    leaked = '{"name": "add", "parameters": {"a": 2, "b": 3}}'
    runtime, _ = mocked(answers({"response": leaked}))
    request = GenerationRequest.build(prompt="2 + 3?", tools=_tools())
    generation = await runtime.generate(request)
    assert [(c.name, c.arguments) for c in generation.tool_calls] == [("add", {"a": 2, "b": 3})]
    assert generation.response == ""
    assert generation.finish_reason == "tool_calls"
    again = await runtime.generate(request)
    assert again.tool_calls[0].id == generation.tool_calls[0].id


async def test_json_naming_no_offered_tool_stays_an_answer() -> None:
    text = '{"name": "Ada", "arguments": {"born": 1815}}'
    runtime, _ = mocked(answers({"response": text}))
    generation = await runtime.generate(GenerationRequest.build(prompt="who?", tools=_tools()))
    assert (generation.response, generation.tool_calls) == (text, [])


async def test_a_leaked_call_in_a_stream_is_held_back_and_salvaged(server: LoopbackServer) -> None:
    pieces = ['{"name": "add", ', '"parameters": {"a": 2, ', '"b": 3}}']
    server.script(Reply(sse=sse(*[{"response": p} for p in pieces], {"usage": USAGE})))
    runtime = on(server)
    request = GenerationRequest.build(prompt="2 + 3?", tools=_tools())
    chunks = [chunk async for chunk in runtime.stream(request)]
    await runtime.aclose()
    assert [c.response for c in chunks if c.response] == []  # never shown as an answer
    generation = StreamChunk.join(chunks)
    assert [(c.name, c.arguments) for c in generation.tool_calls] == [("add", {"a": 2, "b": 3})]
    assert generation.finish_reason == "tool_calls"


def test_run_sync_twice_on_one_runtime(service: LoopbackServer) -> None:
    # Each run_sync has its own event loop; the runtime's connections must follow.
    agent = Agent(on(service), tools=[add])
    assert agent.run_sync("What is 2 + 3?").output == "The result is 5."
    assert agent.run_sync("What is 2 + 3?").output == "The result is 5."


# -- against `agentkit serve` -----------------------------------------------------------------


def _local_model(request: ModelRequest) -> Generation | str:
    assert request.messages is not None
    last = request.messages[-1]
    if last.role == "tool":
        return f"The result is {last.content}."
    return ScriptedRuntime.call("add", a=2, b=3)


@pytest.fixture(scope="module")
def agentkit_serve() -> Iterator[LoopbackServer]:
    from agentkit.server import create_app

    with LoopbackServer(app=create_app(FunctionRuntime(_local_model), api_token=TOKEN)) as s:
        yield s


@pytest.mark.parametrize("endpoint", ["run", "openai"])
@pytest.mark.parametrize("stream", [False, True])
async def test_an_agent_through_agentkit_serve(
    agentkit_serve: LoopbackServer, endpoint: str, stream: bool
) -> None:
    runtime = WorkersAI("acc", TOKEN, base_url=agentkit_serve.url + "/client/v4", endpoint=endpoint)  # type: ignore[arg-type]
    agent = Agent(runtime, tools=[add])
    if stream:
        async with aclosing(agent.stream("What is 2 + 3?")) as events:
            finished = [e async for e in events if isinstance(e, RunFinished)]
        result = finished[0].result
    else:
        result = await agent.run("What is 2 + 3?")
    await agent.aclose()
    assert result.output == "The result is 5."
    assert [(r.call.name, r.output) for r in result.tool_calls] == [("add", "5")]


async def test_agentkit_serve_refuses_a_wrong_token(agentkit_serve: LoopbackServer) -> None:
    runtime = WorkersAI("acc", "wrong", base_url=agentkit_serve.url + "/client/v4")
    with pytest.raises(AuthError) as caught:
        await runtime.generate(GenerationRequest.build(prompt="hi"))
    await runtime.aclose()
    assert caught.value.status == 401


# -- the token never reaches an error ---------------------------------------------------------


def leaks(error: BaseException, caplog: pytest.LogCaptureFixture, secret: str = TOKEN) -> list[str]:
    """Every text of `error` (and its causes) and of the log that holds the secret, or a
    head or tail of it long enough to recognise (as an excerpt cut inside the token holds)."""
    texts: list[str] = [record.getMessage() for record in caplog.records]
    texts += [str(arg) for record in caplog.records for arg in record.args or ()]
    seen: BaseException | None = error
    while seen is not None:
        texts += [str(seen), repr(seen), *map(str, seen.args), str(getattr(seen, "message", ""))]
        seen = seen.__cause__ or seen.__context__
    return [t for t in texts if secret[:8] in t or secret[-8:] in t]


def padded_to_cut(before: str, limit: int, inside: int) -> str:
    """Padding that puts the token `inside` characters past the cut at `limit`."""
    return "p" * (limit - len(before) - inside)


async def test_the_token_in_a_stream_error_event_never_reaches_the_error(
    server: LoopbackServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="agentkit")
    echo = {"errors": [{"message": f"bad token Bearer {TOKEN}", "code": 3040}], "success": False}
    server.script(Reply(sse=sse({"response": "Hi"}, echo)))
    runtime = WorkersAI("acc", TOKEN, base_url=server.url, sleep=Sleeps())
    with pytest.raises(RateLimited) as info:
        async for _ in runtime.stream(GenerationRequest.build(prompt="hi")):
            pass
    assert "bad token Bearer [redacted]" in str(info.value)
    assert leaks(info.value, caplog) == []


async def test_the_token_in_a_stream_event_that_is_not_json_never_reaches_the_error(
    server: LoopbackServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="agentkit")
    # The message quotes the first 200 characters: the cut falls inside the token.
    before = "not json: Bearer "
    server.script(Reply(sse=sse(before + padded_to_cut(before, 200, 10) + TOKEN + " and more")))
    runtime = WorkersAI("acc", TOKEN, base_url=server.url, sleep=Sleeps())
    with pytest.raises(TransportError) as info:
        async for _ in runtime.stream(GenerationRequest.build(prompt="hi")):
            pass
    assert "not JSON" in str(info.value) and "[redacted]" in str(info.value)
    assert leaks(info.value, caplog) == []


async def test_the_token_in_an_answer_without_result_never_reaches_the_error(
    server: LoopbackServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="agentkit")
    before = "{'success': True, 'echo': 'Bearer "
    body = {"success": True, "echo": "Bearer " + padded_to_cut(before, 300, 12) + TOKEN}
    server.script(Reply(200, body))
    runtime = WorkersAI("acc", TOKEN, base_url=server.url, sleep=Sleeps())
    with pytest.raises(TransportError) as info:
        await runtime.generate(GenerationRequest.build(prompt="hi"))
    assert "[redacted]" in str(info.value)
    assert leaks(info.value, caplog) == []


async def test_the_token_echoed_in_an_error_that_is_retried_never_reaches_the_log(
    server: LoopbackServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="agentkit")
    echo = {"errors": [{"message": f"busy; you sent {TOKEN}", "code": 3040}], "success": False}
    server.script(Reply(429, echo), Reply(429, echo))
    runtime = WorkersAI("acc", TOKEN, base_url=server.url, max_retries=1, sleep=Sleeps())
    with pytest.raises(RateLimited) as info:
        await runtime.generate(GenerationRequest.build(prompt="hi"))
    assert any("retrying" in r.getMessage() for r in caplog.records)
    assert leaks(info.value, caplog) == []


# -- a bound on the whole request -------------------------------------------------------------


async def test_a_trickled_answer_is_cut_at_the_deadline(server: LoopbackServer) -> None:
    # One byte every half second: each read is quick, the whole would take 40 s.
    answer = json.dumps(envelope({"response": "slow"}))
    server.script(Reply(sse=list(answer), pause=0.5))
    runtime = WorkersAI("acc", TOKEN, base_url=server.url, timeout=1, max_retries=0)
    started = time.monotonic()
    with pytest.raises(ModelTimeout, match=r"the whole answer .* \(the deadline is 1 s\)"):
        await runtime.generate(GenerationRequest.build(prompt="hi"))
    assert time.monotonic() - started < len(answer) * 0.5 / 3


async def test_a_stream_is_bounded_per_event_not_per_byte(server: LoopbackServer) -> None:
    # Events every 0.4 s for 2 s in all: a stream may run long as long as it moves.
    words = [{"response": w} for w in ("one ", "two ", "three ", "four ", "five")]
    server.script(Reply(sse=sse(*words), pause=0.4))
    runtime = WorkersAI("acc", TOKEN, base_url=server.url, timeout=1, max_retries=0)
    texts = [c.response async for c in runtime.stream(GenerationRequest.build(prompt="hi"))]
    assert "".join(texts) == "one two three four five"
    # An event trickled a byte at a time never completes: cut after the deadline.
    trickled = sse({"response": "hi"})[0]
    server.script(Reply(sse=list(trickled * 4), pause=0.5))
    started = time.monotonic()
    with pytest.raises(ModelTimeout, match="the next event"):
        async for _ in runtime.stream(GenerationRequest.build(prompt="hi")):
            pass
    assert time.monotonic() - started < len(trickled) * 0.5 / 3


@pytest.mark.parametrize("literal", ["...", "{1, 2}", "1j", "b'x'"])
async def test_a_python_literal_call_whose_values_are_not_json_is_told_as_invalid(
    literal: str,
) -> None:
    turns = iter([{"response": f"[add(a={literal}, b=1)]"}, {"response": "sorry"}])
    runtime, sent = mocked(lambda request: httpx.Response(200, json=envelope(next(turns))))
    result = await Agent(runtime, tools=[add]).run("1 + 1?")
    (record,) = result.tool_calls
    assert record.error is not None and record.error.startswith("invalid arguments for add")
    assert record.error.endswith(f"You sent: a={literal}, b=1")
    assert result.output == "sorry"
    # The next request (valid JSON) told the model so.
    told = json.loads(sent[1].content)["messages"][-1]
    assert told["role"] == "tool" and told["content"] == f"Error: {record.error}"
