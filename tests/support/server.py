"""What the `agentkit serve` tests share: the SDK clients pointed at a server, the Workers AI
endpoint's URL, reading an event stream, test runtimes that hang or call a calculator, and the
command run in a process of its own."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import cloudflare
import openai
from openai.types.chat.chat_completion_chunk import ChoiceDeltaToolCall, ChoiceDeltaToolCallFunction

from agentkit import (
    Capabilities,
    FunctionRuntime,
    Generation,
    ModelRequest,
    Runtime,
    ScriptedRuntime,
    StreamChunk,
    Usage,
    tool,
)
from agentkit.model_api import DEFAULT_MODEL
from agentkit.server.background import BackgroundServer

from support.helpers import ACCOUNT, cloudflare_sdk, openai_sdk
from support.mcp_helpers import free_port

TOKEN = "test-token-123"
# Plain JSON, as a user writes it for either SDK (whose TypedDicts for it differ).
WEATHER: Any = {
    "name": "get_weather",
    "description": "Get the current weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string", "description": "The city."}},
        "required": ["city"],
    },
}


def cf_client(server: BackgroundServer, token: str = TOKEN) -> cloudflare.Cloudflare:
    return cloudflare_sdk(server.url, token)


def oa_client(server: BackgroundServer, token: str = TOKEN) -> openai.OpenAI:
    return openai_sdk(server.url, token)


def run_url(server: BackgroundServer | None = None, model: str = DEFAULT_MODEL) -> str:
    """The Workers AI endpoint of `server`, or its path alone (for in-process clients)."""
    base = server.url if server is not None else ""
    return f"{base}/client/v4/accounts/{ACCOUNT}/ai/run/{model}"


def api_errors(error: cloudflare.APIStatusError | openai.APIStatusError) -> list[Any]:
    """The `errors` of the JSON body an SDK raised `error` for."""
    body = error.body
    assert isinstance(body, dict), body
    errors: list[Any] = body["errors"]
    return errors


def function_of(call: ChoiceDeltaToolCall) -> ChoiceDeltaToolCallFunction:
    """The function part of a tool call in an OpenAI stream (the SDK types it as optional)."""
    assert call.function is not None, call
    return call.function


def events(lines: Iterator[str]) -> list[Any]:
    """The `data:` payloads of an SSE body, JSON-decoded ("[DONE]" kept as is)."""
    out: list[Any] = []
    for line in lines:
        if line.startswith("data: "):
            payload = line[len("data: ") :]
            out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out


class HangingRuntime(Runtime):
    """Streams one word then waits until cancelled (or `release` is set); records both ends."""

    name = "hanging"
    capabilities = Capabilities()

    def __init__(self) -> None:
        self.started = threading.Event()
        self.stopped = threading.Event()
        self.release = threading.Event()
        self.calls = 0

    async def _wait(self) -> None:
        # `release` is set from the test's thread, where an anyio.Event cannot be set.
        while not self.release.is_set():  # noqa: ASYNC110
            await anyio.sleep(0.01)

    async def handle_generate(self, request: ModelRequest) -> Generation:
        self.calls += 1
        self.started.set()
        try:
            await self._wait()
            return Generation(response="released")
        finally:
            self.stopped.set()

    async def handle_stream(self, request: ModelRequest) -> AsyncIterator[StreamChunk]:
        self.calls += 1
        self.started.set()
        try:
            yield StreamChunk(response="Hello")
            await self._wait()
            yield StreamChunk(response=" world", usage=Usage.of(3, 2))
        finally:
            self.stopped.set()


QUESTION = {
    "messages": [{"role": "user", "content": "What is 37 * 41?"}],
    "tool_choice": "required",
}


class Calculator:
    """A calculator tool that counts its runs, and a model that calls it once."""

    def __init__(self) -> None:
        self.runs: list[str] = []

        @tool
        def calculate(expression: str) -> str:
            """Evaluate an arithmetic expression.

            Args:
                expression: e.g. 37 * 41.
            """
            self.runs.append(expression)
            return "1517"

        self.tool = calculate
        self.runtime = FunctionRuntime(self._model)

    @staticmethod
    def _model(request: ModelRequest) -> Generation | str:
        assert request.messages is not None
        if request.messages[-1].role == "tool":
            return f"It is {request.messages[-1].content}."
        return ScriptedRuntime.call("calculate", expression="37 * 41")


@contextmanager
def serve_process(options: list[str], log: Path, env: Mapping[str, str]) -> Iterator[str]:
    """`agentkit serve` with `options` in a process of its own, on a free loopback port: its
    URL, once it accepts connections. At the end it is interrupted, as Ctrl-C would, and must
    exit with status 0 (shutting down flushes what it exports). Its output goes to `log`."""
    port = free_port()
    command = [sys.executable, "-m", "agentkit.cli", "serve", "--port", str(port), *options]
    with log.open("w") as out:
        process = subprocess.Popen(command, env=dict(env), stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log.read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "agentkit serve did not start"
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGINT)
        status = process.wait(timeout=30)
    assert status == 0, log.read_text()
