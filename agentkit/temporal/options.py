"""The command line's durable runs: `agentkit worker` and `agentkit run --temporal ADDRESS`.

Importing this module does not import the Temporal SDK; the commands do, and say how to
install it when it is missing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

import anyio

from agentkit.approval import parse_denials
from agentkit.errors import ConfigurationError, UserError

__all__ = ["add_run_options", "add_worker_arguments", "end_process", "run_durable", "run_worker"]

_HINT = "pip install 'agentkit[temporal]'"
_POLL = 0.2  # seconds between looks at a run's pending approvals
_client_made = False  # `run_durable` made a Temporal client in this process (see `end_process`)


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
        "--task-queue bring the tools and the model (--runtime names the one to use); with "
        "--resume WORKFLOW_ID, --approve and --deny decide the calls a run waits for",
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


Ask = Callable[[list[Any]], Awaitable[tuple[list[str], dict[str, str]]]]
"""Asks a person about pending calls: the ids approved, and those denied with a reason."""


def run_durable(
    args: argparse.Namespace, sampling: dict[str, Any], ask: Ask, paused_status: int
) -> int:
    """`agentkit run --temporal`: start the run (or, with `--resume WORKFLOW_ID`, decide the
    calls a started one waits for), follow it, print its answer.

    A call waiting for approval is approved by `--approve-all`, asked about on a terminal
    (`ask`), or else left waiting: the workflow id and the command that decides are said on
    stderr and the status is `paused_status`; the run waits in Temporal meanwhile."""
    if args.tools or getattr(args, "mcp", None):
        raise UserError(
            "--tools and MCP servers belong to the workers with --temporal: "
            "start them with `agentkit worker --tools ...`"
        )
    if args.stream or args.verbose:
        raise UserError("--stream and --verbose are not available with --temporal")
    if (args.prompt is None) == (args.resume is None):
        raise UserError("agentkit run --temporal: give a prompt, or --resume WORKFLOW_ID")
    durable = _sdk()

    async def go() -> Any:
        global _client_made
        client = await durable.connect(args.temporal, namespace=args.namespace)
        _client_made = True
        if args.resume is not None:
            handle = client.get_workflow_handle(args.resume)
            deny = parse_denials(args.deny)
            if args.approve or deny:
                await durable.decide(handle, approve=args.approve, deny=deny)
        else:
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
        _say(f"workflow {handle.id}")
        return await _follow(durable, handle, args, ask)

    result = anyio.run(go)
    if result is None:
        return paused_status
    print(result.model_dump_json(indent=2) if args.json else result.output)
    return 0


def end_process(status: int) -> NoReturn:
    """End the `agentkit` command's process with `status`.

    After `run_durable` made a Temporal client, the process ends without the interpreter's
    teardown: the client's native threads can outlive the command and call into Python while the
    interpreter is torn down, which aborts the process (temporalio/sdk-python#300).
    """
    if _client_made:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)


async def _follow(durable: Any, handle: Any, args: argparse.Namespace, ask: Ask) -> Any:
    """The run's result; meanwhile, decide the calls it waits for. None: it waits for a
    decision this command cannot make."""
    ended: list[Any] = []
    paused = False

    async def wait() -> None:
        try:
            ended.append(await durable.result(handle))
        except Exception as exc:  # raised below, outside the task group
            ended.append(exc)
        tg.cancel_scope.cancel()

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait)
        asked: set[str] = set()
        while True:
            await anyio.sleep(_POLL)
            state = None
            with anyio.move_on_after(10), contextlib.suppress(Exception):
                state = await durable.progress(handle)  # no worker: no answer, wait on
            waiting = [c for c in state.pending_approvals if c.id not in asked] if state else []
            if not waiting:
                continue
            approve: list[str]
            deny: dict[str, str]
            if args.approve_all:
                approve, deny = [c.id for c in waiting], {}
            elif sys.stdin.isatty():
                approve, deny = await ask(waiting)
            else:
                calls = ", ".join(
                    f"{c.name}({json.dumps(c.arguments, ensure_ascii=False)}) [{c.id}]"
                    for c in waiting
                )
                ids = " ".join(f"--approve {c.id}" for c in waiting)
                _say(f"paused: workflow {handle.id} waits for approval of {calls}")
                _say(
                    f"decide with: agentkit run --temporal {args.temporal} "
                    f"--resume {handle.id} {ids}"
                )
                paused = True
                tg.cancel_scope.cancel()
                break
            asked.update(c.id for c in waiting)
            await durable.decide(handle, approve=approve, deny=deny)
    if paused:
        return None
    if isinstance(ended[0], Exception):
        raise ended[0]
    return ended[0]


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


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
