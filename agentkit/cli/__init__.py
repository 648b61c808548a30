"""The `agentkit` command: run | chat | serve | worker | mcp | schema | validate | eval.

One module a command, each with its options beside its handler (`run`, `chat`, `serve`,
`worker`, `mcp`, `schema`, `validate`, `eval`); the options `run` and `chat` share in `options`;
approval on the terminal in `approval`; `run --temporal` in `durable`; `--trace` and `--otlp` in
`telemetry`. Library code never imports this package.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from agentkit.cli import chat, mcp, run, schema, validate, worker
from agentkit.cli import eval as eval_command  # not to shadow the builtin
from agentkit.cli.durable import end_process
from agentkit.cli.telemetry import configure as configure_telemetry
from agentkit.errors import AgentKitError, RunError

__all__ = ["main", "script"]

_DESCRIPTION = (
    "The `agentkit` command: run | chat | serve | worker | mcp | schema | validate | eval."
)


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _add_serve(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`agentkit serve`; without the `server` extra, a `serve` that says how to install it."""
    try:
        from agentkit.cli import serve
    except ImportError as exc:
        missing = exc.name

        def needs_extra(args: argparse.Namespace) -> int:
            _say(f"error: agentkit serve needs {missing}: pip install 'agentkit[server]'")
            return 2

        parser = commands.add_parser(
            "serve", help="serve the Workers AI API on localhost", add_help=False
        )
        # Whatever follows (options included) is taken, so that the hint is what is said.
        parser.set_defaults(handler=needs_extra, takes_any=True)
    else:
        serve.add_parser(commands)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agentkit", description=_DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True)
    run.add_parser(commands)
    worker.add_parser(commands)
    chat.add_parser(commands)
    _add_serve(commands)
    mcp.add_parser(commands)
    schema.add_parser(commands)
    validate.add_parser(commands)
    eval_command.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `agentkit` command; returns the exit status."""
    parser = _parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown and not getattr(args, "takes_any", False):
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    finish = None
    try:
        if getattr(args, "trace", False) or getattr(args, "otlp", None):
            finish = configure_telemetry(
                tree=args.trace, otlp=args.otlp, capture_content=args.capture_content
            )
        try:
            status: int = args.handler(args)
        finally:
            if finish is not None:
                finish(sys.stderr)
    except RunError as exc:
        _say(f"error: {exc}")
        return 1
    except AgentKitError as exc:
        _say(f"error: {exc}")
        return 2
    except KeyboardInterrupt:
        return 130
    return status


def script() -> NoReturn:
    """The `agentkit` command's process: `main`, then the end of the process."""
    end_process(main())
