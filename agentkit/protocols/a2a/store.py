"""A2A tasks kept in a SQLite file, through the session store (`agentkit.sessions`).

Each task has two sessions in the file:

- `a2a-task:<id>`, the task's record: every version of the A2A `Task` (status, history,
  artifacts) the server saved, newest last, and while the task waits for input the paused run
  (`RunState`) it continues from;
- `a2a-run:<id>`, the journal of the agent's runs for the task (the conversation), as any run
  with a session writes it.

So a task, paused or finished, outlives the server process: another one started on the same
file answers `tasks/get` and continues a paused task with the next message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from a2a.server.context import ServerCallContext
from a2a.server.tasks import TaskStore
from a2a.types import (
    ListTasksRequest,
    ListTasksResponse,
    Message,
    Part,
    Role,
    Task,
    TaskState,
)
from google.protobuf.json_format import MessageToDict, ParseDict

from agentkit.agent import RunState
from agentkit.errors import UserError
from agentkit.sessions import SQLiteSession
from agentkit.sessions.runs import discard_interrupted

__all__ = ["SessionTaskStore"]

Entries = list[dict[str, Any]]
Ids = list[str]
_TASK = "a2a-task:"
_RUN = "a2a-run:"
_UNDER_WAY = (TaskState.TASK_STATE_SUBMITTED, TaskState.TASK_STATE_WORKING)
STOPPED = "the server stopped while this task ran; send it again as a new task"
"""The status message of a task whose run was cut short by the end of its process."""


class SessionTaskStore(TaskStore):
    """The A2A SDK's task store interface, on sessions in one SQLite file.

    Args:
        path: the database file, created with its folders if missing; it may also hold other
            sessions (the names used here start with `a2a-`).
        synchronous: as for `SQLiteSession`: `FULL` makes every write durable against power
            loss too; `NORMAL`, about three times faster per task, still survives a killed
            process.
    """

    def __init__(
        self, path: str | Path, *, synchronous: Literal["FULL", "NORMAL"] = "FULL"
    ) -> None:
        if synchronous not in ("FULL", "NORMAL"):
            raise UserError(f"synchronous: must be FULL or NORMAL (got {synchronous!r})")
        self.path = Path(path)
        self.synchronous: Literal["FULL", "NORMAL"] = synchronous

    def record(self, task_id: str) -> SQLiteSession:
        """The session holding task `task_id`'s versions and its paused run."""
        return SQLiteSession(self.path, _TASK + task_id, synchronous=self.synchronous)

    def journal(self, task_id: str) -> SQLiteSession:
        """The session the agent's runs for task `task_id` are journaled into."""
        return SQLiteSession(self.path, _RUN + task_id, synchronous=self.synchronous)

    async def save(self, task: Task, context: ServerCallContext | None = None) -> None:
        """Store a new version of `task`."""
        data = MessageToDict(task)
        await self._append(task.id, {"kind": "task", "run": "", "task": data})

    async def get(self, task_id: str, context: ServerCallContext | None = None) -> Task | None:
        """The newest version of task `task_id`, or None if it was never saved."""
        found = None
        for entry in await self._load(task_id):
            if entry["kind"] == "task":
                found = entry["task"]
        return None if found is None else ParseDict(found, Task(), ignore_unknown_fields=True)

    async def list(
        self, params: ListTasksRequest, context: ServerCallContext | None = None
    ) -> ListTasksResponse:
        """The tasks of the file, newest version of each, filtered by context and state."""
        names = [n for n in SQLiteSession.sessions(self.path) if n.startswith(_TASK)]
        tasks = []
        for name in names:
            task = await self.get(name[len(_TASK) :])
            if task is None:
                continue
            if params.context_id and task.context_id != params.context_id:
                continue
            if params.status and task.status.state != params.status:
                continue
            tasks.append(task)
        size = params.page_size or len(tasks)
        return ListTasksResponse(tasks=tasks[:size], page_size=size, total_size=len(tasks))

    async def delete(self, task_id: str, context: ServerCallContext | None = None) -> None:
        """Forget task `task_id`: its record and its runs' journal."""
        for session in (self.record(task_id), self.journal(task_id)):
            try:
                await session.clear()
            finally:
                session.close()

    async def fail_interrupted(self) -> Ids:
        """Mark failed every task whose run was under way in a process that is gone (its
        journal says so), closing that run; the ids of the tasks marked.

        A task running in a live process sharing the file is left alone.
        """
        failed: Ids = []
        for name in SQLiteSession.sessions(self.path):
            if not name.startswith(_TASK):
                continue
            task = await self.get(name[len(_TASK) :])
            if task is None or task.status.state not in _UNDER_WAY:
                continue
            journal = self.journal(task.id)
            try:
                stuck = await discard_interrupted(journal)
            finally:
                journal.close()
            if stuck is None:
                continue
            task.status.state = TaskState.TASK_STATE_FAILED
            task.status.message.CopyFrom(
                Message(
                    message_id=f"stopped-{stuck.run_id}",
                    role=Role.ROLE_AGENT,
                    task_id=task.id,
                    context_id=task.context_id,
                    parts=[Part(text=STOPPED)],
                )
            )
            await self.save(task)
            failed.append(task.id)
        return failed

    async def pause(self, task_id: str, state: RunState) -> None:
        """Keep the paused run task `task_id` continues from when its input comes."""
        await self._append(task_id, {"kind": "paused", "run": state.id, "state": state.to_json()})

    async def paused(self, task_id: str) -> RunState | None:
        """The paused run of task `task_id`, if it waits for input (and was not taken)."""
        waiting: dict[str, Any] | None = None
        for entry in await self._load(task_id):
            if entry["kind"] == "paused":
                waiting = entry
            elif entry["kind"] == "taken" and waiting and entry["run"] == waiting["run"]:
                waiting = None
        return None if waiting is None else RunState.from_json(waiting["state"])

    async def take(self, task_id: str, state: RunState) -> None:
        """Mark the paused run `state` as continued, so that it is never continued twice."""
        await self._append(task_id, {"kind": "taken", "run": state.id})

    async def _append(self, task_id: str, entry: dict[str, Any]) -> None:
        session = self.record(task_id)
        try:
            await session.append([entry])
        finally:
            session.close()

    async def _load(self, task_id: str) -> Entries:
        session = self.record(task_id)
        try:
            return await session.load()
        finally:
            session.close()
