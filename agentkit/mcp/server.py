"""agentkit tools served over MCP: over stdio (`agentkit mcp`) and Streamable HTTP
(`agentkit serve --mcp`, at `/mcp`).

Each tool is listed with the schema and description `Tool.to_function()` gives; a call's
arguments go through the tool's own validator, and whatever goes wrong (bad arguments, an
unknown tool, an exception, `ToolRetry`, a timeout) comes back as an `isError` result whose
text says what, so the calling model can correct itself.

A call of a tool that requires approval is put to the client's user first, with MCP
elicitation, unless the server was built with `approve_all`; a client that cannot be asked
gets an `isError` result saying so, and the tool does not run.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager, nullcontext
from functools import partial
from typing import Any

import anyio
import mcp_types as types
from mcp.server import Server, ServerRequestContext
from mcp.server.stdio import stdio_server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared.exceptions import MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import BaseModel
from pydantic_core import to_jsonable_python
from starlette.types import ASGIApp, Receive, Scope, Send

from agentkit.errors import ToolArgumentsError, ToolDefinitionError, ToolRetry
from agentkit.tools import Tool, Toolset
from agentkit.tools.calls import really_cancelled

__all__ = ["MCPEndpoint", "build_server", "serve_stdio"]

log = logging.getLogger("agentkit.mcp")

SERVER_NAME = "agentkit"
APPROVAL = "approval"
"""The key of the approval question in a 2026-07-28 `InputRequiredResult`."""
_OPT_OUT = "start the server with --approve-all (approve_all=True in Python)"


def build_server(
    tools: Iterable[Tool | Callable[..., Any]],
    *,
    name: str = SERVER_NAME,
    approve_all: bool = False,
) -> Server[Any]:
    """An MCP server (the SDK's low-level `Server`) offering `tools`.

    Args:
        tools: the tools, or tool sources, to offer.
        name: the server's name, as clients see it.
        approve_all: run the calls of tools that require approval without asking anyone.

    Raises:
        ToolDefinitionError: two tools share a name, a function cannot be a tool, or a tool
            takes a `RunContext` (a call over MCP comes from no run of ours: it has none).
    """
    toolset = tools if isinstance(tools, Toolset) else Toolset(tools)
    for served in toolset:
        if served.context_param is not None:
            raise ToolDefinitionError(
                served.name,
                [
                    f"takes a RunContext ({served.context_param}); a tool served over MCP is "
                    "called by another program, not by a run, and gets none"
                ],
            )

    async def list_tools(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        # Listed when asked: a toolset's sources (MCP servers) may change their tools.
        return types.ListToolsResult(tools=[_listing(t, approve_all) for t in toolset])

    async def call_tool(
        ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult | types.InputRequiredResult:
        ask = None if approve_all else partial(_approval, ctx, params)
        return await call(toolset, params.name, params.arguments or {}, ask)

    from agentkit import __version__

    return Server(name, version=__version__, on_list_tools=list_tools, on_call_tool=call_tool)


def _listing(tool: Tool, approve_all: bool) -> types.Tool:
    function = tool.to_function()["function"]
    description = function["description"]
    if tool.requires_approval is not False and not approve_all:
        # MCP's tool annotations have no word for it: the description tells client and model.
        which = "Each call waits" if tool.requires_approval is True else "Some calls wait"
        description += f"\n\n{which} for the user's approval."
    return types.Tool(
        name=function["name"], description=description, input_schema=function["parameters"]
    )


Ask = Callable[
    [Tool, dict[str, Any]], Awaitable[types.CallToolResult | types.InputRequiredResult | None]
]
"""Asks for approval of a call; None when approved, else what to answer instead of running."""


async def call(
    toolset: Toolset, name: str, arguments: dict[str, Any], ask: Ask | None = None
) -> types.CallToolResult | types.InputRequiredResult:
    """Run one call of a tool the way an MCP client asked for it; `ask` decides on the calls
    that need approval (None: they run without asking)."""
    tool = toolset.get(name)
    if tool is None or tool.function is None:
        available = ", ".join(toolset.names) or "none"
        return _error(f"unknown tool {name!r}; available tools: {available}")
    try:
        values = tool.check(arguments)
    except ToolArgumentsError as exc:
        return _error(f"{exc}. You sent: {json.dumps(arguments, ensure_ascii=False)}")
    if ask is not None and _needs_approval(tool, values):
        refusal = await ask(tool, arguments)
        if refusal is not None:
            return refusal
    return await _run(tool, values)


def _needs_approval(tool: Tool, values: dict[str, Any]) -> bool:
    if tool.requires_approval is False:
        return False
    try:
        return tool.needs_approval(values)
    except Exception:
        return True  # a rule that fails cannot clear the call: when in doubt, ask


async def _run(tool: Tool, values: dict[str, Any]) -> types.CallToolResult:
    assert tool.function is not None
    name = tool.name
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
    except BaseException as exc:
        # A CancelledError of the tool's own (not this request being cancelled), or another
        # escape from its code: the call failed, and the client's session goes on.
        if isinstance(exc, KeyboardInterrupt) or really_cancelled():
            raise
        log.warning("tool %s raised %s", name, type(exc).__name__, exc_info=exc)
        detail = f": {exc}" if str(exc) else ""
        return _error(f"{name} raised {type(exc).__name__}{detail}")
    return _result(value)


async def _approval(
    ctx: ServerRequestContext[Any],
    params: types.CallToolRequestParams,
    tool: Tool,
    arguments: dict[str, Any],
) -> types.CallToolResult | types.InputRequiredResult | None:
    """Put the call to the client's user with form elicitation; None when they accept."""
    name = tool.name
    capabilities = ctx.session.client_capabilities
    elicitation = capabilities.elicitation if capabilities is not None else None
    # A bare `elicitation: {}` (before modes existed) means forms; URL mode alone does not.
    if elicitation is None or (elicitation.form is None and elicitation.url is not None):
        return _error(
            f"{name} requires approval, and this client cannot be asked for it (it does not "
            f"support MCP elicitation); the tool did not run. To run such tools without "
            f"asking, the server's operator can {_OPT_OUT}."
        )
    shown = json.dumps(arguments, ensure_ascii=False, sort_keys=True)
    message = f"Allow the tool {name} to run with these arguments?\n{shown}"
    if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
        # No server-to-client requests on this protocol: the question goes back as the result,
        # and the answer comes with the client's retry of the same call. The state it echoes
        # ties the answer to the call it was given for (tool and arguments).
        asked = hashlib.sha256(f"{name}\n{shown}".encode()).hexdigest()
        answer = (params.input_responses or {}).get(APPROVAL)
        if answer is None or params.request_state != asked:
            question = types.ElicitRequestFormParams(message=message, requested_schema=_NO_FIELDS)
            return types.InputRequiredResult(
                input_requests={APPROVAL: types.ElicitRequest(params=question)},
                request_state=asked,
            )
        try:
            action = types.ElicitResult.model_validate(answer, from_attributes=True).action
        except ValueError:
            return _error(f"{name} was not run: the client's answer to its approval was no answer")
    else:
        try:
            result = await ctx.session.elicit_form(
                message, _NO_FIELDS, related_request_id=ctx.request_id
            )
        except MCPError as exc:
            return _error(f"{name} was not run: asking the client for approval failed ({exc})")
        action = result.action
    if action == "accept":
        return None
    return _error(f"{name} was not run: approval was {_REFUSED[action]} by the client's user")


_NO_FIELDS: dict[str, Any] = {"type": "object", "properties": {}}
"""The approval form asks nothing: accepting it approves the call."""
_REFUSED = {"decline": "declined", "cancel": "cancelled"}


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
    tools: Iterable[Tool | Callable[..., Any]],
    *,
    name: str = SERVER_NAME,
    approve_all: bool = False,
) -> None:
    """Serve `tools` over this process's stdin and stdout until the client closes stdin;
    `approve_all` as for `build_server`."""
    server = build_server(tools, name=name, approve_all=approve_all)
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


class MCPEndpoint:
    """The `/mcp` endpoint of `agentkit serve`: an ASGI app that checks the bearer token (with
    the server's own check) and hands the request to the SDK's Streamable HTTP manager.

    `run()` must be entered for the endpoint's lifetime (the server's lifespan does it).
    `authorize` returns a response that refuses the request, or None to let it through;
    `approve_all` as for `build_server`.
    """

    def __init__(
        self,
        tools: Iterable[Tool | Callable[..., Any]],
        authorize: Callable[[Scope], ASGIApp | None] | None = None,
        *,
        approve_all: bool = False,
    ) -> None:
        self.authorize = authorize
        # Host and Origin are checked for the whole server, /mcp included, in one place.
        server = build_server(tools, approve_all=approve_all)
        self.manager = StreamableHTTPSessionManager(app=server)

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
