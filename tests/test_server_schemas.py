"""Schemas that once froze or broke `agentkit serve` on the embedded model, over HTTP on
127.0.0.1: a long compile, bounds past what llama.cpp's grammar parser takes in one repetition,
and schemas too large to show the model whole. Each is compiled (and a large one outlined in
the prompt) or refused (a 400 naming the keyword) before any token, on every route that takes
a schema, while other requests are answered."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import jsonschema
import pytest

from agentkit.model_api import DEFAULT_MODEL
from agentkit.runtimes.llama_cpp import LlamaCpp
from agentkit.server import create_app
from agentkit.server.background import BackgroundServer

from support.server import run_url

pytestmark = pytest.mark.model

TOKEN = "schema-test-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}
CHAT = "/client/v4/accounts/acc/ai/v1/chat/completions"
QUESTION = [{"role": "user", "content": "Describe a thing."}]


def intertwined(n: int) -> dict[str, Any]:
    """`n` definitions, each an object whose properties refer to every definition."""
    props = {f"p{j}": {"$ref": f"#/$defs/D{j}"} for j in range(n)}
    defs = {f"D{i}": {"type": "object", "properties": props} for i in range(n)}
    return {"$ref": "#/$defs/D0", "$defs": defs}


def many_properties(n: int) -> dict[str, Any]:
    return {"type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(n)}}


LARGE = {
    "a 20,000-value enum": {
        "type": "object",
        "properties": {"pick": {"enum": [f"value-{i}" for i in range(20_000)]}},
    },
    "5,000 anyOf branches": {
        "type": "object",
        "properties": {"x": {"anyOf": [{"const": f"c{i}"} for i in range(5_000)]}},
    },
    "6,000 properties": many_properties(6_000),
    "20,000 properties": many_properties(20_000),
}
BOUNDS = {
    "maxLength 999,999": {"type": "string", "maxLength": 999_999},
    "minLength 1,000,000": {"type": "string", "minLength": 1_000_000},
    "maxItems 999,999": {"type": "array", "items": {"type": "integer"}, "maxItems": 999_999},
}


@pytest.fixture(scope="module")
def server() -> Iterator[BackgroundServer]:
    model = LlamaCpp()
    with BackgroundServer(create_app(model, api_token=TOKEN)) as running:
        yield running
    anyio.run(model.aclose)


def fmt(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": schema}


def post(server: BackgroundServer, route: str, schema: dict[str, Any], **more: Any) -> Any:
    """`schema` as the answer's format on `route`; the answer (a stream read whole)."""
    body: dict[str, Any] = {"response_format": fmt(schema), "max_tokens": 4, **more}
    if route == "run-prompt":
        body["prompt"] = "Describe a thing."
    else:
        body["messages"] = QUESTION
    if route == "chat":
        body["model"] = DEFAULT_MODEL
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "thing", "schema": schema},
        }
    path = {"chat": CHAT, "playground": "/playground/agent"}.get(route, run_url())
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=None) as client:
        return client.post(path, json=body)


ROUTES = ["run-prompt", "run-messages", "chat", "playground"]


def refusal(answer: Any) -> str:
    assert answer.status_code == 400, answer.text
    (error,) = answer.json()["errors"]
    assert error["code"] == 5006
    return str(error["message"])


async def test_a_schema_being_checked_does_not_hold_up_other_requests() -> None:
    # Six definitions that refer to each other, then a keyword no grammar holds: checked on
    # the event loop, it held every request up until its refusal (a small body, read at once).
    # Now it is checked on a worker thread, on a fresh server that loads the model there first
    # to count the schema's tokens (its text is longer than the context has tokens), while the
    # other request is answered.
    note = "Letters of the harbour's signal flags, read from the top down. " * 80
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {
            "tree": intertwined(6),
            "code": {"type": "string", "not": {"const": "A"}, "description": note},
        },
    }
    schema["$defs"] = schema["properties"]["tree"].pop("$defs")
    body = json.dumps({"messages": QUESTION, "response_format": fmt(schema)}).encode()
    model = LlamaCpp()
    with BackgroundServer(create_app(model, api_token=TOKEN)) as server:
        finished, info, hostile_answer = await _race(server, body)
    await model.aclose()
    assert info.status_code == 200
    assert finished == ["info", "hostile"]
    assert hostile_answer.startswith(b"HTTP/1.1 400")
    assert b"$.code: keyword 'not' cannot be held by a grammar" in hostile_answer


async def _race(server: BackgroundServer, body: bytes) -> tuple[list[str], Any, bytes]:
    """Send `body` to /ai/run, then ask for /playground/info; the order they finish in."""
    host = server.url.removeprefix("http://")
    head = (
        f"POST {run_url()} HTTP/1.1\r\nhost: {host}\r\nauthorization: Bearer {TOKEN}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n"
        "expect: 100-continue\r\nconnection: close\r\n\r\n"
    ).encode()
    finished: list[str] = []
    hostile_answer = b""

    async def hostile(stream: Any) -> None:
        nonlocal hostile_answer
        async with stream:
            while True:
                try:
                    hostile_answer += await stream.receive()
                except anyio.EndOfStream:
                    break
                if "hostile" not in finished:  # answered: its first bytes are here
                    finished.append("hostile")

    async with (
        httpx.AsyncClient(base_url=server.url, headers=AUTH, timeout=None) as other,
        anyio.create_task_group() as group,
    ):
        await other.get("/playground/info")  # its connection is open before the race
        stream = await anyio.connect_tcp("127.0.0.1", int(host.rsplit(":", 1)[1]))
        await stream.send(head)
        assert b"100 Continue" in await stream.receive()  # its handler is reading the body
        await stream.send(body)  # the whole request is out before the other one
        group.start_soon(hostile, stream)
        await anyio.sleep(0.2)  # for its handler to take the body (not a bound on anything)
        info = await other.get("/playground/info")
        finished.append("info")
    return finished, info, hostile_answer


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("bound", list(BOUNDS))
def test_bounds_past_one_repetition_of_the_grammar_parser_are_held(
    server: BackgroundServer, route: str, bound: str
) -> None:
    answer = post(server, route, BOUNDS[bound])
    assert answer.status_code == 200, answer.text
    if route == "playground":
        assert "event: error" not in answer.text and '"code":5000' not in answer.text
    else:
        assert "llama.cpp" not in answer.text


HELD = ["a 20,000-value enum", "5,000 anyOf branches"]
"""Too large to show whole; the engine holds them (the prompt carries an outline)."""
BEYOND = {
    "6,000 properties": "is more than the grammar engine holds: Parser Error: Current row has",
    "20,000 properties": "cannot be held by a grammar: schema too large",
}
"""Past the engine's own limits: refused before a token, the limit named."""


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("shape", HELD)
def test_a_schema_too_large_to_show_whole_is_outlined_and_still_held(
    server: BackgroundServer, route: str, shape: str
) -> None:
    """Shown whole, these would take the context many times over: the prompt carries an
    outline (a few keys and values), the grammar the whole schema."""
    schema = LARGE[shape]
    answer = post(server, route, schema, max_tokens=24)
    assert answer.status_code == 200, answer.text[:300]
    if route == "playground":
        assert "event: error" not in answer.text
        return
    value = answered(route, answer)
    assert jsonschema.Draft202012Validator(schema).is_valid(value), value


@pytest.mark.parametrize("route", ["run-prompt", "chat"])
@pytest.mark.parametrize("shape", list(BEYOND))
def test_a_schema_past_the_engines_limits_is_refused_naming_the_limit(
    server: BackgroundServer, route: str, shape: str
) -> None:
    message = refusal(post(server, route, LARGE[shape]))
    assert BEYOND[shape] in message
    assert "<grammar>" not in message and len(message) < 400  # not the engine's state dump


@pytest.mark.parametrize("stream", [False, True])
def test_a_streamed_answer_to_a_schema_too_large_to_show_whole_is_held(
    server: BackgroundServer, stream: bool
) -> None:
    schema = LARGE["a 20,000-value enum"]
    answer = post(server, "run-messages", schema, max_tokens=24, stream=stream)
    assert answer.status_code == 200, answer.text[:300]
    if stream:
        events = [line[6:] for line in answer.text.splitlines() if line.startswith("data: ")]
        pieces = [json.loads(e).get("response", "") for e in events if e != "[DONE]"]
        value = json.loads("".join(pieces))
    else:
        value = answered("run-messages", answer)
    assert jsonschema.Draft202012Validator(schema).is_valid(value), value


@pytest.mark.parametrize("stream", [False, True])
def test_a_streamed_request_past_the_engines_limits_is_refused_before_the_stream_starts(
    server: BackgroundServer, stream: bool
) -> None:
    answer = post(server, "chat", LARGE["6,000 properties"], stream=stream)
    assert BEYOND["6,000 properties"] in refusal(answer)
    assert answer.json()["error"]["type"] == "invalid_request_error"


def answered(route: str, answer: Any) -> Any:
    """The answer's JSON value from a route's reply."""
    body = answer.json()
    if route == "chat":
        return json.loads(body["choices"][0]["message"]["content"])
    response = body["result"]["response"]
    return json.loads(response) if isinstance(response, str) else response


@pytest.mark.parametrize("route", ["run-messages", "chat"])
def test_a_tool_schema_past_the_context_is_refused_before_the_stream(
    server: BackgroundServer, route: str
) -> None:
    tool: dict[str, Any] = {
        "type": "function",
        "function": {
            "name": "record",
            "description": "Record the fields.",
            "parameters": many_properties(6_000),
        },
    }
    if route == "run-messages":
        tool = tool["function"]
    answer = post(server, route, {"type": "object"}, tools=[tool], stream=True)
    # The grammar engine holds its 6,000 properties; the tools written into the prompt do not fit.
    message = refusal(answer)
    assert "messages: the prompt is" in message
    assert "more than the context of 4096 tokens holds" in message
