"""The OpenAI-compatible endpoint of `agentkit serve`, through the official `openai` SDK."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionMessageFunctionToolCall

from agentkit import (
    Generation,
    ScriptedRuntime,
    ToolCall,
    Usage,
)
from agentkit.model_api import DEFAULT_MODEL
from agentkit.server.background import BackgroundServer

from support.server import TOKEN, WEATHER, function_of, oa_client

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
    assert choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert isinstance(call, ChatCompletionMessageFunctionToolCall)
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
    assert [(t.index, function_of(t).name, function_of(t).arguments) for t in calls] == [
        (0, "get_weather", '{"city":"Paris"}'),
        (1, "get_weather", '{"city":"Rome"}'),
    ]
    assert all(t.id and t.id.startswith("call_") for t in calls)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "tool_calls" and set(finishes[:-1]) == {None}
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 32


def test_openai_sdk_lists_the_served_models(serve: Callable[..., BackgroundServer]) -> None:
    server = serve(ScriptedRuntime(), api_token=TOKEN)
    assert [m.id for m in oa_client(server).models.list()] == [
        DEFAULT_MODEL,
        "@agentkit/scripted",
    ]
    with pytest.raises(openai.AuthenticationError):
        oa_client(server, token="wrong").models.list()
