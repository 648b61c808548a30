"""The OpenAI-compatible runtime: configuration, the mapping of the contract onto chat
completions, streamed tool-call fragments, and whole agent runs against a loopback server."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from contextlib import aclosing
from typing import Any

import httpx
import pytest

from agentkit import (
    Agent,
    BadRequest,
    ConfigurationError,
    Message,
    ModelHTTPError,
    StreamChunk,
    StreamInterrupted,
    ToolCall,
    UnsupportedFeature,
    get_runtime,
)
from agentkit.events import RunFinished, TextDelta
from agentkit.runtimes.openai import OPENAI_URL, OpenAICompatible
from agentkit.wire import GenerationRequest

from support.helpers import add, answers, mocked_client
from support.loopback import USAGE, LoopbackServer, Reply, sse

KEY = "sk-test-0123456789abcdef"


TOOLS = [
    {
        "name": "add",
        "description": "Add two integers.",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "integer", "description": "The first number."}},
            "required": ["a"],
        },
    },
    {"name": "clock", "description": "The time.", "parameters": {"type": "object"}},
]


def completion(message: dict[str, Any], finish: str = "stop", **extra: Any) -> dict[str, Any]:
    choice = {"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}
    return {"id": "c1", "object": "chat.completion", "choices": [choice], **extra}


def mocked(
    answer: Callable[[httpx.Request], httpx.Response], **options: Any
) -> tuple[OpenAICompatible, list[httpx.Request]]:
    client, sent = mocked_client(answer)
    options.setdefault("model", "gpt-test")
    return OpenAICompatible("http://llm.test/v1", KEY, client=client, **options), sent


@pytest.fixture(autouse=True)
def _no_openai_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "OPENAI_MODEL"):
        monkeypatch.delenv(name, raising=False)


# -- configuration ----------------------------------------------------------------------------


def test_from_env_says_exactly_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError) as nothing:
        get_runtime("openai")
    assert str(nothing.value) == (
        "openai runtime: set OPENAI_BASE_URL (a local server) or OPENAI_API_KEY (OpenAI) "
        "and OPENAI_MODEL (or pass model=, --model)"
    )
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:8080/v1")
    with pytest.raises(ConfigurationError) as no_model:
        get_runtime("openai")
    assert str(no_model.value) == "openai runtime: set OPENAI_MODEL (or pass model=, --model)"


def test_from_env_reads_the_three_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:8080/v1/")
    monkeypatch.setenv("OPENAI_MODEL", "qwen")
    runtime = get_runtime("openai")
    assert isinstance(runtime, OpenAICompatible)
    assert (runtime.base_url, runtime.model) == ("http://127.0.0.1:8080/v1", "qwen")
    assert get_runtime("openai", model="llama").model == "llama"  # type: ignore[attr-defined]


def test_with_only_a_key_it_talks_to_openai(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    runtime = OpenAICompatible.from_env(model="gpt-4o-mini")
    assert runtime.base_url == OPENAI_URL
    assert KEY not in repr(runtime)
    assert KEY not in str(vars(runtime))


# -- the request ------------------------------------------------------------------------------


async def test_the_request_maps_onto_chat_completions() -> None:
    runtime, sent = mocked(answers(completion({"content": "ok"})))
    call = ToolCall(id="call_1", name="add", arguments={"a": 2})
    request = GenerationRequest.build(
        messages=[
            Message.system("Be brief."),
            Message.user("2 + ?"),
            Message.assistant("", [call]),
            Message.tool("2", tool_call_id="call_1", name="add"),
        ],
        tools=TOOLS,
        tool_choice="clock",
        max_tokens=50,
        temperature=0.1,
        top_p=0.9,
        seed=3,
        frequency_penalty=0.5,
        presence_penalty=0.25,
        response_format={"type": "json_schema", "json_schema": {"type": "object"}},
    )
    await runtime.generate(request)
    assert str(sent[0].url) == "http://llm.test/v1/chat/completions"
    assert sent[0].headers["authorization"] == f"Bearer {KEY}"
    assert json.loads(sent[0].content) == {
        "model": "gpt-test",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "2 + ?"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "add", "arguments": '{"a":2}'},
                    }
                ],
            },
            {"role": "tool", "content": "2", "tool_call_id": "call_1", "name": "add"},
        ],
        "max_tokens": 50,
        "temperature": 0.1,
        "top_p": 0.9,
        "seed": 3,
        "frequency_penalty": 0.5,
        "presence_penalty": 0.25,
        "tools": [{"type": "function", "function": t} for t in TOOLS],
        "tool_choice": {"type": "function", "function": {"name": "clock"}},
        "response_format": {
            "type": "json_schema",
            # A free-form object cannot be strict: strict is said to be off.
            "json_schema": {"name": "response", "schema": {"type": "object"}, "strict": False},
        },
    }


async def test_fields_openai_lacks_are_sent_only_when_set_and_extra_body_wins() -> None:
    runtime, sent = mocked(answers(completion({"content": "ok"})), extra_body={"min_p": 0.05})
    await runtime.generate(GenerationRequest.build(prompt="hi"))
    await runtime.generate(GenerationRequest.build(prompt="hi", top_k=40, repetition_penalty=1.1))
    plain, extended = (json.loads(r.content) for r in sent)
    assert plain == {
        "model": "gpt-test",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 256,
        "temperature": 0.6,
        "min_p": 0.05,
    }
    assert (extended["top_k"], extended["repetition_penalty"]) == (40, 1.1)


async def test_no_key_means_no_authorization_header() -> None:
    sent: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json=completion({"content": "ok"}))

    client = httpx.AsyncClient(transport=httpx.MockTransport(handle))
    runtime = OpenAICompatible("http://127.0.0.1:8080/v1", model="local", client=client)
    await runtime.generate(GenerationRequest.build(prompt="hi"))
    assert "authorization" not in sent[0].headers


async def test_raw_prompts_and_lora_are_refused_by_name() -> None:
    runtime, sent = mocked(answers(completion({"content": "ok"})))
    with pytest.raises(UnsupportedFeature, match="raw_prompt: not supported by the openai runtime"):
        await runtime.generate(GenerationRequest.build(prompt="<s>hi", raw=True))
    with pytest.raises(UnsupportedFeature, match="lora"):
        await runtime.generate(GenerationRequest.build(prompt="hi", lora="my-adapter"))
    assert sent == []


# -- the answer -------------------------------------------------------------------------------


async def test_tool_calls_keep_their_ids_and_usage_counts_cached_tokens() -> None:
    calls = [
        {"id": "call_a", "type": "function", "function": {"name": "add", "arguments": '{"a":1}'}},
        {"id": "call_b", "type": "function", "function": {"name": "clock", "arguments": ""}},
    ]
    usage = {**USAGE, "prompt_tokens_details": {"cached_tokens": 12}}
    body = completion({"content": None, "tool_calls": calls}, "tool_calls", usage=usage)
    runtime, _ = mocked(answers(body))
    generation = await runtime.generate(GenerationRequest.build(prompt="x", tools=TOOLS))
    assert generation.tool_calls == [
        ToolCall(id="call_a", name="add", arguments={"a": 1}),
        ToolCall(id="call_b", name="clock", arguments={}),
    ]
    assert generation.response == ""
    assert generation.finish_reason == "tool_calls"
    assert generation.usage.cached_prompt_tokens == 12
    assert generation.usage.total_tokens == 26


async def test_finish_reason_length_is_kept() -> None:
    runtime, _ = mocked(answers(completion({"content": "Once upon"}, "length")))
    generation = await runtime.generate(GenerationRequest.build(prompt="story"))
    assert (generation.response, generation.finish_reason) == ("Once upon", "length")


async def test_an_error_object_in_a_200_answer_is_raised() -> None:
    runtime, _ = mocked(answers({"error": {"message": "model not loaded"}}))
    with pytest.raises(ModelHTTPError, match="model not loaded"):
        await runtime.generate(GenerationRequest.build(prompt="hi"))


async def test_a_400_names_what_the_server_refused() -> None:
    error = {"error": {"message": "Unrecognized request argument supplied: top_k", "code": None}}
    runtime, _ = mocked(lambda request: httpx.Response(400, json=error))
    with pytest.raises(BadRequest, match="top_k") as caught:
        await runtime.generate(GenerationRequest.build(prompt="hi", top_k=3))
    assert caught.value.status == 400


# -- streams over real HTTP -------------------------------------------------------------------


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return {"object": "chat.completion.chunk", "choices": [choice]}


async def test_streamed_tool_call_fragments_are_joined_by_index(server: LoopbackServer) -> None:
    def fragment(index: int, arguments: str, **head: Any) -> dict[str, Any]:
        function = {
            "arguments": arguments,
            **({"name": head.pop("name")} if "name" in head else {}),
        }
        return chunk({"tool_calls": [{"index": index, **head, "function": function}]})

    server.script(
        Reply(
            sse=sse(
                chunk({"role": "assistant", "content": "Checking"}),
                fragment(0, "", id="call_a", type="function", name="add"),
                fragment(1, "", id="call_b", type="function", name="clock"),
                fragment(0, '{"a"'),
                fragment(1, "{}"),
                fragment(0, ": 4}"),
                chunk({}, "tool_calls"),
                {"object": "chat.completion.chunk", "choices": [], "usage": USAGE},
            )
        )
    )
    runtime = OpenAICompatible(server.url + "/v1", model="m")
    request = GenerationRequest.build(prompt="x", tools=TOOLS)
    chunks = [c async for c in runtime.stream(request)]
    await runtime.aclose()
    sent = server.requests[0].json
    assert (sent["stream"], sent["stream_options"]) == (True, {"include_usage": True})
    generation = StreamChunk.join(chunks)
    assert generation.response == "Checking"
    assert generation.tool_calls == [
        ToolCall(id="call_a", name="add", arguments={"a": 4}),
        ToolCall(id="call_b", name="clock", arguments={}),
    ]
    assert generation.usage.total_tokens == 26
    assert generation.finish_reason == "tool_calls"


@pytest.mark.parametrize("index", [None, 0])
async def test_whole_calls_without_a_distinct_index_are_kept_apart(
    server: LoopbackServer, index: int | None
) -> None:
    calls: list[dict[str, Any]] = [
        {"id": "c1", "function": {"name": "add", "arguments": {"a": 1}}},
        {"id": "c2", "function": {"name": "clock", "arguments": "{}"}},
    ]
    if index is not None:  # every call with the same index, as some servers send them
        calls = [{"index": index, **c} for c in calls]
    server.script(Reply(sse=sse(chunk({"tool_calls": calls}, "tool_calls"))))
    runtime = OpenAICompatible(server.url + "/v1", model="m")
    chunks = [c async for c in runtime.stream(GenerationRequest.build(prompt="x", tools=TOOLS))]
    await runtime.aclose()
    assert [(c.id, c.name, c.arguments) for c in StreamChunk.join(chunks).tool_calls] == [
        ("c1", "add", {"a": 1}),
        ("c2", "clock", {}),
    ]


async def test_calls_without_ids_get_stable_ones() -> None:
    calls = [{"type": "function", "function": {"name": "clock", "arguments": "{}"}}]
    runtime, _ = mocked(answers(completion({"content": None, "tool_calls": calls}, "tool_calls")))
    request = GenerationRequest.build(prompt="time?", tools=TOOLS)
    first, again = [await runtime.generate(request) for _ in range(2)]
    assert first.tool_calls[0].id.startswith("call_")
    assert first.tool_calls[0].id == again.tool_calls[0].id


async def test_a_cut_stream_is_interrupted(server: LoopbackServer) -> None:
    server.script(Reply(sse=sse(chunk({"content": "Par"}), done=False), cut=True))
    runtime = OpenAICompatible(server.url + "/v1", model="m")
    with pytest.raises(StreamInterrupted):
        async for _ in runtime.stream(GenerationRequest.build(prompt="capital?")):
            pass
    await runtime.aclose()
    assert len(server.requests) == 1


# -- whole agent runs -------------------------------------------------------------------------


async def test_an_agent_run_with_a_tool_end_to_end(service: LoopbackServer) -> None:
    agent = Agent(OpenAICompatible(service.url + "/v1", KEY, model="m"), tools=[add])
    result = await agent.run("What is 2 + 3?")
    await agent.aclose()
    assert result.output == "The result is 5."
    assert [(r.call.id, r.output) for r in result.tool_calls] == [("call_A", "5")]
    sent = service.requests[-1]
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.json["messages"][-1] == {
        "role": "tool",
        "content": "5",
        "tool_call_id": "call_A",
        "name": "add",
    }


async def test_a_streamed_agent_run_end_to_end(service: LoopbackServer) -> None:
    agent = Agent(OpenAICompatible(service.url + "/v1", model="m"), tools=[add])
    text = ""
    async with aclosing(agent.stream("What is 2 + 3?")) as events:
        async for event in events:
            if isinstance(event, TextDelta):
                text += event.text
            elif isinstance(event, RunFinished):
                result = event.result
    await agent.aclose()
    assert text == "The result is 5."
    assert result.tool_calls[0].output == "5"
    assert result.usage.total_tokens == 52


# -- tool calls written into the text ---------------------------------------------------------


async def test_a_call_leaked_into_the_text_is_salvaged() -> None:
    leaked = 'I will add them.\n<tool_call>{"name": "add", "arguments": {"a": 2}}</tool_call>'
    runtime, _ = mocked(answers(completion({"content": leaked})))
    generation = await runtime.generate(GenerationRequest.build(prompt="2 + ?", tools=TOOLS))
    assert [(c.name, c.arguments) for c in generation.tool_calls] == [("add", {"a": 2})]
    assert generation.response == "I will add them."
    assert generation.finish_reason == "tool_calls"


async def test_without_tools_nothing_is_salvaged() -> None:
    text = '{"name": "add", "arguments": {"a": 2}}'
    runtime, _ = mocked(answers(completion({"content": text})))
    generation = await runtime.generate(GenerationRequest.build(prompt="show me JSON"))
    assert (generation.response, generation.tool_calls) == (text, [])


async def test_streamed_text_that_starts_like_a_call_is_held(server: LoopbackServer) -> None:
    leaked = ["```json\n", '{"name": "clock", ', '"arguments": {}}\n```']
    plain = ["It is ", "noon."]
    server.script(
        Reply(sse=sse(*[chunk({"content": p}) for p in leaked])),
        Reply(sse=sse(*[chunk({"content": p}) for p in plain])),
    )
    runtime = OpenAICompatible(server.url + "/v1", model="m")
    request = GenerationRequest.build(prompt="time?", tools=TOOLS)
    first = [c async for c in runtime.stream(request)]
    second = [c async for c in runtime.stream(request)]
    await runtime.aclose()
    assert [c.response for c in first if c.response] == []
    assert [c.name for c in StreamChunk.join(first).tool_calls] == ["clock"]
    assert [c.response for c in second if c.response] == ["It is ", "noon."]  # shown live
    assert StreamChunk.join(second).tool_calls == []


async def test_the_key_in_a_stream_error_event_never_reaches_the_error(
    server: LoopbackServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="agentkit")
    echo = {"error": {"message": f"bad token Bearer {KEY}", "type": "invalid_request_error"}}
    chunk = {"id": "c1", "choices": [{"index": 0, "delta": {"content": "Hi"}}]}
    server.script(Reply(sse=sse(chunk, echo)))
    runtime = OpenAICompatible(server.url + "/v1", KEY, model="m")
    with pytest.raises(ModelHTTPError) as info:
        async for _ in runtime.stream(GenerationRequest.build(prompt="hi")):
            pass
    assert "bad token Bearer [redacted]" in str(info.value)
    texts = [str(info.value), repr(info.value), *map(str, info.value.args), info.value.message]
    texts += [r.getMessage() for r in caplog.records]
    assert [t for t in texts if KEY[:8] in t or KEY[-8:] in t] == []
