"""The durable run: agentkit's own loop (`Agent`), inside a Temporal workflow, with a runtime
whose every call is a model activity and tools whose every call is a tool activity.

The workflow does no I/O and reads no clock or randomness of its own: the loop's validation,
retries, repeat detection and output cut are pure; call ids come from the model activity; a
call's duration is read from the workflow's clock; telemetry is left to the activities; tools
run as async handlers (no threads); anyio's task groups and limiter run on the workflow's own
event loop. The modules are imported passed through the sandbox: agentkit keeps no state
between runs that a replay could see.

A run that pauses for approval waits in the workflow for the `decide` signal, then resumes with
`Agent.resume`; the `progress` query reports steps, tool calls, usage and the waiting calls.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, TimeoutError

with workflow.unsafe.imports_passed_through():
    # The backend the loop's limiter and task groups load on first use: loaded here, outside
    # the sandbox, which would refuse the threads it defines.
    import anyio._backends._asyncio  # noqa: F401

    from agentkit.agent import Agent, RunHooks
    from agentkit.agent.approval import release
    from agentkit.agent.results import PendingCall, RunResult, RunState
    from agentkit.errors import AgentKitError, RunError, ToolArgumentsError, ToolRetry
    from agentkit.model_api import Generation, Message, ModelRequest, StreamChunk
    from agentkit.runtimes.base import Capabilities, Profile, Runtime
    from agentkit.temporal.activities import DESCRIBE, MODEL, NEEDS_APPROVAL, TOOL
    from agentkit.temporal.contract import (
        ActivityOptions,
        ApprovalCheck,
        Decisions,
        DescribeInput,
        Description,
        ModelCall,
        ModelOutcome,
        Progress,
        RunInput,
        ToolInput,
        ToolSpec,
    )
    from agentkit.tools import Tool
    from agentkit.tools.context import RunContext
    from agentkit.tools.tool import Approval

__all__ = ["WORKFLOW", "AgentWorkflow"]

WORKFLOW = "agentkit.run"
"""The workflow's name, recorded in every history."""

_MARKER_ROOM = 64  # "[... N characters cut ...]" and its newlines

_NON_RETRYABLE_MODEL = ["UserError", "UnsupportedFeature", "BadRequest", "AuthError", "NotFound"]


def _retry(options: ActivityOptions, attempts: int) -> RetryPolicy:
    return RetryPolicy(
        initial_interval=timedelta(seconds=options.retry_interval),
        maximum_interval=timedelta(seconds=options.retry_interval * 30),
        maximum_attempts=attempts,
    )


def _heartbeat(options: ActivityOptions) -> timedelta | None:
    return (
        None if options.heartbeat_timeout is None else timedelta(seconds=options.heartbeat_timeout)
    )


class _ActivityRuntime(Runtime):
    """The worker's runtime, as the workflow sees it: its profile, and calls as activities."""

    def __init__(self, description: Description, options: ActivityOptions) -> None:
        self.name = description.runtime
        self.model = description.model
        capabilities = dict(description.capabilities)
        capabilities["sampling"] = frozenset(capabilities.get("sampling", ()))
        self.capabilities = Capabilities(**capabilities)
        self.profile = Profile(
            tool_choice=description.tool_choice,
            sampling=description.sampling,
        )
        self._options = options

    async def handle_generate(self, request: ModelRequest) -> Generation:
        options = self._options
        retry = _retry(options, options.model_attempts)
        retry.non_retryable_error_types = _NON_RETRYABLE_MODEL
        outcome = await workflow.execute_activity(
            MODEL,
            ModelCall(runtime=self.name, request=request),
            result_type=ModelOutcome,
            start_to_close_timeout=timedelta(seconds=options.model_timeout),
            heartbeat_timeout=_heartbeat(options),
            retry_policy=retry,
        )
        generation: Generation = outcome.generation
        if outcome.raw_arguments:
            calls = [
                c.model_copy(update={"raw_arguments": outcome.raw_arguments[c.id]})
                if c.id in outcome.raw_arguments
                else c
                for c in generation.tool_calls
            ]
            generation = generation.model_copy(update={"tool_calls": calls})
        return generation

    async def handle_stream(self, request: ModelRequest) -> AsyncIterator[StreamChunk]:
        generation = await self.handle_generate(request)
        yield StreamChunk(
            response=generation.response,
            tool_calls=generation.tool_calls,
            usage=generation.usage,
            finish_reason=generation.finish_reason,
        )


def _told(spec: ToolSpec, timeout: float, error: ActivityError) -> str:
    """What the model is told of a tool activity that failed: the activity's own message
    (the loop's wording), or the timeout."""
    cause = error.cause
    name = spec.definition.name
    if isinstance(cause, ApplicationError):
        return cause.message
    if isinstance(cause, TimeoutError):
        return f"{name} timed out after {timeout:g} s"
    return f"{name} failed: {cause or error}"


def _verdict_key(name: str, values: Any) -> str:
    return name + "\0" + json.dumps(values, sort_keys=True, default=repr)


_CONTEXT = "__run_context__"  # the context's key among a workflow tool's keyword arguments


def _activity_tool(spec: ToolSpec, run: RunInput, verdicts: dict[str, bool]) -> Tool:
    """A tool whose calls are tool activities: retried when the tool is idempotent, run at most
    once otherwise; a failure raises `ToolRetry` with what the model is told."""
    options = run.activities
    timeout = spec.timeout if spec.timeout is not None else options.tool_timeout
    retry = _retry(options, options.tool_attempts if spec.idempotent else 1)
    retry.non_retryable_error_types = ["ToolRetry", "ToolArgumentsError", "UnknownTool"]

    async def call(**arguments: Any) -> str:
        context: RunContext[Any] | None = arguments.pop(_CONTEXT, None)
        request = ToolInput(
            name=spec.definition.name, arguments=arguments, max_output=run.max_tool_output
        )
        if context is not None:
            request.call_id = context.tool_call_id
            request.step = context.step
            request.usage = context.usage
        try:
            output: str = await workflow.execute_activity(
                TOOL,
                request,
                result_type=str,
                start_to_close_timeout=timedelta(seconds=timeout),
                heartbeat_timeout=_heartbeat(options),
                retry_policy=retry,
            )
        except ActivityError as exc:
            raise ToolRetry(_told(spec, timeout, exc)) from None
        return output

    approval: Approval = spec.approval == "always"
    if spec.approval == "predicate":
        name = spec.definition.name

        def approval(values: dict[str, Any]) -> bool:
            # Asked of the workers before the step's calls are checked (`_DurableAgent`).
            return verdicts.get(_verdict_key(name, values), True)

    made = Tool.from_definition(
        spec.definition.to_wire("function"),
        call,
        sequential=spec.sequential,
        max_retries=spec.max_retries,
        idempotent=spec.idempotent,
        requires_approval=approval,
    )
    if spec.takes_context:
        made.context_param = _CONTEXT  # the worker's tool gets its own, with its deps
    return made


class _Durable(RunHooks[Any]):
    """The workflow's hooks into the loop: it keeps the run's context where the `progress`
    query reads it, and asks the workers' approval predicates before a step's calls are
    checked."""

    def __init__(self, tools: dict[str, Tool], predicates: set[str], options: ActivityOptions):
        self.tools = tools
        self.predicates = predicates
        self.options = options
        self.verdicts: dict[str, bool] = {}
        self.context: RunContext[Any] | None = None
        self.tool_calls = 0

    async def on_run_start(self, ctx: RunContext[Any]) -> None:
        self.context = ctx

    async def after_model(self, ctx: RunContext[Any], generation: Generation) -> None:
        self.tool_calls += len(generation.tool_calls)
        for call in generation.tool_calls:
            tool = self.tools.get(call.name)
            if call.name not in self.predicates or tool is None or call.raw_arguments:
                continue
            try:
                values = tool.check(call.arguments)
            except ToolArgumentsError:
                continue  # told to the model as invalid; never held
            key = _verdict_key(call.name, values)
            if key not in self.verdicts:
                self.verdicts[key] = await workflow.execute_activity(
                    NEEDS_APPROVAL,
                    ApprovalCheck(name=call.name, arguments=call.arguments),
                    result_type=bool,
                    start_to_close_timeout=timedelta(seconds=self.options.tool_timeout),
                    retry_policy=_retry(self.options, self.options.tool_attempts),
                )


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
        description = await workflow.execute_activity(
            DESCRIBE,
            DescribeInput(runtime=request.runtime, tools=request.tools),
            result_type=Description,
            start_to_close_timeout=timedelta(seconds=60),
            retry_policy=_retry(options, options.model_attempts),
        )
        predicates = {s.definition.name for s in description.tools if s.approval == "predicate"}
        tools: dict[str, Tool] = {}
        durable = self._durable = _Durable(tools, predicates, options)
        settings = request.settings()
        # The tool activity has cut the output already (the history never holds more): room
        # for its marker, so the loop does not cut it again.
        settings = settings.model_copy(
            update={"max_tool_output": request.max_tool_output + _MARKER_ROOM}
        )
        try:
            for spec in description.tools:
                made = _activity_tool(spec, request, durable.verdicts)
                tools[made.name] = made
            agent = Agent(
                _ActivityRuntime(description, options),
                tools=list(tools.values()),
                settings=settings,
                hooks=[durable],
                clock=workflow.time,
                telemetry=False,
            )
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
            # A model call that failed for good: the run fails with the model's error.
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
