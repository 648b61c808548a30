"""What the MCP tests share: the test servers, free ports, looking at processes, and agentkit's
own tools served over MCP (in process, or by `agentkit serve --mcp`) with the SDK's client."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from agentkit import ScriptedRuntime
from agentkit.mcp import MCPServerStdio
from agentkit.server.app import create_app
from agentkit.tools.loader import load_tools

from support import ROOT, SUPPORT
from support.loopback import LoopbackServer

SERVERS = SUPPORT / "mcp_servers"
SDK_SERVER = SERVERS / "sdk_server.py"
LOWLEVEL_SERVER = SERVERS / "lowlevel_server.py"

CALCULATOR = load_tools([ROOT / "tools" / "calculator.py"])[0]
TOKEN = "s3cret-token"


def text_of(result: Any) -> str:
    return "\n".join(block.text for block in result.content)


def sdk_stdio(**options: Any) -> MCPServerStdio:
    """The SDK-written test server, as a child process."""
    return MCPServerStdio(sys.executable, [str(SDK_SERVER)], **options)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@contextmanager
def sdk_http_server() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The SDK-written test server over Streamable HTTP on 127.0.0.1: its URL and process."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(SDK_SERVER), "http", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, "the HTTP test server exited"
            assert time.monotonic() < deadline, "the HTTP test server did not listen"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/mcp", process
    finally:
        process.terminate()
        process.wait(10)


def running(pid: int) -> bool:
    """Whether a process exists (a zombie, dead but not reaped by its parent, counts)."""
    return Path(f"/proc/{pid}").exists()


def _processes() -> Iterator[tuple[int, list[str]]]:
    """Each process's pid and the fields of its /proc stat after the command name."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            yield int(entry.name), (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue


def group_members(group: int) -> list[int]:
    """The processes in a process group (a stdio server starts its own, with its pid)."""
    return [pid for pid, fields in _processes() if int(fields[2]) == group]


def children() -> set[int]:
    """This process's child processes."""
    mine = os.getpid()
    return {pid for pid, fields in _processes() if int(fields[1]) == mine}


# -- agentkit's tools over MCP ------------------------------------------------------------------


@contextmanager
def served(tools: list[Any] | None = None, **options: Any) -> Iterator[str]:
    app = create_app(ScriptedRuntime(), tools=tools or [CALCULATOR], mcp=True, **options)
    with LoopbackServer(app=app, lifespan="on") as server:
        yield f"{server.url}/mcp"


def sdk_client(
    url: str, token: str | None = TOKEN, **options: Any
) -> tuple[httpx2.AsyncClient, Client]:
    """An HTTP client and the SDK's MCP client over it; `options` go to `Client`."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    http = httpx2.AsyncClient(headers=headers)
    return http, Client(streamable_http_client(url, http_client=http), **options)


@contextmanager
def agentkit_serve(*args: str) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",  # the model is not used here
        "AGENTKIT_API_TOKEN": TOKEN,
    }
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "agentkit.cli", "serve", "--runtime", "openai"),
            *("--model", "m", "--port", str(port), "--log-level", "warning", *args),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise AssertionError(f"agentkit serve exited: {process.stderr.read()}")  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "agentkit serve did not listen"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        process.wait(20)
