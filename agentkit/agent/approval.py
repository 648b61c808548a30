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

A tool may also ask while it runs (it raises `ApprovalRequired`): its call waits the same way,
with the tool's question. On resume it is called again with the same arguments, the decision in
its `RunContext.decision`, on approval and on denial alike: it asked, so it hears the answer
and decides what the model is told. (A tool without a context parameter cannot hear it: it is
called again on approval, and its denial is told to the model as for a call held back.)

The tool step's gate holds the calls back (`agentkit.agent.tool_step`); the run then ends with
`paused`, and a resumed run finishes the paused step with `resume_step` before its next model
call; a call that asks again there pauses the run again.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection, Mapping
from typing import Any

from pydantic_core import to_jsonable_python

from agentkit.agent.core import Decisions, RunCore
from agentkit.agent.results import RunResult, RunState, digest
from agentkit.agent.tool_step import Job, ToolStep, cancelled_error
from agentkit.errors import RunStateError, ToolArgumentsError
from agentkit.model_api import Usage
from agentkit.tools.context import Decision

__all__ = [
    "Decisions",
    "check_decisions",
    "denial",
    "fingerprint",
    "paused",
    "release",
    "resume_step",
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


def paused(run: RunCore) -> RunResult:
    """The result of a run that stops for approval, with its state."""
    result = run.outcome("", "approval")
    state = run.snapshot()
    result.pending = list(state.pending)
    result._state = state
    return result


def _consume(state: RunState) -> None:
    _CONSUMED[state.id] = None
    if len(_CONSUMED) > _CONSUMED_LIMIT:
        _CONSUMED.popitem(last=False)


async def resume_step(run: RunCore, step_calls: ToolStep) -> None:
    """Finish the paused step: check the agent, run the approved calls, file every result
    of the step in the model's order."""
    decisions = run.resuming
    assert decisions is not None
    run.resuming = None
    state = decisions.state
    problems = state.differences(run.setup.fingerprint())
    step = state.steps
    records = {r.call.id: r for r in run.records if r.step == step}
    lost = [call.id for call in state.pending if call.id not in records]
    if lost:
        problems.append(f"pending calls not among the tool calls of step {step}: {lost}")
    if state.id in _CONSUMED:  # resumed meanwhile (checked again: tools may have run)
        problems.insert(0, f"state {state.id} was already resumed (a RunState is single-use)")
    if problems:
        raise RunStateError(problems)
    _consume(state)
    run.awaiting = []
    jobs: list[Job] = []
    toolset = run.setup.toolset
    for call in state.pending:
        record = records[call.id]
        tool = toolset.get(call.name)
        assert tool is not None  # the fingerprint matched
        # A tool that asked hears the answer, a denial too (unless it cannot: no context).
        hears = call.question is not None and tool.context_param is not None
        if call.id in decisions.deny and not hears:
            record.error = denial(decisions.deny[call.id])
            step_calls.file_denied(record)
            continue
        try:
            jobs.append((record, tool, tool.check(call.arguments)))
        except ToolArgumentsError as exc:
            record.error = f"invalid arguments for {call.name}: {exc}"
            continue
        if hears:
            reason = decisions.deny.get(call.id)
            step_calls.decisions[call.id] = Decision(
                approved=reason is None, reason=reason, question=call.question or "", data=call.data
            )
    stop: Exception | None = None
    held = False
    try:
        await step_calls.run_jobs(jobs)
        for record, _, _ in jobs:
            stop = stop or step_calls.count_failure(record)
        held = stop is None and bool(run.awaiting)  # a call asked (again)
        step_calls.in_order(list(records.values()))
    finally:
        step_calls.decisions.clear()
        # On cancellation too: every call of the step gets its result in the transcript, but
        # for those that asked again when the step ended well.
        asking = {call.id for call in run.awaiting} if held else set()
        cancelled_error(r for r in records.values() if r.call.id not in asking)
        _refile(run, step, step_calls)
    # The step's model call was counted when it was made.
    await step_calls.step_end(step, list(records.values()), Usage())
    if stop is not None:
        step_calls.stop(stop)


def _refile(run: RunCore, step: int, step_calls: ToolStep) -> None:
    """Replace the paused step's tool results by one per call, in the model's order."""
    at = max(i for i, m in enumerate(run.messages) if m.role == "assistant" and m.tool_calls)
    del run.messages[at + 1 :]
    run.messages.extend(
        step_calls.result_message(r)
        for r in run.records
        if r.step == step and (r.output is not None or r.error is not None)
    )
