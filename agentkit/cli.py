"""The `agentkit` command: run | chat | serve | worker | mcp | schema | validate."""

from __future__ import annotations

import argparse
import json
import sys
import typing
from collections.abc import Awaitable, Callable, Sequence
from contextlib import aclosing
from functools import partial
from pathlib import Path
from typing import Any, NoReturn

import anyio

from agentkit import _cli_approval as approval
from agentkit.agent import Agent, RunResult
from agentkit.errors import AgentKitError, RunError, UserError
from agentkit.events import RunFinished, TextDelta, ToolCallFinished, ToolCallStarted
from agentkit.mcp.options import add_mcp_options, mcp_sources
from agentkit.model_api import SAMPLING_FIELDS, ModelRequest
from agentkit.runtimes import RUNTIMES, get_runtime
from agentkit.runtimes.base import Runtime
from agentkit.sessions import Session, history, interrupted_run
from agentkit.sessions.options import add_session_options, open_session
from agentkit.state import RunState
from agentkit.telemetry.console import add_options as add_telemetry_options
from agentkit.telemetry.console import configure as configure_telemetry
from agentkit.temporal.options import (
    add_run_options,
    add_worker_arguments,
    end_process,
    run_durable,
    run_worker,
)
from agentkit.tools import Tool, ToolSource, validate_tool_definitions
from agentkit.tools.loader import load_tools
from agentkit.wire.workers_ai import generation_json_schema, request_json_schema

__all__ = ["main", "script"]


def _number(name: str) -> type[int] | type[float]:
    annotation = ModelRequest.model_fields[name].annotation
    return int if annotation is int or int in typing.get_args(annotation) else float


_SAMPLING = tuple(("--" + name.replace("_", "-"), _number(name)) for name in SAMPLING_FIELDS)


def _add_agent_options(parser: argparse.ArgumentParser) -> None:
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


def _sampling(args: argparse.Namespace) -> dict[str, Any]:
    return {
        flag[2:].replace("-", "_"): getattr(args, flag[2:].replace("-", "_"))
        for flag, _ in _SAMPLING
        if getattr(args, flag[2:].replace("-", "_")) is not None
    }


def _agent(args: argparse.Namespace) -> Agent[Any]:
    tools: list[Tool | ToolSource] = [*(load_tools(args.tools) if args.tools else [])]
    tools.extend(mcp_sources(args))
    sampling = _sampling(args)
    # Unset flags leave the runtime's profile in charge (the embedded model's forced first
    # call and greedy sampling, for one).
    return Agent(
        _runtime(args),
        tools=tools,
        instructions=args.instructions,
        max_steps=args.max_steps,
        tool_choice=args.tool_choice,
        output_type=_output_schema(getattr(args, "output_schema", None)),
        **sampling,
    )


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def _run_once(
    agent: Agent[Any],
    prompt: str | None,
    args: argparse.Namespace,
    history: Sequence[Any] = (),
    resume: tuple[RunState, list[str], dict[str, str]] | None = None,
    session: Session | None = None,
) -> RunResult[Any]:
    stream = getattr(args, "stream", False) or args.verbose
    if not stream:
        if resume is not None:
            state, approve, deny = resume
            return await agent.resume(state, approve=approve, deny=deny, session=session)
        return await agent.run(prompt, history=history, session=session)
    result: RunResult[Any] | None = None
    printing = getattr(args, "stream", False) and not getattr(args, "json", False)
    source = (
        agent.stream(prompt, history=history, session=session)
        if resume is None
        else agent.stream_resume(resume[0], approve=resume[1], deny=resume[2], session=session)
    )
    async with aclosing(source) as events:
        async for event in events:
            if isinstance(event, TextDelta) and printing:
                print(event.text, end="", flush=True)
            elif isinstance(event, ToolCallStarted) and args.verbose:
                _say(f"-> {event.call.name}({event.call.arguments_json()})")
            elif isinstance(event, ToolCallFinished) and args.verbose:
                record = event.record
                shown = record.output if record.ok else f"error: {record.error}"
                _say(f"<- {record.call.name}: {shown} ({record.duration * 1000:.1f} ms)")
            elif isinstance(event, RunFinished):
                result = event.result
    assert result is not None
    if printing and result.stop_reason != "approval":  # a paused run has said nothing yet
        print()
    return result


async def _continue_interrupted(
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
    result = await settle(await _run_once(agent, None, args, session=session))
    if not getattr(args, "stream", False) and result.stop_reason != "approval":
        print(result.output)
    return result


def _cmd_run(args: argparse.Namespace) -> int:
    if args.temporal:
        return run_durable(args, _sampling(args), approval._ask, approval.EXIT_PAUSED)
    if (args.prompt is None) == (args.resume is None):
        raise UserError("agentkit run: give a prompt, or --resume FILE (not both)")
    agent = _agent(args)
    session = open_session(args)

    async def go() -> RunResult[Any]:
        def resume(state: RunState, approve: list[str], deny: dict[str, str]) -> Any:
            return _run_once(agent, "", args, resume=(state, approve, deny), session=session)

        def settle(result: RunResult) -> Awaitable[RunResult]:
            return approval.settle(result, args, resume, interactive=False)

        try:
            async with agent:  # starts the MCP servers, and stops them
                continued = await _continue_interrupted(agent, session, args, settle)
                if continued is not None and continued.stop_reason == "approval":
                    return continued  # saved for --resume: the new prompt waits for it
                if args.resume is not None:
                    result = await approval.from_file(args, resume)
                else:
                    result = await _run_once(agent, args.prompt, args, session=session)
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


def _cmd_chat(args: argparse.Namespace) -> int:
    agent = _agent(args)
    session = open_session(args)

    def resume(state: RunState, approve: list[str], deny: dict[str, str]) -> Any:
        return _run_once(agent, "", args, resume=(state, approve, deny), session=session)

    def settle(result: RunResult) -> Awaitable[RunResult]:
        return approval.settle(result, args, resume, interactive=True)

    async def go() -> None:
        earlier: list[Any] = []
        try:
            async with agent:
                if session is not None:
                    count = len(await history(session))
                    where = f"{session.session_id} ({session.path})"
                    _say(
                        f"resumed session {where}: {count} messages"
                        if count
                        else f"new session {where}"
                    )
                    await _continue_interrupted(agent, session, args, settle)
                while True:
                    try:
                        line = await anyio.to_thread.run_sync(input, "you> ")
                    except EOFError:
                        return
                    if line.strip() in {"/exit", "/quit"}:
                        return
                    if not line.strip():
                        continue
                    if session is not None:
                        result = await _run_once(agent, line, args, session=session)
                    else:
                        result = await _run_once(agent, line, args, earlier)
                    result = await settle(result)
                    if not args.stream:
                        print(result.output)
                    earlier = result.messages
        finally:
            await agent.runtime.aclose()

    args.stream = True
    args.json = False
    anyio.run(go)
    return 0


def _cmd_mcp(args: argparse.Namespace) -> int:
    from agentkit.mcp import serve_stdio

    tools = load_tools(args.tools)
    # stdout carries the protocol: anything said goes to stderr.
    _say(f"agentkit mcp: serving {', '.join(t.name for t in tools)} over stdio")
    anyio.run(partial(serve_stdio, tools, name=args.name, approve_all=args.approve_all))
    return 0


def _cmd_schema(args: argparse.Namespace) -> int:
    if args.tools:
        tools = load_tools(args.tools)
        shape = [
            t.to_legacy(args.dialect) if args.shape == "legacy" else t.to_function(args.dialect)
            for t in tools
        ]
        print(json.dumps(shape, indent=2))
    else:
        schema = request_json_schema() if args.which == "request" else generation_json_schema()
        print(json.dumps(schema, indent=2))
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    data = _json_or_lines(args.file)
    if isinstance(data, dict):
        data = [data]
    definitions: list[Any] = []
    for item in data:
        inner = item.get("function") if isinstance(item, dict) else None
        definitions.extend(inner if isinstance(inner, list) else [item])
    problems = validate_tool_definitions(definitions)
    for problem in problems:
        print(problem)
    print(f"{len(definitions)} definitions, {len(problems)} problems", file=sys.stderr)
    return 1 if problems else 0


def _json_or_lines(path: str) -> Any:
    """A JSON file's value, or a JSON Lines file's values (one object a line, as BFCL's files,
    with the definitions under "function")."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"validate: cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"validate: {path} is not UTF-8 text (byte {exc.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as whole:
        lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
        if not lines:
            raise UserError(f"validate: {path} is empty") from None
        values = []
        for n, line in lines:
            try:
                values.append(json.loads(line))
            except json.JSONDecodeError as exc:
                # Lines after a first one that parses: JSON Lines with a bad line.
                error, where = (exc, f"line {n}") if values else (whole, f"line {whole.lineno}")
                raise UserError(
                    f"validate: {path} is not JSON or JSON Lines: {error.msg} at {where}, "
                    f"column {error.colno}"
                ) from None
        return values


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agentkit", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run an agent on one prompt")
    run.add_argument("prompt", nargs="?", help="the user's message (or --resume FILE)")
    _add_agent_options(run)
    approval.add_options(run, run=True)
    run.add_argument("--stream", action="store_true", help="print the answer as it comes")
    run.add_argument("--json", action="store_true", help="print the whole RunResult as JSON")
    run.add_argument(
        "--output-schema",
        metavar="FILE|JSON",
        help="answer with a JSON object of this JSON Schema (a file, or inline JSON); "
        "prints the validated object",
    )
    add_run_options(run)
    run.set_defaults(handler=_cmd_run)

    worker = commands.add_parser("worker", help="run durable agent runs from a Temporal queue")
    worker.add_argument("--runtime", default="local", choices=sorted(RUNTIMES))
    add_worker_arguments(worker)
    worker.set_defaults(handler=run_worker)

    chat = commands.add_parser("chat", help="chat in the terminal")
    _add_agent_options(chat)
    approval.add_options(chat, run=False)
    chat.set_defaults(handler=_cmd_chat)

    serve = commands.add_parser("serve", help="serve the Workers AI API on localhost")
    try:
        from agentkit.server.cli import add_arguments
        from agentkit.server.cli import main as serve_main
    except ImportError as exc:
        missing = exc.name

        def serve_main(args: argparse.Namespace) -> int:
            _say(f"error: agentkit serve needs {missing}: pip install 'agentkit[server]'")
            return 2

        serve.add_argument("rest", nargs=argparse.REMAINDER)
    else:
        add_arguments(serve)
    serve.set_defaults(handler=serve_main)

    mcp = commands.add_parser("mcp", help="serve tools to MCP clients over stdio")
    mcp.add_argument("--tools", nargs="+", required=True, metavar="FILE", help="tool files")
    mcp.add_argument("--name", default="agentkit", help="the server's name (default: agentkit)")
    mcp.add_argument(
        "--approve-all",
        action="store_true",
        help="run tools that require approval without asking the client (by default the "
        "client is asked, and a client that cannot be asked is refused)",
    )
    mcp.set_defaults(handler=_cmd_mcp)

    schema = commands.add_parser("schema", help="print JSON schemas")
    schema.add_argument("which", nargs="?", choices=["request", "generation"], default="request")
    schema.add_argument("--tools", nargs="+", metavar="FILE", help="print these tools instead")
    schema.add_argument("--shape", choices=["legacy", "function"], default="function")
    schema.add_argument("--dialect", choices=["full", "inline", "strict"], default="inline")
    schema.set_defaults(handler=_cmd_schema)

    validate = commands.add_parser("validate", help="check tool definitions in a JSON file")
    validate.add_argument("file")
    validate.set_defaults(handler=_cmd_validate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `agentkit` command; returns the exit status."""
    args = _parser().parse_args(argv)
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


if __name__ == "__main__":
    script()
