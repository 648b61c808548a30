"""The tool calls of one step: check each call, run them, file one result per call.

`Agent` inherits this half of its loop (see `agentkit.agent` for the whole of it). A step's calls
are checked in the order the model emitted them (unknown tool, invalid arguments, a repeat of
the call before), then run concurrently: bounded by `max_concurrency`, async tools each in a
task, sync tools batched onto worker threads (`agentkit.tools._threads`), a tool marked
`sequential` alone. Whatever comes of a call, a tool-role result with its id joins the
transcript, even when the run is cancelled; failures count against the tool's retry budget.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio
from pydantic import BaseModel
from pydantic_core import to_jsonable_python

from agentkit.errors import RepeatedToolCall, ToolArgumentsError, ToolRetriesExhausted, ToolRetry
from agentkit.events import Event, StepFinished, ToolCallFinished, ToolCallStarted
from agentkit.model_api import Generation, Message, ToolCall, Usage
from agentkit.results import RunResult, StopReason, ToolCallRecord
from agentkit.runtimes.base import Runtime
from agentkit.tools import Tool, Toolset
from agentkit.tools._threads import ThreadBatch, ThreadedCall
from agentkit.usage import PriceTable, add_usage, cost

if TYPE_CHECKING:
    from agentkit.sessions.journal import RunJournal

log = logging.getLogger("agentkit.agent")  # the Agent's logger: tool results are its to report

_NO_SPAN = nullcontext()  # reused: the telemetry call sites cost no allocation when it is off


@dataclass
class _Run:
    """The state of one run; becomes a RunResult."""

    messages: list[Message]
    emit: Callable[[Event], None] | None
    runtime: Runtime
    model: str
    prices: PriceTable | None = None
    records: list[ToolCallRecord] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    nested: dict[str, Usage] = field(default_factory=dict)
    """Usage of the runs its tools started (agents used as tools), by model."""
    steps: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    last_signature: str | None = None
    repeats: int = 0
    nudged: set[int] = field(default_factory=set)  # records told they repeat themselves
    tracing: Any = None  # the telemetry in force, None when off
    stop_reason: StopReason | None = None
    cost: float | None = None
    output_retries: int = 0
    """Answers told they did not fit the output type (`agentkit.output`)."""
    journal: RunJournal | None = None
    """Where the run's progress is journaled, when it runs with a session."""
    awaiting: list[Any] = field(default_factory=list)
    """The calls of the last step held for a person's approval (`PendingCall`s, see
    `agentkit.approval`)."""
    resuming: Any = None  # the decisions on the held calls, when the run resumes

    def usage_by_model(self) -> dict[str, Usage]:
        by_model = {self.model: self.usage} if self.steps else {}
        return add_usage(by_model, self.nested) if self.nested else by_model

    def result(
        self, output: str = "", stop_reason: StopReason = "answer", truncated: bool = False
    ) -> RunResult:
        by_model = self.usage_by_model()
        self.stop_reason = stop_reason
        self.cost = None if self.prices is None else cost(by_model, self.prices)
        return RunResult.model_construct(
            output=output,
            text=output,
            messages=list(self.messages),
            tool_calls=list(self.records),
            usage=self.usage,
            usage_by_model=by_model,
            cost=self.cost,
            steps=self.steps,
            stop_reason=stop_reason,
            truncated=truncated,
        )


class _Stop(Exception):  # internal control flow
    def __init__(self, error: Exception) -> None:
        self.error = error


def _to_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    return json.dumps(to_jsonable_python(value), ensure_ascii=False)


def _really_cancelled() -> bool:
    """Whether the current task is being cancelled, rather than merely seeing a stray
    `CancelledError` (e.g. from awaiting a task something else cancelled)."""
    if anyio.current_effective_deadline() == -math.inf:
        return True  # an enclosing anyio scope is cancelled
    try:
        task = asyncio.current_task()
    except RuntimeError:  # not on asyncio: only a real cancellation raises trio's Cancelled
        return True
    # Python 3.11+ counts cancel requests; before, a stray one cannot be told apart.
    cancelling = getattr(task, "cancelling", None)
    return cancelling is None or cancelling() > 0


def _json_ready(call: ToolCall) -> ToolCall:
    """The call, with arguments that are not JSON data (e.g. a Python-literal set or `...`
    from a runtime) kept as raw text, so they are told to the model as invalid arguments."""
    if call.raw_arguments is not None:
        return call
    try:
        json.dumps(call.arguments, allow_nan=False)
    except (TypeError, ValueError):
        return call.model_copy(update={"arguments": {}, "raw_arguments": repr(call.arguments)})
    return call


def _cut(text: str, limit: int) -> str:
    """Keep the head and the tail of an oversized output, with a marker in between."""
    if len(text) <= limit:
        return text
    head = limit * 2 // 3
    tail = limit - head
    return f"{text[:head]}\n[... {len(text) - limit} characters cut ...]\n{text[-tail:]}"


class ToolCalls:
    """The tool-call half of `Agent`: runs the tool calls of one step.

    A mixin: `Agent` sets these attributes in its constructor.
    """

    toolset: Toolset
    max_concurrency: int
    tool_timeout: float | None
    max_tool_retries: int
    raise_tool_errors: bool
    max_tool_output: int
    repeat_limit: int
    _limiter: anyio.CapacityLimiter | None
    _clock: Callable[[], float] = staticmethod(time.perf_counter)
    """Where a call's duration is read from; a durable workflow reads its own clock."""

    async def _dispatch(self, run: _Run, generation: Generation) -> None:
        calls = [_json_ready(call) for call in generation.tool_calls]
        run.messages.append(Message.assistant(generation.response, calls))
        if run.journal is not None:
            await run.journal.sync(run.messages, run.usage)
        await self._run_calls(run, calls, generation.usage)

    async def _run_calls(
        self, run: _Run, calls: list[ToolCall], usage: Usage, told: Mapping[str, str] = {}
    ) -> None:
        """Run the calls of the step just taken; those in `told` do not run: the model is told
        that text instead (a continued run's calls interrupted by a crash)."""
        step = run.steps
        records = [ToolCallRecord(step=step, call=call, error=told.get(call.id)) for call in calls]
        run.records.extend(records)
        stop: Exception | None = None
        held = False
        try:
            jobs: list[tuple[ToolCallRecord, Tool, dict[str, Any]]] = []
            for record in records:
                job = None if record.call.id in told else self._prepare(run, record)
                if isinstance(job, Exception):
                    stop = stop or job
                elif job is not None:
                    jobs.append((record, job[0], job[1]))
            jobs = self._hold(run, jobs)
            async with run.journal.writing() if run.journal else nullcontext():
                await self._run_jobs(run, jobs)
            for record in records:
                if record.call.id not in told:
                    stop = stop or self._count_failure(run, record)
            held = stop is None and bool(run.awaiting)
        finally:
            # Runs on cancellation too: every call in the transcript gets its result, but for
            # those held for approval when the step ended well (they are answered on resume).
            for record in records:
                if held and record.output is None and record.error is None:
                    continue
                if record.output is None and record.error is None:
                    record.error = "cancelled: the run stopped before this call finished"
                run.messages.append(self._result_message(record))
        if run.journal is not None:
            await run.journal.sync(run.messages, run.usage)
        if run.emit:
            run.emit(StepFinished(step, usage))
        if stop is not None:
            reason: StopReason = "repeat" if isinstance(stop, RepeatedToolCall) else "tool_retries"
            assert isinstance(stop, (RepeatedToolCall, ToolRetriesExhausted))
            stop.run = run.result("", reason)
            raise _Stop(stop)

    def _result_message(self, record: ToolCallRecord) -> Message:
        return Message.tool(
            _cut(record.output, self.max_tool_output)
            if record.output is not None
            else f"Error: {record.error}",
            tool_call_id=record.call.id,
            name=record.call.name,
        )

    def _prepare(
        self, run: _Run, record: ToolCallRecord
    ) -> tuple[Tool, dict[str, Any]] | Exception | None:
        """Check one call before it runs: a job to run, an error to stop with, or None (the
        record already holds the error told to the model).

        Invalid arguments come first: a failed call counts against `max_tool_retries` even
        when repeated. Only a call that would run again is a repeat (`repeat_limit`)."""
        call = record.call
        signature = call.name + "\0" + call.arguments_json()
        run.repeats = run.repeats + 1 if signature == run.last_signature else 1
        run.last_signature = signature
        tool = self.toolset.get(call.name)
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
        if run.repeats > self.repeat_limit:
            record.error = f"{call.name} was called with the same arguments again; stopping"
            return RepeatedToolCall(call.name, call.arguments, run.repeats)
        if run.repeats == self.repeat_limit:
            run.nudged.add(id(record))
            record.error = (
                f"you have called {call.name} with these same arguments {run.repeats} times "
                "in a row; the earlier results stand. Use them to answer, or change the "
                "arguments."
            )
            return None
        if tool is None:
            available = ", ".join(self.toolset.names) or "none"
            record.error = f"unknown tool {call.name!r}; available tools: {available}"
        elif tool.function is None:
            record.error = f"tool {call.name!r} has no handler to run it"
        return job

    async def _run_jobs(
        self, run: _Run, jobs: list[tuple[ToolCallRecord, Tool, dict[str, Any]]]
    ) -> None:
        """Run the calls concurrently; a sequential tool waits for those before it and runs
        alone, and those after it wait for it."""
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.max_concurrency)
        batch: list[tuple[ToolCallRecord, Tool, dict[str, Any]]] = []
        for job in [*jobs, None]:
            if job is not None and not job[1].sequential:
                batch.append(job)
                continue
            if batch:
                await self._run_together(run, batch)
            batch = []
            if job is not None:
                await self._run_together(run, [job])

    async def _run_together(
        self, run: _Run, jobs: list[tuple[ToolCallRecord, Tool, dict[str, Any]]]
    ) -> None:
        """Async tools each in a task; sync tools in one batch on worker threads."""
        if run.journal is not None:  # stored before any of them acts
            await run.journal.started([record.call for record, _, _ in jobs])
        if run.emit:
            for record, _, _ in jobs:  # in the order the model made the calls
                run.emit(ToolCallStarted(record.step, record.call))
        awaited = [job for job in jobs if job[1].is_async]
        threaded = [job for job in jobs if not job[1].is_async]
        if not awaited:
            await self._call_in_threads(run, threaded)
        elif len(awaited) == 1 and not threaded:
            await self._call(run, *awaited[0])
        else:
            async with anyio.create_task_group() as tg:
                for job in awaited:
                    tg.start_soon(self._call, run, *job)
                if threaded:
                    tg.start_soon(self._call_in_threads, run, threaded)

    def _timeout(self, tool: Tool) -> float | None:
        return tool.timeout if tool.timeout is not None else self.tool_timeout

    async def _call(
        self, run: _Run, record: ToolCallRecord, tool: Tool, values: dict[str, Any]
    ) -> None:
        """One call of an async tool, in the event loop."""
        assert self._limiter is not None and tool.function is not None
        timeout = self._timeout(tool)
        value: Any = None
        error: BaseException | None = None
        started = self._clock()
        with run.tracing.tool_call(record, tool) if run.tracing else _NO_SPAN:
            try:
                # No timeout, no cancel scope: it costs more than a fast tool itself.
                with anyio.fail_after(timeout) if timeout is not None else nullcontext():
                    async with self._limiter:
                        value = await tool.function(**values)
            except Exception as exc:
                error = exc
            except anyio.get_cancelled_exc_class() as exc:
                if _really_cancelled():
                    raise
                error = exc  # not the run's cancellation: the tool failed
            record.duration = self._clock() - started
            unhandled = self._file(run, record, tool, value, error)
        if unhandled is not None:
            raise unhandled

    async def _call_in_threads(
        self, run: _Run, jobs: list[tuple[ToolCallRecord, Tool, dict[str, Any]]]
    ) -> None:
        """Calls of sync tools, batched onto worker threads (see `agentkit.tools._threads`)."""
        assert self._limiter is not None
        calls = []
        for record, tool, values in jobs:
            assert tool.function is not None
            function: Callable[[], Any] = partial(tool.function, **values)
            if run.tracing:
                function = run.tracing.threaded(record, tool, function)
            calls.append(ThreadedCall(function, self._timeout(tool), (record, tool)))
        unhandled: BaseException | None = None

        def settled(call: ThreadedCall) -> None:
            nonlocal unhandled
            record, tool = call.owner
            record.duration = call.duration
            raised = self._file(run, record, tool, call.value, call.error)
            if raised is not None and unhandled is None:
                unhandled = raised
                batch.stop()  # the run ends with it: the other calls are given up

        # With a journal, each result goes back as its call returns, to be stored at once.
        batch = ThreadBatch(calls, self._limiter, settled, eager=run.journal is not None)
        await batch.run()
        if unhandled is not None:
            raise unhandled

    def _file(
        self,
        run: _Run,
        record: ToolCallRecord,
        tool: Tool,
        value: Any,
        error: BaseException | None,
    ) -> BaseException | None:
        """Record what came of a call and report it; return an exception the run must raise
        rather than tell the model."""
        if error is None:
            try:
                record.output = _to_text(value)
            except Exception as exc:
                error = exc
        if run.tracing:
            run.tracing.tool_result(record, error)
        timeout = self._timeout(tool)
        if error is None:
            pass
        elif isinstance(error, TimeoutError) and timeout is not None:
            record.error = f"{tool.name} timed out after {timeout:g} s"
        elif isinstance(error, ToolRetry):
            record.error = error.message
        elif isinstance(error, Exception) and not self.raise_tool_errors:
            record.error = f"{type(error).__name__}: {error}"
        elif isinstance(error, anyio.get_cancelled_exc_class()):
            # The run's own cancellation never gets here (see `_call`; a thread cannot see
            # it): raised on, it would pass for one and end the run without a word.
            record.error = f"{tool.name} was cancelled by something other than this run"
            if self.raise_tool_errors:
                return RuntimeError(f"tool {tool.name!r} raised {type(error).__name__}")
        else:
            return error
        if log.isEnabledFor(logging.DEBUG):
            log.debug("tool %s -> %s", tool.name, record.error or record.output)
        if run.journal is not None:
            run.journal.finished(self._result_message(record))
        if run.emit:
            run.emit(ToolCallFinished(record.step, record))
        return None

    def _hold(
        self, run: _Run, jobs: list[tuple[ToolCallRecord, Tool, dict[str, Any]]]
    ) -> list[tuple[ToolCallRecord, Tool, dict[str, Any]]]:
        """The jobs to run now; `agentkit.approval` holds back those that need approval."""
        return jobs

    def _count_failure(self, run: _Run, record: ToolCallRecord) -> Exception | None:
        name = record.call.name
        if record.output is None and record.error is None:
            return None  # held for approval: it has not run
        if record.error is None:
            run.failures.pop(name, None)
            return None
        if id(record) in run.nudged:
            return None  # repeat_limit governs repeats
        tool = self.toolset.get(name)
        if tool is None:
            return None
        failures = run.failures.get(name, 0) + 1
        run.failures[name] = failures
        budget = tool.max_retries if tool.max_retries is not None else self.max_tool_retries
        if failures > budget:
            return ToolRetriesExhausted(name, budget, record.error)
        return None
