"""`agentkit chat`: a conversation in the terminal, one run a line, until EOF or `/exit`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable
from typing import Any

import anyio

from agentkit.agent import RunResult
from agentkit.agent.results import RunState
from agentkit.cli import approval
from agentkit.cli.options import add_agent_options, build_agent, open_session
from agentkit.cli.run import continue_interrupted, run_once
from agentkit.sessions import history

__all__ = ["add_parser"]


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`agentkit chat`: its options and handler."""
    chat = commands.add_parser("chat", help="chat in the terminal")
    add_agent_options(chat)
    approval.add_approval_options(chat, run=False)
    chat.set_defaults(handler=_chat)


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _chat(args: argparse.Namespace) -> int:
    agent = build_agent(args)
    session = open_session(args)

    def resume(state: RunState, approve: list[str], deny: dict[str, str]) -> Any:
        return run_once(agent, "", args, resume=(state, approve, deny), session=session)

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
                    await continue_interrupted(agent, session, args, settle)
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
                        result = await run_once(agent, line, args, session=session)
                    else:
                        result = await run_once(agent, line, args, earlier)
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
