"""The Workers AI contract: requests, messages, tool calls, generations, wire shapes."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
from inline_snapshot import snapshot

from agentkit import (
    Generation,
    Message,
    RequestValidationError,
    StreamChunk,
    ToolCall,
    Usage,
)
from agentkit.model_api import parse_arguments
from agentkit.wire import GenerationRequest
from agentkit.wire.workers_ai import generation_json_schema, request_json_schema


def error_of(**fields: Any) -> str:
    with pytest.raises(RequestValidationError) as info:
        GenerationRequest.build(**fields)
    return str(info.value)


def test_defaults_follow_the_reference() -> None:
    request = GenerationRequest.build(prompt="hi")
    assert (request.max_tokens, request.temperature, request.raw, request.stream) == (
        256,
        0.6,
        False,
        False,
    )
    assert request.to_wire() == {"prompt": "hi", "max_tokens": 256, "temperature": 0.6}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"temperature": 6}, "temperature: must be <= 5 (got 6)"),
        ({"temperature": -0.1}, "temperature: must be >= 0 (got -0.1)"),
        ({"top_p": 2.5}, "top_p: must be <= 2 (got 2.5)"),
        ({"top_k": 0}, "top_k: must be >= 1 (got 0)"),
        ({"top_k": 51}, "top_k: must be <= 50 (got 51)"),
        ({"seed": 0}, "seed: must be >= 1 (got 0)"),
        ({"seed": 10_000_000_000}, "seed: must be <= 9999999999 (got 10000000000)"),
        ({"repetition_penalty": 2.1}, "repetition_penalty: must be <= 2 (got 2.1)"),
        ({"frequency_penalty": -1}, "frequency_penalty: must be >= 0 (got -1)"),
        ({"presence_penalty": 3}, "presence_penalty: must be <= 2 (got 3)"),
        ({"image": [0, 256]}, "image[1]: must be <= 255 (got 256)"),
        ({"temprature": 1}, "temprature: is not a known field (got 1)"),
    ],
)
def test_bounds_name_field_bound_and_value(fields: dict[str, Any], message: str) -> None:
    assert message in error_of(prompt="hi", **fields)


def test_prompt_length_bounds() -> None:
    assert "prompt: must not be empty" in error_of(prompt="")
    assert "prompt: must be at most 131072 characters (got 131073)" in error_of(
        prompt="x" * 131_073
    )
    GenerationRequest.build(prompt="x" * 131_072)


def test_exactly_one_of_prompt_or_messages() -> None:
    assert "exactly one of prompt or messages is required (got neither)" in error_of()
    both = error_of(prompt="a", messages=[{"role": "user", "content": "b"}])
    assert "(got both)" in both


def test_every_failing_field_is_reported() -> None:
    with pytest.raises(RequestValidationError) as info:
        GenerationRequest.build(prompt="hi", temperature=9, top_k=99)
    assert [e.path for e in info.value.errors] == ["temperature", "top_k"]


def test_message_rules() -> None:
    assert "messages[0].role: must be one of" in error_of(messages=[{"role": "bot"}])
    assert "a tool message needs the tool_call_id" in error_of(
        messages=[{"role": "tool", "content": "x"}]
    )
    assert "only assistant messages carry tool_calls" in error_of(
        messages=[{"role": "user", "content": "", "tool_calls": [{"name": "f"}]}]
    )
    # Content null (OpenAI clients) and content parts become strings.
    request = GenerationRequest.build(
        messages=[
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"text": "b"}]},
            {"role": "assistant", "content": None, "tool_calls": [{"name": "f"}]},
        ]
    )
    assert request.messages is not None
    assert [m.content for m in request.messages] == ["ab", ""]


def test_tool_call_shapes_in_and_out() -> None:
    legacy = ToolCall.from_wire({"name": "weather", "arguments": {"city": "Paris"}})
    openai = ToolCall.from_wire(
        {
            "id": "call_7",
            "type": "function",
            "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
        }
    )
    llama = ToolCall.from_wire({"name": "weather", "parameters": {"city": "Paris"}})
    for call in (legacy, openai, llama):
        assert (call.name, call.arguments) == ("weather", {"city": "Paris"})
    assert openai.id == "call_7"
    assert legacy.id.startswith("call_") and legacy.id != llama.id
    # A made-up id is kept: it survives a round trip through the wire.
    again = ToolCall.from_wire(legacy.to_wire("function"))
    assert again.id == legacy.id
    assert legacy.to_wire("legacy") == {"name": "weather", "arguments": {"city": "Paris"}}
    assert legacy.to_wire("function")["function"]["arguments"] == '{"city":"Paris"}'


def test_arguments_as_string_double_encoded_or_broken() -> None:
    assert parse_arguments('"{\\"a\\": 1}"') == {"a": 1}
    assert parse_arguments("") == {}
    assert parse_arguments(None) == {}
    broken = ToolCall.from_wire({"name": "f", "arguments": "{'a': 1,}"})
    assert broken.arguments == {}
    assert broken.raw_arguments == "{'a': 1,}"
    assert broken.arguments_json() == "{'a': 1,}"
    with pytest.raises(ValueError, match="must be a JSON object"):
        parse_arguments("[1, 2]")


def test_a_models_call_nested_past_the_limit_keeps_its_arguments_as_text() -> None:
    deep = "[" * 100 + "]" * 100
    for call in (
        {"name": "f", "arguments": deep},
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": deep}},
    ):
        (made,) = Generation.from_wire({"response": "", "tool_calls": [call]}).tool_calls
        assert (made.name, made.arguments, made.arguments_json()) == ("f", {}, deep)
    # A client's call in a request is refused instead, naming the field.
    with pytest.raises(ValueError, match="nests deeper than 64 levels"):
        ToolCall.from_wire({"name": "f", "arguments": deep})


def test_assistant_content_is_never_null_on_the_wire() -> None:
    request = GenerationRequest.build(
        messages=[
            Message.user("weather?"),
            Message.assistant(tool_calls=[ToolCall(id="c1", name="w", arguments={})]),
            Message.tool("sunny", tool_call_id="c1", name="w"),
        ]
    )
    wire = request.to_wire("legacy")
    assert wire["messages"][1] == {
        "role": "assistant",
        "content": "",
        "tool_calls": [{"name": "w", "arguments": {}}],
    }
    assert wire["messages"][2] == {
        "role": "tool",
        "content": "sunny",
        "tool_call_id": "c1",
        "name": "w",
    }
    assert "tool_choice" not in wire


def test_tools_accepted_in_both_shapes_and_sent_in_either() -> None:
    params = {
        "type": "object",
        "properties": {"city": {"type": "string", "description": "City"}},
        "required": ["city"],
    }
    request = GenerationRequest.build(
        messages=[Message.user("hi")],
        tools=[
            {"name": "a", "description": "A", "parameters": params},
            {
                "type": "function",
                "function": {"name": "b", "description": "B", "parameters": params},
            },
        ],
    )
    legacy = request.to_wire("legacy")["tools"]
    function = request.to_wire("function")["tools"]
    assert [t["name"] for t in legacy] == ["a", "b"]
    assert [t["function"]["name"] for t in function] == ["a", "b"]
    assert function[0] == {"type": "function", "function": legacy[0]}


def test_generation_from_wire_both_shapes_and_json_mode() -> None:
    generation = Generation.from_wire(
        {
            "response": None,
            "tool_calls": [
                {"name": "a", "arguments": {"x": 1}},
                {"id": "c2", "type": "function", "function": {"name": "b", "arguments": "{}"}},
            ],
            "usage": {"prompt_tokens": 86, "completion_tokens": 171, "total_tokens": 257},
        }
    )
    assert [c.name for c in generation.tool_calls] == ["a", "b"]
    assert generation.response == ""
    assert generation.usage.total_tokens == 257
    assert Generation.from_wire({"response": {"ok": True}}).response == '{"ok": true}'
    assert generation.to_wire("legacy") == snapshot(
        {
            "response": "",
            "tool_calls": [{"name": "a", "arguments": {"x": 1}}, {"name": "b", "arguments": {}}],
            "usage": {"prompt_tokens": 86, "completion_tokens": 171, "total_tokens": 257},
        }
    )


def test_stream_chunks_join_into_the_generation() -> None:
    chunks = [
        StreamChunk.model_validate({"response": "New", "p": "abcd"}),
        StreamChunk.model_validate({"response": " York"}),
        StreamChunk.model_validate({"response": "", "usage": {"prompt_tokens": 10}}),
    ]
    joined = StreamChunk.join(chunks)
    assert joined.response == "New York"
    assert joined.usage.prompt_tokens == 10
    assert chunks[0].to_wire() == {"response": "New"}


def test_usage_adds_up() -> None:
    total = Usage.of(10, 2) + Usage.of(15, 3, cached=9)
    assert total == Usage(
        prompt_tokens=25, completion_tokens=5, total_tokens=30, cached_prompt_tokens=9
    )


def test_exported_json_schemas_describe_the_contract() -> None:
    schema = request_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    props = schema["properties"]
    assert props["temperature"]["maximum"] == 5
    seed = next(b for b in props["seed"]["anyOf"] if b.get("type") == "integer")
    assert (seed["minimum"], seed["maximum"]) == (1, 9_999_999_999)
    output = generation_json_schema()
    jsonschema.Draft202012Validator.check_schema(output)
    assert set(output["properties"]) == {"response", "tool_calls", "usage"}
    # A real answer validates against the exported output schema.
    answer = Generation(response="hi", usage=Usage.of(1, 1)).to_wire("function")
    jsonschema.validate(json.loads(json.dumps(answer)), output)
