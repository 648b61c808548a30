"""The hooks that run an agent's guardrails (`agentkit.agent.guardrails`).

Each kind of check is a hook of its own, so a run reaches only the points that have checks:
output guardrails on `on_answer`; tool guardrails on `before_tool` and `after_tool`; input
guardrails, made for each run, on `on_run_start` and `wrap_model`: the run's first model call
waits for them, and is cancelled if one trips.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, TypeVar

import anyio

from agentkit.agent.guardrails import (
    Guardrail,
    InputGuardrail,
    OutputGuardrail,
    ToolGuardrail,
)
from agentkit.agent.hooks import HookSet, RunHooks
from agentkit.agent.results import RunResult, ToolCallRecord
from agentkit.errors import GuardrailTripped, UserError
from agentkit.model_api import Generation, ModelRequest, StreamChunk, ToolCall
from agentkit.runtimes.base import Runtime
from agentkit.tools import Toolset
from agentkit.tools.context import RunContext
from agentkit.wire.workers_ai import GenerationRequest

__all__ = ["Guardrails"]

T = TypeVar("T")


class Guardrails:
    """An agent's guardrails, sorted by what they check, and the hooks that run them."""

    def __init__(self, guardrails: Iterable[Guardrail], toolset: Toolset) -> None:
        given = list(guardrails)
        for i, guardrail in enumerate(given):
            if not isinstance(guardrail, (InputGuardrail, OutputGuardrail, ToolGuardrail)):
                raise UserError(
                    f"guardrails[{i}]: must be an InputGuardrail, OutputGuardrail or "
                    f"ToolGuardrail, e.g. InputGuardrail(function) (got {guardrail!r})"
                )
            # A source's tools are known once it runs; a misspelt name would guard nothing.
            if isinstance(guardrail, ToolGuardrail) and guardrail.tools and not toolset.sources:
                unknown = sorted(guardrail.tools - set(toolset.names))
                if unknown:
                    raise UserError(
                        f"guardrails[{i}].tools: no tool named {', '.join(map(repr, unknown))} "
                        f"(tools: {', '.join(toolset.names) or 'none'})"
                    )
        self.input = [g for g in given if isinstance(g, InputGuardrail)]
        output = [g for g in given if isinstance(g, OutputGuardrail)]
        tools = [g for g in given if isinstance(g, ToolGuardrail)]
        # Only the points that have checks are hooked: a step without them costs nothing more.
        self.hooks: list[RunHooks[Any]] = []
        if output:
            self.hooks.append(_AnswerChecks(output))
        if any(g.before is not None for g in tools):
            self.hooks.append(_CallChecks([g for g in tools if g.before is not None]))
        if any(g.after is not None for g in tools):
            self.hooks.append(_ResultChecks([g for g in tools if g.after is not None]))

    def run_hooks(self, hooks: HookSet) -> HookSet:
        """A run's hooks: `hooks`, and the input checks of this one run."""
        return hooks.plus([_InputChecks(self.input)]) if self.input else hooks


class _AnswerChecks(RunHooks[Any]):
    def __init__(self, guardrails: list[OutputGuardrail]) -> None:
        self.guardrails = guardrails

    async def on_answer(self, ctx: RunContext[Any], result: RunResult[Any]) -> None:
        for guardrail in self.guardrails:
            checked = await guardrail.check(ctx, result)
            if checked.action == "trip":
                partial = result.model_copy(update={"stop_reason": "guardrail"})
                raise GuardrailTripped(guardrail.name, "output", checked.output, run=partial)


class _CallChecks(RunHooks[Any]):
    def __init__(self, guardrails: list[ToolGuardrail]) -> None:
        self.guardrails = guardrails

    async def before_tool(
        self, ctx: RunContext[Any], call: ToolCall, arguments: dict[str, Any]
    ) -> str | None:
        for guardrail in self.guardrails:
            if not guardrail.checks(call.name):
                continue
            checked = await guardrail.check_call(ctx, call, arguments)
            if checked.action == "trip":
                raise GuardrailTripped(guardrail.name, "tool", checked.output, tool=call.name)
            if checked.action == "reject":
                return checked.message or f"{call.name}: rejected by {guardrail.name}"
        return None


class _ResultChecks(RunHooks[Any]):
    def __init__(self, guardrails: list[ToolGuardrail]) -> None:
        self.guardrails = guardrails

    async def after_tool(
        self, ctx: RunContext[Any], record: ToolCallRecord, error: BaseException | None
    ) -> None:
        call = record.call
        for guardrail in self.guardrails:
            if record.output is None or not guardrail.checks(call.name):
                continue
            checked = await guardrail.check_result(ctx, call, record.output)
            if checked.action == "trip":
                raise GuardrailTripped(guardrail.name, "tool", checked.output, tool=call.name)
            if checked.action == "reject":
                # The record says what the model read: the run's transcript is made from it.
                record.output = checked.message or f"{call.name}: rejected by {guardrail.name}"


class _InputChecks(RunHooks[Any]):
    """The input guardrails of one run: they hook its model, for its first call."""

    def __init__(self, guardrails: list[InputGuardrail]) -> None:
        self.blocking = [g for g in guardrails if g.blocking]
        self.alongside = [g for g in guardrails if not g.blocking]
        self.ctx: RunContext[Any] | None = None
        self.pending = False

    async def on_run_start(self, ctx: RunContext[Any]) -> None:
        self.ctx = ctx
        self.pending = ctx.step == 0  # a resumed or continued run has checked its input

    def wrap_model(self, runtime: Runtime) -> Runtime:
        return _CheckedRuntime(runtime, self)

    async def first_call(self, call: Callable[[], Awaitable[T]] | None) -> T | None:
        """Check the input: the blocking guardrails, then the others alongside `call`."""
        ctx = self.ctx
        assert ctx is not None
        text = _input_text(ctx)
        if self.blocking:
            await self._together(ctx, text, self.blocking, None)
        return await self._together(ctx, text, self.alongside, call)

    async def _together(
        self,
        ctx: RunContext[Any],
        text: str,
        guardrails: list[InputGuardrail],
        call: Callable[[], Awaitable[T]] | None,
    ) -> T | None:
        """Run the guardrails and `call` concurrently: the first trip or error cancels the
        rest and is raised (as itself, not in a group)."""
        results: list[T] = []
        failed: list[Exception] = []

        async def check(guardrail: InputGuardrail) -> None:
            try:
                checked = await guardrail.check(ctx, text)
                if checked.action == "trip":
                    raise GuardrailTripped(guardrail.name, "input", checked.output)
            except Exception as exc:
                failed.append(exc)
                tg.cancel_scope.cancel()

        async def answer(call: Callable[[], Awaitable[T]]) -> None:
            try:
                results.append(await call())
            except Exception as exc:
                failed.append(exc)
                tg.cancel_scope.cancel()

        async with anyio.create_task_group() as tg:
            if call is not None:
                tg.start_soon(answer, call)
            for guardrail in guardrails:
                tg.start_soon(check, guardrail)
        if failed:
            raise failed[0]
        return results[0] if results else None


def _input_text(ctx: RunContext[Any]) -> str:
    """The text of the user messages that end the transcript: the run's input."""
    texts: list[str] = []
    for message in reversed(ctx.messages):
        if message.role != "user":
            break
        texts.append(message.content)
    return "\n\n".join(reversed(texts))


class _CheckedRuntime(Runtime):
    """The runtime of a run with input guardrails: its first call waits for them."""

    def __init__(self, inner: Runtime, checks: _InputChecks) -> None:
        self.inner = inner
        self.checks = checks
        self.name = inner.name
        self.capabilities = inner.capabilities
        self.profile = inner.profile

    def __getattr__(self, name: str) -> Any:
        if name == "inner":  # not set yet: no runtime to ask
            raise AttributeError(name)
        return getattr(self.inner, name)

    async def generate(self, request: ModelRequest | GenerationRequest) -> Generation:
        if not self.checks.pending:
            return await self.inner.generate(request)
        self.checks.pending = False
        generation = await self.checks.first_call(lambda: self.inner.generate(request))
        assert generation is not None
        return generation

    def stream(self, request: ModelRequest | GenerationRequest) -> AsyncIterator[StreamChunk]:
        if not self.checks.pending:
            return self.inner.stream(request)
        self.checks.pending = False
        return self._checked_stream(self.inner.stream(request))

    def handle_stream(self, request: ModelRequest) -> AsyncIterator[StreamChunk]:
        return self.inner.stream(request)

    async def _checked_stream(
        self, chunks: AsyncIterator[StreamChunk]
    ) -> AsyncIterator[StreamChunk]:
        checks = self.checks
        held: list[StreamChunk] = []

        async def take() -> None:
            async for chunk in chunks:
                held.append(chunk)

        try:
            if not checks.alongside:
                await checks.first_call(None)
                async for chunk in chunks:
                    yield chunk
                return
            # The answer is held until the input has passed: nothing of it is shown otherwise.
            await checks.first_call(take)
        finally:
            close = getattr(chunks, "aclose", None)
            if close is not None:
                await close()
        for chunk in held:
            yield chunk
