"""Run hooks: one way to observe and shape a run from outside.

Subclass `RunHooks`, override the methods you need, and pass instances to the Agent
(`Agent(..., hooks=[...])`). Each method is awaited at its point of every run, in the order the
hooks were given; a method not overridden costs nothing. A hook may

- change the request before a model call (`before_model` returns a new one);
- veto a tool call (`before_tool` returns the message the model is told instead of a result;
  the run goes on, and the veto does not count as a failure of the tool);
- stop the run from any method by raising `agentkit.StopRun(message)`: the run raises
  `RunStopped`, carrying the partial run (every call in its transcript answered);
- wrap the model (`wrap_model`, e.g. to trace each call) and the invocation of each tool
  (`wrap_tool`).

The journal of a session, OpenTelemetry tracing and guardrails are hooks of this kind; an
exception a hook raises (other than `StopRun`) ends the run with it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Generic

from agentkit.model_api import Generation, ModelRequest, ToolCall
from agentkit.runtimes.base import Runtime
from agentkit.tools import Tool
from agentkit.tools.context import DepsT, RunContext

if TYPE_CHECKING:
    from agentkit.agent.results import HandoffRecord, RunResult, ToolCallRecord

__all__ = ["HookSet", "RunHooks"]


class RunHooks(Generic[DepsT]):
    """Hooks into every run of an agent; override the methods you need."""

    async def on_run_start(self, ctx: RunContext[DepsT]) -> None:
        """The run starts (or a paused or interrupted one goes on), before its first step."""

    async def before_model(
        self, ctx: RunContext[DepsT], request: ModelRequest
    ) -> ModelRequest | None:
        """A model call is about to be made; return a request to send instead, or None."""
        return None

    async def after_model(self, ctx: RunContext[DepsT], generation: Generation) -> None:
        """The model answered, before anything is done with the answer (its tool calls are
        checked after this)."""

    async def before_tool(
        self, ctx: RunContext[DepsT], call: ToolCall, arguments: dict[str, Any]
    ) -> str | None:
        """A call with valid arguments (`arguments`, validated) is about to run; return a
        message to veto it (the model is told it as the call's error), or None."""
        return None

    async def on_tools_start(self, ctx: RunContext[DepsT], calls: Sequence[ToolCall]) -> None:
        """These calls start now, together (after vetoes and approval)."""

    async def after_tool(
        self, ctx: RunContext[DepsT], record: ToolCallRecord, error: BaseException | None
    ) -> None:
        """A call ended: `record` holds its output or the error told to the model, and
        `error` the exception the tool raised (None if it returned)."""

    async def on_step_end(
        self, ctx: RunContext[DepsT], step: int, records: Sequence[ToolCallRecord]
    ) -> None:
        """A step's tool calls have all been answered (`records`, in the model's order)."""

    async def on_handoff(self, ctx: RunContext[DepsT], record: HandoffRecord) -> None:
        """A handoff was made by a transfer call (`record.start` is None), taken up by its
        target (`record.start` set), or ended by the answer that returned (`record.end` set).
        """

    async def on_answer(self, ctx: RunContext[DepsT], result: RunResult[Any]) -> None:
        """The model answered and the run is about to end with `result` (its `output` the
        validated value, for an agent with an output type); raise `StopRun` to refuse it.
        Not reached by a run that pauses, stops or fails."""

    async def on_run_end(
        self,
        ctx: RunContext[DepsT],
        result: RunResult[Any] | None,
        error: BaseException | None,
    ) -> None:
        """The run ended: with its result (also when paused for approval), or with `error`
        (a `RunError` carries the partial run; cancellation too is an error here)."""

    def wrap_model(self, runtime: Runtime) -> Runtime:
        """The runtime this run's model calls go to (wrap `runtime` to watch them)."""
        return runtime

    def wrap_tool(
        self, record: ToolCallRecord, tool: Tool, function: Callable[[], Any]
    ) -> Callable[[], Any]:
        """How this call is invoked: `function()` runs it (returning an awaitable for an async
        tool; on a worker thread for a sync one). Return a callable of the same kind."""
        return function


_METHODS = (
    "on_run_start",
    "before_model",
    "after_model",
    "before_tool",
    "on_tools_start",
    "after_tool",
    "on_step_end",
    "on_handoff",
    "on_answer",
    "on_run_end",
    "wrap_model",
    "wrap_tool",
)


class HookSet:
    """The hooks of a run, by method: only the overridden ones, so an unused point costs a
    falsy check."""

    __slots__ = ("hooks", *_METHODS)

    def __init__(self, hooks: Iterable[object]) -> None:
        self.hooks = tuple(hooks)
        for name in _METHODS:
            default = getattr(RunHooks, name)
            # A hook need not subclass RunHooks: what it defines is what it hooks.
            bound = tuple(
                getattr(h, name)
                for h in self.hooks
                if getattr(type(h), name, default) is not default
            )
            setattr(self, name, bound)

    def __bool__(self) -> bool:
        return bool(self.hooks)

    def plus(self, more: Iterable[object]) -> HookSet:
        """These hooks, then `more` (a hook need not subclass `RunHooks`)."""
        extra = tuple(more)
        return HookSet((*self.hooks, *extra)) if extra else self

    on_run_start: tuple[Callable[..., Any], ...]
    before_model: tuple[Callable[..., Any], ...]
    after_model: tuple[Callable[..., Any], ...]
    before_tool: tuple[Callable[..., Any], ...]
    on_tools_start: tuple[Callable[..., Any], ...]
    after_tool: tuple[Callable[..., Any], ...]
    on_step_end: tuple[Callable[..., Any], ...]
    on_handoff: tuple[Callable[..., Any], ...]
    on_answer: tuple[Callable[..., Any], ...]
    on_run_end: tuple[Callable[..., Any], ...]
    wrap_model: tuple[Callable[..., Any], ...]
    wrap_tool: tuple[Callable[..., Any], ...]
