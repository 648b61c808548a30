"""`agentkit worker`: serve durable runs from a Temporal task queue, with these tools and this
runtime, or with the agents of `--agents FILE` (the file's `agent` and those it hands off to),
until stopped. Needs `pip install 'agentkit[temporal]'`, imported when it runs."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import anyio

from agentkit.cli.durable import add_connection_options, sdk
from agentkit.cli.options import (
    add_runtime_wrapper_options,
    load_agent,
    refuse_with_agents,
    wrap_runtime,
)
from agentkit.runtimes import RUNTIMES, get_runtime
from agentkit.tools.loader import load_tools

__all__ = ["add_parser"]


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`agentkit worker`: its options and handler."""
    worker = commands.add_parser("worker", help="run durable agent runs from a Temporal queue")
    worker.add_argument(
        "--agents",
        metavar="FILE",
        help="a Python file defining `agent`: serve it and the agents it hands off to",
    )
    worker.add_argument("--runtime", choices=sorted(RUNTIMES), help="default: local")
    worker.add_argument("--tools", nargs="+", default=[], metavar="FILE", help="tool files")
    worker.add_argument("--model", help="GGUF file (local) or model name (hosted)")
    add_runtime_wrapper_options(worker)
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
    refuse_with_agents(args, ("--tools", "--runtime", "--model", "--cache"))
    if args.agents:
        agent = load_agent(args.agents)
        served: dict[str, Any] = {"agents": [agent]}
        runtimes = []
    else:
        tools = load_tools(args.tools) if args.tools else []
        name = args.runtime or "local"
        runtime = wrap_runtime(
            get_runtime(name, model=args.model, progress=sys.stderr.isatty()), args
        )
        served = {"runtimes": {name: runtime}, "tools": tools}
        runtimes = [runtime]

    async def go() -> None:
        client = await durable.connect(args.address, namespace=args.namespace)
        worker = durable.Worker(
            client,
            task_queue=args.task_queue,
            max_concurrent_activities=args.max_concurrent_activities,
            **served,
        )
        try:
            async with worker:
                activities = worker.activities
                if activities.agents:
                    what = "agents " + ", ".join(activities.agents)
                else:
                    names = ", ".join(activities.tools) or "no tools"
                    what = f"{', '.join(activities.runtimes)} with {names}"
                print(
                    f"agentkit worker: {what} on {args.task_queue!r} at {args.address}",
                    file=sys.stderr,
                    flush=True,
                )
                await anyio.sleep_forever()
        finally:
            for runtime in runtimes:
                await runtime.aclose()
            for each in worker.activities.agents.values():
                await each.aclose()

    anyio.run(go)
    return 0
