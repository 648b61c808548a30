"""Taking over: the agent in force changes, after a transfer (`take_up`) or an answer that
returns (`hand_back`), and a restored run's handoffs are replayed (`replay`). See
`agentkit.agent.handoffs`.

The run keeps one transcript; the agent in force changes the run's setup (its request, made
from what that agent sees of the transcript), hooks, runtime and path, and `AgentRun` takes
the output spec of the run made for it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import Any

from agentkit.agent.core import HandoffTrail, RunCore
from agentkit.agent.events import HandedOff
from agentkit.agent.handoffs import Fresh, Target
from agentkit.agent.results import HandoffRecord, RunState
from agentkit.errors import RunStateError
from agentkit.model_api import Message, ModelRequest, Usage

__all__ = ["hand_back", "replay", "take_up"]


async def take_up(run: RunCore) -> Fresh | None:
    """Before a model call: hand the run to the target of the transfer its last step made,
    if any; the run made for the target (its output spec), or None."""
    trail = run.trail
    assert trail is not None
    record = trail.records[-1] if trail.records else None
    if record is None or record.start is not None:
        return None
    record.start = len(run.messages)
    path = run.path
    fresh = _enter(run, trail, record)
    await _told(run, HandedOff(run.steps, record, False, path))
    return fresh


async def hand_back(run: RunCore) -> Fresh | None:
    """When the agent in force has answered (the answer last in the transcript): give control
    back to the agent of the innermost open handoff that returns, if any."""
    trail = run.trail
    assert trail is not None
    if not trail.stack:
        return None
    record = trail.stack[-1][0]
    record.end = len(run.messages)
    path = run.path
    fresh = _back(run, trail)
    await _told(run, HandedOff(run.steps, record, True, path))
    return fresh


async def _told(run: RunCore, event: HandedOff) -> None:
    run.note_handoff(event.source, event.target, event.record.call_id)
    if run.emit:
        run.emit(event)
    for hook in run.hooks.on_handoff:
        await hook(run.context, event.record)


def _view(trail: HandoffTrail, messages: list[Message]) -> list[Message]:
    """`messages` as the agent in force sees them."""
    if trail.view is None:
        return list(messages)
    head, start = trail.view
    return [*head, *messages[start:]]


def _enter(run: RunCore, trail: HandoffTrail, record: HandoffRecord) -> Fresh:
    assert record.start is not None
    seen = _view(trail, run.messages[: record.start])
    made = next((h for h in trail.agents[record.source].handoffs if h.name == record.target), None)
    if made is None:  # a state of agents since changed
        raise RunStateError(
            [f"handoff {record.source!r} to {record.target!r}: not one of {record.source!r}'s"]
        )
    conversation = [m for m in seen if m.role != "system"]
    if made.input_filter is not None:
        conversation = list(made.input_filter(conversation))
    if record.returns:
        trail.stack.append((record, seen))
    agent = trail.agents[record.target]
    fresh: Fresh = agent.start([], deps=run.deps)
    _install(run, trail, agent, fresh, [*fresh.messages, *conversation], record.start)
    trail.returned = False
    return fresh


def _back(run: RunCore, trail: HandoffTrail) -> Fresh:
    record, seen = trail.stack.pop()
    assert record.end is not None
    answer = run.messages[record.end - 1].content
    head = [
        m.model_copy(update={"content": answer})
        if m.role == "tool" and m.tool_call_id == record.call_id
        else m
        for m in seen
    ]
    agent = trail.agents[record.source]
    fresh: Fresh = agent.start([], deps=run.deps)
    _install(run, trail, agent, fresh, head, record.end)
    trail.returned = True
    return fresh


def _install(
    run: RunCore,
    trail: HandoffTrail,
    agent: Target,
    fresh: Fresh,
    head: list[Message],
    start: int,
) -> None:
    """Make `agent` the agent in force from message `start` on, seeing `head` before it."""
    spent = trail.own_usage(run.usage)
    trail.spent[run.setup.model] = trail.spent.get(run.setup.model, Usage()) + spent
    trail.steps = run.steps
    trail.view = (head, start)
    setup = replace(fresh.setup, request=partial(_seen, fresh.setup.request, head, start))
    run.setup = setup
    run.settings = setup.settings
    own = trail.hooks.hooks if trail.hooks is not None else ()
    # The run's own hooks (a session's journal, tracing, its input checks) stay.
    kept = [h for h in run.hooks.hooks if not any(h is o for o in own)]
    trail.hooks = agent.hooks
    run.hooks = agent.hooks.plus(kept)
    runtime = setup.runtime
    for wrap in run.hooks.wrap_model:
        runtime = wrap(runtime)
    run.runtime = runtime
    prefix, _, _ = run.path.rpartition("/")
    run.path = f"{prefix}/{agent.name}" if prefix else str(agent.name)


def _seen(
    request: Callable[[list[Message], list[Any], str | None], ModelRequest],
    head: list[Message],
    start: int,
    messages: list[Message],
    tools: list[Any],
    tool_choice: str | None,
) -> ModelRequest:
    return request([*head, *messages[start:]], tools, tool_choice)


def replay(run: RunCore, state: RunState) -> Fresh | None:
    """Take up a restored run's handoffs: the agent in force, what it sees, the agents to
    return to; the run made for the agent in force, or None if it is the one that started.

    Raises:
        RunStateError: an agent of the state's handoffs that this agent cannot reach.
    """
    trail = run.trail
    assert trail is not None
    records = [record.model_copy() for record in state.handoffs]
    names = {r.source for r in records} | {r.target for r in records}
    missing = sorted(names - trail.agents.keys())
    if missing:
        raise RunStateError(
            [f"agent {n!r}: in the run's handoffs, not reachable from this agent" for n in missing]
        )
    trail.records = records
    moments = [(r.start, False, r) for r in records if r.start is not None]
    moments += [(r.end, True, r) for r in records if r.end is not None]
    fresh = None
    moments.sort(key=lambda moment: moment[0])
    for _, back, record in moments:
        fresh = _back(run, trail) if back else _enter(run, trail, record)
    trail.spent = dict(state.handoff_usage)
    at = moments[-1][0] if moments else 0
    trail.steps = sum(1 for m in run.messages[:at] if m.role == "assistant")
    if state.agent is not None and state.agent != run.setup.name:
        raise RunStateError(
            [f"agent: the state says {state.agent!r} is in force, its handoffs {run.setup.name!r}"]
        )
    return fresh
