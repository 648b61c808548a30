"""MCP servers as tool sources: what `MCPServerStdio` (a command) and `MCPServerHTTP` (a URL,
both in `agentkit.mcp.transports`) share.

Each is a `ToolSource`: it goes in the agent's tool list beside plain tools, starts when the
agent is entered (or for each run) and stops with it. Its tools pass through
`Tool.from_definition` like any foreign definition (normalization report, meta-schema check,
one compiled validator), so the agent validates the model's arguments before a call leaves
the process.

The connection lives in one task of the source's own task group, so it is opened and closed
in the same task whatever task makes the calls, and it can be reopened: a server that dies is
told to the model as a tool error, started again for the next call, and if it does not come
back each call says so until the agent's retry budget stops the run.
"""

from __future__ import annotations

import logging
import math
from abc import abstractmethod
from collections.abc import Callable, Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from typing import Any, Literal

import anyio
import httpx2
import mcp_types as types
from anyio.abc import TaskGroup, TaskStatus
from mcp import Client
from mcp.client import IncomingMessage
from mcp.client._transport import TransportStreams
from mcp.client.subscriptions import Subscription
from mcp.shared.exceptions import MCPError

from agentkit.errors import AgentKitError, ToolDefinitionError, ToolRetry, UserError
from agentkit.mcp.results import result_text
from agentkit.tools import Tool, ToolSource

__all__ = ["MCPServerError", "MCPTools", "Protocol", "ToolFilter"]

log = logging.getLogger("agentkit.mcp")

ToolFilter = Callable[[str], bool] | Collection[str]
"""Which of a server's tools to offer: their names, or a function of the name."""

Protocol = Literal["auto", "legacy"]
"""`auto`: ask the server for the newest protocol, falling back to the 2025 handshake;
`legacy`: the 2025 handshake only."""


class MCPServerError(AgentKitError):
    """An MCP server could not be started or listed; the message names it and says why."""

    def __init__(self, server: str, reason: str) -> None:
        self.server = server
        self.reason = reason
        super().__init__(f"MCP server {server!r}: {reason}")


def describe(exc: BaseException) -> str:
    """One line for an exception, looking inside the groups task groups raise."""
    inner = getattr(exc, "exceptions", None)  # an ExceptionGroup (a builtin from 3.11 on)
    while isinstance(inner, tuple) and len(inner) == 1:
        exc = inner[0]
        inner = getattr(exc, "exceptions", None)
    if isinstance(exc, MCPError):
        return exc.message
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


_CONNECTION_LOST = (
    anyio.ClosedResourceError,
    anyio.BrokenResourceError,
    anyio.EndOfStream,
    OSError,
    httpx2.TransportError,
)
"""What a call raises when the connection, not the tool, failed."""


class MCPTools(ToolSource):
    """What the stdio and HTTP sources share: the connection, the tool list, the calls."""

    def __init__(
        self,
        *,
        name: str,
        prefix: str | None = None,
        tool_filter: ToolFilter | None = None,
        timeout: float | None = None,
        connect_timeout: float = 30.0,
        protocol: Protocol = "auto",
    ) -> None:
        if protocol not in ("auto", "legacy"):
            raise UserError(f"protocol: must be 'auto' or 'legacy' (got {protocol!r})")
        if timeout is not None and timeout <= 0:
            raise UserError(f"timeout: must be > 0 seconds (got {timeout})")
        if connect_timeout <= 0:
            raise UserError(f"connect_timeout: must be > 0 seconds (got {connect_timeout})")
        self.name = name
        self.prefix = prefix
        self.tool_filter = tool_filter
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.protocol = protocol
        self.problems: list[str] = []
        """Tools left out because their definitions could not be made valid, with why."""
        self._tools: dict[str, Tool] = {}
        self._version = 0
        self._group: TaskGroup | None = None
        self._client: Client | None = None
        self._broken: str | None = None
        self._stop_connection: anyio.Event | None = None
        self._connection_done: anyio.Event | None = None
        self._changed: anyio.Event | None = None
        self._restart_lock: anyio.Lock | None = None

    @abstractmethod
    def _transport(self) -> AbstractAsyncContextManager[TransportStreams]:
        """A new connection to the server (a transport the SDK's `Client` takes)."""

    # -- ToolSource -------------------------------------------------------------------------

    @property
    def tools(self) -> Mapping[str, Tool]:
        if self._group is None:
            raise UserError(f"MCP server {self.name!r} is not started: enter the agent first")
        return self._tools

    @property
    def version(self) -> int:
        return self._version

    async def start(self) -> None:
        """Start the server (or connect to it) and list its tools.

        Raises:
            MCPServerError: it did not start, did not answer within `connect_timeout`, or
                failed the handshake; the message says which.
        """
        if self._group is not None:
            raise UserError(f"MCP server {self.name!r} is already started")
        self._restart_lock = anyio.Lock()
        group = anyio.create_task_group()
        await group.__aenter__()
        self._group = group
        try:
            await group.start(self._keep)
        except BaseException as exc:
            self._group = None
            group.cancel_scope.cancel()
            await group.__aexit__(None, None, None)
            if isinstance(exc, Exception):
                raise MCPServerError(self.name, f"did not start: {describe(exc)}") from None
            raise

    async def stop(self) -> None:
        """Close the connection; a stdio server's process (and its children) are ended."""
        group, self._group = self._group, None
        if group is None:
            return
        if self._stop_connection is not None:
            self._stop_connection.set()
        try:
            await group.__aexit__(None, None, None)
        finally:
            self._tools = {}
            self._version += 1

    # -- the connection ---------------------------------------------------------------------

    async def _keep(self, *, task_status: TaskStatus[None]) -> None:
        """Open the connection, list the tools, then hold it open until told to stop."""
        stop = self._stop_connection = anyio.Event()
        done = self._connection_done = anyio.Event()
        self._changed = anyio.Event()
        started = False
        # One scope around it all: the connection's task groups must close inside it, so the
        # start's time limit is a deadline lifted once the tools are listed.
        limit = anyio.CancelScope(deadline=anyio.current_time() + self.connect_timeout)
        try:
            with limit:
                async with AsyncExitStack() as stack:
                    client = Client(
                        self._transport(),
                        message_handler=self._on_message,
                        mode=self.protocol,
                        cache=None,
                    )
                    await stack.enter_async_context(client)
                    # Subscribed before the first listing, so no change can fall between.
                    subscription = await self._subscribe(client, stack)
                    await self._list(client)
                    limit.deadline = math.inf
                    self._client, self._broken = client, None
                    started = True
                    task_status.started()
                    async with anyio.create_task_group() as watchers:
                        watchers.start_soon(self._follow_notifications, client)
                        if subscription is not None:
                            watchers.start_soon(self._follow_subscription, client, subscription)
                        await stop.wait()
                        watchers.cancel_scope.cancel()
        except Exception as exc:
            if not started:
                raise
            self._broken = self._broken or describe(exc)
            log.warning("MCP server %r: connection lost: %s", self.name, self._broken)
        finally:
            self._client = None
            done.set()
        if limit.cancelled_caught and not started:
            raise TimeoutError(f"no answer within {self.connect_timeout:g} s")

    async def _on_message(self, message: IncomingMessage) -> None:
        # Servers on the 2025 protocol announce changes on the session itself.
        if isinstance(message, types.ToolListChangedNotification) and self._changed is not None:
            self._changed.set()
        await anyio.lowlevel.checkpoint()

    async def _follow_notifications(self, client: Client) -> None:
        while True:
            assert self._changed is not None
            await self._changed.wait()
            self._changed = anyio.Event()
            await self._relist(client)

    async def _subscribe(self, client: Client, stack: AsyncExitStack) -> Subscription | None:
        # Servers on the 2026 protocol announce changes on a `subscriptions/listen` stream.
        try:
            return await stack.enter_async_context(client.listen(tools_list_changed=True))
        except Exception as exc:  # an older server: changes come as notifications
            log.debug("MCP server %r: no tool subscription: %s", self.name, describe(exc))
            return None

    async def _follow_subscription(self, client: Client, subscription: Subscription) -> None:
        try:
            async for _ in subscription:
                await self._relist(client)
        except Exception as exc:  # the stream ended; the notifications remain
            log.debug("MCP server %r: tool subscription ended: %s", self.name, describe(exc))

    async def _relist(self, client: Client) -> None:
        try:
            await self._list(client)
        except Exception as exc:
            log.warning("MCP server %r: listing tools failed: %s", self.name, describe(exc))

    async def _list(self, client: Client) -> None:
        listed: list[types.Tool] = []
        cursor: str | None = None
        for _ in range(100):  # a paginator that never ends cannot hang the agent
            page = await client.list_tools(cursor=cursor)
            listed.extend(page.tools)
            cursor = page.next_cursor
            if cursor is None:
                break
        self._install(listed)

    def _install(self, listed: Sequence[types.Tool]) -> None:
        tools: dict[str, Tool] = {}
        problems: list[str] = []
        for item in listed:
            if not self._wanted(item.name):
                continue
            shown = f"{self.prefix}_{item.name}" if self.prefix else item.name
            definition = {
                "name": shown,
                "description": item.description or item.title or "",
                "parameters": item.input_schema,
            }
            try:
                made = Tool.from_definition(
                    definition, self._handler(item.name), timeout=self.timeout
                )
            except ToolDefinitionError as exc:
                problems.append(str(exc))
                log.warning("MCP server %r: tool left out: %s", self.name, exc)
                continue
            if made.name in tools:
                problems.append(f"tool {made.name!r}: another tool of this server has this name")
                continue
            tools[made.name] = made
        self._tools, self.problems = tools, problems
        self._version += 1

    def _wanted(self, name: str) -> bool:
        wanted = self.tool_filter
        if wanted is None:
            return True
        return wanted(name) if callable(wanted) else name in wanted

    # -- calls ------------------------------------------------------------------------------

    def _handler(self, name: str) -> Callable[..., Any]:
        async def call(**arguments: Any) -> str:
            return await self.call(name, arguments)

        call.__name__ = name
        return call

    async def call(self, name: str, arguments: Mapping[str, Any]) -> str:
        """Call a tool by the server's own name and return its result as text.

        Raises:
            ToolRetry: the tool answered with an error, or the server stopped or is down;
                the message is what the model is told.
        """
        client = await self._ready()
        try:
            result = await client.call_tool(name, dict(arguments))
        except MCPError as exc:
            if exc.code != types.CONNECTION_CLOSED:
                raise ToolRetry(
                    f"MCP server {self.name!r} refused the call: {exc.message}"
                ) from None
            self._broken = describe(exc)
        except _CONNECTION_LOST as exc:
            self._broken = describe(exc)
        except Exception as exc:  # e.g. a result that is not valid MCP: the server lives on
            raise ToolRetry(f"MCP server {self.name!r} failed the call: {describe(exc)}") from None
        else:
            text = result_text(result)
            if result.is_error:
                raise ToolRetry(text or f"{name} failed without saying why")
            return text
        raise ToolRetry(
            f"MCP server {self.name!r} stopped during the call ({self._broken}); "
            "it is restarted for the next call"
        )

    async def _ready(self) -> Client:
        """The open connection, reopened first if it was lost."""
        if self._group is None or self._restart_lock is None:
            raise UserError(f"MCP server {self.name!r} is not started: enter the agent first")
        async with self._restart_lock:
            client = self._client
            if client is not None and self._broken is None:
                return client
            reason = self._broken or "the connection ended"
            if self._stop_connection is not None:
                self._stop_connection.set()
            if self._connection_done is not None:
                await self._connection_done.wait()
            log.info("MCP server %r: restarting (%s)", self.name, reason)
            try:
                await self._group.start(self._keep)
            except Exception as exc:
                self._broken = reason
                raise ToolRetry(
                    f"MCP server {self.name!r} is down ({reason}) and did not restart: "
                    f"{describe(exc)}"
                ) from None
            assert self._client is not None
            return self._client
