"""The two kinds of MCP server: a command run as a child process (stdio), and a URL
(Streamable HTTP)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit

import httpx2
from mcp.client._transport import TransportStreams
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from agentkit.errors import UserError
from agentkit.mcp.client import MCPTools, Protocol, ToolFilter

__all__ = ["MCPServerHTTP", "MCPServerStdio"]


class MCPServerStdio(MCPTools):
    """An MCP server run as a child process, spoken to over its stdin and stdout.

    The process starts when the agent is entered and is ended with its whole process group
    when the agent stops (stdin closed, then SIGTERM, then SIGKILL).

    Args:
        command: the program to run.
        args: its arguments.
        env: environment variables for it, over a minimal safe set (`HOME`, `PATH`, ...): the
            agent's own environment, and the secrets in it, are not passed on.
        cwd: the folder to run it in.
        name: what errors and logs call it (default: the command's file name).
        prefix: put before each tool's name (`prefix_tool`), to keep servers' tools apart.
        tool_filter: the tools to offer, by name or as a function of the name.
        timeout: seconds a call may take before the model is told it timed out.
        connect_timeout: seconds the start and the first tool listing may take.
        protocol: `auto` (the newest both sides speak) or `legacy` (the 2025 handshake only).
        errlog: where the server's stderr goes (default: this process's stderr).
    """

    def __init__(
        self,
        command: str,
        args: Sequence[str] = (),
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
        name: str | None = None,
        prefix: str | None = None,
        tool_filter: ToolFilter | None = None,
        timeout: float | None = None,
        connect_timeout: float = 30.0,
        protocol: Protocol = "auto",
        errlog: TextIO | None = None,
    ) -> None:
        super().__init__(
            name=name or Path(command).name,
            prefix=prefix,
            tool_filter=tool_filter,
            timeout=timeout,
            connect_timeout=connect_timeout,
            protocol=protocol,
        )
        self.parameters = StdioServerParameters(
            command=command, args=list(args), env=dict(env) if env else None, cwd=cwd
        )
        self.errlog = errlog

    def _transport(self) -> AbstractAsyncContextManager[TransportStreams]:
        if self.errlog is None:
            return stdio_client(self.parameters)
        return stdio_client(self.parameters, errlog=self.errlog)

    def __repr__(self) -> str:
        return f"MCPServerStdio({self.parameters.command!r}, {self.parameters.args!r})"


class MCPServerHTTP(MCPTools):
    """An MCP server at a URL, over Streamable HTTP.

    Args:
        url: the server's MCP endpoint, e.g. `http://127.0.0.1:8000/mcp`.
        headers: sent with every request (e.g. `Authorization`); never logged or shown.
        name: what errors and logs call it (default: the URL's host and port).
        prefix, tool_filter, timeout, connect_timeout, protocol: as for `MCPServerStdio`.
    """

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        name: str | None = None,
        prefix: str | None = None,
        tool_filter: ToolFilter | None = None,
        timeout: float | None = None,
        connect_timeout: float = 30.0,
        protocol: Protocol = "auto",
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UserError(f"url: must be an http:// or https:// URL (got {url!r})")
        super().__init__(
            name=name or (parts.hostname + (f":{parts.port}" if parts.port else "")),
            prefix=prefix,
            tool_filter=tool_filter,
            timeout=timeout,
            connect_timeout=connect_timeout,
            protocol=protocol,
        )
        self.url = url
        self._headers = dict(headers or {})

    def _transport(self) -> AbstractAsyncContextManager[TransportStreams]:
        return self._connection()

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[TransportStreams]:
        timeout = httpx2.Timeout(self.connect_timeout, read=max(300.0, self.timeout or 0))
        async with (
            httpx2.AsyncClient(headers=self._headers, timeout=timeout) as http,
            streamable_http_client(self.url, http_client=http) as streams,
        ):
            yield streams

    def __repr__(self) -> str:
        return f"MCPServerHTTP({self.url!r})"
