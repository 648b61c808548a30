"""Every way `agentkit serve` says no: HTTP status, Workers AI code, and a message naming the
field, the bound and the value; through the official SDKs over real HTTP, and in process where
the socket plays no part."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import cloudflare
import httpx
import openai
import pytest
from starlette.testclient import TestClient

from agentkit import (
    Capabilities,
    FunctionRuntime,
    ModelRequest,
    ScriptedRuntime,
    StreamChunk,
)
from agentkit.model_api import DEFAULT_MODEL
from agentkit.server.background import BackgroundServer
from agentkit.wire import GenerationRequest

from support.helpers import ACCOUNT
from support.server import TOKEN, HangingRuntime, api_errors, cf_client, oa_client, run_url

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


def test_every_bad_field_is_named(client: Callable[..., TestClient]) -> None:
    app = client(ScriptedRuntime())
    answer = app.post(run_url(), json={"prompt": "hi", "temperature": 9, "top_k": 0})
    assert answer.status_code == 400
    assert [e["message"] for e in answer.json()["errors"]] == [
        "Bad input: temperature: must be <= 5 (got 9)",
        "Bad input: top_k: must be >= 1 (got 0)",
    ]


def test_prompt_and_messages_together_are_refused(client: Callable[..., TestClient]) -> None:
    app = client(ScriptedRuntime())
    answer = app.post(
        run_url(), json={"prompt": "hi", "messages": [{"role": "user", "content": "hi"}]}
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
    assert api_errors(refused.value) == [
        {
            "code": 5007,
            "message": "No such model @cf/mistral/nope or task; this server serves: "
            "@cf/meta/llama-3.1-8b-instruct, @agentkit/scripted",
        }
    ]


def test_configured_model_names_replace_the_defaults(
    client: Callable[..., TestClient],
) -> None:
    app = client(ScriptedRuntime(["ok"]), models=["@hf/mine"])
    assert app.post(run_url(model="@hf/mine"), json={"prompt": "hi"}).status_code == 200
    refused = app.post(run_url(), json={"prompt": "hi"})
    assert (refused.status_code, refused.json()["errors"][0]["code"]) == (400, 5007)


def test_a_body_too_large_is_413_with_code_3006(serve: Callable[..., BackgroundServer]) -> None:
    runtime = ScriptedRuntime()
    server = serve(runtime, max_body=1000)
    with pytest.raises(cloudflare.APIStatusError) as refused:
        cf_client(server).ai.run(DEFAULT_MODEL, account_id=ACCOUNT, prompt="x" * 2000)
    assert refused.value.status_code == 413
    error = api_errors(refused.value)[0]
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
    assert api_errors(wrong.value) == [
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
    assert api_errors(refused.value) == [
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
    client: Callable[..., TestClient], fields: dict[str, Any], message: str
) -> None:
    app = client(ScriptedRuntime())
    answer = app.post(run_url(), json=fields)
    assert answer.status_code == 400
    assert answer.json()["errors"] == [{"code": 5006, "message": message}]


def test_empty_or_broken_bodies_are_refused(client: Callable[..., TestClient]) -> None:
    app = client(ScriptedRuntime())
    empty = app.post(run_url())
    assert empty.status_code == 400
    assert empty.json()["errors"] == [
        {"code": 3003, "message": "Request is missing headers or body: body"}
    ]
    broken = app.post(run_url(), content=b'{"prompt": "hi"')
    assert broken.status_code == 400
    assert broken.json()["errors"][0]["code"] == 5006
    assert broken.json()["errors"][0]["message"].startswith("Bad input: the body is not valid JSON")
    array = app.post(run_url(), json=["hi"])
    assert array.json()["errors"] == [
        {"code": 5006, "message": "Bad input: the body must be a JSON object (got list)"}
    ]


def test_a_failing_runtime_answers_500_and_a_cut_stream(
    serve: Callable[..., BackgroundServer], caplog: pytest.LogCaptureFixture
) -> None:
    def fail(request: ModelRequest) -> str:
        raise RuntimeError("the model fell over at /srv/secret/path")

    caplog.set_level(logging.ERROR, logger="agentkit.server")
    server = serve(FunctionRuntime(fail))
    plain = httpx.post(run_url(server), json={"prompt": "hi"})
    assert plain.status_code == 500
    request_id = plain.headers["cf-ai-req-id"]
    # The client learns the request id, never the exception's type or text...
    assert plain.json()["errors"] == [
        {
            "code": 5000,
            "message": f"internal error: the server's log has the detail (request {request_id})",
        }
    ]
    assert "RuntimeError" not in plain.text and "/srv/secret" not in plain.text
    # ...which the log keeps, under the same id.
    (logged,) = [r for r in caplog.records if request_id in r.getMessage()]
    assert logged.exc_info is not None
    assert str(logged.exc_info[1]) == "the model fell over at /srv/secret/path"
    caplog.clear()

    class Breaks(ScriptedRuntime):
        async def stream(
            self, request: ModelRequest | GenerationRequest
        ) -> AsyncIterator[StreamChunk]:
            yield StreamChunk(response="Half an")
            raise RuntimeError("out of memory")

    server = serve(Breaks())
    with httpx.stream("POST", run_url(server), json={"prompt": "hi", "stream": True}) as answer:
        assert answer.status_code == 200
        body = answer.read().decode()
    assert body.startswith('data: {"response":"Half an"}\n\nevent: error\ndata: ')
    assert "[DONE]" not in body  # a client sees the stream as cut
    error = json.loads(body.split("event: error\ndata: ")[1])
    request_id = answer.headers["cf-ai-req-id"]
    assert error["errors"] == [
        {
            "code": 5000,
            "message": f"internal error: the server's log has the detail (request {request_id})",
        }
    ]
    assert "out of memory" not in body
    (logged,) = [r for r in caplog.records if request_id in r.getMessage()]
    assert logged.exc_info is not None and str(logged.exc_info[1]) == "out of memory"


def test_every_response_carries_a_request_id(client: Callable[..., TestClient]) -> None:
    app = client(ScriptedRuntime(["a", "b"]), api_token=TOKEN)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    answers = [
        app.post(run_url(), json={"prompt": "hi"}, headers=auth),
        app.post(run_url(), json={"prompt": "hi", "stream": True}, headers=auth),
        app.post(run_url(), json={"prompt": "hi", "top_k": 99}, headers=auth),
        app.post(run_url(), json={"prompt": "hi"}),
        app.get("/client/v4/nowhere"),
        app.get("/"),
        app.post(run_url(), json={"prompt": "hi"}, headers={**auth, "Host": "evil.example"}),
    ]
    assert [a.status_code for a in answers] == [200, 200, 400, 401, 404, 200, 403]
    ids = [a.headers["cf-ai-req-id"] for a in answers]
    assert len(set(ids)) == len(ids) and all(len(i) == 36 for i in ids)
    assert answers[4].json()["errors"] == [
        {"code": 7000, "message": "No route for that URI: /client/v4/nowhere"}
    ]


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


def test_a_stream_refused_before_its_first_token_gets_a_json_answer(
    serve: Callable[..., BackgroundServer],
) -> None:
    runtime = HangingRuntime()
    server = serve(runtime, max_queue=0)
    with httpx.stream("POST", run_url(server), json={"prompt": "1", "stream": True}) as first:
        lines = first.iter_lines()
        assert next(lines).startswith("data: ")
        refused = httpx.post(run_url(server), json={"prompt": "2", "stream": True})
        runtime.release.set()
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/json"
    assert refused.json()["errors"][0]["code"] == 3040
