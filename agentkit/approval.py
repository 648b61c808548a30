"""Tool calls that wait for a person: pausing a run, and resuming it with the decisions.

A tool built with `requires_approval=True` (or a predicate of its validated arguments) does
not run when the model calls it. The step's other calls run as usual; the run then stops with
`stop_reason == "approval"`, the calls waiting in `RunResult.pending` and everything needed to
continue in `RunResult.state` (a `RunState`, JSON). `agent.resume(state, approve=[...],
deny={...})` runs the approved calls, tells the model why the denied ones did not run, and goes
on with the loop as if it had never stopped.

Only valid calls wait: an unknown tool, bad arguments or a repeated call is told to the model
first, as in any step. The transcript stays a conversation a model accepts: while paused, the
step's assistant message is followed by the results of the calls that ran; on resume the
step's results are filed again, all of them, in the order the model made the calls.

`Agent` inherits this class; its loop calls `_hold` (in a step), `_paused` (after it) and
`_resume_step` (first thing in a resumed run).
"""

from __future__ import annotations

import abc
from collections import OrderedDict
from collections.abc import AsyncGenerator, Callable, Collection, Mapping
from contextlib import aclosing, nullcontext
from dataclasses import dataclass
from functools import partial
from typing import Any, Generic

import anyio
from pydantic_core import to_jsonable_python

from agentkit._tool_calls import ToolCalls, _cut, _Run, _Stop
from agentkit.errors import (
    RepeatedToolCall,
    RunStateError,
    ToolArgumentsError,
    ToolRetriesExhausted,
    UserError,
)
from agentkit.events import Event, StepFinished, ToolCallFinished
from agentkit.model_api import Message, Usage
from agentkit.results import OutputT, PendingCall, RunResult, StopReason, ToolCallRecord
from agentkit.runtimes.base import Runtime
from agentkit.sessions.base import Session
from agentkit.sessions.runs import attach_paused
from agentkit.state import RunState, digest
from agentkit.tools import Tool
from agentkit.usage import PriceTable

__all__ = [
    "Approvals",
    "Decisions",
    "check_decisions",
    "denial",
    "fingerprint",
    "parse_denials",
    "release",
]

FINGERPRINTED_SETTINGS = ("output_type",)
"""Agent attributes that shape what a run produces: a state paused under one value is refused
by an agent with another. Settings that only bound the run (`max_steps`, `deadline`) may
change between pause and resume."""

# Ids of states resumed in this process, so that a copy (`RunState.from_json` of the same text)
# cannot be resumed twice either. Bounded: the oldest are forgotten first.
_CONSUMED: OrderedDict[str, None] = OrderedDict()
_CONSUMED_LIMIT = 100_000


def _describe(value: Any) -> Any:
    """A setting as JSON data for its digest: a pydantic model by its schema, a type by name."""
    schema = getattr(value, "model_json_schema", None)
    if callable(schema):
        return schema()
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    return to_jsonable_python(value, fallback=repr)


def fingerprint(agent: Any) -> dict[str, str]:
    """What of `agent` a paused run depends on: a digest per tool (its name, description and
    parameters schema) and per setting in `FINGERPRINTED_SETTINGS` that is set."""
    out = {f"tool:{t.name}": digest(t.to_function("full")) for t in agent.toolset}
    for name in FINGERPRINTED_SETTINGS:
        value = getattr(agent, name, None)
        if value is not None:
            out[f"setting:{name}"] = digest(_describe(value))
    return out


@dataclass(frozen=True)
class Decisions:
    """A person's decisions on a paused run's pending calls, checked (`check_decisions`)."""

    state: RunState
    approve: frozenset[str]
    deny: dict[str, str]


def check_decisions(
    state: RunState, approve: Collection[str], deny: Mapping[str, str] | None
) -> Decisions:
    """Check decisions against a paused run: every pending call decided once, no other id,
    reasons as text, the state not resumed before in this process.

    Raises:
        RunStateError: naming every problem at once.
    """
    if not isinstance(state, RunState):
        raise RunStateError([f"expected a RunState (got {type(state).__name__})"])
    if isinstance(approve, str):
        raise RunStateError([f"approve: a list of call ids, not a string ({approve!r})"])
    deny = dict(deny or {})
    approved = frozenset(approve)
    pending = [call.id for call in state.pending]
    problems = []
    if state.id in _CONSUMED:
        problems.append(f"state {state.id} was already resumed (a RunState is single-use)")
    both = sorted(approved & deny.keys())
    if both:
        problems.append(f"both approved and denied: {', '.join(both)}")
    unknown = sorted((approved | deny.keys()) - set(pending))
    if unknown:
        waiting = ", ".join(pending) or "none"
        problems.append(f"not pending: {', '.join(unknown)} (pending: {waiting})")
    undecided = [i for i in pending if i not in approved and i not in deny]
    if undecided:
        problems.append(f"undecided: {', '.join(undecided)}; approve or deny every pending call")
    bad = sorted(k for k, v in deny.items() if not isinstance(v, str))
    if bad:
        problems.append(f"deny: the reason must be text, for {', '.join(bad)}")
    if problems:
        raise RunStateError(problems)
    return Decisions(state, approved, deny)


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


def release(state_id: str) -> None:
    """Let the state `state_id` be resumed again in this process.

    For an engine that replays a run's history (Temporal): the history, not this process,
    is what makes its state single-use there.
    """
    _CONSUMED.pop(state_id, None)


def denial(reason: str) -> str:
    """What the model is told of a denied call (as the call's error)."""
    reason = reason.strip()
    return f"denied by the user: {reason}" if reason else "denied by the user"


class Approvals(ToolCalls, Generic[OutputT]):
    """The approval half of `Agent`: pausing for a person and resuming."""

    runtime: Runtime
    prices: PriceTable | None
    _model: str

    # The Agent's own, which resuming goes on with.
    @abc.abstractmethod
    async def _execute(
        self, run: _Run, *, emit: Callable[[Event], None] | None, stream: bool
    ) -> RunResult[OutputT]: ...

    @abc.abstractmethod
    def _stream_run(self, run: _Run) -> AsyncGenerator[Event, None]: ...

    # -- public API -------------------------------------------------------------------------

    async def resume(
        self,
        state: RunState,
        *,
        approve: Collection[str] = (),
        deny: Mapping[str, str] | None = None,
        session: Session | None = None,
    ) -> RunResult[OutputT]:
        """Continue a run that paused for approval (`result.state`), with a decision on each
        pending call.

        Args:
            state: the paused run (`result.state`, or `RunState.from_json(text)`).
            approve: ids of the calls to run.
            deny: ids of the calls not to run, with the reason the model is told (the call's
                result is the error `denied by the user: <reason>`; an empty reason says only
                `denied by the user`).
            session: the session the run paused in, if it ran with one: the resumed run
                journals into it as the same run (see docs/sessions.md).

        Every pending call must be decided. The run goes on from where it stopped, with this
        agent's limits (a fresh `deadline`; `max_steps` counts the steps already made), and
        may pause again.

        Raises:
            RunStateError: an id that is not pending, an undecided call, a state already
                resumed in this process, or an agent that differs from the one that paused
                (a tool missing or changed, another output type): each is named.
            RunError: a limit stopped the resumed run, as in `run`.
        """
        run = await self._resumed_in(state, approve, deny, session)
        return await self._execute(run, emit=None, stream=False)

    def resume_sync(
        self,
        state: RunState,
        *,
        approve: Collection[str] = (),
        deny: Mapping[str, str] | None = None,
        session: Session | None = None,
    ) -> RunResult[OutputT]:
        """`resume` for code that has no event loop."""
        resume = partial(self.resume, state, approve=approve, deny=deny, session=session)
        return anyio.run(resume)

    async def stream_resume(
        self,
        state: RunState,
        *,
        approve: Collection[str] = (),
        deny: Mapping[str, str] | None = None,
        session: Session | None = None,
    ) -> AsyncGenerator[Event, None]:
        """`resume`, yielding events as `stream` does: the decided calls' `ToolCallStarted` /
        `ToolCallFinished` (a denied call has only the latter), the paused step's
        `StepFinished`, then the next steps; the last event is `RunFinished`."""
        run = await self._resumed_in(state, approve, deny, session)
        async with aclosing(self._stream_run(run)) as events:
            async for event in events:
                yield event

    # -- hooks of the loop ------------------------------------------------------------------

    async def _resumed_in(
        self,
        state: RunState,
        approve: Collection[str],
        deny: Mapping[str, str] | None,
        session: Session | None,
    ) -> _Run:
        run = self._resumed(state, approve, deny)
        if session is not None:
            await attach_paused(run, session, [call.id for call in state.pending])
        return run

    def _resumed(
        self, state: RunState, approve: Collection[str], deny: Mapping[str, str] | None
    ) -> _Run:
        decisions = check_decisions(state, approve, deny)
        run = _Run(list(state.messages), None, self.runtime, self._model, self.prices)
        run.records = [record.model_copy(deep=True) for record in state.tool_calls]
        run.steps = state.steps
        run.usage = state.usage
        run.nested = dict(state.nested_usage)
        run.failures = dict(state.failures)
        run.last_signature = state.last_signature
        run.repeats = state.repeats
        run.resuming = decisions
        return run

    def _hold(
        self, run: _Run, jobs: list[tuple[ToolCallRecord, Tool, dict[str, Any]]]
    ) -> list[tuple[ToolCallRecord, Tool, dict[str, Any]]]:
        """Set aside the calls that need approval (in `run.awaiting`); return the others.

        A predicate that raises is a call that needs approval: when in doubt, ask."""
        run.awaiting = []
        ready = []
        for job in jobs:
            record, tool, values = job
            if tool.requires_approval is False:
                ready.append(job)
                continue
            try:
                held = tool.needs_approval(values)
            except Exception:
                held = True
            if not held:
                ready.append(job)
                continue
            arguments = to_jsonable_python(values, fallback=repr)
            run.awaiting.append(
                PendingCall(id=record.call.id, name=tool.name, arguments=arguments, step=run.steps)
            )
        return ready

    def _paused(self, run: _Run) -> RunResult:
        """The result of a run that stops for approval, with its state."""
        result = run.result("", "approval")
        pending: list[PendingCall] = list(run.awaiting)
        result.pending = pending
        result._state = RunState(
            messages=list(run.messages),
            tool_calls=[record.model_copy(deep=True) for record in run.records],
            pending=pending,
            steps=run.steps,
            usage=run.usage,
            nested_usage=dict(run.nested),
            failures=dict(run.failures),
            last_signature=run.last_signature,
            repeats=run.repeats,
            fingerprint=fingerprint(self),
        )
        return result

    async def _resume_step(self, run: _Run) -> None:
        """Finish the paused step: check the agent, run the approved calls, file every result
        of the step in the model's order."""
        decisions: Decisions = run.resuming
        run.resuming = None
        state = decisions.state
        problems = state.differences(fingerprint(self))
        step = state.steps
        records = {r.call.id: r for r in run.records if r.step == step}
        lost = [call.id for call in state.pending if call.id not in records]
        if lost:
            problems.append(f"pending calls not among the tool calls of step {step}: {lost}")
        if state.id in _CONSUMED:  # resumed meanwhile (checked again: tools may have run)
            problems.insert(0, f"state {state.id} was already resumed (a RunState is single-use)")
        if problems:
            raise RunStateError(problems)
        _CONSUMED[state.id] = None
        if len(_CONSUMED) > _CONSUMED_LIMIT:
            _CONSUMED.popitem(last=False)
        jobs = []
        for call in state.pending:
            record = records[call.id]
            if call.id in decisions.deny:
                record.error = denial(decisions.deny[call.id])
                if run.emit:
                    run.emit(ToolCallFinished(step, record))
                continue
            tool = self.toolset.get(call.name)
            assert tool is not None  # the fingerprint matched
            try:
                jobs.append((record, tool, tool.check(call.arguments)))
            except ToolArgumentsError as exc:
                record.error = f"invalid arguments for {call.name}: {exc}"
        try:
            async with run.journal.writing() if run.journal else nullcontext():
                await self._run_jobs(run, jobs)
        finally:
            # On cancellation too: every call of the step gets its result in the transcript.
            for record in records.values():
                if record.output is None and record.error is None:
                    record.error = "cancelled: the run stopped before this call finished"
            _refile(run, step, self.max_tool_output)
        stop: Exception | None = None
        for record, _, _ in jobs:
            stop = stop or self._count_failure(run, record)
        if run.emit:
            # The step's model call was counted when it was made.
            run.emit(StepFinished(step, Usage()))
        if stop is not None:
            assert isinstance(stop, (RepeatedToolCall, ToolRetriesExhausted))
            reason: StopReason = "repeat" if isinstance(stop, RepeatedToolCall) else "tool_retries"
            stop.run = run.result("", reason)
            raise _Stop(stop)


def _refile(run: _Run, step: int, limit: int) -> None:
    """Replace the paused step's tool results by one per call, in the model's order."""
    at = max(i for i, m in enumerate(run.messages) if m.role == "assistant" and m.tool_calls)
    del run.messages[at + 1 :]
    for record in run.records:
        if record.step != step:
            continue
        run.messages.append(
            Message.tool(
                _cut(record.output, limit)
                if record.output is not None
                else f"Error: {record.error}",
                tool_call_id=record.call.id,
                name=record.call.name,
            )
        )
