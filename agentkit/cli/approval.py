"""Approval on the command line: ask on the terminal, or save the paused run for `--resume`.

`agentkit run` and `agentkit chat` ask for each call of a tool that needs approval (the
arguments shown, y/n, an optional reason for a no); `--approve-all` approves without asking.
A `run` whose stdin is not a terminal cannot ask: it writes the paused run to `--state-file`
(or `agentkit-state-<id>.json` in the current directory), says how to resume on stderr and
exits with `EXIT_PAUSED`. `agentkit run --resume FILE --approve ID --deny ID=REASON` takes it
up with the same `--tools`; calls it leaves undecided are asked on a terminal.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio

from agentkit.agent.results import PendingCall, RunResult, RunState
from agentkit.errors import RunStateError, UserError

__all__ = ["EXIT_PAUSED", "add_approval_options", "ask", "from_file", "parse_denials", "settle"]

EXIT_PAUSED = 3
"""The exit status of a run that stopped to wait for approval and saved its state."""

Resume = Callable[[RunState, list[str], dict[str, str]], Awaitable[RunResult]]


def add_approval_options(parser: argparse.ArgumentParser, *, run: bool) -> None:
    """`--approve-all`, and for `run` the options that save and resume a paused run."""
    parser.add_argument(
        "--approve-all", action="store_true", help="run tools that need approval without asking"
    )
    if not run:
        return
    parser.add_argument(
        "--state-file",
        metavar="FILE",
        help="where a run paused for approval is saved when it cannot ask (stdin not a "
        "terminal); default: agentkit-state-<id>.json in the current directory",
    )
    parser.add_argument(
        "--resume", metavar="FILE", help="continue the run paused in FILE (same --tools)"
    )
    parser.add_argument(
        "--approve", action="append", default=[], metavar="ID", help="approve this call (--resume)"
    )
    parser.add_argument(
        "--deny",
        action="append",
        default=[],
        metavar="ID[=REASON]",
        help="deny this call, telling the model why (--resume)",
    )


def parse_denials(items: list[str]) -> dict[str, str]:
    """`--deny` values, `ID` or `ID=REASON`, as `resume`'s `deny`.

    Raises:
        UserError: an item with no id.
    """
    deny = {}
    for item in items:
        call_id, _, reason = item.partition("=")
        if not call_id:
            raise UserError(f"--deny: expected ID or ID=REASON (got {item!r})")
        deny[call_id] = reason
    return deny


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _shown(call: PendingCall) -> str:
    return f"{call.name}({json.dumps(call.arguments, ensure_ascii=False)})"


async def ask(calls: list[PendingCall]) -> tuple[list[str], dict[str, str]]:
    """Ask on the terminal about each call: y/n, and an optional reason for a no."""
    approve: list[str] = []
    deny: dict[str, str] = {}
    for call in calls:
        if call.question is not None:  # the tool asked while it ran: its own words
            _say(f"{call.name} asks: {call.question}")
        while True:
            _say(f"approve {_shown(call)}? [y/n] ")
            answer = (await _read()).strip().lower()
            if answer in ("y", "yes", "n", "no"):
                break
        if answer.startswith("y"):
            approve.append(call.id)
        else:
            _say("reason (optional): ")
            deny[call.id] = (await _read()).strip()
    return approve, deny


async def _read() -> str:
    line: str = await anyio.to_thread.run_sync(sys.stdin.readline)
    if not line:
        raise UserError("a tool call waits for approval and stdin ended before an answer")
    return line


def _can_ask() -> bool:
    return sys.stdin.isatty()


def _save(result: RunResult, path: str | None) -> Path:
    assert result.state is not None
    target = Path(path or f"agentkit-state-{result.state.id[:12]}.json")
    target.write_text(result.state.to_json(indent=2))
    calls = ", ".join(f"{_shown(c)} [{c.id}]" for c in result.pending)
    ids = " ".join(f"--approve {c.id}" for c in result.pending)
    _say(f"paused: waiting for approval of {calls}")
    for call in result.pending:
        if call.question is not None:
            _say(f"{call.name} [{call.id}] asks: {call.question}")
    _say(f"state saved to {target}; continue with: agentkit run --resume {target} {ids}")
    return target


async def settle(
    result: RunResult, args: argparse.Namespace, resume: Resume, *, interactive: bool
) -> RunResult:
    """Decide the pending calls of a paused run until it ends: approve all, ask, or (when it
    cannot ask) save the state and return the paused result."""
    while result.stop_reason == "approval" and result.state is not None:
        approve: list[str]
        deny: dict[str, str]
        if args.approve_all:
            approve, deny = [c.id for c in result.pending], {}
        elif interactive or _can_ask():
            approve, deny = await ask(result.pending)
        else:
            _save(result, getattr(args, "state_file", None))
            return result
        result = await resume(result.state, approve, deny)
    return result


async def from_file(args: argparse.Namespace, resume: Resume) -> RunResult:
    """Resume the run saved in `args.resume` with the decisions of `--approve` / `--deny`
    (undecided calls are asked on a terminal, or approved by `--approve-all`). The file is
    removed once the run has resumed, so it cannot be resumed twice."""
    path = anyio.Path(args.resume)
    try:
        state = RunState.from_json(await path.read_bytes())
    except OSError as exc:
        raise UserError(f"--resume: cannot read {path}: {exc.strerror}") from None
    approve = list(args.approve)
    deny = parse_denials(args.deny)
    undecided = [c for c in state.pending if c.id not in approve and c.id not in deny]
    if undecided and args.approve_all:
        approve += [c.id for c in undecided]
    elif undecided and _can_ask():
        more, less = await ask(undecided)
        approve += more
        deny.update(less)
    try:
        result = await resume(state, approve, deny)
    except RunStateError:
        raise  # refused before anything ran: the file stays, to resume as it should be
    except BaseException:
        await path.unlink(missing_ok=True)
        raise
    await path.unlink(missing_ok=True)
    return result
