"""`agentkit run`: an agent on one prompt, its answer on stdout; and one turn of an agent,
printed as it goes, which `chat` shares."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from contextlib import aclosing
from typing import Any

import anyio

from agentkit.agent import Agent, RunResult
from agentkit.agent.events import (
    HandedOff,
    RunFinished,
    TextDelta,
    ToolCallFinished,
    ToolCallStarted,
)
from agentkit.agent.results import RunState
from agentkit.cli import approval
from agentkit.cli.durable import add_temporal_options, run_durable
from agentkit.cli.options import (
    DEFINED_BY_AGENT,
    add_agent_options,
    build_agent,
    open_session,
    refuse_with_agents,
)
from agentkit.errors import UserError
from agentkit.sessions import Session, interrupted_run

__all__ = ["add_parser", "continue_interrupted", "run_once"]


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`agentkit run`: its options and handler."""
    run = commands.add_parser("run", help="run an agent on one prompt")
    run.add_argument("prompt", nargs="?", help="the user's message (or --resume FILE)")
    add_agent_options(run)
    approval.add_approval_options(run, run=True)
    run.add_argument("--stream", action="store_true", help="print the answer as it comes")
    run.add_argument("--json", action="store_true", help="print the whole RunResult as JSON")
    run.add_argument(
        "--output-schema",
        metavar="FILE|JSON",
        help="answer with a JSON object of this JSON Schema (a file, or inline JSON); "
        "prints the validated object",
    )
    add_temporal_options(run)
    run.set_defaults(handler=_run)


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class _Speakers:
    """Streamed text on stdout, saying who writes it: the agent run (the root) writes plainly;
    any other agent (a sub-agent, by its events' path) starts a line of its own, prefixed with
    its path below the root: `billing> ...`."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.current = root
        self.midline = False

    def who(self, path: str) -> str:
        """How `path` is shown: below the root, without it."""
        return path.removeprefix(self.root + "/")

    def write(self, path: str, text: str) -> None:
        if path != self.current:
            if self.midline:
                print(flush=True)
            if path != self.root:
                print(f"{self.who(path)}> ", end="")
            self.current = path
        print(text, end="", flush=True)
        self.midline = not text.endswith("\n")

    def tool_line(self, path: str, line: str) -> None:
        """A `-v` line on stderr; a sub-agent's calls name its path."""
        _say(line if path == self.root else f"[{path}] {line}")


async def run_once(
    agent: Agent[Any],
    prompt: str | None,
    args: argparse.Namespace,
    history: Sequence[Any] = (),
    resume: tuple[RunState, list[str], dict[str, str]] | None = None,
    session: Session | None = None,
) -> RunResult[Any]:
    """One run of `agent` (or the resumption of a paused one): with `--stream` its text is
    printed as it comes (a sub-agent's lines prefixed with its name), with `-v` its tool calls
    are said on stderr."""
    stream = getattr(args, "stream", False) or args.verbose
    if not stream:
        if resume is not None:
            state, approve, deny = resume
            return await agent.resume(state, approve=approve, deny=deny, session=session)
        return await agent.run(prompt, history=history, session=session)
    result: RunResult[Any] | None = None
    printing = getattr(args, "stream", False) and not getattr(args, "json", False)
    speakers = _Speakers(agent.name or "agent")
    source = (
        agent.stream(prompt, history=history, session=session)
        if resume is None
        else agent.stream_resume(resume[0], approve=resume[1], deny=resume[2], session=session)
    )
    async with aclosing(source) as events:
        async for event in events:
            if isinstance(event, TextDelta) and printing:
                speakers.write(event.path, event.text)
            elif isinstance(event, ToolCallStarted) and args.verbose:
                call = event.call
                speakers.tool_line(event.path, f"-> {call.name}({call.arguments_json()})")
            elif isinstance(event, ToolCallFinished) and args.verbose:
                record = event.record
                shown = record.output if record.ok else f"error: {record.error}"
                took = f"({record.duration * 1000:.1f} ms)"
                speakers.tool_line(event.path, f"<- {record.call.name}: {shown} {took}")
            elif isinstance(event, HandedOff) and args.verbose:
                speakers.tool_line(event.path, f"handoff {event.source} -> {event.target}")
            elif isinstance(event, RunFinished):
                result = event.result
    assert result is not None
    if printing and result.stop_reason != "approval":  # a paused run has said nothing yet
        print()
    return result


async def continue_interrupted(
    agent: Agent,
    session: Session | None,
    args: argparse.Namespace,
    settle: Callable[[RunResult], Awaitable[RunResult]],
) -> RunResult | None:
    """Finish the session's run that a dead process left, before anything new."""
    if session is None or (pending := await interrupted_run(session)) is None:
        return None
    unfinished = f"; not run again: {', '.join(pending.unfinished)}" if pending.unfinished else ""
    _say(f"session {session.session_id}: continuing a run that was interrupted{unfinished}")
    result = await settle(await run_once(agent, None, args, session=session))
    if not getattr(args, "stream", False) and result.stop_reason != "approval":
        print(result.output)
    return result


def _run(args: argparse.Namespace) -> int:
    refuse_with_agents(args, DEFINED_BY_AGENT)
    if args.agent is not None and not args.temporal:
        raise UserError("--agent names one of the workers' agents: it needs --temporal")
    if args.temporal:
        return run_durable(args)
    if (args.prompt is None) == (args.resume is None):
        raise UserError("agentkit run: give a prompt, or --resume FILE (not both)")
    agent = build_agent(args)
    session = open_session(args)

    async def go() -> RunResult[Any]:
        def resume(state: RunState, approve: list[str], deny: dict[str, str]) -> Any:
            return run_once(agent, "", args, resume=(state, approve, deny), session=session)

        def settle(result: RunResult) -> Awaitable[RunResult]:
            return approval.settle(result, args, resume, interactive=False)

        try:
            async with agent:  # starts the MCP servers, and stops them
                continued = await continue_interrupted(agent, session, args, settle)
                if continued is not None and continued.stop_reason == "approval":
                    return continued  # saved for --resume: the new prompt waits for it
                if args.resume is not None:
                    result = await approval.from_file(args, resume)
                else:
                    result = await run_once(agent, args.prompt, args, session=session)
                return await settle(result)
        finally:
            await agent.runtime.aclose()

    result = anyio.run(go)
    if args.json:
        print(result.model_dump_json(indent=2))
    elif result.stop_reason == "approval":
        pass  # a paused run has no answer yet
    elif args.output_schema is not None:  # after a streamed answer: the validated object
        print(json.dumps(result.output, ensure_ascii=False, indent=2))
    elif not args.stream:
        print(result.output)
    return approval.EXIT_PAUSED if result.stop_reason == "approval" else 0
