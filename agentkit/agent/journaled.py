"""Runs with a session: a run started on the session's conversation, an interrupted run taken
up again, a paused run resumed into the run that paused, and the journal each of them writes
(a `RunHooks`: each step's messages, the calls that start, each result as it comes, the end).

A run without a prompt continues the session's interrupted run, the one whose process stopped
before its `end` entry: its transcript and counters are rebuilt from the journal (as a
`RunState`, restored like any other), and the run settles the last step's calls that have no
result before its next model call (see `AgentRun`). To continue, a process claims the run with
a `run` entry; when two claim it at once, the first claim in the session wins and the other
fails, so no call runs twice. A run with handoffs is continued in the agent that was in force:
its handoffs are journaled as they happen and replayed (`agentkit.agent.takeover`).
"""

from __future__ import annotations

import secrets
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from agentkit.agent.approval import check_decisions
from agentkit.agent.core import Interrupted
from agentkit.agent.hooks import RunHooks
from agentkit.agent.results import HandoffRecord, RunResult, RunState, ToolCallRecord
from agentkit.agent.run import AgentRun, Starter
from agentkit.agent.tool_step import result_message
from agentkit.errors import RunInterrupted, UserError
from agentkit.model_api import Message, ToolCall, Usage
from agentkit.sessions.base import Entry, Session
from agentkit.sessions.journal import RunJournal
from agentkit.sessions.runs import (
    RunLog,
    claim,
    conversation,
    pending_step,
    read_logs,
    stuck_runs,
)
from agentkit.tools.context import RunContext

__all__ = ["JournalHooks", "attach_paused", "open_run", "resumed"]


class JournalHooks(RunHooks[Any]):
    """Writes a run's progress into its session's journal as the run goes."""

    def __init__(self, journal: RunJournal, run: AgentRun[Any]) -> None:
        self.journal = journal
        self.run = run
        self.max_tool_output = run.settings.max_tool_output

    async def on_tools_start(self, ctx: RunContext[Any], calls: Sequence[ToolCall]) -> None:
        # The step's message with the calls, then which of them start: stored before any runs.
        await self.journal.sync(ctx.messages, ctx.usage)
        await self.journal.write([self.journal.started(calls)])

    async def after_tool(
        self, ctx: RunContext[Any], record: ToolCallRecord, error: BaseException | None
    ) -> None:
        self.journal.finished(result_message(record, self.max_tool_output))
        await self.journal.write([])

    async def on_handoff(self, ctx: RunContext[Any], record: HandoffRecord) -> None:
        # With the usage of the agents that had the run so far, by model: a run continued
        # after a crash counts each model's calls where they belong.
        spent = {model: u.model_dump(mode="json") for model, u in self.run.usage_by_model().items()}
        entry = self.journal.handoff(record.model_dump(mode="json"), spent)
        await self.journal.sync(ctx.messages, ctx.usage, after=[entry])

    async def on_step_end(
        self, ctx: RunContext[Any], step: int, records: Sequence[ToolCallRecord]
    ) -> None:
        await self.journal.sync(ctx.messages, ctx.usage)

    async def on_run_end(
        self, ctx: RunContext[Any], result: RunResult[Any] | None, error: BaseException | None
    ) -> None:
        reason = result.stop_reason if result is not None else _stop_reason(error)
        await self.journal.close(ctx.messages, ctx.usage, reason)


def _stop_reason(error: BaseException | None) -> str:
    run = getattr(error, "run", None)
    return str(getattr(run, "stop_reason", None) or "error")


def _journaled(run: AgentRun[Any], journal: RunJournal) -> AgentRun[Any]:
    run.hooks = run.hooks.plus([JournalHooks(journal, run)])
    return run


async def open_run(
    agent: Starter,
    session: Session,
    prompt: str | Sequence[Message] | None,
    transcript: list[Message] | None,
    deps: Any,
) -> AgentRun[Any]:
    """A run of `agent` on `session`: a new one from `prompt`, or the interrupted one
    continued when `prompt` is None."""
    entries = await session.load()
    logs = read_logs(entries)
    stuck = stuck_runs(logs)
    if prompt is None:
        return await _take_over(agent, session, entries, logs, stuck, transcript, deps)
    if stuck:
        raise RunInterrupted(session.session_id, stuck[0].run_id)
    run_id = "run_" + secrets.token_hex(8)
    run = _start(agent, prompt, conversation(list(logs.values()), session), transcript, deps)
    run.run_id = run_id
    new = 1 if isinstance(prompt, str) else len(prompt)
    journal = RunJournal(session, run_id, len(run.messages) - new)
    journal.activate()
    begin = {"kind": "run", "run": run_id, **RunJournal.owner()}
    await journal.sync(run.messages, None, before=[begin])
    return _journaled(run, journal)


async def _take_over(
    agent: Starter,
    session: Session,
    entries: list[Entry],
    logs: dict[str, RunLog],
    stuck: list[RunLog],
    transcript: list[Message] | None,
    deps: Any,
) -> AgentRun[Any]:
    if not stuck:
        raise UserError(
            f"session {session.session_id!r} has no interrupted run to continue: pass a prompt"
        )
    log = stuck[0]
    await claim(session, entries, log.run_id)
    before = []
    for other in logs.values():
        if other is log:
            break
        before.append(other)
    step, messages = pending_step(log)
    run = _start(agent, messages, conversation(before, session), transcript, deps)
    run.run_id = log.run_id
    journal = RunJournal(session, log.run_id, len(run.messages))
    journal.activate()
    # The run's state, as far as the journal tells it.
    state = RunState(
        messages=list(run.messages),
        tool_calls=_records(messages),
        pending=[],
        steps=sum(1 for m in log.messages if m.role == "assistant"),
        usage=Usage.model_validate(log.usage) if log.usage else Usage(),
        handoffs=[HandoffRecord.model_validate(r) for r in log.handoffs.values()],
        handoff_usage={m: Usage.model_validate(u) for m, u in log.handoff_usage.items()},
    )
    run.restore(state)
    last = messages[-1] if messages else None
    # An answer that gave control back to the agent that handed off is not the run's.
    returned = any(r.end == len(run.messages) for r in state.handoffs)
    if step is not None:
        run.interrupted = Interrupted(step=step, started=frozenset(log.started))
    elif last is not None and last.role == "assistant" and not returned:
        run.interrupted = Interrupted(answer=last.content)
    return _journaled(run, journal)


async def attach_paused(run: AgentRun[Any], session: Session, pending: Sequence[str]) -> None:
    """Journal a run resumed after a pause for approval into the session's run that paused:
    the one whose last step holds the `pending` calls."""
    entries = await session.load()
    wanted = set(pending)
    for log in reversed(read_logs(entries).values()):
        last = next((m for m in reversed(log.messages) if m.role == "assistant"), None)
        if log.stop_reason == "approval" and last and wanted <= {c.id for c in last.tool_calls}:
            break
    else:
        raise UserError(
            f"session {session.session_id!r} holds no run paused for the calls "
            f"{', '.join(sorted(wanted))}"
        )
    await claim(session, entries, log.run_id)
    at = max(i for i, m in enumerate(run.messages) if m.role == "assistant" and m.tool_calls)
    journal = RunJournal(session, log.run_id, at + 1)
    journal.results = {str(m.tool_call_id) for m in log.messages if m.role == "tool"}
    journal.activate()
    run.run_id = log.run_id
    _journaled(run, journal)


async def resumed(
    agent: Starter,
    state: RunState,
    approve: Collection[str],
    deny: Mapping[str, str] | None,
    session: Session | None,
    deps: Any,
) -> AgentRun[Any]:
    """A run of `agent` that goes on from a pause for approval (`state`), with the person's
    decisions checked; with `session`, journaled into the session's run that paused."""
    decisions = check_decisions(state, approve, deny)
    run = agent.new_run([], deps)
    run.restore(state)
    run.resuming = decisions
    if session is not None:
        await attach_paused(run, session, [call.id for call in state.pending])
    return run


def _start(
    agent: Starter,
    prompt: str | Sequence[Message],
    history: list[Message],
    transcript: list[Message] | None,
    deps: Any,
) -> AgentRun[Any]:
    if transcript is None:
        return agent.start(prompt, history, None, deps)
    transcript[:] = history  # the list the run fills in place starts with the history
    return agent.start(prompt, (), transcript, deps)


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
