"""Durable runs from the command line: `agentkit run --temporal ADDRESS`, and what it shares
with `agentkit worker` (the Temporal SDK, the connection options).

Importing this module does not import the Temporal SDK; the commands do, and say how to
install it when it is missing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from typing import Any, NoReturn

import anyio

from agentkit.cli.approval import EXIT_PAUSED, ask, parse_denials
from agentkit.cli.options import DEFAULT_MAX_STEPS, sampling
from agentkit.errors import ConfigurationError, UserError

__all__ = ["add_connection_options", "add_temporal_options", "end_process", "run_durable", "sdk"]

_HINT = "pip install 'agentkit[temporal]'"
_POLL = 0.2  # seconds between looks at a run's pending approvals
_client_made = False  # `run_durable` made a Temporal client in this process (see `end_process`)


def sdk() -> Any:
    """`agentkit.temporal`, with the SDK loaded; or an error that says how to install it."""
    try:
        import agentkit.temporal.worker  # noqa: F401  # the SDK, or the hint
    except ImportError as exc:
        raise ConfigurationError(f"durable runs need {exc.name}: {_HINT}") from None
    import agentkit.temporal as durable

    return durable


def add_connection_options(parser: argparse.ArgumentParser) -> None:
    """`--task-queue` and `--namespace`, for a run and for a worker."""
    parser.add_argument(
        "--task-queue", default="agentkit", help="the task queue (default: agentkit)"
    )
    parser.add_argument("--namespace", default="default", help="the Temporal namespace")


def add_temporal_options(parser: argparse.ArgumentParser) -> None:
    """`agentkit run`'s options for a durable run."""
    parser.add_argument(
        "--temporal",
        metavar="ADDRESS",
        help="run as a durable workflow on the Temporal server at HOST:PORT; the workers of "
        "--task-queue bring the tools and the model (--runtime names the one to use, their "
        "first by default) or their agents (--agent); with --resume WORKFLOW_ID, --approve "
        "and --deny decide the calls a run waits for",
    )
    parser.add_argument(
        "--agent",
        metavar="NAME",
        help="with --temporal, on workers of agents (`agentkit worker --agents FILE`): the "
        "agent that starts the run (default: the workers' first); it brings its own settings",
    )
    add_connection_options(parser)


def run_durable(args: argparse.Namespace) -> int:
    """`agentkit run --temporal`: start the run (or, with `--resume WORKFLOW_ID`, decide the
    calls a started one waits for), follow it, print its answer.

    A call waiting for approval is approved by `--approve-all`, asked about on a terminal
    (`ask`), or else left waiting: the workflow id and the command that decides are said on
    stderr and the status is `EXIT_PAUSED`; the run waits in Temporal meanwhile."""
    if args.tools or args.mcp_stdio or args.mcp_http:
        raise UserError(
            "--tools and MCP servers belong to the workers with --temporal: "
            "start them with `agentkit worker --tools ...`"
        )
    if getattr(args, "cache", None):
        raise UserError(
            "--cache belongs to the workers with --temporal: start them with "
            "`agentkit worker --cache PATH ...`"
        )
    if args.stream or args.verbose:
        raise UserError("--stream and --verbose are not available with --temporal")
    if (args.prompt is None) == (args.resume is None):
        raise UserError("agentkit run --temporal: give a prompt, or --resume WORKFLOW_ID")
    durable = sdk()

    async def go() -> Any:
        global _client_made
        _client_made = True  # its native threads start with the attempt, failed or not
        client = await durable.connect(args.temporal, namespace=args.namespace)
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
                agent=args.agent,
                instructions=args.instructions,
                max_steps=DEFAULT_MAX_STEPS if args.max_steps is None else args.max_steps,
                tool_choice=args.tool_choice,
                sampling=sampling(args),
            )
        _say(f"workflow {handle.id}")
        return await _follow(durable, handle, args)

    result = anyio.run(go)
    if result is None:
        return EXIT_PAUSED
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


async def _follow(durable: Any, handle: Any, args: argparse.Namespace) -> Any:
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
