"""The wire codecs: each API both ways, decode(encode(x)) == x, and strict types."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from agentkit import (
    FunctionDefinition,
    Generation,
    Message,
    ModelRequest,
    RequestValidationError,
    ScriptedRuntime,
    StreamChunk,
    ToolCall,
    Usage,
)
from agentkit.model_api import DEFAULT_MODEL
from agentkit.wire import GenerationRequest, openai, workers_ai

# -- strategies -------------------------------------------------------------------------------

text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=30)
name = st.from_regex(r"[a-z][a-z_0-9]{0,11}", fullmatch=True)
json_value = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**6), 10**6) | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(name, inner, max_size=3),
    max_leaves=6,
)
arguments = st.dictionaries(name, json_value, max_size=3)
call_id = st.from_regex(r"call_[a-z0-9]{6}", fullmatch=True)
calls = st.lists(
    st.builds(ToolCall, id=call_id, name=name, arguments=arguments), min_size=1, max_size=3
)
usage = st.builds(
    lambda p, c, cached: Usage.of(p, c, cached),
    st.integers(0, 10_000),
    st.integers(0, 10_000),
    st.none() | st.integers(0, 10_000),
)


@st.composite
def messages(draw: st.DrawFn) -> list[Message]:
    out = [Message.system(draw(text))] if draw(st.booleans()) else []
    for _ in range(draw(st.integers(1, 3))):
        out.append(Message.user(draw(text)))
        if draw(st.booleans()):
            made = draw(calls)
            out.append(Message.assistant(draw(text), made))
            out += [Message.tool(draw(text), tool_call_id=c.id, name=c.name) for c in made]
        else:
            out.append(Message.assistant(draw(text)))
    return out


definitions = st.lists(
    st.builds(
        FunctionDefinition,
        name=name,
        description=text,
        parameters=st.just({"type": "object", "properties": {"x": {"type": "integer"}}}),
    ),
    max_size=3,
    unique_by=lambda d: d.name,
)


@st.composite
def model_requests(draw: st.DrawFn, *, raw: bool = True, lora: bool = True) -> ModelRequest:
    tools = draw(definitions)
    choices = ["auto", "required", "none", *(t.name for t in tools)] if tools else ["auto"]
    use_raw = raw and draw(st.booleans())
    return ModelRequest(
        messages=[] if use_raw else draw(messages()),
        raw_prompt=draw(text.filter(bool)) if use_raw else None,
        tools=tools,
        tool_choice=draw(st.sampled_from(choices)),
        parallel_tool_calls=draw(st.none() | st.booleans()),
        response_format=draw(
            st.none()
            | st.just({"type": "json_object"})
            | st.builds(
                lambda props: {
                    "type": "json_schema",
                    "json_schema": {"type": "object", "properties": props},
                },
                st.dictionaries(name, st.just({"type": "string"}), max_size=2),
            )
        ),
        lora=draw(st.none() | name) if lora else None,
        max_tokens=draw(st.integers(1, 4096)),
        temperature=draw(st.floats(0, 5)),
        top_p=draw(st.none() | st.floats(0, 2)),
        top_k=draw(st.none() | st.integers(1, 50)),
        seed=draw(st.none() | st.integers(1, 9_999_999_999)),
        repetition_penalty=draw(st.none() | st.floats(0, 2)),
        frequency_penalty=draw(st.none() | st.floats(0, 2)),
        presence_penalty=draw(st.none() | st.floats(0, 2)),
    )


def without_ids(request: ModelRequest) -> ModelRequest:
    """The legacy tool-call shape carries no ids: compare what it does carry."""
    stripped = [
        m.model_copy(
            update={
                "tool_calls": [c.model_copy(update={"id": ""}) for c in m.tool_calls],
                "tool_call_id": "" if m.tool_call_id else None,
            }
        )
        for m in request.messages
    ]
    return request.model_copy(update={"messages": stripped})


# -- Workers AI -------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(model_requests())
def test_workers_ai_request_round_trips(request: ModelRequest) -> None:
    for stream in (False, True):
        body = workers_ai.encode_request(request, tool_shape="function", stream=stream)
        assert workers_ai.decode_request(body) == request
        assert GenerationRequest.build(body).stream is stream
    legacy = workers_ai.encode_request(request, tool_shape="legacy")
    assert without_ids(workers_ai.decode_request(legacy)) == without_ids(request)


@settings(max_examples=60, deadline=None)
@given(text, st.lists(calls, max_size=1), usage)
def test_workers_ai_result_and_chunks_round_trip(
    response: str, made: list[list[ToolCall]], used: Usage
) -> None:
    generation = Generation(response=response, tool_calls=made[0] if made else [], usage=used)
    result = workers_ai.encode_result(generation, "function")
    assert workers_ai.decode_result(result) == generation
    legacy = workers_ai.decode_result(workers_ai.encode_result(generation), seed="s")
    assert [(c.name, c.arguments) for c in legacy.tool_calls] == [
        (c.name, c.arguments) for c in generation.tool_calls
    ]
    chunk = StreamChunk(response=response, tool_calls=generation.tool_calls, usage=used)
    assert workers_ai.decode_chunk(workers_ai.encode_chunk(chunk, "function")) == chunk


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"raw": "yes"}, 'raw: input should be a valid boolean (got "yes")'),
        ({"max_tokens": "10"}, 'max_tokens: input should be a valid integer (got "10")'),
        ({"seed": True}, "seed: input should be a valid integer (got true)"),
        ({"temperature": "0.5"}, 'temperature: input should be a valid number (got "0.5")'),
        ({"stream": 1}, "stream: input should be a valid boolean (got 1)"),
        ({"tool_choice": 1}, "tool_choice: input should be a valid string (got 1)"),
    ],
)
def test_workers_ai_types_are_strict(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(RequestValidationError) as info:
        GenerationRequest.build(prompt="hi", **fields)
    assert message in str(info.value)


def test_an_integer_too_long_to_read_is_named_not_a_crash() -> None:
    digits = "9" * 5000
    with pytest.raises(RequestValidationError) as info:
        workers_ai.loads('{"prompt": "x", "max_tokens": ' + digits + "}")
    assert (
        str(info.value.errors[0]) == "max_tokens: must have at most 4300 digits (got 5000 digits)"
    )
    with pytest.raises(RequestValidationError, match=r"seed: must be <= 9999999999 \(got a number"):
        GenerationRequest.build(prompt="x", seed=10**5000)


def test_the_server_answers_strictness_and_long_numbers_with_400(
    client: Callable[..., TestClient],
) -> None:
    runtime = ScriptedRuntime(["never used"])
    url = f"/client/v4/accounts/acc/ai/run/{DEFAULT_MODEL}"
    with client(runtime) as http:
        for body, expected in [
            ('{"prompt":"x","max_tokens":' + "9" * 5000 + "}", "max_tokens: must have at most"),
            ('{"prompt":"x","raw":"yes"}', "raw: input should be a valid boolean"),
            ('{"prompt":"x","seed":true}', "seed: input should be a valid integer"),
        ]:
            answer = http.post(url, content=body, headers={"content-type": "application/json"})
            assert answer.status_code == 400, answer.text
            assert answer.json()["errors"][0]["code"] == 5006
            assert expected in answer.json()["errors"][0]["message"]
        chat = http.post(
            "/client/v4/accounts/acc/ai/v1/chat/completions",
            json={
                "model": DEFAULT_MODEL,
                "messages": [{"role": "user", "content": "hi"}],
                "tools": [{"type": "function", "function": {"name": "f"}}],
                "tool_choice": {"function": 1},
            },
        )
        assert chat.status_code == 400, chat.text
        assert "tool_choice: must be" in chat.json()["errors"][0]["message"]
    assert runtime.requests == []


# -- OpenAI -----------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(model_requests(raw=False), st.booleans())
def test_openai_request_round_trips(request: ModelRequest, stream: bool) -> None:
    decoded = openai.decode_request(openai.encode_request(request, "m", stream=stream))
    assert decoded.request == request
    assert (decoded.model, decoded.stream, decoded.include_usage) == ("m", stream, stream)


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", "auto"),
        ("required", "required"),
        ({"type": "function", "function": {"name": "f"}}, "f"),
    ],
)
def test_openai_tool_choice_maps_both_ways(choice: Any, expected: str) -> None:
    body = {
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "function", "function": {"name": "f"}}],
        "tool_choice": choice,
    }
    request = openai.decode_request(body).request
    assert request.tool_choice == expected
    assert openai.encode_request(request, "m")["tool_choice"] == choice


@pytest.mark.parametrize("choice", [{"function": 1}, {"type": "function"}, 7, ["auto"]])
def test_openai_tool_choice_of_the_wrong_shape_is_refused(choice: Any) -> None:
    body = {"messages": [{"role": "user", "content": "hi"}], "tool_choice": choice}
    with pytest.raises(RequestValidationError, match="tool_choice: must be"):
        openai.decode_request(body)


@st.composite
def generations(draw: st.DrawFn) -> Generation:
    made = draw(st.none() | calls)
    return Generation(
        response=draw(text),
        tool_calls=made or [],
        usage=draw(usage),
        finish_reason="tool_calls" if made else draw(st.sampled_from(["stop", "length"])),
    )


@settings(max_examples=60, deadline=None)
@given(generations())
def test_openai_completion_round_trips(generation: Generation) -> None:
    completion = openai.encode_completion(generation, model="m", request_id="r1")
    assert openai.decode_completion(completion) == generation


@settings(max_examples=60, deadline=None)
@given(generations(), st.lists(text, max_size=4))
def test_openai_stream_round_trips(generation: Generation, pieces: list[str]) -> None:
    chunks = [StreamChunk(response=p) for p in pieces]
    chunks += [StreamChunk(tool_calls=[c]) for c in generation.tool_calls]
    chunks.append(StreamChunk(usage=generation.usage, finish_reason=generation.finish_reason))
    whole = StreamChunk.join(chunks)
    encoder = openai.ChunkEncoder(model="m", request_id="r1")
    objects = [o for c in chunks for o in encoder.encode(c)]
    objects += encoder.finish(whole, include_usage=True)
    assembler = openai.ChunkAssembler()
    text_pieces = [assembler.feed(o) for o in objects]
    assert StreamChunk.join([StreamChunk(response="".join(text_pieces)), assembler.finish()]) == (
        whole
    )
