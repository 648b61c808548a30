"""The activities of a durable run: describe what the worker offers, one model call, one tool
call. They do the I/O the workflow may not; each runs on whichever worker of the task queue
takes it, so every worker of a queue registers the same runtimes and tools under the same
names.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Iterable, Mapping
from functools import partial
from typing import Any, Literal, TypeVar

import anyio
from temporalio import activity
from temporalio.exceptions import ApplicationError

from agentkit.errors import (
    AgentKitError,
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
from agentkit.temporal.contract import (
    ApprovalCheck,
    DescribeInput,
    Description,
    ModelCall,
    ModelOutcome,
    ToolInput,
    ToolSpec,
)
from agentkit.tools import Tool
from agentkit.tools.calls import cut_output, output_text
from agentkit.tools.context import RunContext
from agentkit.usage import model_name

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


def _approval(tool: Tool) -> Literal["never", "always", "predicate"]:
    rule = tool.requires_approval
    if callable(rule):
        return "predicate"
    return "always" if rule else "never"


class Activities:
    """A worker's runtimes and tools, by name, and the activities that use them.

    Args:
        runtimes: runtimes by the name runs ask for; the first is the default.
        tools: the tools runs may call, by their names.
        deps: the dependencies a tool taking a `RunContext` gets (`ctx.deps`) on this worker.
    """

    def __init__(
        self, runtimes: Mapping[str, Runtime], tools: Iterable[Tool], deps: Any = None
    ) -> None:
        self.deps = deps
        if not runtimes:
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
        Agent from."""
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
        capabilities = dataclasses.asdict(runtime.capabilities)
        capabilities["sampling"] = sorted(capabilities["sampling"])
        return Description(
            runtime=name,
            model=model_name(runtime),
            capabilities=capabilities,
            tool_choice=runtime.profile.tool_choice,
            sampling=dict(runtime.profile.sampling),
            tools=[
                ToolSpec(
                    definition=tool.definition("full"),
                    sequential=tool.sequential,
                    idempotent=tool.idempotent,
                    timeout=tool.timeout,
                    max_retries=tool.max_retries,
                    approval=_approval(tool),
                    takes_context=tool.context_param is not None,
                )
                for tool in (self.tools[n] for n in names)
            ],
        )

    @activity.defn(name=MODEL)
    async def model(self, call: ModelCall) -> ModelOutcome:
        """One model call on the named runtime."""
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
        tool = self.tools.get(call.name)
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
                values[tool.context_param] = RunContext(view, call.call_id, call.name)
            function = partial(tool.function, **values)
            if tool.is_async:
                value = await _beating(function)
            else:
                thread = partial(anyio.to_thread.run_sync, function, abandon_on_cancel=True)
                value = await _beating(thread)
            text = output_text(value)
        except ToolRetry as exc:
            raise ApplicationError(exc.message, type="ToolRetry", non_retryable=True) from None
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
        tool = self.tools.get(check.name)
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
