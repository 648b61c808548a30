"""An agentkit `Agent` behind the A2A SDK's `AgentExecutor` interface.

A task's first message starts a run of the agent (journaled in the task's session); its
events become A2A updates as they happen:

```
ToolCallStarted / ToolCallFinished  ->  status working, a message naming the call
run paused for approval             ->  status input-required, the pending calls described
                                        (with the question of a tool that asked)
answer                              ->  an artifact (text, or data for an output_type), completed
error                               ->  status failed, the error's type and message
```

A message to a task that waits for input is the decision on its pending calls (see
`decisions`); the paused run is resumed with it. A message that decides nothing valid leaves
the task waiting and says why.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.tasks import TaskUpdater
from a2a.types import Artifact, Message, Part, Role, Task, TaskState, TaskStatus

from agentkit.agent import Agent, PendingCall, RunResult
from agentkit.agent.events import Event
from agentkit.errors import RunStateError
from agentkit.protocols.a2a.parts import data_part, part_data, parts_text
from agentkit.protocols.a2a.store import SessionTaskStore

__all__ = ["AgentTaskExecutor", "decisions", "message_text"]

APPROVAL_HINT = (
    'reply "approve" or "deny" (or "deny: <reason>") for every call, or a data part '
    '{"approve": [ids], "deny": {id: reason}}'
)
"""How a client answers a task that waits for approval, as the status message says it."""


def message_text(parts: Sequence[Part]) -> str:
    """The prompt a message's parts make for the model, one part a paragraph."""
    return parts_text(parts, "\n\n")


def decisions(parts: Sequence[Part], pending: Sequence[PendingCall]) -> dict[str, Any]:
    """The decisions a reply to a paused task makes, as `approve=` and `deny=` of `resume`.

    A data part `{"approve": [ids], "deny": {id: reason}}` decides call by call; a text
    `approve` approves every pending call, `deny` or `deny: <reason>` denies every one.

    Raises:
        RunStateError: the reply is neither form.
    """
    for part in parts:
        if part.WhichOneof("content") == "data":
            data = part_data(part)
            if isinstance(data, dict) and ("approve" in data or "deny" in data):
                approve = data.get("approve") or []
                deny = data.get("deny") or {}
                if not isinstance(approve, list) or not isinstance(deny, dict):
                    raise RunStateError(
                        [f"approve: a list of call ids, deny: an object of reasons (got {data})"]
                    )
                return {"approve": approve, "deny": deny}
    text = message_text([p for p in parts if p.WhichOneof("content") == "text"]).strip()
    word, _, reason = text.partition(":")
    ids = [call.id for call in pending]
    if word.strip().lower() == "approve" and not reason.strip():
        return {"approve": ids, "deny": {}}
    if word.strip().lower() == "deny":
        return {"approve": [], "deny": dict.fromkeys(ids, reason.strip())}
    shown = text[:100] or "no text or decision data"
    raise RunStateError([f"the reply decides nothing ({shown!r})"])


def describe_pending(pending: Sequence[PendingCall]) -> str:
    """The status text of a task paused for approval: each call and how to answer."""
    calls = "; ".join(
        f"{c.name}({json.dumps(c.arguments, ensure_ascii=False)}) [id {c.id}]"
        + (f", which asks: {c.question}" if c.question else "")
        for c in pending
    )
    return f"Approval needed for {calls}. To decide, {APPROVAL_HINT}."


class AgentTaskExecutor(AgentExecutor):
    """Runs `agent` for A2A tasks kept in `store`.

    Args:
        agent: the agent answering every task.
        store: where tasks, their paused runs and their runs' journals are kept.
    """

    def __init__(self, agent: Agent[Any], store: SessionTaskStore) -> None:
        self.agent = agent
        self.store = store

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        """Start a run for a new task, or resume the paused run of a task waiting for input."""
        task = context.current_task
        task_id = context.task_id or ""
        # A reply may leave the context out: the task's own is the one its events must carry.
        context_id = task.context_id if task is not None else context.context_id or ""
        updater = TaskUpdater(event_queue, task_id, context_id)
        message = context.message
        parts = list(message.parts) if message is not None else []
        if task is None:
            await event_queue.enqueue_event(
                Task(
                    id=task_id,
                    context_id=context_id,
                    status=TaskStatus(state=TaskState.TASK_STATE_SUBMITTED),
                    history=[message] if message is not None else [],
                )
            )
            events: AsyncIterator[Event] = self.agent.stream(
                message_text(parts), session=self.store.journal(task_id)
            )
        else:
            state = await self.store.paused(task_id)
            if state is None:
                await updater.failed(self._say(updater, "this task has no run waiting for input"))
                return
            try:
                decided = decisions(parts, state.pending)
                events = self.agent.stream_resume(
                    state, **decided, session=self.store.journal(task_id)
                )
                # Checked before anything runs: a bad decision leaves the run waiting.
                first = await anext(events)
            except RunStateError as exc:
                said = f"{exc}. To decide, {APPROVAL_HINT}."
                await updater.requires_input(self._say(updater, said))
                return
            await self.store.take(task_id, state)
            events = _chain(first, events)
        await updater.start_work()
        try:
            result = await self._follow(events, updater)
        except Exception as exc:  # the run's failure is the task's
            await updater.failed(self._say(updater, f"{type(exc).__name__}: {exc}"))
            return
        await self._finish(task_id, result, updater)

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        """Mark the task canceled (the SDK has already cancelled a run under way)."""
        updater = TaskUpdater(event_queue, context.task_id or "", context.context_id or "")
        await updater.cancel()

    async def _follow(self, events: AsyncIterator[Event], updater: TaskUpdater) -> RunResult[Any]:
        result: RunResult[Any] | None = None
        async for event in events:
            if event.kind == "tool_call_started":
                call = event.call
                text = f"calling {call.name}({call.arguments_json()})"
                await updater.start_work(self._say(updater, text, {"call_id": call.id}))
            elif event.kind == "tool_call_finished":
                record = event.record
                outcome = f"failed: {record.error}" if record.error else "done"
                text = f"{record.call.name} {outcome}"
                await updater.start_work(self._say(updater, text, {"call_id": record.call.id}))
            elif event.kind == "run_finished":
                result = event.result
        if result is None:  # a stream always ends with its RunFinished
            raise RuntimeError("the run ended without a result")
        return result

    async def _finish(self, task_id: str, result: RunResult[Any], updater: TaskUpdater) -> None:
        if result.stop_reason == "approval" and result.state is not None:
            await self.store.pause(task_id, result.state)
            pending = [
                c.model_dump(include={"id", "name", "arguments", "question"}, exclude_none=True)
                for c in result.pending
            ]
            status = updater.new_agent_message(
                [Part(text=describe_pending(result.pending)), data_part({"pending": pending})]
            )
            await updater.requires_input(status)
            return
        if self.agent.output_type is not None:
            part = data_part(result.output)
        else:
            part = Part(text=str(result.output))
        artifact = Artifact(artifact_id=uuid.uuid4().hex, name="answer", parts=[part])
        await updater.add_artifact(
            list(artifact.parts), artifact_id=artifact.artifact_id, name=artifact.name
        )
        await updater.complete()

    @staticmethod
    def _say(updater: TaskUpdater, text: str, data: dict[str, Any] | None = None) -> Message:
        parts = [Part(text=text)] + ([data_part(data)] if data else [])
        message = updater.new_agent_message(parts)
        message.role = Role.ROLE_AGENT
        return message


async def _chain(first: Event, rest: AsyncIterator[Event]) -> AsyncIterator[Event]:
    yield first
    async for event in rest:
        yield event
