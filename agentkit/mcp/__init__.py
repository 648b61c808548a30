"""MCP both ways: MCP servers' tools in an agent, and agentkit tools served over MCP.

Needs the `mcp` extra: `pip install 'agentkit[mcp]'`. The names below load the official SDK
when first used: without it the package still imports, and using a name says how to install it.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentkit.mcp.client import MCPServerError, MCPTools
    from agentkit.mcp.results import result_text
    from agentkit.mcp.server import MCPEndpoint, build_server, serve_stdio
    from agentkit.mcp.transports import MCPServerHTTP, MCPServerStdio

__all__ = [
    "MCPEndpoint",
    "MCPServerError",
    "MCPServerHTTP",
    "MCPServerStdio",
    "MCPTools",
    "build_server",
    "result_text",
    "serve_stdio",
]

_HOMES = {
    "MCPEndpoint": "server",
    "MCPServerError": "client",
    "MCPServerHTTP": "transports",
    "MCPServerStdio": "transports",
    "MCPTools": "client",
    "build_server": "server",
    "result_text": "results",
    "serve_stdio": "server",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'agentkit.mcp' has no attribute {name!r}")
    try:
        module = import_module(f"agentkit.mcp.{home}")
    except ImportError as exc:
        if exc.name and exc.name.split(".")[0] in ("mcp", "mcp_types", "httpx2"):
            from agentkit.errors import ConfigurationError

            raise ConfigurationError(
                "MCP support needs the official SDK: pip install 'agentkit[mcp]'"
            ) from exc
        raise
    return getattr(module, name)
