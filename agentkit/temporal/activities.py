"""The activities of a durable run: describe what the worker offers, one model call, one tool
call. They do the I/O the workflow may not; each runs on whichever worker of the task queue
takes it, so every worker of a queue registers the same runtimes and tools (or agents) under
the same names.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Iterable, Mapping
from functools import partial
from typing import Any, TypeVar

import anyio
from temporalio import activity
from temporalio.exceptions import ApplicationError

from agentkit.agent import Agent
from agentkit.errors import (
    AgentKitError,
    ApprovalRequired,
    AuthError,
    BadRequest,
    ModelBehaviorError,
    ModelConnectionError,
    ModelTimeout,
    NotFound,
    RateLimited,
    ServerError,
    StreamInterrupted,
    ToolArgumentsError,
    ToolRetry,
    TransportError,
)
from agentkit.model_api import Message, Usage
from agentkit.runtimes.base import Runtime
from agentkit.temporal.agents import agent_spec, reachable_from, runtime_spec, tool_spec
from agentkit.temporal.contract import (
    ApprovalCheck,
    DescribeInput,
    Description,
    ModelCall,
    ModelOutcome,
    RuntimeSpec,
    ToolInput,
)
from agentkit.tools import Tool
from agentkit.tools.calls import cut_output, output_text
from agentkit.tools.context import Decision, RunContext

__all__ = ["DESCRIBE", "MODEL", "NEEDS_APPROVAL", "TOOL", "Activities"]

DESCRIBE = "agentkit.describe"
MODEL = "agentkit.model"
TOOL = "agentkit.tool"
NEEDS_APPROVAL = "agentkit.needs_approval"
"""The activities' names, recorded in every history: renaming one breaks replay."""

# Worth another attempt: the model may well answer next time.
_TRANSIENT = (
    ModelConnectionError,
    ModelTimeout,
    RateLimited,
    ServerError,
    StreamInterrupted,
    TransportError,
    ModelBehaviorError,
)

_REFUSED = (BadRequest, AuthError, NotFound)

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class _CallView:
    """A durable run as a tool call on a worker sees it: the workflow's id, the worker's
    dependencies, the call's step and the usage so far (the transcript stays in the
    workflow)."""

    run_id: str
    deps: Any
    steps: int
    usage: Usage
    messages: list[Message] = dataclasses.field(default_factory=list)


async def _beating(call: Callable[[], Awaitable[T]]) -> T:
    """`call()`, telling the server this worker is alive meanwhile (a third of the heartbeat
    timeout apart), so that a call on a worker that died is retried without waiting for its
    own timeout."""
    timeout = activity.info().heartbeat_timeout
    if not timeout:
        return await call()
    interval = timeout.total_seconds() / 3

    async def beat() -> None:
        while True:
            activity.heartbeat()
            await asyncio.sleep(interval)

    beating = asyncio.create_task(beat())  # activities run on asyncio
    try:
        return await call()
    finally:
        beating.cancel()


class Activities:
    """A worker's runtimes and tools, or agents, by name, and the activities that use them.

    Args:
        runtimes: runtimes by the name runs ask for; the first is the default.
        tools: the tools runs may call, by their names.
        deps: the dependencies a tool taking a `RunContext` gets (`ctx.deps`) on this worker.
        agents: instead of runtimes and tools, agents by name (`agentkit.temporal.agents.
            registry`); the first starts a run that names none.
    """

    def __init__(
        self,
        runtimes: Mapping[str, Runtime],
        tools: Iterable[Tool],
        deps: Any = None,
        agents: Mapping[str, Agent[Any]] | None = None,
    ) -> None:
        self.deps = deps
        self.agents = dict(agents or {})
        if not runtimes and not self.agents:
            raise AgentKitError("a worker needs at least one runtime")
        self.runtimes = dict(runtimes)
        self.tools: dict[str, Tool] = {}
        for tool in tools:
            if tool.name in self.tools:
                raise AgentKitError(f"tools: two tools are named {tool.name!r}")
            self.tools[tool.name] = tool
        # A tool a runtime cannot offer its model fails here, at the worker's start.
        for runtime in self.runtimes.values():
            dialect = runtime.capabilities.schema_dialect
            runtime.check_tools([tool.definition(dialect) for tool in self.tools.values()])

    def all(self) -> list[Callable[..., Awaitable[Any]]]:
        """The activity functions to register with a worker."""
        return [self.describe, self.model, self.tool, self.needs_approval]

    def _agent(self, name: str | None) -> Agent[Any]:
        if name is None and self.agents:
            name = next(iter(self.agents))
        agent = self.agents.get(name or "")
        if agent is None:
            known = ", ".join(self.agents) or "none"
            raise ApplicationError(
                f"agent {name!r} is not registered on this worker (it has: {known})",
                type="UnknownAgent",
                non_retryable=True,
            )
        return agent

    def _tool(self, agent: str | None, name: str) -> Tool | None:
        if agent is None:
            return self.tools.get(name)
        return self._agent(agent).toolset.get(name)

    def _runtime(self, name: str | None) -> tuple[str, Runtime]:
        if name is None:
            name = next(iter(self.runtimes))
        runtime = self.runtimes.get(name)
        if runtime is None:
            known = ", ".join(self.runtimes)
            raise ApplicationError(
                f"runtime {name!r} is not registered on this worker (it has: {known})",
                type="UnknownRuntime",
                non_retryable=True,
            )
        return name, runtime

    @activity.defn(name=DESCRIBE)
    async def describe(self, request: DescribeInput) -> Description:
        """The runtime's profile and the tools' definitions, for the workflow to build its
        Agent from; on a worker of agents, every agent the run may reach."""
        if self.agents:
            first = self._agent(request.agent)
            agents = [agent_spec(a) for a in reachable_from(first).values()]
            fields = agents[0].model_dump(include={*RuntimeSpec.model_fields, "tools"})
            return Description(**fields, agents=agents)
        if request.agent is not None:
            self._agent(request.agent)  # refused: this worker has none
        name, runtime = self._runtime(request.runtime)
        names = list(self.tools) if request.tools is None else request.tools
        missing = [n for n in names if n not in self.tools]
        if missing:
            raise ApplicationError(
                f"tools: {', '.join(map(repr, missing))} not registered on this worker "
                f"(it has: {', '.join(self.tools) or 'none'})",
                type="UnknownTool",
                non_retryable=True,
            )
        return Description(
            **runtime_spec(name, runtime),
            tools=[tool_spec(self.tools[n]) for n in names],
        )

    @activity.defn(name=MODEL)
    async def model(self, call: ModelCall) -> ModelOutcome:
        """One model call on the named runtime (or the named agent's)."""
        if call.agent is not None:
            runtime = self._agent(call.agent).runtime
        else:
            _, runtime = self._runtime(call.runtime)
        try:
            generation = await _beating(partial(runtime.generate, call.request))
        except AgentKitError as exc:
            # A refused request fails the same way again; a connection, a timeout, a server
            # error or a model's misstep may well not.
            again = isinstance(exc, _TRANSIENT) and not isinstance(exc, _REFUSED)
            raise ApplicationError(
                str(exc), type=type(exc).__name__, non_retryable=not again
            ) from None
        raw = {c.id: c.raw_arguments for c in generation.tool_calls if c.raw_arguments is not None}
        return ModelOutcome(generation=generation, raw_arguments=raw)

    @activity.defn(name=TOOL)
    async def tool(self, call: ToolInput) -> str:
        """One tool call; its output as text, cut to `max_output` characters (head and tail).

        A failure is raised as an `ApplicationError` whose message is what the model is told;
        `ToolRetry` and invalid arguments are final, other errors are retried by the policy
        (only idempotent tools get more than one attempt)."""
        tool = self._tool(call.agent, call.name)
        if tool is None or tool.function is None:
            raise ApplicationError(
                f"unknown tool {call.name!r} on this worker", type="UnknownTool", non_retryable=True
            )
        try:
            values = tool.check(call.arguments)
            if tool.context_param is not None:
                view = _CallView(
                    activity.info().workflow_id or "", self.deps, call.step, call.usage
                )
                context = RunContext(view, call.call_id, call.name)
                if call.decision is not None:
                    context.decision = Decision(**call.decision)
                values[tool.context_param] = context
            function = partial(tool.function, **values)
            if tool.is_async:
                value = await _beating(function)
            else:
                thread = partial(anyio.to_thread.run_sync, function, abandon_on_cancel=True)
                value = await _beating(thread)
            text = output_text(value)
        except ToolRetry as exc:
            raise ApplicationError(exc.message, type="ToolRetry", non_retryable=True) from None
        except ApprovalRequired as exc:
            # Not a failure: the workflow raises it again, and the run waits for a person.
            raise ApplicationError(
                exc.question, exc.data, type="ApprovalRequired", non_retryable=True
            ) from None
        except ToolArgumentsError as exc:
            fields = "; ".join(str(e) for e in exc.errors)
            raise ApplicationError(
                f"invalid arguments for {call.name}: {fields}",
                type="ToolArgumentsError",
                non_retryable=True,
            ) from None
        except Exception as exc:
            raise ApplicationError(
                f"{type(exc).__name__}: {exc}", type=type(exc).__name__
            ) from None
        return cut_output(text, call.max_output)

    @activity.defn(name=NEEDS_APPROVAL)
    async def needs_approval(self, check: ApprovalCheck) -> bool:
        """Whether a call of a tool whose approval is a predicate waits for a person: the
        predicate of its validated arguments. One that raises, or arguments that do not
        validate, say yes (when in doubt, ask)."""
        tool = self._tool(check.agent, check.name)
        if tool is None:
            raise ApplicationError(
                f"unknown tool {check.name!r} on this worker",
                type="UnknownTool",
                non_retryable=True,
            )
        try:
            return tool.needs_approval(tool.check(check.arguments))
        except Exception:
            return True
