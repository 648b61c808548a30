"""What the MCP tests share: the test servers, free ports, and looking at processes."""

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

from agentkit.mcp import MCPServerStdio

ROOT = Path(__file__).resolve().parents[1]
SERVERS = Path(__file__).resolve().parent / "mcp_servers"
SDK_SERVER = SERVERS / "sdk_server.py"
LOWLEVEL_SERVER = SERVERS / "lowlevel_server.py"


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
