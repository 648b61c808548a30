"""`agentkit serve`: the options, their checks, and running the server with uvicorn.

Needs the `server` extra; without it, `agentkit.cli` offers a `serve` that says how to install it.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import sys

import anyio
import uvicorn

from agentkit.cli.compose import COMPOSITION_FLAGS
from agentkit.cli.mcp import add_mcp_options, mcp_sources
from agentkit.cli.options import (
    add_runtime_wrapper_options,
    load_agent,
    refuse_with_agents,
    wrap_runtime,
)
from agentkit.cli.telemetry import add_telemetry_options
from agentkit.errors import ConfigurationError
from agentkit.runtimes import RUNTIMES, get_runtime
from agentkit.runtimes.base import DEFAULT_PARALLEL, Runtime
from agentkit.server.app import DEFAULT_MAX_BODY, DEFAULT_MAX_QUEUE, create_app, served_models
from agentkit.server.core import check_token
from agentkit.server.deadlines import (
    DEFAULT_BODY_TIMEOUT,
    DEFAULT_HEADER_TIMEOUT,
    DEFAULT_KEEP_ALIVE,
    protocol,
)
from agentkit.server.security import ANY, check_origin, wildcards
from agentkit.tools import Tool, ToolSource
from agentkit.tools.loader import load_tools

__all__ = ["add_parser"]

TOKEN_VARIABLE = "AGENTKIT_API_TOKEN"
A2A_STORE = "agentkit-a2a.db"
_MAX_STEPS = 8
DEFINED_BY_AGENT = (
    "--tools",
    "--runtime",
    "--model",
    "--cache",
    "--parallel",
    "--max-steps",
    "--mcp",
    "--mcp-stdio",
    "--mcp-http",
    "--mcp-header",
    *COMPOSITION_FLAGS,
)
"""The options of `serve` that `--agents` refuses: the file's agent brings its runtime, tools
and limits (and `/mcp` serves `--tools`, which it has none of)."""


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`agentkit serve`: its options and handler."""
    parser = commands.add_parser("serve", help="serve the Workers AI API on localhost")
    parser.add_argument(
        "--agents",
        metavar="FILE",
        help="a Python file defining `agent`: the playground's agent (also served over AG-UI "
        "at /ag-ui), and its runtime the served model",
    )
    # Unset (None) rather than their defaults, so that `--agents` can tell them given.
    parser.add_argument("--runtime", choices=sorted(RUNTIMES), help="default: local")
    parser.add_argument("--model", help="GGUF file (local runtime) or model name (hosted)")
    add_runtime_wrapper_options(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    parser.add_argument("--port", type=int, default=8787)
    parser.add_argument(
        "--api-token",
        default=os.environ.get(TOKEN_VARIABLE),
        help=f"require this bearer token on API calls (default: ${TOKEN_VARIABLE})",
    )
    parser.add_argument(
        "--tools", nargs="+", default=[], metavar="FILE", help="tools for the playground"
    )
    parser.add_argument(
        "--mcp",
        action="store_true",
        help="also serve the tools over MCP (Streamable HTTP) at /mcp, behind the same token",
    )
    parser.add_argument(
        "--approve-all",
        action="store_true",
        help="with --mcp: run tools that require approval without asking the MCP client "
        "(by default the client is asked, and a client that cannot be asked is refused)",
    )
    parser.add_argument(
        "--a2a",
        action="store_true",
        help="also serve the agent over A2A (card at /.well-known/agent-card.json, JSON-RPC at "
        "/a2a), behind the same token",
    )
    parser.add_argument(
        "--a2a-store",
        metavar="FILE",
        default=A2A_STORE,
        help=f"with --a2a: the SQLite file A2A tasks are kept in (default: {A2A_STORE})",
    )
    add_mcp_options(parser)
    parser.add_argument(
        "--model-name",
        action="append",
        dest="model_names",
        metavar="NAME",
        help="a model name to answer to (repeatable; default: @cf/meta/llama-3.1-8b-instruct "
        "and @agentkit/<runtime>)",
    )
    parser.add_argument(
        "--parallel",
        type=int,
        metavar="N",
        help="local runtime: requests generated at once, in one batch "
        f"(default: {DEFAULT_PARALLEL}); more wait in the queue",
    )
    parser.add_argument(
        "--max-queue",
        type=int,
        default=DEFAULT_MAX_QUEUE,
        metavar="N",
        help="requests that may wait while every slot is busy; past it, 429",
    )
    parser.add_argument("--max-body", type=int, default=DEFAULT_MAX_BODY, metavar="BYTES")
    parser.add_argument(
        "--max-steps", type=int, help=f"playground agent steps (default: {_MAX_STEPS})"
    )
    parser.add_argument(
        "--allowed-host",
        action="append",
        dest="allowed_hosts",
        default=[],
        metavar="NAME",
        help="a Host name to answer to besides localhost, 127.0.0.1 and [::1] (repeatable; "
        "'*' answers to any, which lets DNS rebinding through)",
    )
    parser.add_argument(
        "--allow-origin",
        action="append",
        dest="allowed_origins",
        default=[],
        metavar="ORIGIN",
        help="a web origin (scheme://host[:port]) whose pages may call the server, with CORS "
        "(repeatable)",
    )
    for kind, flag in (("origin", "--allow-origin"), ("host", "--allowed-host")):
        parser.add_argument(
            f"--insecure-allow-any-{kind}",
            action="store_true",
            help=f"accept {flag} '*' without --api-token: any web page may then use the "
            "model and run the tools",
        )
    parser.add_argument(
        "--header-timeout",
        type=float,
        default=DEFAULT_HEADER_TIMEOUT,
        metavar="SECONDS",
        help="close a connection that takes longer to send a request's headers",
    )
    parser.add_argument(
        "--body-timeout",
        type=float,
        default=DEFAULT_BODY_TIMEOUT,
        metavar="SECONDS",
        help="answer 408 to a request that takes longer to send its body",
    )
    parser.add_argument(
        "--keep-alive",
        type=int,
        default=DEFAULT_KEEP_ALIVE,
        metavar="SECONDS",
        help="close a keep-alive connection idle for longer",
    )
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    add_telemetry_options(parser, tree=False)
    parser.set_defaults(handler=_serve)


def _runtime(args: argparse.Namespace) -> Runtime:
    options = {} if args.parallel is None else {"parallel": args.parallel}
    runtime = get_runtime(
        args.runtime or "local", model=args.model, progress=sys.stderr.isatty(), **options
    )
    return wrap_runtime(runtime, args)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check(args: argparse.Namespace) -> None:
    refuse_with_agents(args, DEFINED_BY_AGENT)
    if args.approve_all and not args.mcp:
        raise ConfigurationError("--approve-all: applies to /mcp only; add --mcp")
    if args.a2a_store != A2A_STORE and not args.a2a:
        raise ConfigurationError("--a2a-store: applies to A2A only; add --a2a")
    if args.max_queue < 0:
        raise ConfigurationError(f"--max-queue: must be >= 0 (got {args.max_queue})")
    if args.max_steps is not None and args.max_steps < 1:
        raise ConfigurationError(f"--max-steps: must be >= 1 (got {args.max_steps})")
    if args.parallel is not None:
        if (args.runtime or "local") != "local":
            raise ConfigurationError(
                f"--parallel: only the local runtime has slots (got --runtime {args.runtime})"
            )
        if args.parallel < 1:
            raise ConfigurationError(f"--parallel: must be >= 1 (got {args.parallel})")
    if args.max_body < 1:
        raise ConfigurationError(f"--max-body: must be >= 1 (got {args.max_body})")
    if not 0 <= args.port <= 65535:
        raise ConfigurationError(f"--port: must be between 0 and 65535 (got {args.port})")
    for name in ("header_timeout", "body_timeout", "keep_alive"):
        if not getattr(args, name) > 0:
            flag = "--" + name.replace("_", "-")
            raise ConfigurationError(f"{flag}: must be > 0 (got {getattr(args, name)})")
    for kind, risk in wildcards(args.allowed_hosts, args.allowed_origins).items():
        if not args.api_token and not getattr(args, f"insecure_allow_any_{kind}"):
            flag = "--allow-origin" if kind == "origin" else "--allowed-host"
            raise ConfigurationError(
                f"{flag} '*' without --api-token: {risk}; set --api-token, name the {kind}s "
                f"to trust instead of '*', or pass --insecure-allow-any-{kind} to accept the "
                "risk"
            )
    try:
        if args.api_token:
            check_token(args.api_token)
        for origin in args.allowed_origins:
            if origin != ANY:
                check_origin(origin)
    except ValueError as exc:
        raise ConfigurationError(str(exc).replace("api_token:", "--api-token:", 1)) from None


def _allowed_hosts(args: argparse.Namespace) -> list[str]:
    """The names given, plus the bound address when it is a specific one: a client that
    reaches `--host 192.168.1.5` sends that as its Host."""
    hosts = list(args.allowed_hosts)
    if not _is_loopback(args.host) and args.host not in ("0.0.0.0", "::", ""):
        hosts.append(f"[{args.host}]" if ":" in args.host else args.host)
    return hosts


def _warn_exposed(args: argparse.Namespace) -> None:
    if not args.api_token:
        print(
            f"warning: listening on {args.host} without --api-token: anyone who can reach "
            "this address can use the model and run the tools",
            file=sys.stderr,
        )
    if args.host in ("0.0.0.0", "::") and not args.allowed_hosts:
        print(
            "note: only clients that address this server as localhost, 127.0.0.1 or [::1] are "
            "answered; name the others with --allowed-host (e.g. the machine's address)",
            file=sys.stderr,
        )


def _serve(args: argparse.Namespace) -> int:
    """Run the server until interrupted; returns the exit status."""
    _check(args)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s: %(message)s")
    agent = load_agent(args.agents) if args.agents else None
    tools: list[Tool | ToolSource] = [*(load_tools(args.tools) if args.tools else [])]
    tools.extend(mcp_sources(args))
    runtime = _runtime(args) if agent is None else agent.runtime
    try:
        app = create_app(
            runtime,
            api_token=args.api_token or None,
            tools=tools,
            models=args.model_names,
            max_queue=args.max_queue,
            max_body=args.max_body,
            max_steps=_MAX_STEPS if args.max_steps is None else args.max_steps,
            mcp=args.mcp,
            allowed_hosts=_allowed_hosts(args),
            allowed_origins=args.allowed_origins,
            body_timeout=args.body_timeout,
            approve_all=args.approve_all,
            insecure_allow_any_origin=args.insecure_allow_any_origin,
            insecure_allow_any_host=args.insecure_allow_any_host,
            agent=agent,
            a2a=args.a2a_store if args.a2a else None,
        )
        names = ", ".join(served_models(runtime, args.model_names))
        shown = f"[{args.host}]" if ":" in args.host else args.host
        print(
            f"agentkit serve: {runtime.name} runtime as {names}\n"
            + (f"  agent:      {agent.name or 'agent'} ({args.agents})\n" if agent else "")
            + f"  API:        http://{shown}:{args.port}/client/v4/accounts/<any>/ai/run/<model>\n"
            f"  playground: http://{shown}:{args.port}/"
            + (f"\n  AG-UI:      http://{shown}:{args.port}/ag-ui" if agent else "")
            + (f"\n  MCP:        http://{shown}:{args.port}/mcp" if args.mcp else "")
            + (
                f"\n  A2A:        http://{shown}:{args.port}/a2a ({args.a2a_store})"
                if args.a2a
                else ""
            ),
            file=sys.stderr,
            flush=True,
        )
        if not _is_loopback(args.host):
            _warn_exposed(args)
        uvicorn.run(
            app,
            host=args.host,
            port=args.port,
            log_level=args.log_level,
            http=protocol(args.header_timeout),
            timeout_keep_alive=args.keep_alive,
        )
    finally:
        anyio.run(runtime.aclose)
    return 0
