"""Hostile and random input to every route of `agentkit serve`, in process: the answer is always
a 4xx in the error envelope (or a success), never a 500, and the server keeps answering."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from agentkit import FunctionRuntime, ModelRequest, tool
from agentkit.model_api import DEFAULT_MODEL

from support.server import run_url

CHAT = "/client/v4/accounts/acc/ai/v1/chat/completions"
POSTS = [run_url(), CHAT, "/playground/agent"]
GETS = ["/client/v4/accounts/acc/ai/v1/models", "/playground/info", "/"]
FIELDS = [
    "prompt", "messages", "model", "max_tokens", "max_completion_tokens", "temperature",
    "top_p", "top_k", "seed", "repetition_penalty", "frequency_penalty", "presence_penalty",
    "stream", "stream_options", "raw", "lora", "tools", "functions", "tool_choice",
    "parallel_tool_calls", "response_format", "image", "n", "stop", "instructions", "use_tools",
    "role", "content", "name", "arguments", "tool_calls", "tool_call_id", "type", "function",
    "parameters", "json_schema", "schema", "include_usage",
]  # fmt: skip


@tool
def echo(text: str) -> str:
    """Say `text` back.

    Args:
        text: What to say.
    """
    return text


def model(request: ModelRequest) -> str:
    return "ok"


scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(exclude_categories=()), max_size=20)
    | st.sampled_from(["user", "assistant", "tool", "system", "auto", "required", DEFAULT_MODEL])
)
documents = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=30,
)
requests = st.dictionaries(st.sampled_from(FIELDS), documents, max_size=6)
# JSON texts at the limits of the parser: deep nesting, numbers too long to convert, values
# that are not JSON (NaN), text no encoding can hold (an unpaired surrogate).
hostile = st.one_of(
    st.integers(1, 6000).map(lambda n: "[" * n + "]" * n),
    st.integers(1, 6000).map(lambda n: '{"a":' * n + "1" + "}" * n),
    st.tuples(st.sampled_from(FIELDS), st.integers(1, 6000)).map(
        lambda f: f'{{"prompt": "x", "{f[0]}": {"9" * f[1]}}}'
    ),
    st.tuples(st.sampled_from(FIELDS), st.sampled_from(["NaN", "Infinity", "-Infinity"])).map(
        lambda f: f'{{"prompt": "x", "{f[0]}": {f[1]}}}'
    ),
    st.tuples(st.sampled_from(FIELDS), st.integers(0xD800, 0xDFFF)).map(
        lambda f: (
            f'{{"messages": [{{"role": "user", "content": "hi"}}], "{f[0]}": "\\u{f[1]:04x}"}}'
        )
    ),
)


@pytest.fixture(scope="module")
def app() -> Iterator[TestClient]:
    from conftest import LOCAL_URL

    from agentkit.server import create_app

    with TestClient(create_app(FunctionRuntime(model), tools=[echo]), base_url=LOCAL_URL) as c:
        yield c


def check(answer: Any) -> None:
    """A refusal in the envelope, or a success; never the server's own failure."""
    assert answer.status_code < 500, answer.text
    if answer.headers.get("content-type", "").startswith("text/event-stream"):
        assert '"code":5000' not in answer.text, answer.text
        return
    if answer.status_code >= 400:
        body = answer.json()
        assert body["success"] is False and body["result"] is None
        assert body["errors"] and all(
            isinstance(e["code"], int) and isinstance(e["message"], str) for e in body["errors"]
        )


def still_answers(app: TestClient) -> None:
    answer = app.post(run_url(), json={"prompt": "hi"})
    assert answer.status_code == 200 and answer.json()["result"]["response"] == "ok"


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))


@FUZZ
@given(path=st.sampled_from(POSTS), body=requests)
def test_random_requests_are_answered_without_a_500(
    app: TestClient, path: str, body: dict[str, Any]
) -> None:
    check(app.post(path, content=json.dumps(body), headers={"content-type": "application/json"}))
    still_answers(app)


@FUZZ
@given(path=st.sampled_from(POSTS), body=documents)
def test_random_json_documents_are_answered_without_a_500(
    app: TestClient, path: str, body: Any
) -> None:
    check(app.post(path, content=json.dumps(body), headers={"content-type": "application/json"}))
    still_answers(app)


@FUZZ
@given(path=st.sampled_from(POSTS), body=hostile)
def test_json_at_the_parser_limits_is_answered_without_a_500(
    app: TestClient, path: str, body: str
) -> None:
    check(app.post(path, content=body, headers={"content-type": "application/json"}))
    still_answers(app)


@FUZZ
@given(path=st.sampled_from(POSTS + GETS), body=st.binary(max_size=200))
def test_random_bytes_are_answered_without_a_500(app: TestClient, path: str, body: bytes) -> None:
    method = "GET" if path in GETS else "POST"
    check(app.request(method, path, content=body, headers={"content-type": "application/json"}))
    still_answers(app)


@pytest.mark.parametrize("path", POSTS)
@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            b'{"prompt": "x", "max_tokens": ' + b"9" * 5000 + b"}",
            "Bad input: max_tokens: must have at most 4300 digits (got 5000 digits)",
        ),
        (b"[" * 5000 + b"]" * 5000, "Bad input: the body nests deeper than 64 levels"),
        (b'{"a": ' * 65 + b"1" + b"}" * 65, "Bad input: the body nests deeper than 64 levels"),
        (b'{"prompt": "\\ud800"}', "Bad input: the body holds an unpaired surrogate ('\\ud800')"),
        (b'{"prompt": "x", "temperature": NaN}', "Bad input: the body is not valid JSON"),
    ],
)
def test_bodies_that_broke_the_parser_are_400(
    client: Callable[..., TestClient],
    caplog: pytest.LogCaptureFixture,
    path: str,
    body: bytes,
    message: str,
) -> None:
    app = client(FunctionRuntime(model))
    answer = app.post(path, content=body, headers={"content-type": "application/json"})
    assert answer.status_code == 400
    (error,) = answer.json()["errors"]
    assert error["code"] == 5006
    assert error["message"].startswith(message)
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    still_answers(app)


def test_a_surrogate_pair_is_text_not_an_error(client: Callable[..., TestClient]) -> None:
    runtime = FunctionRuntime(lambda request: request.messages[-1].content)
    answer = client(runtime).post(run_url(), content=b'{"prompt": "\\ud83d\\ude00"}')
    assert answer.status_code == 200
    assert answer.json()["result"]["response"] == "\U0001f600"


# JSON inside a string: a call's `arguments` (both tool-call shapes), nested up to far past the
# limit, in an assistant message before the user's turn.
def _call_with(shape: str, arguments: str) -> dict[str, Any]:
    if shape == "legacy":
        return {"name": "echo", "arguments": arguments}
    return {"id": "c1", "type": "function", "function": {"name": "echo", "arguments": arguments}}


nested_arguments = st.tuples(
    st.sampled_from(["legacy", "function"]),
    st.integers(1, 6000).map(lambda n: "[" * n + "]" * n)
    | st.integers(1, 6000).map(lambda n: '{"a":' * n + "1" + "}" * n),
    st.booleans(),
).map(
    lambda c: {
        "model": DEFAULT_MODEL,
        "stream": c[2],
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "", "tool_calls": [_call_with(c[0], c[1])]},
            {"role": "tool", "tool_call_id": "c1", "content": "x"},
            {"role": "user", "content": "again"},
        ],
    }
)


@FUZZ
@given(path=st.sampled_from(POSTS), body=nested_arguments)
def test_nested_json_in_arguments_is_answered_without_a_500(
    app: TestClient, path: str, body: dict[str, Any]
) -> None:
    check(app.post(path, content=json.dumps(body), headers={"content-type": "application/json"}))
    still_answers(app)


# -- schemas that take a grammar's compiler to its limits, on the embedded model --------------


def _intertwined(n: int) -> dict[str, Any]:
    props = {f"p{j}": {"$ref": f"#/$defs/D{j}"} for j in range(n)}
    defs = {f"D{i}": {"type": "object", "properties": props} for i in range(n)}
    return {"$ref": "#/$defs/D0", "$defs": defs}


_BOUNDED: dict[str, dict[str, Any]] = {
    "Length": {"type": "string"},
    "Items": {"type": "array", "items": {"type": "integer"}},
    "Properties": {"type": "object", "additionalProperties": {"type": "integer"}},
}
heavy_schemas = st.one_of(
    st.tuples(
        st.sampled_from(list(_BOUNDED)),
        st.sampled_from(["min", "max"]),
        st.integers(0, 2_000_000) | st.sampled_from([2_000, 2_001, 999_999, 1_000_000]),
    ).map(lambda b: {**_BOUNDED[b[0]], f"{b[1]}{b[0]}": b[2]}),
    st.integers(1, 9).map(_intertwined),
    st.integers(1_000, 25_000).map(lambda n: {"enum": [f"v{i}" for i in range(n)]}),
    st.integers(100, 6_000).map(lambda n: {"anyOf": [{"const": i} for i in range(n)]}),
    st.integers(100, 21_000).map(
        lambda n: {"type": "object", "properties": {f"p{i}": {"type": "integer"} for i in range(n)}}
    ),
)


@pytest.fixture(scope="module")
def local_app() -> Iterator[TestClient]:
    from conftest import LOCAL_URL

    from agentkit.runtimes.llama_cpp import LlamaCpp
    from agentkit.server import create_app

    model = LlamaCpp()
    with TestClient(create_app(model), base_url=LOCAL_URL) as c:
        yield c


@pytest.mark.model
# Each example compiles a grammar at a limit and evaluates a prompt on the model: seconds
# each. Bounds, nesting and the grammar's budget have tests of their own (test_grammar.py,
# test_server_schemas.py); here schemas drawn from the five families check that the server
# answers each without a 500.
@settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    path=st.sampled_from(POSTS),
    schema=heavy_schemas,
    as_tool=st.booleans(),
    stream=st.booleans(),
)
def test_schemas_at_the_grammar_limits_are_answered_without_a_500(
    local_app: TestClient, path: str, schema: dict[str, Any], as_tool: bool, stream: bool
) -> None:
    body: dict[str, Any] = {"messages": [{"role": "user", "content": "Fill it in."}]}
    body["max_tokens"] = 2
    if path != "/playground/agent":
        body["stream"] = stream
    if path == CHAT:
        body["model"] = DEFAULT_MODEL
    if as_tool and path != "/playground/agent":  # the playground offers the server's tools
        wrapped = {"type": "object", "properties": {"x": schema}}
        parameters = schema if "$defs" in schema else wrapped
        body["tools"] = [{"name": "fill", "description": "Fill it in.", "parameters": parameters}]
        if path == CHAT:
            body["tools"] = [{"type": "function", "function": body["tools"][0]}]
    else:
        body["response_format"] = {"type": "json_schema", "json_schema": schema}
    check(local_app.post(path, json=body))
    answer = local_app.post(run_url(), json={"prompt": "hi", "max_tokens": 2})
    assert answer.status_code == 200, answer.text
