"""The command line's MCP options, shared by `run`, `chat` and `serve`: `--mcp-stdio`,
`--mcp-http`, `--mcp-header`. Importing this needs no MCP SDK; using the options does."""

from __future__ import annotations

import argparse
import shlex

from agentkit.errors import ConfigurationError, UserError
from agentkit.tools import ToolSource

__all__ = ["add_mcp_options", "mcp_sources"]


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
