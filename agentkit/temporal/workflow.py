"""The durable run: agentkit's own loop (`Agent`), inside a Temporal workflow, with a runtime
whose every call is a model activity and tools whose every call is a tool activity.

The workflow does no I/O and reads no clock or randomness of its own: the loop's validation,
retries, repeat detection and output cut are pure; call ids come from the model activity; a
call's duration is read from the workflow's clock; telemetry is left to the activities; tools
run as async handlers (no threads); anyio's task groups and limiter run on the workflow's own
event loop. The modules are imported passed through the sandbox: agentkit keeps no state
between runs that a replay could see.

On workers of agents, the workflow runs the twin of the agent that starts the run, made with
its handoffs' twins (`agentkit.temporal.calls.build_agent`): a handoff is the loop's own,
a deterministic step of the workflow.

A run that pauses for approval waits in the workflow for the `decide` signal, then resumes with
`Agent.resume` (in the agent that was in force); the `progress` query reports steps, tool calls,
usage and the waiting calls.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    # The backend the loop's limiter and task groups load on first use: loaded here, outside
    # the sandbox, which would refuse the threads it defines.
    import anyio._backends._asyncio  # noqa: F401

    from agentkit.agent import Agent, RunHooks
    from agentkit.agent.approval import release
    from agentkit.agent.results import PendingCall, RunResult, RunState
    from agentkit.errors import AgentKitError, RunError
    from agentkit.model_api import Generation, Message
    from agentkit.temporal.activities import DESCRIBE
    from agentkit.temporal.calls import build_agent, retry
    from agentkit.temporal.contract import (
        Decisions,
        DescribeInput,
        Description,
        Progress,
        RunInput,
    )
    from agentkit.tools.context import RunContext

__all__ = ["WORKFLOW", "AgentWorkflow"]

WORKFLOW = "agentkit.run"
"""The workflow's name, recorded in every history."""


class _Durable(RunHooks[Any]):
    """The workflow's hook into the loop (of every agent the run reaches): it keeps the run's
    context and counts its tool calls, where the `progress` query reads them."""

    def __init__(self) -> None:
        self.context: RunContext[Any] | None = None
        self.tool_calls = 0

    async def on_run_start(self, ctx: RunContext[Any]) -> None:
        self.context = ctx

    async def after_model(self, ctx: RunContext[Any], generation: Generation) -> None:
        self.tool_calls += len(generation.tool_calls)


@workflow.defn(name=WORKFLOW)
class AgentWorkflow:
    """One agent run, durable: its result is the `RunResult`; a limit that stops the run
    fails the workflow with an `ApplicationError` of the error's type, whose details hold the
    partial `RunResult`."""

    def __init__(self) -> None:
        self._durable: _Durable | None = None
        self._done = False
        self._pending: list[PendingCall] = []
        self._approve: set[str] = set()
        self._deny: dict[str, str] = {}

    @workflow.run
    async def run(self, request: RunInput) -> RunResult:
        options = request.activities
        durable = self._durable = _Durable()
        try:
            description = await workflow.execute_activity(
                DESCRIBE,
                DescribeInput(runtime=request.runtime, tools=request.tools, agent=request.agent),
                result_type=Description,
                start_to_close_timeout=timedelta(seconds=60),
                retry_policy=retry(options, options.model_attempts),
            )
            agent = build_agent(description, request, durable)
            prompt: str | list[Message] = request.prompt
            result = await agent.run(prompt, history=request.history)
            while result.stop_reason == "approval":
                result = await self._await_decisions(agent, result)
            return result
        except RunError as exc:
            raise ApplicationError(
                str(exc), exc.run, type=type(exc).__name__, non_retryable=True
            ) from None
        except AgentKitError as exc:
            raise ApplicationError(str(exc), type=type(exc).__name__, non_retryable=True) from None
        except ActivityError as exc:
            # A model call that failed for good (or the description: an unknown runtime, tool
            # or agent): the run fails with its error.
            cause = exc.cause
            if not isinstance(cause, ApplicationError):
                raise
            raise ApplicationError(cause.message, type=cause.type, non_retryable=True) from None
        finally:
            self._done = True

    async def _await_decisions(self, agent: Agent[Any], paused: RunResult) -> RunResult:
        """Wait for a decision on every pending call (the `decide` signal), then resume."""
        assert paused.state is not None
        # The state's id from the workflow's own randomness, so a replay makes the same one.
        state: RunState = paused.state.model_copy(update={"id": workflow.uuid4().hex})
        self._pending = list(paused.pending)
        ids = {call.id for call in self._pending}
        await workflow.wait_condition(lambda: ids <= self._approve | self._deny.keys())
        approve = [i for i in ids if i in self._approve]
        deny = {i: r for i, r in self._deny.items() if i in ids and i not in self._approve}
        self._pending = []
        try:
            return await agent.resume(state, approve=approve, deny=deny)
        finally:
            # History makes the state single-use; a replay in this process resumes it again.
            release(state.id)

    @workflow.signal(name="decide")
    def decide(self, decisions: Decisions) -> None:
        """A person's decisions on pending calls; ids of calls not pending are ignored (a call
        decided twice keeps its first decision)."""
        pending = {call.id for call in self._pending}
        for call_id in decisions.approve:
            if call_id in pending and call_id not in self._deny:
                self._approve.add(call_id)
        for call_id, reason in decisions.deny.items():
            if call_id in pending and call_id not in self._approve:
                self._deny.setdefault(call_id, reason)
        ignored = (set(decisions.approve) | decisions.deny.keys()) - pending
        if ignored:
            workflow.logger.warning("decide: not pending, ignored: %s", ", ".join(sorted(ignored)))

    @workflow.query(name="progress")
    def progress(self) -> Progress:
        """Steps, tool calls and usage so far, and the calls waiting for approval."""
        durable = self._durable
        context = durable.context if durable is not None else None
        if durable is None or context is None:
            return Progress(done=self._done)
        return Progress(
            steps=context.step,
            tool_calls=durable.tool_calls,
            usage=context.usage,
            pending_approvals=list(self._pending),
            done=self._done,
        )
