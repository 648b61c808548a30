"""Runs with a session: the history a run starts from, and interrupted runs continued.

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
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agentkit.errors import RunInterrupted, UserError
from agentkit.model_api import Message, Usage
from agentkit.results import ToolCallRecord
from agentkit.sessions.base import Entry, Session, limit_history, order_results
from agentkit.sessions.journal import _ACTIVE, HOST, Resume, RunJournal

if TYPE_CHECKING:
    from agentkit._tool_calls import _Run
    from agentkit.agent import Agent
    from agentkit.results import RunResult

__all__ = [
    "INTERRUPTED",
    "InterruptedRun",
    "attach_paused",
    "continue_interrupted",
    "discard_interrupted",
    "history",
    "interrupted_run",
    "open_run",
]

INTERRUPTED = (
    "interrupted: the process running this call stopped before it finished, so it may or may "
    "not have taken effect. It was not run again; check its effect before calling it again."
)
"""What the model is told for a started, unfinished call of a tool that is not idempotent."""


@dataclass
class _Log:
    run_id: str
    raw: list[Any] = field(default_factory=list)  # the messages as stored, parsed when needed
    usage: Any = None
    started: set[str] = field(default_factory=set)
    ended: bool = False
    stop_reason: str | None = None
    owner: Entry = field(default_factory=dict)
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


def _logs(entries: list[Entry]) -> dict[str, _Log]:
    logs: dict[str, _Log] = {}
    withdrawn = {e.get("claim") for e in entries if e.get("kind") == "withdrawn"}
    for entry in entries:
        run_id = str(entry.get("run"))
        log = logs.setdefault(run_id, _Log(run_id))
        kind = entry.get("kind")
        if kind == "message":
            log.raw.append(entry["message"])
            if "usage" in entry:
                log.usage = entry["usage"]
        elif kind == "started":
            log.started.update(entry.get("calls", ()))
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


def _alive(log: _Log) -> bool:
    """Whether the run is still going on in some process (so it is not interrupted)."""
    if log.ended or not log.owner:
        return False
    pid, host = log.owner.get("pid"), log.owner.get("host")
    if host != HOST or not isinstance(pid, int):
        return False  # not ours to see: counted as interrupted (see docs/sessions.md)
    if pid == os.getpid():
        return log.run_id in _ACTIVE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stuck(logs: dict[str, _Log]) -> list[_Log]:
    return [log for log in logs.values() if not log.ended and not _alive(log)]


def _conversation(logs: list[_Log], session: Session) -> list[Message]:
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


def _pending(log: _Log) -> tuple[Message | None, list[Message]]:
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
    return _conversation(list(_logs(await session.load()).values()), session)


async def interrupted_run(session: Session) -> InterruptedRun | None:
    """The session's first interrupted run, or None."""
    stuck = _stuck(_logs(await session.load()))
    if not stuck:
        return None
    log = stuck[0]
    step, _ = _pending(log)
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


async def open_run(
    agent: Agent[Any],
    session: Session,
    prompt: str | Sequence[Message] | None,
    transcript: list[Message] | None,
) -> _Run:
    """A run of `agent` on `session`: a new one from `prompt`, or the interrupted one
    continued when `prompt` is None."""
    entries = await session.load()
    logs = _logs(entries)
    stuck = _stuck(logs)
    if prompt is None:
        return await _take_over(agent, session, entries, logs, stuck, transcript)
    if stuck:
        raise RunInterrupted(session.session_id, stuck[0].run_id)
    run = _start(agent, prompt, _conversation(list(logs.values()), session), transcript)
    new = 1 if isinstance(prompt, str) else len(prompt)
    journal = RunJournal(session, "run_" + secrets.token_hex(8), len(run.messages) - new)
    journal.activate()
    begin = {"kind": "run", "run": journal.run_id, **RunJournal.owner()}
    await journal.sync(run.messages, None, before=[begin])
    run.journal = journal
    return run


async def _take_over(
    agent: Agent[Any],
    session: Session,
    entries: list[Entry],
    logs: dict[str, _Log],
    stuck: list[_Log],
    transcript: list[Message] | None,
) -> _Run:
    if not stuck:
        raise UserError(
            f"session {session.session_id!r} has no interrupted run to continue: pass a prompt"
        )
    log = stuck[0]
    await _claim(session, entries, log.run_id)
    before = []
    for other in logs.values():
        if other is log:
            break
        before.append(other)
    step, messages = _pending(log)
    run = _start(agent, messages, _conversation(before, session), transcript)
    journal = RunJournal(session, log.run_id, len(run.messages))
    journal.activate()
    run.journal = journal
    run.usage = Usage.model_validate(log.usage) if log.usage else Usage()
    run.steps = sum(1 for m in log.messages if m.role == "assistant")
    run.records.extend(_records(messages))
    last = messages[-1] if messages else None
    if step is not None:
        journal.resume = Resume(step=step, started=set(log.started))
    elif last is not None and last.role == "assistant":
        journal.resume = Resume(answer=last.content)
    return run


async def _claim(session: Session, entries: list[Entry], run_id: str) -> None:
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


async def attach_paused(run: _Run, session: Session, pending: Sequence[str]) -> None:
    """Journal a run resumed after a pause for approval into the session's run that paused:
    the one whose last step holds the `pending` calls."""
    entries = await session.load()
    wanted = set(pending)
    for log in reversed(_logs(entries).values()):
        last = next((m for m in reversed(log.messages) if m.role == "assistant"), None)
        if log.stop_reason == "approval" and last and wanted <= {c.id for c in last.tool_calls}:
            break
    else:
        raise UserError(
            f"session {session.session_id!r} holds no run paused for the calls "
            f"{', '.join(sorted(wanted))}"
        )
    await _claim(session, entries, log.run_id)
    at = max(i for i, m in enumerate(run.messages) if m.role == "assistant" and m.tool_calls)
    journal = RunJournal(session, log.run_id, at + 1)
    journal.results = {str(m.tool_call_id) for m in log.messages if m.role == "tool"}
    journal.activate()
    run.journal = journal


def _start(
    agent: Agent[Any],
    prompt: str | Sequence[Message],
    history: list[Message],
    transcript: list[Message] | None,
) -> _Run:
    if transcript is None:
        return agent._start(prompt, history, None)
    transcript[:] = history  # the list the run fills in place starts with the history
    return agent._start(prompt, (), transcript)


def _records(messages: list[Message]) -> list[ToolCallRecord]:
    """The tool calls of a continued run's earlier steps, as far as the transcript tells."""
    results = {m.tool_call_id: m.content for m in messages if m.role == "tool"}
    records = []
    step = 0
    for message in messages:
        if message.role != "assistant":
            continue
        step += 1
        for call in message.tool_calls:
            if call.id not in results:
                continue
            text = results[call.id]
            error = text[len("Error: ") :] if text.startswith("Error: ") else None
            records.append(
                ToolCallRecord(step=step, call=call, output=None if error else text, error=error)
            )
    return records


async def continue_interrupted(agent: Agent[Any], run: _Run) -> RunResult | None:
    """Settle the interrupted step of a continued run before its next model call; the run's
    result if the model had already answered, else None."""
    journal = run.journal
    assert journal is not None and journal.resume is not None
    resume, journal.resume = journal.resume, None
    if resume.answer is not None:
        return run.result(resume.answer, "answer")
    step = resume.step
    assert step is not None
    start = max(i for i, m in enumerate(run.messages) if m is step)
    answered = {m.tool_call_id for m in run.messages[start:] if m.role == "tool"}
    calls = [c for c in step.tool_calls if c.id not in answered]
    told: dict[str, str] = {}
    for call in calls:
        tool = agent.toolset.get(call.name)
        if call.id in resume.started and not (tool is not None and tool.idempotent):
            told[call.id] = INTERRUPTED
    try:
        await agent._run_calls(run, calls, Usage(), told)
    finally:
        results = {m.tool_call_id: m for m in run.messages[start + 1 :] if m.role == "tool"}
        run.messages[start + 1 :] = [results[c.id] for c in step.tool_calls if c.id in results]
    return None
