"""MCP on the command line: `agentkit mcp` serves tools over stdio, and the options that add
MCP servers' tools to `run`, `chat` and `serve` (`--mcp-stdio`, `--mcp-http`, `--mcp-header`).

Importing this needs no MCP SDK; the command and the options, when used, do.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from functools import partial

import anyio

from agentkit.errors import ConfigurationError, UserError
from agentkit.tools import ToolSource
from agentkit.tools.loader import load_tools

__all__ = ["add_mcp_options", "add_parser", "mcp_sources"]


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`agentkit mcp`: its options and handler."""
    mcp = commands.add_parser("mcp", help="serve tools to MCP clients over stdio")
    mcp.add_argument("--tools", nargs="+", required=True, metavar="FILE", help="tool files")
    mcp.add_argument("--name", default="agentkit", help="the server's name (default: agentkit)")
    mcp.add_argument(
        "--approve-all",
        action="store_true",
        help="run tools that require approval without asking the client (by default the "
        "client is asked, and a client that cannot be asked is refused)",
    )
    mcp.set_defaults(handler=_serve_stdio)


def _serve_stdio(args: argparse.Namespace) -> int:
    from agentkit.mcp import serve_stdio

    tools = load_tools(args.tools)
    # stdout carries the protocol: anything said goes to stderr.
    print(
        f"agentkit mcp: serving {', '.join(t.name for t in tools)} over stdio",
        file=sys.stderr,
        flush=True,
    )
    anyio.run(partial(serve_stdio, tools, name=args.name, approve_all=args.approve_all))
    return 0


def add_mcp_options(parser: argparse.ArgumentParser) -> None:
    """The options that add MCP servers' tools: `--mcp-stdio`, `--mcp-http`, `--mcp-header`."""
    parser.add_argument(
        "--mcp-stdio",
        action="append",
        default=[],
        metavar="COMMAND",
        help='an MCP server to run, with its arguments, e.g. "mcp-server-time" (repeatable)',
    )
    parser.add_argument(
        "--mcp-http",
        action="append",
        default=[],
        metavar="URL",
        help="an MCP server's Streamable HTTP endpoint (repeatable)",
    )
    parser.add_argument(
        "--mcp-header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="a header sent to every --mcp-http server, e.g. 'Authorization: Bearer ...'",
    )


def mcp_sources(args: argparse.Namespace) -> list[ToolSource]:
    """The MCP servers the options name, not started yet.

    Raises:
        ConfigurationError: an option's value is malformed, or the `mcp` extra is missing.
    """
    if not (args.mcp_stdio or args.mcp_http):
        return []
    from agentkit.mcp import MCPServerHTTP, MCPServerStdio

    headers: dict[str, str] = {}
    for header in args.mcp_header:
        name, colon, value = header.partition(":")
        if not colon or not name.strip():
            # The value may be a secret: name only its place.
            raise ConfigurationError("--mcp-header: must be 'NAME: VALUE'")
        headers[name.strip()] = value.strip()
    sources: list[ToolSource] = []
    for line in args.mcp_stdio:
        try:
            words = shlex.split(line)
        except ValueError as exc:
            raise ConfigurationError(f"--mcp-stdio: {exc} (got {line!r})") from None
        if not words:
            raise ConfigurationError(f"--mcp-stdio: needs a command (got {line!r})")
        sources.append(MCPServerStdio(words[0], words[1:]))
    for url in args.mcp_http:
        try:
            sources.append(MCPServerHTTP(url, headers=headers))
        except UserError as exc:
            raise ConfigurationError(f"--mcp-http: {exc}") from None
    return sources
