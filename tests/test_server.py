"""`agentkit serve` over real HTTP on 127.0.0.1, with test runtimes behind it: the Workers AI
endpoint through the official `cloudflare` SDK, streaming, cancellation, the queue, the
playground's agent endpoint. What the test_server_* modules share is in support/server.py; the
real model is in test_server_model.py, the page in test_server_playground.py. The `serve`
(uvicorn) and `client` (in process) fixtures are in conftest.py."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import cloudflare
import httpx
import pytest
from starlette.testclient import TestClient

from agentkit import (
    Message,
    ScriptedRuntime,
    Usage,
    tool,
)
from agentkit.cli import main as cli_main
from agentkit.model_api import DEFAULT_MODEL
from agentkit.server.background import BackgroundServer

from support.helpers import ACCOUNT
from support.server import TOKEN, WEATHER, HangingRuntime, api_errors, cf_client, events, run_url

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
    assert (sent.messages, sent.max_tokens, sent.temperature, sent.seed) == (
        [Message.user("Say hi")],
        20,
        0.2,
        7,
    )


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
    assert isinstance(result, dict)
    assert result["tool_calls"] == [{"name": "get_weather", "arguments": {"city": "Paris"}}]
    request = runtime.requests[0]
    assert request.tools[0].name == "get_weather"
    assert request.messages[0].content == "Weather in Paris?"


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
    error = api_errors(refused.value)[0]
    assert error["code"] == 3040
    assert "max_queue=1" in error["message"] and "retry" in error["message"]
    assert waiting[0].status_code == 200
    assert waiting[0].json()["result"]["response"] == "released"


def test_a_runtime_with_slots_serves_that_many_at_once_then_queues_then_refuses(
    serve: Callable[..., BackgroundServer],
) -> None:
    runtime = HangingRuntime()
    runtime.slots = 2
    server = serve(runtime, max_queue=1)
    with (
        httpx.stream("POST", run_url(server), json={"prompt": "1", "stream": True}) as first,
        httpx.stream("POST", run_url(server), json={"prompt": "2", "stream": True}) as second,
    ):
        # Both stream at once: each holds a slot.
        streams = [first.iter_lines(), second.iter_lines()]
        assert [next(lines) for lines in streams] == ['data: {"response":"Hello"}'] * 2
        waiting: list[httpx.Response] = []
        third = threading.Thread(
            target=lambda: waiting.append(httpx.post(run_url(server), json={"prompt": "3"}))
        )
        third.start()
        while app_waiting(server) < 1:
            time.sleep(0.01)
        fourth = httpx.post(run_url(server), json={"prompt": "4"})
        runtime.release.set()
    third.join(10)
    assert fourth.status_code == 429
    error = fourth.json()["errors"][0]
    assert error["code"] == 3040
    assert "all 2 slot(s)" in error["message"] and "max_queue=1" in error["message"]
    assert waiting[0].json()["result"]["response"] == "released"


def app_waiting(server: BackgroundServer) -> int:
    """How many requests wait in the server's queue."""
    app: Any = server._server.config.app
    return int(app.state.agentkit.runtime.queue.waiting)


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


def test_playground_agent_refuses_bad_settings(client: Callable[..., TestClient]) -> None:
    app = client(ScriptedRuntime())
    body = {"messages": [{"role": "user", "content": "hi"}], "top_k": 100}
    answer = app.post("/playground/agent", json=body)
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
    assert cli_main(["serve", "--body-timeout", "0"]) == 2
    assert "--body-timeout: must be > 0 (got 0.0)" in capsys.readouterr().err
    assert cli_main(["serve", "--allow-origin", "notebook.example"]) == 2
    assert "allowed origin: must be scheme://host[:port] (got 'notebook.example')" in (
        capsys.readouterr().err
    )


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
