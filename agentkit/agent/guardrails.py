"""Guardrails: checks beside a run that may stop it, given to the Agent as
`Agent(..., guardrails=[...])`.

- `InputGuardrail` checks the user's input, once per run, on its first model call: alongside
  the call (concurrently; a trip cancels it), or before it with `blocking=True`.
- `OutputGuardrail` checks the final answer (the validated value, for an output type).
- `ToolGuardrail` checks a call's validated arguments before it runs, and its result after.

A check is a plain function (sync or async) of the run's context and what it checks, returning
a `GuardrailResult`; or an Agent whose `output_type` is `Verdict`, which is run on the text of
what it checks (its usage counts in the run's). A trip ends the run with `GuardrailTripped`,
carrying the partial run, the guardrail's name and its output; a tool guardrail may instead
reject a call, with a message the model is told. Guardrails are run by hooks
(`agentkit.agent.guardrail_hooks`): an agent without any runs as it would otherwise.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pydantic import BaseModel

from agentkit.agent.results import RunResult
from agentkit.errors import UserError
from agentkit.model_api import ToolCall
from agentkit.tools.context import RunContext

__all__ = [
    "CallCheck",
    "Guardrail",
    "GuardrailResult",
    "InputCheck",
    "InputGuardrail",
    "Judge",
    "OutputCheck",
    "OutputGuardrail",
    "ResultCheck",
    "ToolGuardrail",
    "Verdict",
]

Checked = Any  # what a check returns: a GuardrailResult, or an awaitable of one


@dataclass(frozen=True)
class GuardrailResult:
    """What a guardrail's check decided: `allow()`, `trip(output)`, or for a tool guardrail
    `reject(message)`."""

    action: Literal["allow", "reject", "trip"] = "allow"
    output: Any = None
    """What the guardrail found, for the code that handles a trip (`GuardrailTripped.output`)."""
    message: str | None = None
    """For `reject`: what the model is told instead of the call's result."""

    @classmethod
    def allow(cls, output: Any = None) -> GuardrailResult:
        """What was checked may go on."""
        return cls("allow", output)

    @classmethod
    def trip(cls, output: Any = None) -> GuardrailResult:
        """Stop the run: it raises `GuardrailTripped` with `output`."""
        return cls("trip", output)

    @classmethod
    def reject(cls, message: str, output: Any = None) -> GuardrailResult:
        """A tool guardrail's refusal: before a call, the call does not run and the model is
        told `message` as its error; after, the model reads `message` instead of the result.
        The run goes on, and a rejected call is no failure of its tool."""
        return cls("reject", output, message)


class Verdict(BaseModel):
    """The answer of an agent used as a guardrail (its `output_type`)."""

    allowed: bool
    """Whether what was checked may go on."""
    reason: str
    """Why, in a sentence."""


_Result = GuardrailResult | Awaitable[GuardrailResult]
InputCheck = Callable[[RunContext[Any], str], _Result]
"""`check(ctx, text)`: the user's input."""
OutputCheck = Callable[[RunContext[Any], Any], _Result]
"""`check(ctx, output)`: the run's output (the validated value, for an output type)."""
CallCheck = Callable[[RunContext[Any], ToolCall, dict[str, Any]], _Result]
"""`before(ctx, call, arguments)`: a call and its validated arguments."""
ResultCheck = Callable[[RunContext[Any], ToolCall, str], _Result]
"""`after(ctx, call, output)`: a call and the text of its result."""


class Judge(Protocol):
    """An agent used as a guardrail: an `Agent` whose `output_type` is `Verdict`."""

    output_type: Any

    async def run(self, prompt: str, *, deps: Any = None) -> Any: ...


def _judge(check: Any, where: str) -> Judge | None:
    """`check` as an agent used as a guardrail, or None for a function."""
    if callable(check):
        return None
    output_type = getattr(check, "output_type", None)
    if not inspect.iscoroutinefunction(getattr(check, "run", None)):
        raise UserError(
            f"{where}: the check must be a function (sync or async) or an Agent "
            f"with output_type=Verdict (got {check!r})"
        )
    if not (isinstance(output_type, type) and issubclass(output_type, Verdict)):
        raise UserError(
            f"{where}: an agent used as a guardrail needs output_type=Verdict "
            f"(got output_type={output_type!r})"
        )
    judge: Judge = check
    return judge


async def _checked(where: str, check: Callable[..., Checked], *args: Any) -> GuardrailResult:
    result = check(*args)
    if inspect.isawaitable(result):
        result = await result
    if not isinstance(result, GuardrailResult):
        raise UserError(
            f"{where}: a check must return a GuardrailResult (GuardrailResult.allow(), "
            f".trip(...) or .reject(...)); it returned {result!r}"
        )
    return result


async def _judged(judge: Judge, ctx: RunContext[Any], prompt: str) -> Verdict:
    result = await judge.run(prompt, deps=ctx.deps)
    verdict: Verdict = result.output
    return verdict


def _name(check: Any, name: str | None) -> str:
    return name or getattr(check, "__name__", None) or getattr(check, "name", None) or "guardrail"


class InputGuardrail:
    """Checks the user's input: the text of the run's last user messages (`ctx.messages`
    holds the whole transcript), once per run, on its first model call.

    Args:
        check: `check(ctx, text) -> GuardrailResult` (sync or async), or an Agent with
            `output_type=Verdict`, run on the text (a verdict not allowed trips).
        blocking: run before the model call, which is not made if it trips; otherwise the
            check runs alongside the call, and a trip cancels the call.
        name: the guardrail's name (default: the function's, or the agent's).

    A run resumed after a pause, or continued after a crash, has had its input checked; a
    session's next run is a new run, with new input, and is checked.
    """

    def __init__(
        self, check: InputCheck | Judge, *, blocking: bool = False, name: str | None = None
    ) -> None:
        if not isinstance(blocking, bool):
            raise UserError(f"InputGuardrail.blocking: must be True or False (got {blocking!r})")
        self.judge = _judge(check, "InputGuardrail")
        self.function: Any = check  # a function, unless `judge` is set
        self.blocking = blocking
        self.name = _name(check, name)

    async def check(self, ctx: RunContext[Any], text: str) -> GuardrailResult:
        if self.judge is not None:
            verdict = await _judged(self.judge, ctx, text)
            return GuardrailResult("allow" if verdict.allowed else "trip", verdict)
        result = await _checked(f"input guardrail {self.name!r}", self.function, ctx, text)
        if result.action == "reject":
            raise UserError(f"input guardrail {self.name!r}: only a tool guardrail may reject")
        return result


class OutputGuardrail:
    """Checks the final answer before the run returns it.

    Args:
        check: `check(ctx, output) -> GuardrailResult` (sync or async), where `output` is the
            run's output (the validated value, for an agent with an `output_type`); or an
            Agent with `output_type=Verdict`, run on the answer's text.
        name: the guardrail's name (default: the function's, or the agent's).

    A trip raises `GuardrailTripped`, whose partial run holds the answer. To have the model
    fix an answer instead, validate it in the output type (see docs/structured-output.md).
    """

    def __init__(self, check: OutputCheck | Judge, *, name: str | None = None) -> None:
        self.judge = _judge(check, "OutputGuardrail")
        self.function: Any = check  # a function, unless `judge` is set
        self.name = _name(check, name)

    async def check(self, ctx: RunContext[Any], result: RunResult[Any]) -> GuardrailResult:
        if self.judge is not None:
            verdict = await _judged(self.judge, ctx, result.text)
            return GuardrailResult("allow" if verdict.allowed else "trip", verdict)
        checked = await _checked(
            f"output guardrail {self.name!r}", self.function, ctx, result.output
        )
        if checked.action == "reject":
            raise UserError(f"output guardrail {self.name!r}: only a tool guardrail may reject")
        return checked


class ToolGuardrail:
    """Checks tool calls: before a call runs, its validated arguments; after, its result.

    Args:
        before: `before(ctx, call, arguments) -> GuardrailResult` (sync or async), or an Agent
            with `output_type=Verdict` (a verdict not allowed rejects the call with its reason).
        after: `after(ctx, call, output) -> GuardrailResult`, `output` the text the model
            would read; or such an Agent (a verdict not allowed replaces the result with its
            reason). Calls that failed are not checked.
        tools: the names of the tools it checks (default: every tool of the agent).
        name: the guardrail's name (default: the function's, or the agent's).

    `reject(message)` tells the model `message` (the run goes on; no failure of the tool is
    counted); `trip()` stops the run with `GuardrailTripped`.
    """

    def __init__(
        self,
        before: CallCheck | Judge | None = None,
        after: ResultCheck | Judge | None = None,
        *,
        tools: Collection[str] | None = None,
        name: str | None = None,
    ) -> None:
        if before is None and after is None:
            raise UserError("ToolGuardrail: give a check: before=..., after=..., or both")
        if tools is not None and (
            isinstance(tools, str) or not all(isinstance(t, str) for t in tools)
        ):
            raise UserError(
                f"ToolGuardrail.tools: must be a collection of tool names (got {tools!r})"
            )
        self.before: Any = before  # a function, unless `before_judge` is set
        self.after: Any = after
        self.before_judge = None if before is None else _judge(before, "ToolGuardrail.before")
        self.after_judge = None if after is None else _judge(after, "ToolGuardrail.after")
        self.tools = None if tools is None else frozenset(tools)
        self.name = _name(before if before is not None else after, name)

    def checks(self, tool: str) -> bool:
        return self.tools is None or tool in self.tools

    async def check_call(
        self, ctx: RunContext[Any], call: ToolCall, arguments: dict[str, Any]
    ) -> GuardrailResult:
        assert self.before is not None
        if self.before_judge is not None:
            return _rejects(await _judged(self.before_judge, ctx, _described(call, arguments)))
        return await _checked(f"tool guardrail {self.name!r}", self.before, ctx, call, arguments)

    async def check_result(
        self, ctx: RunContext[Any], call: ToolCall, output: str
    ) -> GuardrailResult:
        assert self.after is not None
        if self.after_judge is not None:
            prompt = f"{_described(call, call.arguments)}\nIt returned: {output}"
            return _rejects(await _judged(self.after_judge, ctx, prompt))
        return await _checked(f"tool guardrail {self.name!r}", self.after, ctx, call, output)


def _described(call: ToolCall, arguments: dict[str, Any]) -> str:
    shown = json.dumps(arguments, ensure_ascii=False, default=repr)
    return f"A call of the tool {call.name} with the arguments {shown}"


def _rejects(verdict: Verdict) -> GuardrailResult:
    if verdict.allowed:
        return GuardrailResult.allow(verdict)
    return GuardrailResult.reject(verdict.reason, verdict)


Guardrail = InputGuardrail | OutputGuardrail | ToolGuardrail
"""A guardrail, as `Agent(guardrails=[...])` takes them."""
