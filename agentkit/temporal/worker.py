"""A worker that runs durable agent runs, and the client side: start a run, wait for it.

```python
client = await connect("127.0.0.1:7233")
async with Worker(client, task_queue="agents", runtimes={"local": runtime}, tools=[add]):
    result = await run(client, "What is 2 + 3?", task_queue="agents")
```
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import timedelta
from types import TracebackType
from typing import Any

from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.worker import Replayer
from temporalio.worker import Worker as _TemporalWorker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from agentkit.agent import Agent
from agentkit.agent.results import RunResult
from agentkit.errors import AgentKitError, RunError
from agentkit.runtimes.base import Runtime
from agentkit.temporal.activities import Activities
from agentkit.temporal.agents import registry
from agentkit.temporal.contract import Decisions, Progress, RunInput
from agentkit.temporal.workflow import AgentWorkflow
from agentkit.tools import Tool

__all__ = [
    "DurableRunFailed",
    "Worker",
    "connect",
    "decide",
    "progress",
    "replayer",
    "result",
    "run",
    "start_run",
]

# Imported once, outside the sandbox, and shared by every run: agentkit keeps no state between
# runs, and its compiled dependencies cannot be loaded twice.
_PASSTHROUGH = ("agentkit", "anyio", "sniffio", "jsonschema_rs", "pydantic_core", "httpx")


def _runner() -> SandboxedWorkflowRunner:
    restrictions = SandboxRestrictions.default.with_passthrough_modules(*_PASSTHROUGH)
    return SandboxedWorkflowRunner(restrictions=restrictions)


def replayer() -> Replayer:
    """A `temporalio.worker.Replayer` of agentkit's workflow, as the workers run it: replay
    the histories of runs (`await handle.fetch_history()`) before a deploy, to learn whether
    the new code still replays them (`await replayer().replay_workflow(history)` raises if not).
    """
    return Replayer(
        workflows=[AgentWorkflow], data_converter=pydantic_data_converter, workflow_runner=_runner()
    )


class DurableRunFailed(RunError):
    """A durable run ended without an answer: a limit stopped it (`kind` names the error the
    loop raised, e.g. `MaxStepsExceeded`; `run` holds the partial `RunResult`), or a model
    call failed for good."""

    def __init__(self, message: str, kind: str, run: RunResult | None = None) -> None:
        self.kind = kind
        super().__init__(message, run)


async def connect(address: str, *, namespace: str = "default") -> Client:
    """A Temporal client that carries agentkit's pydantic models (`RunResult`, ...)."""
    try:
        return await Client.connect(
            address, namespace=namespace, data_converter=pydantic_data_converter
        )
    except RuntimeError as exc:
        raise AgentKitError(f"cannot reach Temporal at {address}: {exc}") from None


class Worker:
    """Runs durable agent runs from one task queue: the workflow, and the model and tool
    activities on this process's runtimes and tools.

    Every worker of a task queue must register the same runtime names and tool names, or the
    same agents (what a name means may change between deploys; see docs/durable.md for what
    breaks replay).

    Args:
        client: from `connect`.
        task_queue: the queue runs are started on.
        runtimes: runtimes by the name a run asks for (`RunInput.runtime`); the first is the
            default. A single `Runtime` is registered under its `name`.
        tools: the tools runs may call, by name.
        agents: instead of `runtimes` and `tools`, an Agent or several: runs are of these
            agents (`RunInput.agent` names one; the first by default), each with its own
            runtime, tools and settings, and may hand off through their handoffs. Every agent
            reachable through handoffs is registered, by name (see docs/durable.md).
        max_concurrent_activities: model and tool calls this worker runs at once.
        identity: how the worker is named in histories (default: the SDK's, pid@host).
        deps: the dependencies of the runs this worker takes part in: what a tool taking a
            `RunContext` gets as `ctx.deps` (never serialised; each worker has its own).
        **options: other options of `temporalio.worker.Worker`.
    """

    def __init__(
        self,
        client: Client,
        *,
        task_queue: str,
        runtimes: Mapping[str, Runtime] | Runtime | None = None,
        tools: Iterable[Tool] = (),
        agents: Agent[Any] | Sequence[Agent[Any]] = (),
        max_concurrent_activities: int = 20,
        identity: str | None = None,
        deps: Any = None,
        **options: Any,
    ) -> None:
        if isinstance(runtimes, Runtime):
            runtimes = {runtimes.name: runtimes}
        tools = list(tools)
        if agents and (runtimes or tools):
            raise AgentKitError("a worker takes agents, or runtimes and tools: not both")
        found = registry(agents) if agents else None
        self.activities = Activities(runtimes or {}, tools, deps, found)
        if identity is not None:
            options["identity"] = identity
        self._worker = _TemporalWorker(
            client,
            task_queue=task_queue,
            workflows=[AgentWorkflow],
            activities=self.activities.all(),
            workflow_runner=_runner(),
            max_concurrent_activities=max_concurrent_activities,
            **options,
        )

    async def run(self) -> None:
        """Poll the task queue until cancelled (or `shutdown`)."""
        await self._worker.run()

    async def shutdown(self) -> None:
        """Stop polling, let the calls in progress finish, and return."""
        await self._worker.shutdown()

    async def __aenter__(self) -> Worker:
        await self._worker.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._worker.__aexit__(exc_type, exc, traceback)


async def start_run(
    client: Client,
    prompt: str | RunInput,
    *,
    task_queue: str,
    id: str | None = None,
    timeout: float | None = None,
    **options: Any,
) -> WorkflowHandle[AgentWorkflow, RunResult]:
    """Start a durable run and return its handle (`await handle.result()` is the `RunResult`).

    Args:
        prompt: the user's message, or a whole `RunInput`.
        task_queue: where the workers poll.
        id: the workflow id (default: `agentkit-` and a random hex); a second start with the
            same id is refused while the first runs.
        timeout: seconds the whole run may take, waits for approval included (Temporal's
            execution timeout); past it the workflow is ended (`result` raises
            `DurableRunFailed`, kind `TimeoutError`).
        **options: `RunInput` fields (`runtime`, `tools`, `instructions`, `max_steps`,
            `sampling`, `activities`, ...).
    """
    request = prompt if isinstance(prompt, RunInput) else RunInput(prompt=prompt, **options)
    handle: WorkflowHandle[AgentWorkflow, RunResult] = await client.start_workflow(
        AgentWorkflow.run,
        request,
        id=id or f"agentkit-{uuid.uuid4().hex}",
        task_queue=task_queue,
        execution_timeout=None if timeout is None else timedelta(seconds=timeout),
    )
    return handle


async def run(
    client: Client,
    prompt: str | RunInput,
    *,
    task_queue: str,
    id: str | None = None,
    timeout: float | None = None,
    **options: Any,
) -> RunResult:
    """Start a durable run and wait for its `RunResult`.

    Raises:
        DurableRunFailed: the run ended without an answer (its `run` is the partial result
            when a limit stopped it).
    """
    handle = await start_run(
        client, prompt, task_queue=task_queue, id=id, timeout=timeout, **options
    )
    return await result(handle)


async def result(handle: WorkflowHandle[Any, Any]) -> RunResult:
    """The `RunResult` of a started run, once it ends.

    Raises:
        DurableRunFailed: as `run`.
    """
    try:
        found = await handle.result()
    except WorkflowFailureError as exc:
        cause = exc.cause
        partial: RunResult | None = None
        kind = type(cause).__name__
        if isinstance(cause, ApplicationError):
            kind = cause.type or kind
            if cause.details:
                partial = RunResult.model_validate(cause.details[0])
        raise DurableRunFailed(f"{kind}: {cause}", kind, partial) from exc
    # A handle got by id alone (`client.get_workflow_handle(id)`) knows no result type.
    return found if isinstance(found, RunResult) else RunResult.model_validate(found)


async def progress(handle: WorkflowHandle[Any, Any]) -> Progress:
    """The run's progress (steps, tool calls, usage, approvals pending), by query."""
    found: Progress = await handle.query(AgentWorkflow.progress)
    return found


async def decide(
    handle: WorkflowHandle[Any, Any],
    *,
    approve: Collection[str] = (),
    deny: Mapping[str, str] | None = None,
) -> None:
    """Send a person's decisions on calls waiting for approval (`progress(handle)` lists
    them): the ids to run, and those not to run with the reason the model is told. The run
    goes on once every waiting call is decided; ids not waiting are ignored."""
    if isinstance(approve, str):
        raise AgentKitError(f"approve: a list of call ids, not a string ({approve!r})")
    await handle.signal(
        AgentWorkflow.decide, Decisions(approve=list(approve), deny=dict(deny or {}))
    )
