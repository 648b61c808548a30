"""Runs with a session, as its journal tells them: the history a run starts from, and
interrupted runs found, described or discarded (`agentkit.agent.journaled` continues them).

A run with a prompt starts from the conversation of the session's ended runs (within the
session's `HistoryLimit`). A run without one continues the session's interrupted run, the one
whose process stopped before its `end` entry: its transcript is rebuilt from the journal, and
the last step's calls that have no result are settled first:

- a call that never started runs;
- a call that had started runs again only if its tool is idempotent; otherwise the model is
  told, as that call's result, that it was interrupted and not run again.

Then the loop goes on from the last completed step. To continue, a process claims the run with
a `run` entry; when two claim it at once, the first claim in the session wins and the other
fails, so no call runs twice.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from typing import Any

from agentkit.errors import UserError
from agentkit.model_api import Message
from agentkit.sessions.base import Entry, Session, limit_history, order_results
from agentkit.sessions.journal import HOST, RunJournal, is_active

__all__ = [
    "INTERRUPTED",
    "InterruptedRun",
    "RunLog",
    "claim",
    "conversation",
    "discard_interrupted",
    "history",
    "interrupted_run",
    "pending_step",
    "read_logs",
    "stuck_runs",
]


INTERRUPTED = (
    "interrupted: the process running this call stopped before it finished, so it may or may "
    "not have taken effect. It was not run again; check its effect before calling it again."
)
"""What the model is told for a started, unfinished call of a tool that is not idempotent."""


@dataclass
class RunLog:
    """One run of a session, as its journal entries tell it."""

    run_id: str
    raw: list[Any] = field(default_factory=list)  # the messages as stored, parsed when needed
    usage: Any = None
    started: set[str] = field(default_factory=set)
    ended: bool = False
    stop_reason: str | None = None
    owner: Entry = field(default_factory=dict)
    handoffs: dict[str, Any] = field(default_factory=dict)
    """Its handoffs as journaled, by transfer call id (the latest entry of each)."""
    handoff_usage: dict[str, Any] = field(default_factory=dict)
    """Usage of the agents before the one in force, by model, as of the latest handoff."""
    _messages: list[Message] | None = None

    @property
    def messages(self) -> list[Message]:
        if self._messages is None:
            self._messages = [Message.model_validate(m) for m in self.raw]
        return self._messages


@dataclass(frozen=True)
class InterruptedRun:
    """A run of a session whose process stopped before the run ended."""

    run_id: str
    messages: list[Message]
    """Its transcript as journaled (the prompt first; tool results in the order they finished)."""
    unfinished: list[str]
    """Names of the tools whose calls had started and not finished."""
    not_started: list[str]
    """Names of the tools whose calls the model asked for and that never started."""


def read_logs(entries: list[Entry]) -> dict[str, RunLog]:
    logs: dict[str, RunLog] = {}
    withdrawn = {e.get("claim") for e in entries if e.get("kind") == "withdrawn"}
    for entry in entries:
        run_id = str(entry.get("run"))
        log = logs.setdefault(run_id, RunLog(run_id))
        kind = entry.get("kind")
        if kind == "message":
            log.raw.append(entry["message"])
            if "usage" in entry:
                log.usage = entry["usage"]
        elif kind == "started":
            log.started.update(entry.get("calls", ()))
        elif kind == "handoff":
            record = entry.get("record", {})
            log.handoffs[str(record.get("call_id"))] = record
            log.handoff_usage = entry.get("usage", {})
        elif kind == "end":
            log.ended = True
            log.stop_reason = entry.get("stop_reason")
        elif kind == "run":  # begun, or taken up again (after a crash, or a pause)
            claim = entry.get("claim")
            if claim in withdrawn and claim is not None:
                continue
            # A claim on a run whose owner lives lost the race to the claim before it.
            if log.ended or not log.owner or not _alive(log):
                log.owner = entry
                log.ended = False
    return logs


def _alive(log: RunLog) -> bool:
    """Whether the run is still going on in some process (so it is not interrupted)."""
    if log.ended or not log.owner:
        return False
    pid, host = log.owner.get("pid"), log.owner.get("host")
    if host != HOST or not isinstance(pid, int):
        return False  # not ours to see: counted as interrupted (see docs/sessions.md)
    if pid == os.getpid():
        return is_active(log.run_id)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stuck_runs(logs: dict[str, RunLog]) -> list[RunLog]:
    return [log for log in logs.values() if not log.ended and not _alive(log)]


def conversation(logs: list[RunLog], session: Session) -> list[Message]:
    """The ended runs' messages, within the session's limit; only the runs that may fit are
    parsed, newest first, so a long session with a limit costs what the limit keeps."""
    limit = getattr(session, "limit", None)
    parts: list[list[Message]] = []
    count = tokens = 0
    for log in reversed(logs):
        if not log.ended:
            continue
        if limit is not None and (
            (limit.max_messages is not None and count > limit.max_messages)
            or (limit.max_tokens is not None and tokens > limit.max_tokens)
        ):
            break
        part = order_results(log.messages)
        parts.append(part)
        count += len(part)
        if limit is not None and limit.max_tokens is not None:
            tokens += sum(limit.count_tokens(m) for m in part)
    messages = [m for part in reversed(parts) for m in part]
    ended = [log for log in logs if log.ended]
    if ended and ended[0].raw[:1] and ended[0].raw[0].get("role") == "system":
        head = ended[0].messages[0]
        if not messages or messages[0] is not head:
            messages.insert(0, head)  # the conversation's own system message stays first
    return limit_history(messages, limit)


def pending_step(log: RunLog) -> tuple[Message | None, list[Message]]:
    """The last tool-calling message if some of its calls lack a result, and the transcript
    with the results present put in the order of the calls."""
    answered = {m.tool_call_id for m in log.messages if m.role == "tool"}
    last = next((m for m in reversed(log.messages) if m.role == "assistant"), None)
    if last is None or not last.tool_calls or all(c.id in answered for c in last.tool_calls):
        return None, order_results(log.messages)
    cut = max(i for i, m in enumerate(log.messages) if m is last)
    results = {m.tool_call_id: m for m in log.messages[cut:] if m.role == "tool"}
    tail = [results[c.id] for c in last.tool_calls if c.id in results]
    return last, [*order_results(log.messages[:cut]), last, *tail]


async def history(session: Session) -> list[Message]:
    """The conversation a new run of `session` starts from (within its `limit`)."""
    return conversation(list(read_logs(await session.load()).values()), session)


async def interrupted_run(session: Session) -> InterruptedRun | None:
    """The session's first interrupted run, or None."""
    stuck = stuck_runs(read_logs(await session.load()))
    if not stuck:
        return None
    log = stuck[0]
    step, _ = pending_step(log)
    answered = {m.tool_call_id for m in log.messages if m.role == "tool"}
    calls = [c for c in (step.tool_calls if step else []) if c.id not in answered]
    return InterruptedRun(
        log.run_id,
        list(log.messages),
        unfinished=[c.name for c in calls if c.id in log.started],
        not_started=[c.name for c in calls if c.id not in log.started],
    )


async def discard_interrupted(session: Session) -> InterruptedRun | None:
    """Close the session's first interrupted run without continuing it; the run it closed.

    Its completed exchanges stay in the history; its last step, if some of its calls have no
    result, is left out of it. Nothing is run or told to the model.
    """
    pending = await interrupted_run(session)
    if pending is not None:
        end = {"kind": "end", "run": pending.run_id, "stop_reason": "discarded"}
        await session.append([end])
    return pending


async def claim(session: Session, entries: list[Entry], run_id: str) -> None:
    """Take up a run to continue it. The first claim after what we read wins; a process that
    read the same state and claimed later withdraws, so that no call is settled twice."""
    claim = secrets.token_hex(8)
    await session.append([{"kind": "run", "run": run_id, **RunJournal.owner(claim)}])
    later = (await session.load())[len(entries) :]
    claims = (e for e in later if e.get("kind") == "run" and e.get("run") == run_id)
    first = next(claims, {})
    if first.get("claim") != claim:
        await session.append([{"kind": "withdrawn", "run": run_id, "claim": claim}])
        raise UserError(
            f"session {session.session_id!r}: run {run_id} is being continued by "
            f"process {first.get('pid')} on {first.get('host')}"
        )
