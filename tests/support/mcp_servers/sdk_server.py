"""An MCP server written with the official SDK (`MCPServer`, formerly FastMCP), for the tests.

Run: `python sdk_server.py` (stdio) or `python sdk_server.py http PORT` (Streamable HTTP).
With `DOWN_MARKER` set to a path, the server refuses to start while that file exists, and
`crash` creates it before dying, so a restart fails: the server stays down.
"""

from __future__ import annotations

import base64
import os
import sys
import time
from pathlib import Path

from mcp.server.mcpserver import Context, Image, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

MARKER = os.environ.get("DOWN_MARKER")
if MARKER and Path(MARKER).exists():
    print("refusing to start: the down marker exists", file=sys.stderr)
    sys.exit(1)

server = MCPServer("sdk-test-server")

# A 1x1 PNG.
PIXEL = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool()
def pid() -> int:
    """The server's process id."""
    return os.getpid()


@server.tool()
def fail(message: str) -> str:
    """Always fails with the given message."""
    raise ToolError(message)


@server.tool(structured_output=False)
def picture():  # type: ignore[no-untyped-def]
    """A caption and a one-pixel image."""
    return ["a red pixel", Image(data=PIXEL, format="png")]


@server.tool()
def weather(city: str) -> dict[str, object]:
    """The weather in a city, as structured data."""
    return {"city": city, "celsius": 21}


@server.tool()
def environment(name: str) -> str:
    """An environment variable of the server and its working folder."""
    return f"{name}={os.environ.get(name, '')} cwd={os.getcwd()}"


@server.tool()
def slow(seconds: float) -> str:
    """Sleep, then answer."""
    time.sleep(seconds)
    return "done"


@server.tool()
def crash() -> str:
    """The server dies during the call."""
    if MARKER:
        Path(MARKER).write_text("down")
    os._exit(3)


def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


@server.tool()
async def learn_multiply(ctx: Context) -> str:
    """Add a multiply tool to this server."""
    server.add_tool(multiply)
    await ctx.notify_tools_changed()  # 2026 protocol: subscribers
    await ctx.session.send_tool_list_changed()  # 2025 protocol: the session
    return "multiply is available now"


if __name__ == "__main__":
    if sys.argv[1:2] == ["http"]:
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run()
