"""The agent loop: send the conversation, run the tool calls that come back, repeat until the
model answers.

One step is one model call. When the generation asks for tools, the assistant message and its
calls join the transcript, each call's arguments are validated, the calls run concurrently
(bounded; sync tools in worker threads; a tool marked `sequential` runs alone), and exactly one
tool-role result per call id is appended, in the order the model emitted the calls. What goes
wrong inside a step (unknown tool, bad arguments, a tool that raises or times out) is told to the
model; budgets turn persistent trouble into typed errors that carry the partial run.

Sync tools run on worker threads, a step's calls batched onto as few threads as keep up with
them: fast tools cost one thread hop per step, blocking ones still run side by side (see
`agentkit.tools._threads`).

This module holds the Agent and the loop; running one step's tool calls (checking, running,
filing the results, counting failures) is `agentkit._tool_calls`, which the Agent inherits.
"""

from __future__ import annotations

import math
import re
from collections.abc import AsyncGenerator, Callable, Iterable, Mapping, Sequence
from contextlib import aclosing
from functools import partial
from types import TracebackType
from typing import Any, cast, overload

import anyio

from agentkit._tool_calls import _NO_SPAN, _really_cancelled, _Run, _Stop
from agentkit.approval import Approvals
from agentkit.errors import DeadlineExceeded, MaxStepsExceeded, TruncatedToolCall, UserError
from agentkit.events import Event, RunFinished, StepFinished, StepStarted, TextDelta
from agentkit.model_api import FunctionDefinition, Generation, Message, ModelRequest, StreamChunk
from agentkit.output import output_spec
from agentkit.results import OutputT, RunResult, StopReason, ToolCallRecord
from agentkit.runtimes import get_runtime
from agentkit.runtimes.base import Runtime
from agentkit.sessions import Session
from agentkit.sessions.runs import continue_interrupted, open_run
from agentkit.telemetry import active as telemetry_active
from agentkit.tools import Tool, Toolset, ToolSource
from agentkit.usage import PriceTable, add_usage, check_prices, current_usage, model_name
from agentkit.wire.workers_ai import GenerationRequest

__all__ = ["Agent", "RunResult", "StopReason", "ToolCallRecord"]


# How text that is a tool call begins: a tagged block, a call object or list, a Python-style
# call list; maybe inside a code fence.
_CALL_START = re.compile(
    r"\s*(?:```[\w-]*\s*)?(?:<tool_call>|<function=|<\|python_tag\|>"
    r'|\[?\s*\{\s*"(?:name|type|function)"|\[\s*[A-Za-z_][\w.]*\()'
)


class Agent(Approvals[OutputT]):
    """A model, some tools and the loop between them.

    Args:
        runtime: a `Runtime`, or a runtime's name (`"local"`, `"workers-ai"`, `"openai"`); a
            runtime made from a name belongs to the Agent, which closes it in `aclose`.
        tools: `Tool`s, plain functions (wrapped with `@tool`) and tool sources such as MCP
            servers (`agentkit.mcp`), started when the agent is entered (`async with agent:`)
            or, if it is not, for each run.
        instructions: the system message.
        max_steps: model calls allowed before the run stops with `MaxStepsExceeded`.
        final_answer_on_max_steps: instead of raising, make one last call without tools.
        deadline: seconds the whole run may take; past it `DeadlineExceeded` is raised.
        max_concurrency: tool calls running at once (sync tools take worker threads).
        tool_timeout: seconds a tool call may take, unless the tool sets its own `timeout`.
        max_tool_retries: failed calls a tool may have in a row (bad arguments, `ToolRetry`,
            an exception, a timeout), unless it sets its own `max_retries`; one more stops the
            run with `ToolRetriesExhausted`. Repeated identical calls are bounded by
            `repeat_limit` instead and do not count here.
        raise_tool_errors: re-raise an exception from a tool instead of telling the model.
        max_tool_output: characters of a tool's output sent to the model; the rest is cut
            from the middle (the run record keeps it whole).
        repeat_limit: identical consecutive calls that earn a nudge; one more stops the run.
        tool_choice: `auto`, `required`, `none` or a tool's name; None takes the runtime's
            profile (`auto`, or `required` for a model too small to decide by itself).
        reset_tool_choice: once the tools have answered, go back to `auto` for the rest of the
            run, so that a forced choice (`required`, a name) cannot loop forever.
        name: the agent's name, in traces (`invoke_agent {name}`).
        prices: model names to `ModelPrice`s (per million tokens), so that `RunResult.cost`
            can say what a run cost.
        output_type: the type of the final answer, instead of text: a pydantic model, a
            dataclass, a TypedDict, a scalar or `list[...]` type, or a JSON Schema dict (its
            value returned as parsed JSON). `RunResult.output` is then the validated value
            (see docs/structured-output.md); a schema the runtime cannot hold its model to
            fails here, naming the keyword and its path.
        max_output_retries: answers that do not fit `output_type` the model is told about
            and may fix; one more raises `OutputValidationError`.
        **sampling: request fields sent with every call (`temperature`, `max_tokens`, ...),
            over the runtime profile's own.

    A generation cut off by `max_tokens` in the middle of a tool call raises
    `TruncatedToolCall`; a final answer cut off by it sets `RunResult.truncated`.

    `toolset` may change between runs (`agent.toolset.add(fn)`); each run sends the tools it
    holds then.

    A call of a tool marked `requires_approval` pauses the run (`stop_reason == "approval"`);
    `resume`, `resume_sync` and `stream_resume` continue it (see `agentkit.approval`).
    """

    @overload
    def __init__(
        self: Agent[Any],
        runtime: Runtime | str,
        tools: Iterable[Tool | ToolSource | Callable[..., Any]] = (),
        *,
        output_type: Mapping[str, Any],
        **options: Any,
    ) -> None: ...

    @overload
    def __init__(
        self,
        runtime: Runtime | str,
        tools: Iterable[Tool | ToolSource | Callable[..., Any]] = (),
        *,
        output_type: type[OutputT] | None = None,
        max_output_retries: int = 1,
        instructions: str | None = None,
        max_steps: int = 10,
        final_answer_on_max_steps: bool = False,
        deadline: float | None = None,
        max_concurrency: int = 8,
        tool_timeout: float | None = None,
        max_tool_retries: int = 2,
        raise_tool_errors: bool = False,
        max_tool_output: int = 20_000,
        repeat_limit: int = 3,
        tool_choice: str | None = None,
        reset_tool_choice: bool = True,
        name: str | None = None,
        prices: PriceTable | None = None,
        **sampling: Any,
    ) -> None: ...

    def __init__(
        self,
        runtime: Runtime | str,
        tools: Iterable[Tool | ToolSource | Callable[..., Any]] = (),
        *,
        output_type: Any = None,
        max_output_retries: int = 1,
        instructions: str | None = None,
        max_steps: int = 10,
        final_answer_on_max_steps: bool = False,
        deadline: float | None = None,
        max_concurrency: int = 8,
        tool_timeout: float | None = None,
        max_tool_retries: int = 2,
        raise_tool_errors: bool = False,
        max_tool_output: int = 20_000,
        repeat_limit: int = 3,
        tool_choice: str | None = None,
        reset_tool_choice: bool = True,
        name: str | None = None,
        prices: PriceTable | None = None,
        **sampling: Any,
    ) -> None:
        if max_steps < 1:
            raise UserError(f"max_steps: must be >= 1 (got {max_steps})")
        if max_concurrency < 1:
            raise UserError(f"max_concurrency: must be >= 1 (got {max_concurrency})")
        self._owns_runtime = isinstance(runtime, str)
        self.runtime = get_runtime(runtime) if isinstance(runtime, str) else runtime
        self.toolset = tools if isinstance(tools, Toolset) else Toolset(tools)
        self.instructions = instructions
        self.max_steps = max_steps
        self.final_answer_on_max_steps = final_answer_on_max_steps
        self.deadline = deadline
        self.max_concurrency = max_concurrency
        self.tool_timeout = tool_timeout
        self.max_tool_retries = max_tool_retries
        self.raise_tool_errors = raise_tool_errors
        self.max_tool_output = max_tool_output
        self.repeat_limit = repeat_limit
        self.name = name
        self.prices = check_prices(prices)
        self._model = model_name(self.runtime)
        profile = self.runtime.profile
        if tool_choice is None:
            has_tools = len(self.toolset) or self.toolset.sources
            tool_choice = profile.tool_choice if has_tools else "auto"
        # A source's tools are known once it runs: a name among them is checked by the model.
        if (
            tool_choice not in ("auto", "required", "none")
            and tool_choice not in self.toolset
            and not self.toolset.sources
        ):
            raise UserError(
                f"tool_choice: must be auto, required, none or a tool's name (got {tool_choice!r})"
            )
        # Validated once here; every step reuses the fields without validating them again.
        # The settings are checked against the contract's bounds, the user's over the profile's.
        settings = {**profile.sampling, **sampling, "tool_choice": tool_choice}
        template = GenerationRequest.build({"messages": [], **settings}).to_model(self.runtime.name)
        self._fields = template.model_dump(exclude={"messages", "tools", "raw_prompt"})
        self.reset_tool_choice = reset_tool_choice
        self._dialect = self.runtime.capabilities.schema_dialect
        # Built now, so a broken tool, or one the runtime cannot offer, fails here.
        self.runtime.check_tools(self.toolset.definitions(self._dialect))
        self.output_type = output_type
        self._output = output_spec(output_type, self.runtime, max_retries=max_output_retries)
        if self._output is not None:
            if self._fields.get("response_format") is not None:
                raise UserError("pass output_type or response_format, not both")
            if self._output.enforced:
                self._fields["response_format"] = self._output.response_format
        self._limiter: anyio.CapacityLimiter | None = None
        self._entered = 0

    _telemetry: Callable[[], Any] = staticmethod(telemetry_active)
    """The instrumentation a run reports to; a durable workflow reports none (its model and
    tool calls are traced where they run)."""

    # -- public API -------------------------------------------------------------------------

    async def run(
        self,
        prompt: str | Sequence[Message] | None = None,
        *,
        history: Sequence[Message] = (),
        transcript: list[Message] | None = None,
        session: Session | None = None,
    ) -> RunResult[OutputT]:
        """Run until the model answers.

        Args:
            prompt: the user's message, or messages to append after `history`. None, with a
                session, continues the session's interrupted run (see docs/sessions.md).
            history: an earlier transcript to continue (e.g. `previous.messages`); not changed.
            transcript: instead of `history`, a list the run appends to in place as it goes.
                It stays a valid conversation (every tool call answered) even when the run is
                cancelled or stops with an error.
            session: a `Session` (`agentkit.sessions`): the run starts from its conversation
                and journals each step into it as it completes.

        Raises:
            RunError: a limit stopped the run, or the answer did not fit `output_type`
                (`OutputValidationError`); `.run` holds the partial `RunResult`.
            RunInterrupted: the session holds an interrupted run; continue it first.
        """
        run = await self._begin(prompt, history, transcript, session)
        return await self._execute(run, emit=None, stream=False)

    def run_sync(
        self,
        prompt: str | Sequence[Message] | None = None,
        *,
        history: Sequence[Message] = (),
        transcript: list[Message] | None = None,
        session: Session | None = None,
    ) -> RunResult[OutputT]:
        """`run` for code that has no event loop."""
        run = partial(self.run, prompt, history=history, transcript=transcript, session=session)
        return anyio.run(run)

    async def stream(
        self,
        prompt: str | Sequence[Message] | None = None,
        *,
        history: Sequence[Message] = (),
        transcript: list[Message] | None = None,
        session: Session | None = None,
    ) -> AsyncGenerator[Event, None]:
        """Run, yielding typed events as they happen; the last one is `RunFinished`. With an
        `output_type`, `PartialOutput` events show the answer as its JSON grows.

        Use it as `async with contextlib.aclosing(agent.stream(...)) as events:` when you may
        stop early, so the run is cancelled cleanly.
        """
        run = await self._begin(prompt, history, transcript, session)
        async with aclosing(self._stream_run(run)) as events:
            async for event in events:
                yield event

    async def _stream_run(self, run: _Run) -> AsyncGenerator[Event, None]:
        send, receive = anyio.create_memory_object_stream[Event](math.inf)
        error: BaseException | None = None

        async def drive() -> None:
            nonlocal error
            async with send:
                try:
                    result = await self._execute(run, emit=send.send_nowait, stream=True)
                except Exception as exc:  # re-raised below, outside the task group
                    error = exc
                    return
                except anyio.get_cancelled_exc_class() as exc:
                    if _really_cancelled():
                        raise
                    # A stray one would end the task silently: the stream must say why.
                    error = exc
                    return
                send.send_nowait(RunFinished(result))

        closed = False
        async with anyio.create_task_group() as tg, receive:
            tg.start_soon(drive)
            try:
                async for event in receive:
                    yield event
            except GeneratorExit:
                # The consumer stopped early: cancel the run, then end quietly.
                closed = True
                tg.cancel_scope.cancel()
        if closed:
            return
        if error is not None:
            raise error

    async def aclose(self) -> None:
        """Close the runtime if the Agent made it (from a name); one passed in stays open."""
        if self._owns_runtime:
            await self.runtime.aclose()

    async def __aenter__(self) -> Agent[OutputT]:
        """Start the tool sources (MCP servers) for every run until the block ends."""
        try:
            await self.toolset.__aenter__()
        except BaseException:
            await self.aclose()
            raise
        self._entered += 1
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stop the tool sources, then close the runtime if the Agent made it."""
        self._entered -= 1
        try:
            await self.toolset.__aexit__(exc_type, exc, traceback)
        finally:
            await self.aclose()

    # -- the loop ---------------------------------------------------------------------------

    async def _begin(
        self,
        prompt: str | Sequence[Message] | None,
        history: Sequence[Message],
        transcript: list[Message] | None,
        session: Session | None,
    ) -> _Run:
        if self.toolset.running and not self._entered:
            # Sources started by another run would be stopped by whichever run ends last, in
            # a task that did not start them.
            raise UserError(
                "concurrent runs of an agent with tool sources (MCP servers) need the agent "
                "entered first: `async with agent:`"
            )
        if session is None:
            if prompt is None:
                raise UserError("prompt: required for a run without a session")
            return self._start(prompt, history, transcript)
        if history:
            raise UserError("a run with a session takes its history from the session")
        if transcript is not None:
            del transcript[:]
        return await open_run(self, session, prompt, transcript)

    def _start(
        self,
        prompt: str | Sequence[Message],
        history: Sequence[Message],
        transcript: list[Message] | None,
    ) -> _Run:
        if transcript is not None and history:
            raise UserError("pass the earlier conversation as history or as transcript, not both")
        messages = transcript if transcript is not None else []
        history = list(history) or list(messages)
        del messages[:]
        output = self._output
        instructions = output.instructions(self.instructions) if output else self.instructions
        if instructions and not (history and history[0].role == "system"):
            messages.append(Message.system(instructions))
        messages.extend(history)
        if isinstance(prompt, str):
            messages.append(Message.user(prompt))
        else:
            messages.extend(prompt)
        return _Run(messages, None, self.runtime, self._model, self.prices)

    async def _execute(
        self, run: _Run, *, emit: Callable[[Event], None] | None, stream: bool
    ) -> RunResult[OutputT]:
        run.emit = emit
        run.tracing = self._telemetry()
        # Runs that this run's tools start (agents used as tools) add their usage to ours.
        outer = current_usage.get()
        scope = current_usage.set(run.nested)
        try:
            async with self.toolset:
                with run.tracing.agent_run(self, run) if run.tracing else _NO_SPAN:
                    if self.deadline is None:
                        return await self._loop(run, stream)
                    with anyio.move_on_after(self.deadline):
                        return await self._loop(run, stream)
                    raise DeadlineExceeded(self.deadline, run.result("", "deadline"))
        except _Stop as stop:
            raise stop.error from None
        finally:
            if run.journal is not None:
                await run.journal.close(run.messages, run.usage, run.stop_reason or "error")
            current_usage.reset(scope)
            if outer is not None:
                add_usage(outer, run.usage_by_model())

    async def _loop(self, run: _Run, stream: bool) -> RunResult[OutputT]:
        if run.journal is not None and run.journal.resume is not None:
            answered = await continue_interrupted(self, run)
            if answered is not None:
                # An answer made before the crash is settled as any other (an unfit one fixed).
                output = self._output
                settled = output.settle(run, answered.text, answered) if output else answered
                if settled is not None:
                    return cast("RunResult[OutputT]", settled)
            if run.awaiting:  # a call the crash left unstarted needs approval
                return cast("RunResult[OutputT]", self._paused(run))
        if run.resuming is not None:
            await self._resume_step(run)
            if run.journal is not None:
                await run.journal.sync(run.messages, run.usage)
        answer_now = False
        while run.steps < self.max_steps:
            # Per step: a tool source may have changed its tools since the last one.
            definitions = self.toolset.definitions(self._dialect) or None
            if answer_now:
                # A model told it repeats itself has what it needs: with an output type, the
                # one way left to say so is the answer object, so that is all it may write.
                definitions = None
            generation = await self._step(run, definitions, stream)
            if not generation.tool_calls:
                offered = definitions is not None
                result = self._answer(run, generation, "answer", offered=offered)
                if result is not None:
                    return result
                continue  # the answer did not fit the output type: the model fixes it
            await self._dispatch(run, generation)
            if run.awaiting:
                return cast("RunResult[OutputT]", self._paused(run))
            answer_now = self._output is not None and any(
                id(r) in run.nudged for r in run.records if r.step == run.steps
            )
        if not self.final_answer_on_max_steps:
            raise MaxStepsExceeded(self.max_steps, run.result("", "max_steps"))
        while True:  # ends: each unfit answer spends one of max_output_retries
            generation = await self._step(run, None, stream)
            result = self._answer(run, generation, "final_answer", offered=False)
            if result is not None:
                return result

    def _answer(
        self, run: _Run, generation: Generation, reason: StopReason, *, offered: bool
    ) -> RunResult[OutputT] | None:
        """The run's result from an answer; a tool call cut off by `max_tokens` is none, and
        an answer that does not fit the output type is None (told to the model)."""
        text = generation.response
        truncated = generation.finish_reason == "length"
        output = self._output
        cut_call = truncated and offered and _CALL_START.match(text)
        if cut_call and not (output and output.begins_answer(text, self.toolset.names)):
            max_tokens = self._fields.get("max_tokens")
            raise _Stop(TruncatedToolCall(max_tokens, text, run.result("", "truncated_call")))
        run.messages.append(Message.assistant(text))
        result = run.result(text, reason, truncated)
        if output is None:
            return cast("RunResult[OutputT]", result)
        return output.settle(run, text, result)

    async def _step(
        self, run: _Run, tools: list[FunctionDefinition] | None, stream: bool
    ) -> Generation:
        run.steps += 1
        step = run.steps
        emit = run.emit
        if emit:
            emit(StepStarted(step))
        fields = dict(self._fields)
        if tools is None:
            fields["tool_choice"] = "none"
        elif self.reset_tool_choice and run.records:
            fields["tool_choice"] = "auto"
        request = ModelRequest.model_construct(
            messages=list(run.messages), tools=tools or [], **fields
        )
        if stream:
            chunks: list[StreamChunk] = []
            watch = self._output.watcher(step, emit) if self._output and emit else None
            async for chunk in run.runtime.stream(request):
                chunks.append(chunk)
                if emit and chunk.response:
                    emit(TextDelta(step, chunk.response))
                    if watch:
                        watch(chunk.response)
            generation = StreamChunk.join(chunks)
        else:
            generation = await run.runtime.generate(request)
        run.usage = run.usage + generation.usage
        if emit and not generation.tool_calls:
            emit(StepFinished(step, generation.usage))
        return generation
