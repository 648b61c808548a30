"""An MCP server on the official SDK's low-level `Server`, listing schemas exactly as written:
a dotted name and a non-standard `float` type (fixable), and a schema that is not JSON Schema
at all (to be left out). Run: `python lowlevel_server.py` (stdio)."""

from __future__ import annotations

from typing import Any

import anyio
import mcp_types as types
from mcp.server import Server, ServerRequestContext
from mcp.server.stdio import stdio_server

TOOLS = [
    types.Tool(
        name="math.double",
        description="Double a number.",
        input_schema={
            "type": "object",
            "properties": {"x": {"type": "float", "description": "the number"}},
            "required": ["x"],
        },
    ),
    types.Tool(
        name="broken",
        description="Its schema is not JSON Schema.",
        input_schema={"type": "object", "properties": {"x": {"type": 5}}},
    ),
]


async def list_tools(
    ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
) -> types.ListToolsResult:
    return types.ListToolsResult(tools=TOOLS)


async def call_tool(
    ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
) -> types.CallToolResult:
    arguments = params.arguments or {}
    text = f"{params.name} got {arguments!r}"
    if params.name == "math.double":
        text = str(arguments["x"] * 2)
    return types.CallToolResult(content=[types.TextContent(text=text)])


server = Server("lowlevel-test-server", on_list_tools=list_tools, on_call_tool=call_tool)


async def main() -> None:
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


if __name__ == "__main__":
    anyio.run(main)
