"""The options `run` and `chat` share, and what they build: the runtime, the Agent, the session.

`--tools`, `--runtime`, `--model`, `--cache`, `--instructions`, `--max-steps`, `--tool-choice`,
the sampling fields of the contract, `-v`, and the telemetry, MCP, OpenAPI and session options; or
`--agents FILE`, a Python file whose module-level `agent` is the Agent to run, as it defines
it: the options that would change that definition are refused with it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agentkit.agent import Agent
from agentkit.cli.compose import COMPOSITION_FLAGS, add_composition_options, compose_runtime
from agentkit.cli.mcp import add_mcp_options, mcp_sources
from agentkit.cli.openapi import OPENAPI_FLAGS, add_openapi_options, openapi_sources
from agentkit.cli.telemetry import add_telemetry_options
from agentkit.errors import ConfigurationError, UserError
from agentkit.model_api import SAMPLING_FIELDS, ModelRequest
from agentkit.runtimes import RUNTIMES, get_runtime
from agentkit.runtimes.base import Runtime
from agentkit.runtimes.cached import Cached
from agentkit.sessions.base import check_session_id
from agentkit.sessions.sqlite import SQLiteSession
from agentkit.tools import Tool, ToolSource
from agentkit.tools.loader import load_module, load_tools

__all__ = [
    "DB_VARIABLE",
    "DEFAULT_MAX_STEPS",
    "DEFAULT_RUNTIME",
    "DEFINED_BY_AGENT",
    "add_agent_options",
    "add_runtime_options",
    "add_runtime_wrapper_options",
    "add_sampling_options",
    "add_session_options",
    "build_agent",
    "build_runtime",
    "default_db",
    "load_agent",
    "open_session",
    "refuse_with_agents",
    "sampling",
    "wrap_runtime",
]

DB_VARIABLE = "AGENTKIT_SESSION_DB"
"""The environment variable naming the sessions file, when `--session-db` is not given."""
DEFAULT_RUNTIME = "local"
DEFAULT_MAX_STEPS = 10


def _number(name: str) -> type[int] | type[float]:
    annotation = ModelRequest.model_fields[name].annotation
    return int if annotation is int or int in typing.get_args(annotation) else float


_SAMPLING = tuple(("--" + name.replace("_", "-"), _number(name)) for name in SAMPLING_FIELDS)

DEFINED_BY_AGENT = (
    "--tools",
    "--runtime",
    "--model",
    "--cache",
    "--instructions",
    "--max-steps",
    "--tool-choice",
    *(flag for flag, _ in _SAMPLING),
    "--mcp-stdio",
    "--mcp-http",
    "--mcp-header",
    *OPENAPI_FLAGS,
    "--output-schema",
    "--temporal",
    *COMPOSITION_FLAGS,
)
"""The options of `run` and `chat` that `--agents` refuses: what the file's agent defines
(its tools, runtime, instructions, limits and sampling), and a durable run, whose workers
bring the tools."""


def add_agent_options(parser: argparse.ArgumentParser) -> None:
    """The options of an agent's command, `run` or `chat`."""
    parser.add_argument(
        "--agents",
        metavar="FILE",
        help="a Python file defining `agent`, the Agent to run (with its tools and sub-agents)",
    )
    parser.add_argument("--tools", nargs="+", default=[], metavar="FILE", help="tool files")
    add_runtime_options(parser)
    parser.add_argument("--instructions", help="system message")
    parser.add_argument(
        "--max-steps", type=int, help=f"model calls allowed (default: {DEFAULT_MAX_STEPS})"
    )
    parser.add_argument(
        "--tool-choice",
        help="auto, required, none or a tool's name (default: the runtime's profile: auto; on "
        "the embedded model, which is too small to decide by itself, required for the first step)",
    )
    add_sampling_options(parser)
    parser.add_argument("-v", "--verbose", action="store_true", help="show each tool call")
    add_telemetry_options(parser)
    add_mcp_options(parser)
    add_openapi_options(parser)
    add_session_options(parser)


def add_runtime_options(parser: argparse.ArgumentParser) -> None:
    """The options that choose and configure the runtime (`--runtime`, `--model`), which
    `build_runtime` reads: every command that talks to a model takes them."""
    # Unset (None) rather than their defaults, so that `--agents` can tell them given.
    parser.add_argument("--runtime", choices=sorted(RUNTIMES), help=f"default: {DEFAULT_RUNTIME}")
    parser.add_argument("--model", help="GGUF file (local) or model name (hosted)")
    add_runtime_wrapper_options(parser)


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


def add_sampling_options(parser: argparse.ArgumentParser) -> None:
    """One option per sampling field of the contract (`--temperature`, `--max-tokens`, ...),
    which `sampling` reads back."""
    for flag, kind in _SAMPLING:
        parser.add_argument(flag, type=kind)


def sampling(args: argparse.Namespace) -> dict[str, Any]:
    """The sampling fields given on the command line (unset ones are left out)."""
    return {
        flag[2:].replace("-", "_"): getattr(args, flag[2:].replace("-", "_"))
        for flag, _ in _SAMPLING
        if getattr(args, flag[2:].replace("-", "_")) is not None
    }


def refuse_with_agents(args: argparse.Namespace, flags: Sequence[str]) -> None:
    """With `--agents`, refuse the `flags` given (an option left unset is None, False or an
    empty list): the agents file defines what they would set.

    Raises:
        UserError: naming the options given.
    """
    if not args.agents:
        return
    given = [flag for flag in flags if _given(getattr(args, flag[2:].replace("-", "_"), None))]
    if given:
        raise UserError(
            f"--agents: {', '.join(given)} cannot be given with it: the agent in "
            f"{args.agents} defines its own tools, runtime, instructions and settings"
        )


def _given(value: Any) -> bool:
    return value is not None and value is not False and value != []


def load_agent(path: str) -> Agent[Any]:
    """The module-level `agent` of the Python file `path` (`--agents`).

    Raises:
        ConfigurationError: the file is missing, fails to import, defines no `agent`, or an
            `agent` that is not an Agent.
    """
    module = load_module(path, "--agents")
    agent = getattr(module, "agent", None)
    if agent is None:
        raise ConfigurationError(
            f"--agents: {path} defines no `agent` (a module-level Agent to run)"
        )
    if not isinstance(agent, Agent):
        raise ConfigurationError(
            f"--agents: `agent` in {path} must be an Agent (got {type(agent).__name__})"
        )
    return agent


def add_runtime_wrapper_options(parser: argparse.ArgumentParser) -> None:
    """The options that wrap the runtime `--runtime/--model` make (`wrap_runtime`):
    `--cache PATH`, and `--fallback`, `--rpm` and `--tpm` (`agentkit.cli.compose`)."""
    add_composition_options(parser)
    parser.add_argument(
        "--cache",
        metavar="PATH",
        help="answer repeated greedy or seeded model requests from this SQLite file (a "
        "response cache, made if missing; processes may share it)",
    )


def wrap_runtime(runtime: Runtime, args: argparse.Namespace) -> Runtime:
    """`runtime` in the wrappers the options ask for: within `--rpm`/`--tpm` and followed by
    the `--fallback` runtimes (`compose_runtime`), and outside them all, with `--cache PATH`,
    a `Cached` on a SQLite store there (a hit needs no runtime and no room in a limit). The
    outermost wrapper owns the rest: closing it closes them all."""
    runtime = compose_runtime(args, runtime)
    if getattr(args, "cache", None):
        runtime = Cached(runtime, Path(args.cache).expanduser(), owns=True)
    return runtime


def build_runtime(args: argparse.Namespace) -> Runtime:
    """The runtime the options of `add_runtime_options` describe, in the wrappers they ask
    for; the caller closes it."""
    runtime = get_runtime(
        args.runtime or DEFAULT_RUNTIME, model=args.model, progress=sys.stderr.isatty()
    )
    return wrap_runtime(runtime, args)


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
    """The Agent the options describe, on a runtime of its own (the caller closes it); with
    `--agents`, the file's agent, once the options it would conflict with are refused."""
    if args.agents:
        refuse_with_agents(args, DEFINED_BY_AGENT)
        return load_agent(args.agents)
    tools: list[Tool | ToolSource] = [*(load_tools(args.tools) if args.tools else [])]
    tools.extend(mcp_sources(args))
    tools.extend(openapi_sources(args))
    # Unset flags leave the runtime's profile in charge (the embedded model's forced first
    # call and greedy sampling, for one).
    return Agent(
        build_runtime(args),
        tools=tools,
        instructions=args.instructions,
        max_steps=DEFAULT_MAX_STEPS if args.max_steps is None else args.max_steps,
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
