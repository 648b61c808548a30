"""MCP both ways: MCP servers' tools in an agent, and agentkit tools served over MCP.

Needs the `mcp` extra: `pip install 'agentkit[mcp]'`.
"""

try:
    import mcp as _mcp  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    from agentkit.errors import ConfigurationError

    raise ConfigurationError(
        "MCP support needs the official SDK: pip install 'agentkit[mcp]'"
    ) from exc

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
