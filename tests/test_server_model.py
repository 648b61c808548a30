"""`agentkit serve` with the real embedded model (SmolLM2-135M through llama.cpp) behind it,
driven over HTTP on 127.0.0.1 by the official `cloudflare` and `openai` SDKs and by agentkit's
own `WorkersAI` runtime. Answers are kept short: the machine has two shared cores."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import cloudflare
import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageFunctionToolCall

from agentkit import Agent, tool
from agentkit.model_api import DEFAULT_MODEL
from agentkit.runtimes.llama_cpp import LlamaCpp
from agentkit.runtimes.workers_ai import WorkersAI
from agentkit.server import create_app
from agentkit.server.background import BackgroundServer

from support.helpers import ACCOUNT, cloudflare_sdk, openai_sdk
from support.server import api_errors, function_of

pytestmark = pytest.mark.model

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "model-test-token"
# Plain JSON, as a user writes it for either SDK (whose TypedDicts for it differ).
WEATHER: Any = {
    "name": "get_weather",
    "description": "Get the current weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string", "description": "The city name."}},
        "required": ["city"],
    },
}
QUESTION: Any = [{"role": "user", "content": "What is the weather in Paris?"}]


@tool
def get_weather(city: str) -> str:
    """Get the current weather in a city.

    Args:
        city: The city name.
    """
    return f"{city}: sunny, 21 °C"


@pytest.fixture(scope="module")
def runtime() -> Iterator[LlamaCpp]:
    """The embedded model, loaded once for the module."""
    model = LlamaCpp()
    yield model
    anyio.run(model.aclose)


@pytest.fixture(scope="module")
def server(runtime: LlamaCpp) -> Iterator[BackgroundServer]:
    with BackgroundServer(create_app(runtime, api_token=TOKEN, tools=[get_weather])) as running:
        yield running


@pytest.fixture
def cf(server: BackgroundServer) -> cloudflare.Cloudflare:
    return cloudflare_sdk(server.url, TOKEN)


@pytest.fixture
def oa(server: BackgroundServer) -> openai.OpenAI:
    return openai_sdk(server.url, TOKEN)


def test_cloudflare_sdk_prompt(cf: cloudflare.Cloudflare) -> None:
    result: Any = cf.ai.run(
        DEFAULT_MODEL, account_id=ACCOUNT, prompt="Say hello.", max_tokens=8, temperature=0
    )
    assert isinstance(result["response"], str) and result["response"].strip()
    usage = result["usage"]
    assert 1 <= usage["completion_tokens"] <= 8
    assert usage["prompt_tokens"] > 3
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_cloudflare_sdk_stream(cf: cloudflare.Cloudflare) -> None:
    with cf.ai.with_streaming_response.run(
        "@agentkit/local",
        account_id=ACCOUNT,
        messages=[{"role": "user", "content": "Count from one to five."}],
        stream=True,
        max_tokens=8,
        temperature=0,
    ) as answer:
        assert answer.headers["content-type"].startswith("text/event-stream")
        data = [line[len("data: ") :] for line in answer.iter_lines() if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert "usage" in chunks[-1] and chunks[-1]["usage"]["completion_tokens"] <= 8
    text = [c["response"] for c in chunks if c["response"]]
    assert len(text) >= 2, "the answer came in one piece, not streamed"
    assert "".join(text).strip()


def test_cloudflare_sdk_tool_call(cf: cloudflare.Cloudflare) -> None:
    # tool_choice is an agentkit extension of the contract: the local runtime then holds the
    # model to a grammar made from the tool's schema, so even a small model calls it properly.
    result: Any = cf.ai.run(
        DEFAULT_MODEL,
        account_id=ACCOUNT,
        messages=QUESTION,
        tools=[WEATHER],
        max_tokens=48,
        temperature=0,
        extra_body={"tool_choice": "required"},
    )
    [call] = result["tool_calls"]
    assert call["name"] == "get_weather"
    assert isinstance(call["arguments"], dict) and isinstance(call["arguments"]["city"], str)


@pytest.mark.parametrize("stream", [False, True])
def test_an_unknown_lora_adapter_is_named(cf: cloudflare.Cloudflare, stream: bool) -> None:
    with pytest.raises(cloudflare.BadRequestError) as refused:
        cf.ai.run(DEFAULT_MODEL, account_id=ACCOUNT, prompt="Hi", lora="pirate", stream=stream)
    assert api_errors(refused.value) == [
        {
            "code": 5006,
            "message": "Bad input: lora: unknown adapter 'pirate'; known adapters: none registered",
        }
    ]


def test_openai_sdk_chat_completion(oa: openai.OpenAI) -> None:
    completion = oa.chat.completions.create(
        model="@agentkit/local",
        messages=[{"role": "user", "content": "Say hello."}],
        max_tokens=8,
        temperature=0,
        seed=42,
    )
    choice = completion.choices[0]
    assert choice.message.role == "assistant" and (choice.message.content or "").strip()
    assert choice.finish_reason in ("stop", "length")
    assert completion.usage is not None and 1 <= completion.usage.completion_tokens <= 8


def test_openai_sdk_stream(oa: openai.OpenAI) -> None:
    stream = oa.chat.completions.create(
        model=DEFAULT_MODEL,
        messages=[{"role": "user", "content": "Name three colours."}],
        max_tokens=8,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    pieces = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert len(pieces) >= 2 and "".join(pieces).strip()
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens <= 8


def test_openai_sdk_tool_calls(oa: openai.OpenAI) -> None:
    completion = oa.chat.completions.create(
        model=DEFAULT_MODEL,
        messages=QUESTION,
        tools=[{"type": "function", "function": WEATHER}],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=48,
        temperature=0,
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls or []
    assert isinstance(call, ChatCompletionMessageFunctionToolCall)
    assert call.id.startswith("call_")
    assert call.function.name == "get_weather"
    assert isinstance(json.loads(call.function.arguments)["city"], str)


def test_openai_sdk_streamed_tool_calls(oa: openai.OpenAI) -> None:
    stream = oa.chat.completions.create(
        model=DEFAULT_MODEL,
        messages=QUESTION,
        tools=[{"type": "function", "function": WEATHER}],
        tool_choice="required",
        max_tokens=48,
        temperature=0,
        stream=True,
    )
    chunks = [c for c in stream if c.choices]
    calls = [t for c in chunks for t in c.choices[0].delta.tool_calls or []]
    assert [function_of(t).name for t in calls] == ["get_weather"]
    assert isinstance(json.loads(function_of(calls[0]).arguments or "")["city"], str)
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_workers_ai_runtime_runs_a_tool_calling_agent(server: BackgroundServer) -> None:
    # agentkit's hosted runtime, pointed at the local server instead of Cloudflare. The first
    # step must call the tool; the tools-less last call then answers from its result.
    runtime = WorkersAI(
        account_id=ACCOUNT,
        api_token=TOKEN,
        base_url=server.url + "/client/v4",
        endpoint="openai",
        max_retries=0,
    )
    agent = Agent(
        runtime,
        tools=[get_weather],
        tool_choice="required",
        max_steps=1,
        final_answer_on_max_steps=True,
        temperature=0,
        max_tokens=32,
    )
    result = agent.run_sync("What is the weather in Paris?")
    anyio.run(runtime.aclose)
    [record] = result.tool_calls
    assert record.call.name == "get_weather" and record.ok
    assert record.output == f"{record.call.arguments['city']}: sunny, 21 °C"
    assert [m.role for m in result.messages] == ["user", "assistant", "tool", "assistant"]
    assert result.stop_reason == "final_answer" and result.output.strip()
    assert result.steps == 2 and result.usage.completion_tokens > 0


def test_workers_ai_runtime_streams_through_the_run_endpoint(server: BackgroundServer) -> None:
    runtime = WorkersAI(
        account_id=ACCOUNT, api_token=TOKEN, base_url=server.url + "/client/v4", max_retries=0
    )
    agent = Agent(runtime, temperature=0, max_tokens=8)

    async def deltas() -> list[str]:
        out: list[str] = []
        async for event in agent.stream("Say hello."):
            if event.kind == "text_delta":
                out.append(event.text)
        await runtime.aclose()
        return out

    pieces = anyio.run(deltas)
    assert len(pieces) >= 2 and "".join(pieces).strip()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.mark.subprocess
def test_agentkit_serve_command(tmp_path: Path) -> None:
    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "agentkit.cli",
        "serve",
        "--port",
        str(port),
        "--tools",
        str(ROOT / "tools" / "calculator.py"),
        "--max-queue",
        "2",
        "--allowed-host",
        "box.lan",
        "--header-timeout",
        "1",
    ]
    env = {**os.environ, "AGENTKIT_API_TOKEN": TOKEN}
    log = (tmp_path / "serve.log").open("w+")
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                info = httpx.get(
                    url + "/playground/info", headers={"Authorization": f"Bearer {TOKEN}"}
                )
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline, "agentkit serve did not start"
                time.sleep(0.2)
        assert info.json()["runtime"] == "local"
        assert [t["function"]["name"] for t in info.json()["tools"]] == ["calculate"]
        client = cloudflare.Cloudflare(api_token=TOKEN, base_url=url + "/client/v4", max_retries=0)
        result: Any = client.ai.run(
            "@agentkit/local", account_id=ACCOUNT, prompt="Hi!", max_tokens=4, temperature=0
        )
        assert result["usage"]["completion_tokens"] <= 4
        auth = {"Authorization": f"Bearer {TOKEN}"}
        for host, status in (("evil.example", 403), ("box.lan", 200)):
            answer = httpx.get(url + "/playground/info", headers={**auth, "Host": host})
            assert answer.status_code == status
        with socket.create_connection(("127.0.0.1", port)) as silent:
            silent.settimeout(30)
            assert silent.recv(1) == b""  # closed by the header deadline
        with pytest.raises(cloudflare.AuthenticationError):
            cloudflare.Cloudflare(
                api_token="wrong", base_url=url + "/client/v4", max_retries=0
            ).ai.run(DEFAULT_MODEL, account_id=ACCOUNT, prompt="Hi!")
    finally:
        process.send_signal(signal.SIGINT)
        status = process.wait(timeout=30)
    output = (tmp_path / "serve.log").read_text()
    assert status == 0, output
    assert "local runtime as @cf/meta/llama-3.1-8b-instruct, @agentkit/local" in output
    assert f"playground: http://127.0.0.1:{port}/" in output
    assert TOKEN not in output
