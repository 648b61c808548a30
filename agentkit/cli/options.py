"""The options `run` and `chat` share, and what they build: the runtime, the Agent, the session.

`--tools`, `--runtime`, `--model`, `--instructions`, `--max-steps`, `--tool-choice`, the
sampling fields of the contract, `-v`, and the telemetry, MCP and session options.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import typing
from pathlib import Path
from typing import Any

from agentkit.agent import Agent
from agentkit.cli.mcp import add_mcp_options, mcp_sources
from agentkit.cli.telemetry import add_telemetry_options
from agentkit.errors import UserError
from agentkit.model_api import SAMPLING_FIELDS, ModelRequest
from agentkit.runtimes import RUNTIMES, get_runtime
from agentkit.runtimes.base import Runtime
from agentkit.sessions.base import check_session_id
from agentkit.sessions.sqlite import SQLiteSession
from agentkit.tools import Tool, ToolSource
from agentkit.tools.loader import load_tools

__all__ = [
    "DB_VARIABLE",
    "add_agent_options",
    "add_session_options",
    "build_agent",
    "default_db",
    "open_session",
    "sampling",
]

DB_VARIABLE = "AGENTKIT_SESSION_DB"
"""The environment variable naming the sessions file, when `--session-db` is not given."""


def _number(name: str) -> type[int] | type[float]:
    annotation = ModelRequest.model_fields[name].annotation
    return int if annotation is int or int in typing.get_args(annotation) else float


_SAMPLING = tuple(("--" + name.replace("_", "-"), _number(name)) for name in SAMPLING_FIELDS)


def add_agent_options(parser: argparse.ArgumentParser) -> None:
    """The options of an agent's command, `run` or `chat`."""
    parser.add_argument("--tools", nargs="+", default=[], metavar="FILE", help="tool files")
    parser.add_argument("--runtime", default="local", choices=sorted(RUNTIMES))
    parser.add_argument("--model", help="GGUF file (local) or model name (hosted)")
    parser.add_argument("--instructions", help="system message")
    parser.add_argument("--max-steps", type=int, default=10)
    parser.add_argument(
        "--tool-choice",
        help="auto, required, none or a tool's name (default: the runtime's profile: auto; on "
        "the embedded model, which is too small to decide by itself, required for the first step)",
    )
    for flag, kind in _SAMPLING:
        parser.add_argument(flag, type=kind)
    parser.add_argument("-v", "--verbose", action="store_true", help="show each tool call")
    add_telemetry_options(parser)
    add_mcp_options(parser)
    add_session_options(parser)


def add_session_options(parser: argparse.ArgumentParser) -> None:
    """`--session NAME` and `--session-db PATH`."""
    parser.add_argument(
        "--session",
        metavar="NAME",
        help="keep the conversation under this name, and continue it if it exists",
    )
    parser.add_argument(
        "--session-db",
        metavar="PATH",
        help=f"the sessions file (default: ${DB_VARIABLE}, else "
        "$XDG_DATA_HOME/agentkit/sessions.db, else ~/.local/share/agentkit/sessions.db)",
    )


def sampling(args: argparse.Namespace) -> dict[str, Any]:
    """The sampling fields given on the command line (unset ones are left out)."""
    return {
        flag[2:].replace("-", "_"): getattr(args, flag[2:].replace("-", "_"))
        for flag, _ in _SAMPLING
        if getattr(args, flag[2:].replace("-", "_")) is not None
    }


def _runtime(args: argparse.Namespace) -> Runtime:
    return get_runtime(args.runtime, model=args.model, progress=sys.stderr.isatty())


def _output_schema(value: str | None) -> dict[str, Any] | None:
    """`--output-schema`: inline JSON, or a file holding it."""
    if value is None:
        return None
    inline = value.lstrip().startswith("{")
    try:
        text = value if inline else Path(value).read_text()
        schema = json.loads(text)
    except OSError as exc:
        raise UserError(f"--output-schema: cannot read {value}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        where = "" if inline else f" in {value}"
        raise UserError(f"--output-schema: not JSON{where}: {exc.msg} at {exc.pos}") from None
    if not isinstance(schema, dict):
        raise UserError(
            f"--output-schema: a JSON Schema is an object (got {type(schema).__name__})"
        )
    return schema


def build_agent(args: argparse.Namespace) -> Agent[Any]:
    """The Agent the options describe, on a runtime of its own (the caller closes it)."""
    tools: list[Tool | ToolSource] = [*(load_tools(args.tools) if args.tools else [])]
    tools.extend(mcp_sources(args))
    # Unset flags leave the runtime's profile in charge (the embedded model's forced first
    # call and greedy sampling, for one).
    return Agent(
        _runtime(args),
        tools=tools,
        instructions=args.instructions,
        max_steps=args.max_steps,
        tool_choice=args.tool_choice,
        output_type=_output_schema(getattr(args, "output_schema", None)),
        **sampling(args),
    )


def default_db() -> Path:
    """`$AGENTKIT_SESSION_DB`, else `$XDG_DATA_HOME/agentkit/sessions.db`, else
    `~/.local/share/agentkit/sessions.db`."""
    if os.environ.get(DB_VARIABLE):
        return Path(os.environ[DB_VARIABLE]).expanduser()
    data = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data) / "agentkit" / "sessions.db"


def open_session(args: argparse.Namespace) -> SQLiteSession | None:
    """The session the options name, or None without `--session`."""
    if not args.session:
        return None
    check_session_id(args.session, "--session")
    path = Path(args.session_db).expanduser() if args.session_db else default_db()
    return SQLiteSession(path, args.session)
