"""`AgentRun`: one run of an agent, and the loop that carries it.

One step is one model call. When the generation asks for tools, the step's calls run
(`agentkit.agent.tool_step`) and their results join the transcript; the loop repeats until the
model answers, a limit stops it, or a call waits for approval. The loop reaches the hooks at
their points (`agentkit.agent.hooks`); a run stepped with `agent.iter` hands each model
response and each step's tool results to the code stepping it, and may be stopped there.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, cast

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from agentkit.agent.approval import paused, resume_step
from agentkit.agent.core import RunCore, Setup, current_run
from agentkit.agent.events import Event, RunFinished, StepFinished, StepStarted, TextDelta
from agentkit.agent.handoffs import Fresh
from agentkit.agent.hooks import HookSet
from agentkit.agent.output import OutputSpec
from agentkit.agent.results import OutputT, RunResult, RunState, StopReason, ToolCallRecord
from agentkit.agent.takeover import hand_back, replay, take_up
from agentkit.agent.tool_step import Stop, ToolStep
from agentkit.errors import (
    DeadlineExceeded,
    GuardrailTripped,
    MaxStepsExceeded,
    RunStateError,
    RunStopped,
    StopRun,
    TruncatedToolCall,
)
from agentkit.model_api import (
    FunctionDefinition,
    Generation,
    Message,
    ModelRequest,
    StreamChunk,
    Usage,
)
from agentkit.sessions.runs import INTERRUPTED
from agentkit.telemetry import active as telemetry_active
from agentkit.tools import Toolset
from agentkit.tools.calls import really_cancelled
from agentkit.usage import add_usage

__all__ = ["AgentRun", "ModelResponse", "Starter", "ToolResults"]

# How text that is a tool call begins: a tagged block, a call object or list, a Python-style
# call list; maybe inside a code fence.
_CALL_START = re.compile(
    r"\s*(?:```[\w-]*\s*)?(?:<tool_call>|<function=|<\|python_tag\|>"
    r'|\[?\s*\{\s*"(?:name|type|function)"|\[\s*[A-Za-z_][\w.]*\()'
)


class Starter(Protocol):
    """What of an Agent starts its runs, for the modules that run agents below `agent.py`
    (sessions' runs, agents used as tools)."""

    name: str | None
    toolset: Toolset

    def start(
        self,
        prompt: str | Sequence[Message],
        history: Sequence[Message] = (),
        transcript: list[Message] | None = None,
        deps: Any = None,
        run_id: str | None = None,
    ) -> AgentRun[Any]: ...

    def new_run(
        self, messages: list[Message], deps: Any = None, run_id: str | None = None
    ) -> AgentRun[Any]: ...


@dataclass(frozen=True)
class ModelResponse:
    """A step's model response, as `agent.iter` hands it over: before anything is done with
    it (its tool calls run next; an answer ends the run)."""

    step: int
    generation: Generation


@dataclass(frozen=True)
class ToolResults:
    """A step's tool calls, all answered (in the model's order), as `agent.iter` hands them
    over."""

    step: int
    records: list[ToolCallRecord]


class _Stepping:
    """The hand-over between a run and the code stepping it: the run waits at each node
    until it is asked for the next one."""

    def __init__(self) -> None:
        self.send: MemoryObjectSendStream[ModelResponse | ToolResults]
        self.receive: MemoryObjectReceiveStream[ModelResponse | ToolResults]
        self.send, self.receive = anyio.create_memory_object_stream[ModelResponse | ToolResults](1)
        self.go: anyio.Event | None = None
        self.stop = False


class AgentRun(RunCore, Generic[OutputT]):
    """One run of an agent: its transcript, steps, usage and counters, and the loop.

    Made by the Agent's entry points; `agent.iter(...)` hands one over to step through:

    ```python
    async with agent.iter("What is 2 + 3?") as run:
        async for node in run:          # a ModelResponse, then the step's ToolResults, ...
            if isinstance(node, ToolResults) and node.step == 2:
                break                   # leaving the block stops the run here
    print(run.result)                   # the RunResult (stop_reason "stopped" if stopped)
    ```
    """

    def __init__(
        self,
        setup: Setup,
        messages: list[Message],
        hooks: HookSet,
        output: OutputSpec[Any] | None = None,
        deps: Any = None,
        run_id: str | None = None,
    ) -> None:
        super().__init__(setup, messages, hooks, deps, run_id)
        self.output = output
        self.tool_step = ToolStep(self)
        self.result_value: RunResult[OutputT] | None = None
        self._stepping: _Stepping | None = None
        self._error: BaseException | None = None
        self._task_group: Any = None

    # -- running ----------------------------------------------------------------------------

    async def execute(self, *, emit: Any = None, stream: bool = False) -> RunResult[OutputT]:
        """Run to the end; the hooks hear of its start and its end."""
        self.emit = emit
        setup = self.setup
        if setup.telemetry:
            tracing = telemetry_active()
            if tracing is not None:
                self.spans = tracing.run_hooks(setup.runtime, setup.name)
                self.hooks = self.hooks.plus([self.spans])
        runtime = setup.runtime
        for wrap in self.hooks.wrap_model:
            runtime = wrap(runtime)
        self.runtime = runtime
        # Runs that this run's tools start (agents used as tools) add their usage to ours.
        outer = current_run.get()
        scope = current_run.set(self)
        result: RunResult[OutputT] | None = None
        error: BaseException | None = None
        try:
            async with setup.toolset:
                for hook in self.hooks.on_run_start:
                    await hook(self.context)
                deadline = self.settings.deadline
                if deadline is None:
                    result = await self._checked(stream)
                else:
                    with anyio.move_on_after(deadline):
                        result = await self._checked(stream)
                    if result is None:
                        raise Stop(DeadlineExceeded(deadline, self.outcome("", "deadline")))
            self.result_value = result
            return result
        except Stop as stop:
            error = stop.error
            raise stop.error from None
        except StopRun as stop:  # raised by a hook
            error = RunStopped(stop.message, self.outcome("", "stopped"))
            raise error from None
        except GuardrailTripped as trip:  # raised by a guardrail's hooks
            if trip.run is None:
                trip.run = self.outcome("", "guardrail")
            error = trip
            raise
        except BaseException as exc:
            error = exc
            raise
        finally:
            # A run whose event loop dropped it (an evicted workflow) is closed in another context.
            with contextlib.suppress(ValueError):
                current_run.reset(scope)
            if self.hooks.on_run_end:
                with anyio.CancelScope(shield=True):
                    for hook in self.hooks.on_run_end:
                        await hook(self.context, result, error)
            if outer is not None:
                add_usage(outer.nested, self.usage_by_model())

    async def events(self) -> AsyncGenerator[Event, None]:
        """Run, yielding typed events as they happen; the last one is `RunFinished`."""
        send, receive = anyio.create_memory_object_stream[Event](math.inf)
        error: BaseException | None = None

        async def drive() -> None:
            nonlocal error
            async with send:
                try:
                    result = await self.execute(emit=send.send_nowait, stream=True)
                except Exception as exc:  # re-raised below, outside the task group
                    error = exc
                    return
                except anyio.get_cancelled_exc_class() as exc:
                    if really_cancelled():
                        raise
                    # A stray one would end the task silently: the stream must say why.
                    error = exc
                    return
                send.send_nowait(RunFinished(result, self.path))

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

    # -- stepping (agent.iter) --------------------------------------------------------------

    @property
    def result(self) -> RunResult[OutputT]:
        """The run's result, once it has ended (`stop_reason == "stopped"` when the code
        stepping it left early).

        Raises:
            RuntimeError: the run has not ended.
        """
        if self.result_value is None:
            raise RuntimeError("the run has not ended: step it to the end, or leave its block")
        return self.result_value

    async def __aenter__(self) -> AgentRun[OutputT]:
        self._stepping = _Stepping()
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        self._task_group.start_soon(self._drive)
        return self

    async def _drive(self) -> None:
        stepping = self._stepping
        assert stepping is not None
        try:
            with stepping.send:
                await self.execute()
        except Exception as exc:
            self._error = exc

    def __aiter__(self) -> AgentRun[OutputT]:
        return self

    async def __anext__(self) -> ModelResponse | ToolResults:
        stepping = self._stepping
        if stepping is None:
            raise RuntimeError("step a run inside its block: `async with agent.iter(...) as run`")
        if stepping.go is not None:
            stepping.go.set()
        try:
            return await stepping.receive.receive()
        except anyio.EndOfStream:
            if self._error is not None:
                error, self._error = self._error, None
                raise error from None
            raise StopAsyncIteration from None

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        stepping = self._stepping
        assert stepping is not None and self._task_group is not None
        stepping.stop = True
        if stepping.go is not None:
            stepping.go.set()
        stepping.receive.close()
        try:
            # The run ends by itself once told to stop: what the block raised is raised on as
            # itself, not in a group with it.
            await self._task_group.__aexit__(None, None, None)
        finally:
            self._stepping = None
        return None

    async def _reached(self, node: ModelResponse | ToolResults) -> bool:
        """Hand `node` to the code stepping the run and wait to be asked for the next one;
        True if it stopped the run instead."""
        stepping = self._stepping
        assert stepping is not None
        if stepping.stop:
            return True
        stepping.go = anyio.Event()
        try:
            await stepping.send.send(node)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            return True
        await stepping.go.wait()
        return stepping.stop

    # -- the loop ---------------------------------------------------------------------------

    async def _checked(self, stream: bool) -> RunResult[OutputT]:
        """The loop's result; an answer first passes the `on_answer` hooks."""
        result = await self._loop(stream)
        if self.hooks.on_answer and result.stop_reason in ("answer", "final_answer"):
            for hook in self.hooks.on_answer:
                await hook(self.context, result)
        return result

    async def _loop(self, stream: bool) -> RunResult[OutputT]:
        if self.interrupted is not None:
            answered = await self._settle_interrupted()
            if answered is not None:
                # An answer made before the crash is settled as any other (an unfit one fixed).
                settled = (
                    self.output.settle(self, answered.text, answered) if self.output else answered
                )
                if settled is not None:
                    return cast("RunResult[OutputT]", settled)
            if self.awaiting:  # a call the crash left unstarted needs approval
                return cast("RunResult[OutputT]", paused(self))
        if self.resuming is not None:
            await resume_step(self, self.tool_step)
            if self.awaiting:  # a tool asked again
                return cast("RunResult[OutputT]", paused(self))
        trail = self.trail
        if trail is not None:
            self._took_over(await take_up(self))
        setup = self.setup
        settings = self.settings
        stepping = self._stepping is not None
        answer_now = False
        while self.steps < settings.max_steps:
            # Per step: a tool source may have changed its tools since the last one.
            definitions = setup.toolset.definitions(setup.dialect) or None
            if answer_now:
                # A model told it repeats itself has what it needs: with an output type, the
                # one way left to say so is the answer object, so that is all it may write.
                definitions = None
            generation = await self._model_step(definitions, stream)
            if stepping and await self._reached(ModelResponse(self.steps, generation)):
                return self._stopped()
            if not generation.tool_calls:
                offered = definitions is not None
                result = self._answer(generation, "answer", offered=offered)
                if result is None:
                    continue  # the answer did not fit the output type: the model fixes it
                if trail is None or not self._took_over(await hand_back(self)):
                    return result
                setup, settings = self.setup, self.settings
                continue
            await self.tool_step.dispatch(generation)
            if self.awaiting:
                return cast("RunResult[OutputT]", paused(self))
            step = self.steps
            if stepping:
                records = [r for r in self.records if r.step == step]
                if await self._reached(ToolResults(step, records)):
                    return self._stopped()
            answer_now = self.output is not None and any(
                id(r) in self.nudged for r in self.records if r.step == step
            )
            if trail is not None and self._took_over(await take_up(self)):
                setup, settings, answer_now = self.setup, self.settings, False
        if not settings.final_answer_on_max_steps:
            raise Stop(MaxStepsExceeded(settings.max_steps, self.outcome("", "max_steps")))
        while True:  # ends: each unfit answer spends one of max_output_retries
            generation = await self._model_step(None, stream)
            if stepping and await self._reached(ModelResponse(self.steps, generation)):
                return self._stopped()
            result = self._answer(generation, "final_answer", offered=False)
            if result is not None:
                return result

    def _took_over(self, fresh: Fresh | None) -> bool:
        """Take the output spec of the agent that took over, if one did."""
        if fresh is None:
            return False
        self.output = fresh.output
        self.tool_step = ToolStep(self)
        return True

    def restore(self, state: RunState) -> None:
        """Take up the run from `state`, in the agent that was in force."""
        super().restore(state)
        if self.trail is not None:
            self._took_over(replay(self, state))
        elif state.handoffs:
            names = ", ".join(sorted({r.target for r in state.handoffs}))
            raise RunStateError([f"handoffs: the run handed off to {names}; this agent has none"])

    def _stopped(self) -> RunResult[OutputT]:
        return cast("RunResult[OutputT]", self.outcome("", "stopped"))

    def _answer(
        self, generation: Generation, reason: StopReason, *, offered: bool
    ) -> RunResult[OutputT] | None:
        """The run's result from an answer; a tool call cut off by `max_tokens` is none, and
        an answer that does not fit the output type is None (told to the model)."""
        text = generation.response
        truncated = generation.finish_reason == "length"
        output = self.output
        cut_call = truncated and offered and _CALL_START.match(text)
        if cut_call and not (output and output.begins_answer(text, self.setup.toolset.names)):
            max_tokens = self.setup.fields.get("max_tokens")
            raise Stop(TruncatedToolCall(max_tokens, text, self.outcome("", "truncated_call")))
        self.messages.append(Message.assistant(text))
        result = self.outcome(text, reason, truncated)
        if output is None:
            return cast("RunResult[OutputT]", result)
        return output.settle(self, text, result)

    async def _model_step(self, tools: list[FunctionDefinition] | None, stream: bool) -> Generation:
        self.steps += 1
        step = self.steps
        emit = self.emit
        if emit:
            emit(StepStarted(step, self.path))
        tool_choice = None
        if tools is None:
            tool_choice = "none"
        elif self.settings.reset_tool_choice and self.tools_answered():
            tool_choice = "auto"
        request = self.setup.request(list(self.messages), tools or [], tool_choice)
        for before in self.hooks.before_model:
            request = await before(self.context, request) or request
        if stream:
            generation = await self._streamed(request, step)
        else:
            generation = await self.runtime.generate(request)
        self.answered_by(step, generation)
        self.usage = self.usage + generation.usage
        for after in self.hooks.after_model:
            await after(self.context, generation)
        if emit and not generation.tool_calls:
            emit(StepFinished(step, generation.usage, self.path))
        return generation

    async def _streamed(self, request: ModelRequest, step: int) -> Generation:
        emit = self.emit
        chunks: list[StreamChunk] = []
        watch = self.output.watcher(step, emit, self.path) if self.output and emit else None
        async for chunk in self.runtime.stream(request):
            chunks.append(chunk)
            if emit and chunk.response:
                emit(TextDelta(step, chunk.response, self.path))
                if watch:
                    watch(chunk.response)
        return StreamChunk.join(chunks)

    async def _settle_interrupted(self) -> RunResult | None:
        """Settle the interrupted step of a run continued after a crash, before its next model
        call; the run's result if the model had already answered, else None.

        A call that never started runs; one that had started runs again only if its tool is
        idempotent, otherwise the model is told (`INTERRUPTED`) as that call's result."""
        interrupted, self.interrupted = self.interrupted, None
        assert interrupted is not None
        if interrupted.answer is not None:
            return self.outcome(interrupted.answer, "answer")
        step = interrupted.step
        assert step is not None
        start = max(i for i, m in enumerate(self.messages) if m is step)
        answered = {m.tool_call_id for m in self.messages[start:] if m.role == "tool"}
        calls = [c for c in step.tool_calls if c.id not in answered]
        told: dict[str, str] = {}
        for call in calls:
            tool = self.setup.toolset.get(call.name)
            if call.id in interrupted.started and not (tool is not None and tool.idempotent):
                told[call.id] = INTERRUPTED
        try:
            await self.tool_step.run_calls(calls, Usage(), told)
        finally:
            results = {m.tool_call_id: m for m in self.messages[start + 1 :] if m.role == "tool"}
            self.messages[start + 1 :] = [results[c.id] for c in step.tool_calls if c.id in results]
        return None
