"""agentkit tools served over MCP: over stdio (`agentkit mcp`) and Streamable HTTP
(`agentkit serve --mcp`, at `/mcp`).

Each tool is listed with the schema and description `Tool.to_function()` gives; a call's
arguments go through the tool's own validator, and whatever goes wrong (bad arguments, an
unknown tool, an exception, `ToolRetry`, a timeout) comes back as an `isError` result whose
text says what, so the calling model can correct itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from contextlib import AbstractAsyncContextManager, nullcontext
from functools import partial
from typing import Any

import anyio
import mcp_types as types
from mcp.server import Server, ServerRequestContext
from mcp.server.stdio import stdio_server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from pydantic import BaseModel
from pydantic_core import to_jsonable_python
from starlette.types import ASGIApp, Receive, Scope, Send

from agentkit.errors import ToolArgumentsError, ToolRetry
from agentkit.tools import Tool, Toolset

__all__ = ["MCPEndpoint", "build_server", "serve_stdio"]

SERVER_NAME = "agentkit"


def build_server(
    tools: Iterable[Tool | Callable[..., Any]], *, name: str = SERVER_NAME
) -> Server[Any]:
    """An MCP server (the SDK's low-level `Server`) offering `tools`.

    Raises:
        ToolDefinitionError: two tools share a name, or a function cannot be a tool.
    """
    toolset = tools if isinstance(tools, Toolset) else Toolset(tools)

    async def list_tools(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        # Listed when asked: a toolset's sources (MCP servers) may change their tools.
        return types.ListToolsResult(tools=[_listing(t) for t in toolset])

    async def call_tool(
        ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        return await call(toolset, params.name, params.arguments or {})

    from agentkit import __version__

    return Server(name, version=__version__, on_list_tools=list_tools, on_call_tool=call_tool)


def _listing(tool: Tool) -> types.Tool:
    function = tool.to_function()["function"]
    return types.Tool(
        name=function["name"],
        description=function["description"],
        input_schema=function["parameters"],
    )


async def call(toolset: Toolset, name: str, arguments: dict[str, Any]) -> types.CallToolResult:
    """Run one call of a tool the way an MCP client asked for it."""
    tool = toolset.get(name)
    if tool is None or tool.function is None:
        available = ", ".join(toolset.names) or "none"
        return _error(f"unknown tool {name!r}; available tools: {available}")
    try:
        values = tool.check(arguments)
    except ToolArgumentsError as exc:
        return _error(f"{exc}. You sent: {json.dumps(arguments, ensure_ascii=False)}")
    try:
        with anyio.fail_after(tool.timeout) if tool.timeout is not None else nullcontext():
            if tool.is_async:
                value = await tool.function(**values)
            else:
                value = await anyio.to_thread.run_sync(partial(tool.function, **values))
    except TimeoutError:
        return _error(f"{name} timed out after {tool.timeout:g} s")
    except ToolRetry as exc:
        return _error(exc.message)
    except Exception as exc:
        return _error(f"{type(exc).__name__}: {exc}")
    return _result(value)


def _error(message: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(text=message)], is_error=True)


def _result(value: Any) -> types.CallToolResult:
    """Text for the model; an object also as structured content, for programs."""
    if isinstance(value, str):
        return types.CallToolResult(content=[types.TextContent(text=value)])
    if isinstance(value, BaseModel):
        data = value.model_dump(mode="json")
    else:
        data = to_jsonable_python(value)
    text = json.dumps(data, ensure_ascii=False)
    structured = data if isinstance(data, dict) else None
    return types.CallToolResult(
        content=[types.TextContent(text=text)], structured_content=structured
    )


async def serve_stdio(
    tools: Iterable[Tool | Callable[..., Any]], *, name: str = SERVER_NAME
) -> None:
    """Serve `tools` over this process's stdin and stdout until the client closes stdin."""
    server = build_server(tools, name=name)
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


class MCPEndpoint:
    """The `/mcp` endpoint of `agentkit serve`: an ASGI app that checks the bearer token (with
    the server's own check) and hands the request to the SDK's Streamable HTTP manager.

    `run()` must be entered for the endpoint's lifetime (the server's lifespan does it).
    `authorize` returns a response that refuses the request, or None to let it through.
    """

    def __init__(
        self,
        tools: Iterable[Tool | Callable[..., Any]],
        authorize: Callable[[Scope], ASGIApp | None] | None = None,
    ) -> None:
        self.authorize = authorize
        # Host and Origin are checked for the whole server, /mcp included, in one place.
        self.manager = StreamableHTTPSessionManager(app=build_server(tools))

    def run(self) -> AbstractAsyncContextManager[None]:
        """The manager's lifetime, as an async context manager."""
        return self.manager.run()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.authorize is not None:
            refusal = self.authorize(scope)
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        await self.manager.handle_request(scope, receive, send)
