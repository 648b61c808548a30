"""The command line's durable runs: `agentkit worker` and `agentkit run --temporal ADDRESS`.

Importing this module does not import the Temporal SDK; the commands do, and say how to
install it when it is missing.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import anyio

from agentkit.errors import ConfigurationError, UserError

__all__ = ["add_run_options", "add_worker_arguments", "run_durable", "run_worker"]

_HINT = "pip install 'agentkit[temporal]'"


def _sdk() -> Any:
    try:
        import agentkit.temporal.worker  # noqa: F401  # the SDK, or the hint
    except ImportError as exc:
        raise ConfigurationError(f"durable runs need {exc.name}: {_HINT}") from None
    import agentkit.temporal as durable

    return durable


def _connection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--task-queue", default="agentkit", help="the task queue (default: agentkit)"
    )
    parser.add_argument("--namespace", default="default", help="the Temporal namespace")


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """`agentkit run`'s options for a durable run."""
    parser.add_argument(
        "--temporal",
        metavar="ADDRESS",
        help="run as a durable workflow on the Temporal server at HOST:PORT; the workers of "
        "--task-queue bring the tools and the model (--runtime names the one to use)",
    )
    _connection(parser)


def add_worker_arguments(parser: argparse.ArgumentParser) -> None:
    """`agentkit worker`'s arguments (the runtime choices are the caller's)."""
    parser.add_argument("--tools", nargs="+", default=[], metavar="FILE", help="tool files")
    parser.add_argument("--model", help="GGUF file (local) or model name (hosted)")
    parser.add_argument(
        "--address", default="127.0.0.1:7233", help="the Temporal server (default: 127.0.0.1:7233)"
    )
    parser.add_argument(
        "--max-concurrent-activities",
        type=int,
        default=20,
        help="model and tool calls this worker runs at once (default: 20)",
    )
    _connection(parser)


def run_durable(args: argparse.Namespace, sampling: dict[str, Any]) -> int:
    """`agentkit run --temporal`: start the run, wait for it, print its answer."""
    if args.tools or getattr(args, "mcp", None):
        raise UserError(
            "--tools and MCP servers belong to the workers with --temporal: "
            "start them with `agentkit worker --tools ...`"
        )
    if args.stream or args.verbose:
        raise UserError("--stream and --verbose are not available with --temporal")
    durable = _sdk()

    async def go() -> Any:
        client = await durable.connect(args.temporal, namespace=args.namespace)
        handle = await durable.start_run(
            client,
            args.prompt,
            task_queue=args.task_queue,
            runtime=args.runtime,
            instructions=args.instructions,
            max_steps=args.max_steps,
            tool_choice=args.tool_choice,
            sampling=sampling,
        )
        print(f"workflow {handle.id}", file=sys.stderr, flush=True)
        return await durable.result(handle)

    result = anyio.run(go)
    print(result.model_dump_json(indent=2) if args.json else result.output)
    return 0


def run_worker(args: argparse.Namespace) -> int:
    """`agentkit worker`: serve durable runs with these tools and this runtime until stopped."""
    durable = _sdk()
    from agentkit.runtimes import get_runtime
    from agentkit.tools.loader import load_tools

    tools = load_tools(args.tools) if args.tools else []
    runtime = get_runtime(args.runtime, model=args.model, progress=sys.stderr.isatty())

    async def go() -> None:
        client = await durable.connect(args.address, namespace=args.namespace)
        worker = durable.Worker(
            client,
            task_queue=args.task_queue,
            runtimes={args.runtime: runtime},
            tools=tools,
            max_concurrent_activities=args.max_concurrent_activities,
        )
        try:
            async with worker:
                names = ", ".join(t.name for t in tools) or "no tools"
                print(
                    f"agentkit worker: {args.runtime} with {names} on {args.task_queue!r} "
                    f"at {args.address}",
                    file=sys.stderr,
                    flush=True,
                )
                await anyio.sleep_forever()
        finally:
            await runtime.aclose()

    anyio.run(go)
    return 0
