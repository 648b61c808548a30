"""The tool calls of one step: check each call, run them, file one result per call.

A step's calls are checked in the order the model emitted them (unknown tool, invalid
arguments, a repeat of the call before), passed through the approval gate and the hooks'
vetoes, then run concurrently: bounded by `max_concurrency`, async tools each in a task, sync
tools batched onto worker threads (`agentkit.tools._threads`), a tool marked `sequential`
alone. Whatever comes of a call, a tool-role result with its id joins the transcript, even when
the run is cancelled; failures count against the tool's retry budget. A call whose tool asks a
person while it runs (`ApprovalRequired`) waits, as a call held back does, with its question.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping
from contextlib import nullcontext
from functools import partial
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream
from pydantic_core import to_jsonable_python

from agentkit.agent.core import RunCore
from agentkit.agent.events import StepFinished, ToolCallFinished, ToolCallStarted
from agentkit.agent.results import PendingCall, StopReason, ToolCallRecord
from agentkit.errors import (
    ApprovalRequired,
    RepeatedToolCall,
    ToolArgumentsError,
    ToolRetriesExhausted,
    ToolRetry,
)
from agentkit.model_api import Generation, Message, ToolCall, Usage
from agentkit.tools import Tool
from agentkit.tools._threads import ThreadBatch, ThreadedCall
from agentkit.tools.calls import closing_exit, cut_output, json_ready, output_text, really_cancelled
from agentkit.tools.context import Decision, RunContext

__all__ = ["Job", "Stop", "ToolStep", "cancelled_error", "pending_call", "result_message"]

log = logging.getLogger("agentkit.agent")  # the Agent's logger: tool results are its to report

Job = tuple[ToolCallRecord, Tool, dict[str, Any]]
"""A call ready to run: its record, its tool and its validated arguments."""

CANCELLED = "cancelled: the run stopped before this call finished"


class Stop(Exception):  # internal control flow: the run ends with `error`
    def __init__(self, error: Exception) -> None:
        self.error = error


def cancelled_error(records: Iterable[ToolCallRecord]) -> None:
    """Give every call of `records` that has no outcome the cancelled one."""
    for record in records:
        if record.output is None and record.error is None:
            record.error = CANCELLED


def result_message(record: ToolCallRecord, limit: int) -> Message:
    """The tool-role message the model reads for a call: its output cut to `limit`
    characters, or its error."""
    return Message.tool(
        cut_output(record.output, limit) if record.output is not None else f"Error: {record.error}",
        tool_call_id=record.call.id,
        name=record.call.name,
    )


def pending_call(
    record: ToolCallRecord, tool: Tool, values: dict[str, Any], asked: ApprovalRequired | None
) -> PendingCall:
    """The pending call of `record`: held back before it ran, or asked about by its tool."""
    return PendingCall(
        id=record.call.id,
        name=tool.name,
        arguments=to_jsonable_python(values, fallback=repr),
        step=record.step,
        question=None if asked is None else asked.question,
        data=None if asked is None else asked.data,
    )


class ToolStep:
    """Runs the tool calls of a run's steps."""

    def __init__(self, run: RunCore) -> None:
        self.run = run
        self.settings = run.settings
        self._texts: dict[str, str] = {}  # the step's calls' arguments as JSON, by call id
        self._outcomes: Any = None  # where `file` hands outcomes to the after_tool hooks
        self.decisions: dict[str, Decision] = {}
        """The answers to calls that asked a person, by call id, while they are called again."""

    # -- a step -----------------------------------------------------------------------------

    async def dispatch(self, generation: Generation) -> None:
        """File the model's tool-calling message, then run its calls."""
        calls = []
        self._texts.clear()
        for ready, text in map(json_ready, generation.tool_calls):
            calls.append(ready)
            self._texts[ready.id] = text
        self.run.messages.append(Message.assistant(generation.response, calls))
        told = {}
        if generation.truncated:
            # Ended early by the runtime to fit max_tokens: valid, but maybe not what was meant.
            cut = (
                "this call was cut short to fit max_tokens, so it did not run: its arguments "
                "may be incomplete. Call again with shorter arguments."
            )
            told = {call.id: cut for call in calls}
        await self.run_calls(calls, generation.usage, told)

    async def run_calls(
        self, calls: list[ToolCall], usage: Usage, told: Mapping[str, str] = {}
    ) -> None:
        """Run the calls of the step just taken; those in `told` do not run: the model is told
        that text instead (a continued run's calls interrupted by a crash)."""
        run = self.run
        step = run.steps
        records = [ToolCallRecord(step=step, call=call, error=told.get(call.id)) for call in calls]
        run.records.extend(records)
        stop: Exception | None = None
        held = False
        try:
            jobs: list[Job] = []
            for record in records:
                job = None if record.call.id in told else self.prepare(record)
                if isinstance(job, Exception):
                    stop = stop or job
                elif job is not None:
                    jobs.append((record, job[0], job[1]))
            jobs = self.hold(jobs)
            if run.hooks.before_tool:
                jobs = await self.vetted(jobs)
            await self.run_jobs(jobs)
            for record in records:
                if record.call.id not in told:
                    stop = stop or self.count_failure(record)
            held = stop is None and bool(run.awaiting)
            self.in_order(records)
        finally:
            # Runs on cancellation too: every call in the transcript gets its result, but for
            # those held for approval when the step ended well (they are answered on resume).
            for record in records:
                if record.output is None and record.error is None:
                    if held:
                        continue
                    record.error = CANCELLED
                run.messages.append(self.result_message(record))
        await self.step_end(step, records, usage)
        if stop is not None:
            self.stop(stop)

    async def step_end(self, step: int, records: list[ToolCallRecord], usage: Usage) -> None:
        run = self.run
        for hook in run.hooks.on_step_end:
            await hook(run.context, step, records)
        if run.emit:
            run.emit(StepFinished(step, usage, run.path))

    def stop(self, error: Exception) -> None:
        assert isinstance(error, (RepeatedToolCall, ToolRetriesExhausted))
        reason: StopReason = "repeat" if isinstance(error, RepeatedToolCall) else "tool_retries"
        error.run = self.run.outcome("", reason)
        raise Stop(error)

    def file_denied(self, record: ToolCallRecord) -> None:
        """A call a person denied: it never runs (its error says why)."""
        if self.run.emit:
            self.run.emit(ToolCallFinished(record.step, record, self.run.path))

    def result_message(self, record: ToolCallRecord) -> Message:
        return result_message(record, self.settings.max_tool_output)

    # -- checking ---------------------------------------------------------------------------

    def prepare(self, record: ToolCallRecord) -> tuple[Tool, dict[str, Any]] | Exception | None:
        """Check one call before it runs: a job to run, an error to stop with, or None (the
        record already holds the error told to the model).

        Invalid arguments come first: a failed call counts against `max_tool_retries` even
        when repeated. Only a call that would run again is a repeat (`repeat_limit`)."""
        run = self.run
        call = record.call
        text = self._texts.pop(call.id, None)
        signature = call.name + "\0" + (call.arguments_json() if text is None else text)
        run.repeats = run.repeats + 1 if signature == run.last_signature else 1
        run.last_signature = signature
        tool = self.run.setup.toolset.get(call.name)
        job: tuple[Tool, dict[str, Any]] | None = None
        if tool is not None and tool.function is not None:
            try:
                if call.raw_arguments is None:
                    job = tool, tool.check(call.arguments)
                else:
                    validated = tool.validate(call.raw_arguments)
                    record.repairs = list(validated.repairs)
                    job = tool, validated.values
            except ToolArgumentsError as exc:
                fields = "; ".join(str(e) for e in exc.errors)
                record.error = (
                    f"invalid arguments for {call.name}: {fields}. "
                    f"You sent: {call.arguments_json()}"
                )
                return None
        limit = self.settings.repeat_limit
        if run.repeats > limit:
            record.error = f"{call.name} was called with the same arguments again; stopping"
            return RepeatedToolCall(call.name, call.arguments, run.repeats)
        if run.repeats == limit:
            run.nudged.add(id(record))
            record.error = (
                f"you have called {call.name} with these same arguments {run.repeats} times "
                "in a row; the earlier results stand. Use them to answer, or change the "
                "arguments."
            )
            return None
        if tool is None:
            available = ", ".join(self.run.setup.toolset.names) or "none"
            record.error = f"unknown tool {call.name!r}; available tools: {available}"
        elif tool.function is None:
            record.error = f"tool {call.name!r} has no handler to run it"
        return job

    def in_order(self, records: list[ToolCallRecord]) -> None:
        """Put the pending calls in the model's order: a call that asked while it ran joins
        them when it returns."""
        awaiting = self.run.awaiting
        if len(awaiting) > 1:
            order = {record.call.id: i for i, record in enumerate(records)}
            awaiting.sort(key=lambda call: order.get(call.id, len(order)))

    def hold(self, jobs: list[Job]) -> list[Job]:
        """The approval gate: set aside the calls that need a person's approval (in
        `run.awaiting`); return the others. A predicate that raises is a call that needs
        approval: when in doubt, ask."""
        run = self.run
        run.awaiting = []
        ready = []
        for job in jobs:
            record, tool, values = job
            if tool.requires_approval is False:
                ready.append(job)
                continue
            try:
                held = tool.needs_approval(values)
            except Exception:
                held = True
            if not held:
                ready.append(job)
                continue
            run.awaiting.append(pending_call(record, tool, values, None))
        return ready

    async def vetted(self, jobs: list[Job]) -> list[Job]:
        """The jobs no hook vetoes; a vetoed call's error is the hook's message."""
        ready = []
        for job in jobs:
            record, _, values = job
            veto = None
            for hook in self.run.hooks.before_tool:
                veto = await hook(self.run.context, record.call, values)
                if veto is not None:
                    break
            if veto is None:
                ready.append(job)
            else:
                record.error = str(veto)
                self.run.nudged.add(id(record))  # not a failure of the tool
        return ready

    def count_failure(self, record: ToolCallRecord) -> Exception | None:
        name = record.call.name
        if record.output is None and record.error is None:
            return None  # held for approval: it has not run
        failures = self.run.failures
        if record.error is None:
            failures.pop(name, None)
            return None
        if id(record) in self.run.nudged:
            return None  # repeat_limit governs repeats; a veto is no failure
        tool = self.run.setup.toolset.get(name)
        if tool is None:
            return None
        count = failures.get(name, 0) + 1
        failures[name] = count
        budget = (
            tool.max_retries if tool.max_retries is not None else self.settings.max_tool_retries
        )
        if count > budget:
            return ToolRetriesExhausted(name, budget, record.error)
        return None

    # -- running ----------------------------------------------------------------------------

    async def run_jobs(self, jobs: list[Job]) -> None:
        """Run the calls concurrently; a sequential tool waits for those before it and runs
        alone, and those after it wait for it. With `after_tool` hooks, each outcome is handed
        to them as it comes, by a task of the step."""
        if not jobs:
            return
        if not self.run.hooks.after_tool:
            await self._run_batches(jobs)
            return
        send, receive = anyio.create_memory_object_stream[
            tuple[ToolCallRecord, BaseException | None]
        ](math.inf)
        failed: list[BaseException] = []
        self._outcomes = send
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._report, receive, failed)
                with send:
                    await self._run_batches(jobs)
        finally:
            self._outcomes = None
        if failed:
            raise failed[0]  # as itself: the calls have all been filed

    async def _report(
        self,
        receive: MemoryObjectReceiveStream[tuple[ToolCallRecord, BaseException | None]],
        failed: list[BaseException],
    ) -> None:
        with receive:
            async for record, error in receive:
                if failed:
                    continue
                try:
                    for hook in self.run.hooks.after_tool:
                        await hook(self.run.context, record, error)
                except Exception as exc:
                    failed.append(exc)

    async def _run_batches(self, jobs: list[Job]) -> None:
        batch: list[Job] = []
        for job in [*jobs, None]:
            if job is not None and not job[1].sequential:
                batch.append(job)
                continue
            if batch:
                await self.run_together(batch)
            batch = []
            if job is not None:
                await self.run_together([job])

    async def run_together(self, jobs: list[Job]) -> None:
        """Async tools each in a task; sync tools in one batch on worker threads."""
        run = self.run
        if run.hooks.on_tools_start:
            calls = [record.call for record, _, _ in jobs]
            for hook in run.hooks.on_tools_start:
                await hook(run.context, calls)
        if run.emit:
            for record, _, _ in jobs:  # in the order the model made the calls
                run.emit(ToolCallStarted(record.step, record.call, run.path))
        awaited = [job for job in jobs if job[1].is_async]
        threaded = [job for job in jobs if not job[1].is_async]
        if not awaited:
            await self.call_in_threads(threaded)
        elif len(awaited) == 1 and not threaded:
            await self.call(*awaited[0])
        else:
            async with anyio.create_task_group() as tg:
                for job in awaited:
                    tg.start_soon(self.call, *job)
                if threaded:
                    tg.start_soon(self.call_in_threads, threaded)

    def _timeout(self, tool: Tool) -> float | None:
        return tool.timeout if tool.timeout is not None else self.settings.tool_timeout

    def _function(
        self, record: ToolCallRecord, tool: Tool, values: dict[str, Any]
    ) -> Callable[[], Any]:
        assert tool.function is not None
        if tool.context_param is not None:
            context = RunContext(self.run, record.call.id, record.call.name)
            if self.decisions:
                context.decision = self.decisions.get(record.call.id)
            values = {**values, tool.context_param: context}
        function: Callable[[], Any] = partial(tool.function, **values)
        for wrap in self.run.hooks.wrap_tool:
            function = wrap(record, tool, function)
        return function

    async def call(self, record: ToolCallRecord, tool: Tool, values: dict[str, Any]) -> None:
        """One call of an async tool, in the event loop."""
        timeout = self._timeout(tool)
        function = self._function(record, tool, values)
        clock = self.run.setup.clock
        value: Any = None
        error: BaseException | None = None
        started = clock()
        try:
            # No timeout, no cancel scope: it costs more than a fast tool itself.
            with anyio.fail_after(timeout) if timeout is not None else nullcontext():
                async with self.run.setup.limiter:
                    value = await function()
        except Exception as exc:
            closing = closing_exit(exc)
            if closing is not None:
                # The run is being closed where it stopped (its event loop dropped it: an
                # evicted workflow), and leaving the limiter failed there: no tool's failure.
                raise closing from None
            error = exc
        except anyio.get_cancelled_exc_class() as exc:
            if really_cancelled():
                raise
            error = exc  # not the run's cancellation: the tool failed
        record.duration = clock() - started
        unhandled = self.file(record, tool, value, error, values)
        if unhandled is not None:
            raise unhandled

    async def call_in_threads(self, jobs: list[Job]) -> None:
        """Calls of sync tools, batched onto worker threads (see `agentkit.tools._threads`)."""
        calls = [
            ThreadedCall(
                self._function(record, tool, values), self._timeout(tool), (record, tool, values)
            )
            for record, tool, values in jobs
        ]
        unhandled: BaseException | None = None

        def settled(call: ThreadedCall) -> None:
            nonlocal unhandled
            record, tool, values = call.owner
            record.duration = call.duration
            raised = self.file(record, tool, call.value, call.error, values)
            if raised is not None and unhandled is None:
                unhandled = raised
                batch.stop()  # the run ends with it: the other calls are given up

        # With hooks to tell, each result goes back as its call returns.
        eager = bool(self.run.hooks.after_tool)
        batch = ThreadBatch(calls, self.run.setup.limiter, settled, eager=eager)
        await batch.run()
        if unhandled is not None:
            raise unhandled

    def file(
        self,
        record: ToolCallRecord,
        tool: Tool,
        value: Any,
        error: BaseException | None,
        values: dict[str, Any],
    ) -> BaseException | None:
        """Record what came of a call and report it; return an exception the run must raise
        rather than tell the model. A call whose tool asked a person has no outcome yet: it
        waits (`run.awaiting`) and is reported when it is called again."""
        if error is None:
            try:
                record.output = output_text(value)
            except Exception as exc:
                error = exc
        timeout = self._timeout(tool)
        if error is None:
            pass
        elif isinstance(error, TimeoutError) and timeout is not None:
            record.error = f"{tool.name} timed out after {timeout:g} s"
        elif isinstance(error, ApprovalRequired):
            self.run.awaiting.append(pending_call(record, tool, values, error))
            return None
        elif isinstance(error, ToolRetry):
            record.error = error.message
        elif isinstance(error, Exception) and not self.settings.raise_tool_errors:
            record.error = f"{type(error).__name__}: {error}"
        elif isinstance(error, anyio.get_cancelled_exc_class()):
            # The run's own cancellation never gets here (see `call`; a thread cannot see
            # it): raised on, it would pass for one and end the run without a word.
            record.error = f"{tool.name} was cancelled by something other than this run"
            if self.settings.raise_tool_errors:
                return RuntimeError(f"tool {tool.name!r} raised {type(error).__name__}")
        else:
            return error
        if log.isEnabledFor(logging.DEBUG):
            log.debug("tool %s -> %s", tool.name, record.error or record.output)
        if self._outcomes is not None:
            self._outcomes.send_nowait((record, error))
        if self.run.emit:
            self.run.emit(ToolCallFinished(record.step, record, self.run.path))
        return None
