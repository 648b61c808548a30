"""The workflow's side of the workers' runtimes, tools and agents: a runtime whose every call
is a model activity, tools whose every call is a tool activity, and the Agent the workflow runs,
made from the DESCRIBE activity's `Description` (on workers of agents, one twin per agent, with
the same handoffs).

Imported by the workflow, passed through its sandbox: nothing here does I/O or keeps state
between runs.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, TimeoutError

from agentkit.agent import Agent, RunHooks
from agentkit.agent.handoffs import Handoff
from agentkit.agent.settings import AgentSettings
from agentkit.errors import ApprovalRequired, ToolArgumentsError, ToolRetry, UserError
from agentkit.model_api import Generation, ModelRequest, StreamChunk
from agentkit.runtimes.base import Capabilities, Profile, Runtime
from agentkit.temporal.activities import MODEL, NEEDS_APPROVAL, TOOL
from agentkit.temporal.agents import input_filter
from agentkit.temporal.contract import (
    ActivityOptions,
    AgentSpec,
    ApprovalCheck,
    Description,
    ModelCall,
    ModelOutcome,
    RunInput,
    RuntimeSpec,
    ToolInput,
    ToolSpec,
)
from agentkit.tools import Tool
from agentkit.tools.context import RunContext
from agentkit.tools.tool import Approval

__all__ = ["ActivityRuntime", "Approvals", "activity_tool", "build_agent", "retry"]

_MARKER_ROOM = 64  # "[... N characters cut ...]" and its newlines

_NON_RETRYABLE_MODEL = ["UserError", "UnsupportedFeature", "BadRequest", "AuthError", "NotFound"]

_CONTEXT = "__run_context__"  # the context's key among a workflow tool's keyword arguments


def retry(options: ActivityOptions, attempts: int) -> RetryPolicy:
    """The retry policy of an activity given `attempts` (the first included)."""
    return RetryPolicy(
        initial_interval=timedelta(seconds=options.retry_interval),
        maximum_interval=timedelta(seconds=options.retry_interval * 30),
        maximum_attempts=attempts,
    )


def _heartbeat(options: ActivityOptions) -> timedelta | None:
    return (
        None if options.heartbeat_timeout is None else timedelta(seconds=options.heartbeat_timeout)
    )


class ActivityRuntime(Runtime):
    """The worker's runtime, as the workflow sees it: its profile, and calls as activities
    (on workers of agents, naming the agent whose runtime it is)."""

    def __init__(
        self, description: RuntimeSpec, options: ActivityOptions, agent: str | None = None
    ) -> None:
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
        self._agent = agent

    async def handle_generate(self, request: ModelRequest) -> Generation:
        options = self._options
        policy = retry(options, options.model_attempts)
        policy.non_retryable_error_types = _NON_RETRYABLE_MODEL
        outcome = await workflow.execute_activity(
            MODEL,
            ModelCall(runtime=self.name, request=request, agent=self._agent),
            result_type=ModelOutcome,
            start_to_close_timeout=timedelta(seconds=options.model_timeout),
            heartbeat_timeout=_heartbeat(options),
            retry_policy=policy,
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


def _verdict_key(agent: str | None, name: str, values: Any) -> str:
    return f"{agent or ''}\0{name}\0" + json.dumps(values, sort_keys=True, default=repr)


def activity_tool(
    spec: ToolSpec,
    options: ActivityOptions,
    max_output: int,
    verdicts: dict[str, bool],
    agent: str | None = None,
) -> Tool:
    """A tool whose calls are tool activities: retried when the tool is idempotent, run at most
    once otherwise; a failure raises `ToolRetry` with what the model is told."""
    timeout = spec.timeout if spec.timeout is not None else options.tool_timeout
    policy = retry(options, options.tool_attempts if spec.idempotent else 1)
    policy.non_retryable_error_types = [
        "ToolRetry",
        "ToolArgumentsError",
        "UnknownTool",
        "ApprovalRequired",
    ]

    async def call(**arguments: Any) -> str:
        context: RunContext[Any] | None = arguments.pop(_CONTEXT, None)
        request = ToolInput(
            name=spec.definition.name, arguments=arguments, max_output=max_output, agent=agent
        )
        if context is not None:
            request.call_id = context.tool_call_id
            request.step = context.step
            request.usage = context.usage
            if context.decision is not None:
                request.decision = dataclasses.asdict(context.decision)
        try:
            output: str = await workflow.execute_activity(
                TOOL,
                request,
                result_type=str,
                start_to_close_timeout=timedelta(seconds=timeout),
                heartbeat_timeout=_heartbeat(options),
                retry_policy=policy,
            )
        except ActivityError as exc:
            cause = exc.cause
            if isinstance(cause, ApplicationError) and cause.type == "ApprovalRequired":
                data = cause.details[0] if cause.details else None
                raise ApprovalRequired(cause.message, data=data) from None
            raise ToolRetry(_told(spec, timeout, exc)) from None
        return output

    approval: Approval = spec.approval == "always"
    if spec.approval == "predicate":
        name = spec.definition.name

        def approval(values: dict[str, Any]) -> bool:
            # Asked of the workers before the step's calls are checked (`Approvals`).
            return verdicts.get(_verdict_key(agent, name, values), True)

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


class Approvals(RunHooks[Any]):
    """Asks the workers' approval predicates of an agent's tools (an activity each, once per
    tool and arguments) before a step's calls are checked."""

    def __init__(
        self,
        tools: dict[str, Tool],
        options: ActivityOptions,
        verdicts: dict[str, bool],
        agent: str | None = None,
    ) -> None:
        self.tools = tools
        self.options = options
        self.verdicts = verdicts
        self.agent = agent

    async def after_model(self, ctx: RunContext[Any], generation: Generation) -> None:
        for call in generation.tool_calls:
            tool = self.tools.get(call.name)
            if tool is None or not callable(tool.requires_approval) or call.raw_arguments:
                continue
            try:
                values = tool.check(call.arguments)
            except ToolArgumentsError:
                continue  # told to the model as invalid; never held
            key = _verdict_key(self.agent, call.name, values)
            if key not in self.verdicts:
                check = ApprovalCheck(name=call.name, arguments=call.arguments, agent=self.agent)
                self.verdicts[key] = await workflow.execute_activity(
                    NEEDS_APPROVAL,
                    check,
                    result_type=bool,
                    start_to_close_timeout=timedelta(seconds=self.options.tool_timeout),
                    retry_policy=retry(self.options, self.options.tool_attempts),
                )


def _with_room(settings: AgentSettings) -> AgentSettings:
    # The tool activity has cut the output already (the history never holds more): room for
    # its marker, so the loop does not cut it again.
    return settings.model_copy(update={"max_tool_output": settings.max_tool_output + _MARKER_ROOM})


def build_agent(description: Description, request: RunInput, progress: RunHooks[Any]) -> Agent[Any]:
    """The Agent the workflow runs: of the workers' runtime and tools with the run's settings,
    or, on workers of agents, the twin of the agent that starts the run, with its handoffs'.

    Raises:
        UserError: a run of the workers' agents that sets what they set (`RunInput.overrides`).
    """
    options = request.activities
    verdicts: dict[str, bool] = {}
    if not description.agents:
        settings = request.settings()
        tools = [
            activity_tool(spec, options, request.max_tool_output, verdicts)
            for spec in description.tools
        ]
        return Agent(
            ActivityRuntime(description, options),
            tools=tools,
            settings=_with_room(settings),
            hooks=[progress, Approvals({t.name: t for t in tools}, options, verdicts)],
            clock=workflow.time,
            telemetry=False,
        )
    overrides = request.overrides()
    if overrides:
        raise UserError(
            f"a run of the workers' agent {description.agents[0].name!r} takes its settings, "
            f"runtime and tools; leave unset: {', '.join(overrides)}"
        )
    specs = {spec.name: spec for spec in description.agents}
    made: dict[str, Agent[Any]] = {}

    def twin(spec: AgentSpec) -> Agent[Any]:
        # Targets first: an agent is made with the agents it hands off to.
        if spec.name not in made:
            handoffs = [
                Handoff(
                    twin(specs[h.target]),
                    description=h.description,
                    input_type=h.input_schema,
                    input_filter=input_filter(h.input_filter),
                    returns=h.returns,
                )
                for h in spec.handoffs
            ]
            tools = [
                activity_tool(s, options, spec.settings.max_tool_output, verdicts, spec.name)
                for s in spec.tools
            ]
            approvals = Approvals({t.name: t for t in tools}, options, verdicts, spec.name)
            made[spec.name] = Agent(
                ActivityRuntime(spec, options, spec.name),
                tools=tools,
                settings=_with_room(spec.settings),
                output_type=spec.output_schema,
                hooks=[progress, approvals],
                handoffs=handoffs,
                clock=workflow.time,
                telemetry=False,
            )
        return made[spec.name]

    return twin(description.agents[0])
