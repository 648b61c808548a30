"""`agentkit worker`: serve durable runs from a Temporal task queue, with these tools and this
runtime, until stopped. Needs `pip install 'agentkit[temporal]'`, imported when it runs."""

from __future__ import annotations

import argparse
import sys

import anyio

from agentkit.cli.durable import add_connection_options, sdk
from agentkit.runtimes import RUNTIMES, get_runtime
from agentkit.tools.loader import load_tools

__all__ = ["add_parser"]


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`agentkit worker`: its options and handler."""
    worker = commands.add_parser("worker", help="run durable agent runs from a Temporal queue")
    worker.add_argument("--runtime", default="local", choices=sorted(RUNTIMES))
    worker.add_argument("--tools", nargs="+", default=[], metavar="FILE", help="tool files")
    worker.add_argument("--model", help="GGUF file (local) or model name (hosted)")
    worker.add_argument(
        "--address", default="127.0.0.1:7233", help="the Temporal server (default: 127.0.0.1:7233)"
    )
    worker.add_argument(
        "--max-concurrent-activities",
        type=int,
        default=20,
        help="model and tool calls this worker runs at once (default: 20)",
    )
    add_connection_options(worker)
    worker.set_defaults(handler=_run_worker)


def _run_worker(args: argparse.Namespace) -> int:
    durable = sdk()
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
