"""The agent loop, on the shipped scripted runtimes."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from contextlib import aclosing
from typing import Literal

import anyio
import pytest

from agentkit import (
    Agent,
    DeadlineExceeded,
    FunctionRuntime,
    MaxStepsExceeded,
    Message,
    ModelRequest,
    RepeatedToolCall,
    RequestValidationError,
    RunResult,
    ScriptedRuntime,
    ToolCall,
    ToolRetriesExhausted,
    ToolRetry,
    TruncatedToolCall,
    Usage,
    tool,
)
from agentkit.events import (
    RunFinished,
    StepFinished,
    StepStarted,
    TextDelta,
    ToolCallFinished,
    ToolCallStarted,
)
from agentkit.model_api import Generation
from agentkit.tools import Tool
from agentkit.tools._threads import abandoned_threads

from support.helpers import add

call = ScriptedRuntime.call
answer = ScriptedRuntime.answer


def tool_messages(result: RunResult) -> list[Message]:
    return [m for m in result.messages if m.role == "tool"]


async def test_one_tool_round_trip() -> None:
    runtime = ScriptedRuntime(
        [
            Generation(
                tool_calls=[ToolCall(name="add", arguments={"a": 2, "b": 3})],
                usage=Usage.of(10, 5),
            ),
            answer("5", usage=Usage.of(20, 1)),
        ]
    )
    result = await Agent(runtime, tools=[add], instructions="Be brief.").run("2 + 3?")
    runtime.assert_complete()

    assert result.output == "5"
    assert result.stop_reason == "answer"
    assert result.steps == 2
    assert result.usage == Usage.of(30, 6)
    assert [m.role for m in result.messages] == ["system", "user", "assistant", "tool", "assistant"]
    assert result.messages[-1].content == "5"
    assistant, tool_message = result.messages[2], result.messages[3]
    assert tool_message.content == "5"
    assert tool_message.tool_call_id == assistant.tool_calls[0].id
    assert tool_message.name == "add"
    (record,) = result.tool_calls
    assert record.call.arguments == {"a": 2, "b": 3}
    assert record.output == "5"
    assert record.ok
    assert record.duration > 0
    # The model saw the tool and, on the second turn, the tool's result.
    first, second = runtime.requests
    assert first.tools is not None and [t.name for t in first.tools] == ["add"]
    assert first.tools[0].parameters["properties"]["a"]["type"] == "integer"
    assert second.messages is not None and second.messages[-1].content == "5"


async def test_made_up_ids_are_unique_and_answered() -> None:
    runtime = ScriptedRuntime(
        [
            Generation.from_wire(
                {"tool_calls": [{"name": "add", "arguments": {"a": 1, "b": 1}}] * 2}
            ),
            answer("2 and 2"),
        ]
    )
    result = await Agent(runtime, tools=[add]).run("twice")
    ids = [c.id for c in result.messages[1].tool_calls]
    assert len(set(ids)) == 2
    assert [m.tool_call_id for m in tool_messages(result)] == ids


async def test_parallel_calls_run_concurrently_and_keep_emission_order() -> None:
    release_first = anyio.Event()
    finished: list[str] = []

    @tool
    async def slow(name: str) -> str:
        """Wait for the fast call, then finish.

        Args:
            name: A label.
        """
        # Only returns if `fast` runs while this one waits: the calls must be concurrent.
        with anyio.fail_after(5):
            await release_first.wait()
        finished.append(name)
        return f"slow {name}"

    @tool
    async def fast(name: str) -> str:
        """Finish at once.

        Args:
            name: A label.
        """
        finished.append(name)
        release_first.set()
        return f"fast {name}"

    runtime = ScriptedRuntime(
        [ScriptedRuntime.calls(("slow", {"name": "a"}), ("fast", {"name": "b"})), answer("ok")]
    )
    result = await Agent(runtime, tools=[slow, fast]).run("go")
    assert finished == ["b", "a"]
    assert [m.content for m in tool_messages(result)] == ["slow a", "fast b"]


async def test_sequential_tool_runs_alone() -> None:
    log: list[str] = []

    async def traced(name: str) -> str:
        log.append(f"start {name}")
        await anyio.sleep(0.01)
        log.append(f"end {name}")
        return name

    @tool
    async def read(name: str) -> str:
        """Read.

        Args:
            name: A label.
        """
        return await traced(name)

    @tool(sequential=True)
    async def write(name: str) -> str:
        """Write.

        Args:
            name: A label.
        """
        return await traced(name)

    runtime = ScriptedRuntime(
        [
            ScriptedRuntime.calls(
                ("read", {"name": "r1"}),
                ("read", {"name": "r2"}),
                ("write", {"name": "w"}),
                ("read", {"name": "r3"}),
            ),
            answer("done"),
        ]
    )
    await Agent(runtime, tools=[read, write]).run("go")
    w_start, w_end = log.index("start w"), log.index("end w")
    assert w_end == w_start + 1  # nothing else ran while the sequential tool did
    assert log.index("end r1") < w_start and log.index("end r2") < w_start
    assert log.index("start r3") > w_end
    # r1 and r2 overlapped.
    assert log.index("start r2") < log.index("end r1")


async def test_sync_tools_run_in_worker_threads() -> None:
    threads: list[int] = []

    @tool
    def where() -> str:
        """Say which thread runs this."""
        threads.append(threading.get_ident())
        return "here"

    runtime = ScriptedRuntime([call("where"), answer("ok")])
    await Agent(runtime, tools=[where]).run("go")
    assert threads and threads[0] != threading.get_ident()


async def test_blocking_sync_tools_still_run_side_by_side() -> None:
    meeting = threading.Barrier(4, timeout=5)

    @tool
    def gather(name: str) -> str:
        """Wait until all four calls are in.

        Args:
            name: A label.
        """
        meeting.wait()  # raises BrokenBarrierError unless the four calls overlap
        return name

    labels = ["a", "b", "c", "d"]
    runtime = ScriptedRuntime(
        [ScriptedRuntime.calls(*[("gather", {"name": n}) for n in labels]), answer("ok")]
    )
    result = await Agent(runtime, tools=[gather]).run("go")
    assert [m.content for m in tool_messages(result)] == labels


async def test_fast_sync_tools_are_batched_onto_few_threads() -> None:
    threads: list[int] = []

    @tool
    def note(n: int) -> int:
        """Note which thread runs this.

        Args:
            n: A number.
        """
        threads.append(threading.get_ident())
        return n

    runtime = ScriptedRuntime(
        [ScriptedRuntime.calls(*[("note", {"n": n}) for n in range(20)]), answer("ok")]
    )
    result = await Agent(runtime, tools=[note], max_concurrency=8).run("go")
    assert [m.content for m in tool_messages(result)] == [str(n) for n in range(20)]
    assert threading.get_ident() not in threads
    # One thread hop for the step; a second worker joins only if a call seems blocked
    # (a thread preempted for a millisecond on a busy machine). A hop per call would use 8.
    assert len(set(threads)) <= 2


async def test_sync_calls_keep_emission_order_whatever_order_they_finish_in() -> None:
    fast_done = threading.Event()
    finished: list[str] = []

    @tool
    def slow() -> str:
        """Wait for `fast`."""
        assert fast_done.wait(5)  # only returns if `fast` ran meanwhile, on another thread
        finished.append("slow")
        return "slow"

    @tool
    def fast() -> str:
        """Finish at once."""
        finished.append("fast")
        fast_done.set()
        return "fast"

    runtime = ScriptedRuntime([ScriptedRuntime.calls(("slow", {}), ("fast", {})), answer("ok")])
    result = await Agent(runtime, tools=[slow, fast]).run("go")
    assert finished == ["fast", "slow"]
    assert [m.content for m in tool_messages(result)] == ["slow", "fast"]


async def test_sync_tool_timeout_gives_the_call_up_and_the_others_still_run() -> None:
    release = threading.Event()
    returned = threading.Event()

    @tool(timeout=0.05)
    def stuck() -> str:
        """Block until released."""
        release.wait(10)
        returned.set()
        return "late"

    runtime = ScriptedRuntime(
        [ScriptedRuntime.calls(("stuck", {}), ("add", {"a": 1, "b": 2})), answer("gave up")]
    )
    try:
        result = await Agent(runtime, tools=[stuck, add]).run("go")
        # The run went on without waiting for the blocked thread.
        assert not returned.is_set()
    finally:
        release.set()
    timed_out, summed = tool_messages(result)
    assert timed_out.content == "Error: stuck timed out after 0.05 s"
    assert summed.content == "3"
    assert result.output == "gave up"
    assert returned.wait(5)  # the abandoned call finished on its own; its result was dropped
    assert result.tool_calls[0].output is None


async def test_cancelling_a_run_gives_up_sync_calls_and_queued_ones_never_start() -> None:
    started: list[str] = []
    release = threading.Event()
    both_in = threading.Barrier(3, timeout=5)

    @tool
    def block(name: str) -> str:
        """Block until released.

        Args:
            name: A label.
        """
        started.append(name)
        both_in.wait()
        release.wait(10)
        return name

    runtime = ScriptedRuntime(
        [ScriptedRuntime.calls(*[("block", {"name": n}) for n in ("a", "b", "c")])]
    )
    transcript: list[Message] = []
    agent = Agent(runtime, tools=[block], max_concurrency=2)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: agent.run("go", transcript=transcript))
            await anyio.to_thread.run_sync(both_in.wait)  # "a" and "b" are running
            tg.cancel_scope.cancel()
    finally:
        release.set()
    answers = [m.content for m in transcript if m.role == "tool"]
    assert answers == ["Error: cancelled: the run stopped before this call finished"] * 3
    # The given-up threads finish "a" and "b", look for more work, find the batch closed and
    # stop being counted: from then on "c" can no longer start.
    await wait_for_no_given_up_threads()
    assert sorted(started) == ["a", "b"]  # "c" was still queued: it never ran


async def test_a_sequential_sync_tool_runs_alone() -> None:
    log: list[str] = []
    lock = threading.Lock()

    def traced(name: str) -> str:
        with lock:
            log.append(f"start {name}")
        time.sleep(0.005)
        with lock:
            log.append(f"end {name}")
        return name

    @tool
    def read(name: str) -> str:
        """Read.

        Args:
            name: A label.
        """
        return traced(name)

    @tool(sequential=True)
    def write(name: str) -> str:
        """Write.

        Args:
            name: A label.
        """
        return traced(name)

    runtime = ScriptedRuntime(
        [
            ScriptedRuntime.calls(
                ("read", {"name": "r1"}),
                ("read", {"name": "r2"}),
                ("write", {"name": "w"}),
                ("read", {"name": "r3"}),
            ),
            answer("done"),
        ]
    )
    result = await Agent(runtime, tools=[read, write]).run("go")
    w_start, w_end = log.index("start w"), log.index("end w")
    assert w_end == w_start + 1  # nothing else ran while the sequential tool did
    assert log.index("end r1") < w_start and log.index("end r2") < w_start
    assert log.index("start r3") > w_end
    assert [m.content for m in tool_messages(result)] == ["r1", "r2", "w", "r3"]


async def test_raise_tool_errors_re_raises_a_sync_error_among_several_calls() -> None:
    @tool
    def broken() -> str:
        """Fail."""
        raise LookupError("service down")

    runtime = ScriptedRuntime([ScriptedRuntime.calls(("add", {"a": 1, "b": 1}), ("broken", {}))])
    with pytest.raises(LookupError, match="service down"):
        await Agent(runtime, tools=[add, broken], raise_tool_errors=True).run("go")


async def test_unknown_tool_is_told_to_the_model() -> None:
    runtime = ScriptedRuntime([call("multiply", a=2, b=3), answer("sorry")])
    result = await Agent(runtime, tools=[add]).run("2 * 3?")
    (message,) = tool_messages(result)
    assert "unknown tool 'multiply'" in message.content
    assert "available tools: add" in message.content
    assert result.output == "sorry"


async def test_invalid_arguments_are_told_then_stop_the_run() -> None:
    runtime = ScriptedRuntime([call("add", a="two", b=3)] * 3)
    agent = Agent(runtime, tools=[add], max_tool_retries=2)
    with pytest.raises(ToolRetriesExhausted) as info:
        await agent.run("2 + 3?")
    run = info.value.run
    assert run is not None and run.stop_reason == "tool_retries"
    first = tool_messages(run)[0].content
    assert "a" in first and "two" in first  # the field and the raw value
    assert '{"a":"two","b":3}' in first
    assert len(tool_messages(run)) == 3
    assert info.value.tool == "add"


async def test_invalid_arguments_then_recovery() -> None:
    runtime = ScriptedRuntime([call("add", a="x", b=1), call("add", a=1, b=1), answer("2")])
    result = await Agent(runtime, tools=[add]).run("1 + 1?")
    assert result.output == "2"
    assert [r.ok for r in result.tool_calls] == [False, True]


async def test_tool_retry_and_exceptions_go_back_to_the_model() -> None:
    @tool
    def picky(city: str) -> str:
        """Weather.

        Args:
            city: A city.
        """
        if city != "Paris":
            raise ToolRetry("Only Paris is known; try city='Paris'.")
        raise LookupError("weather service down")

    runtime = ScriptedRuntime(
        [call("picky", city="Rome"), call("picky", city="Paris"), answer("x")]
    )
    result = await Agent(runtime, tools=[picky]).run("weather?")
    retry, crash = tool_messages(result)
    assert "Only Paris is known" in retry.content
    assert "LookupError: weather service down" in crash.content

    runtime = ScriptedRuntime([call("picky", city="Paris")])
    with pytest.raises(LookupError):
        await Agent(runtime, tools=[picky], raise_tool_errors=True).run("weather?")


async def test_tool_timeout() -> None:
    @tool(timeout=0.05)
    async def sleepy() -> str:
        """Sleep too long."""
        await anyio.sleep(10)
        return "never"

    runtime = ScriptedRuntime([call("sleepy"), answer("gave up")])
    result = await Agent(runtime, tools=[sleepy]).run("go")
    (message,) = tool_messages(result)
    assert "sleepy timed out after 0.05 s" in message.content
    assert result.output == "gave up"


async def test_repeated_call_gets_a_nudge_then_stops() -> None:
    runtime = ScriptedRuntime([call("add", a=1, b=2)] * 4)
    with pytest.raises(RepeatedToolCall) as info:
        await Agent(runtime, tools=[add]).run("1 + 2?")
    run = info.value.run
    assert run is not None
    contents = [m.content for m in tool_messages(run)]
    assert contents[:2] == ["3", "3"]
    assert "3 times in a row" in contents[2]
    assert run.stop_reason == "repeat"
    assert info.value.times == 4


async def test_oversized_output_is_cut_but_kept_whole_in_the_record() -> None:
    @tool
    def big() -> str:
        """A lot of text."""
        return "A" * 500 + "MIDDLE" + "Z" * 500

    runtime = ScriptedRuntime([call("big"), answer("ok")])
    result = await Agent(runtime, tools=[big], max_tool_output=100).run("go")
    (message,) = tool_messages(result)
    assert message.content.startswith("A" * 50)
    assert message.content.endswith("Z" * 30)
    assert "characters cut" in message.content
    assert "MIDDLE" not in message.content
    assert result.tool_calls[0].output is not None and "MIDDLE" in result.tool_calls[0].output


async def test_structured_results_are_json() -> None:
    @tool
    def lookup() -> dict[str, object]:
        """Data."""
        return {"city": "Paris", "temp": 21.5, "tags": ("sunny",)}

    runtime = ScriptedRuntime([call("lookup"), answer("ok")])
    result = await Agent(runtime, tools=[lookup]).run("go")
    assert tool_messages(result)[0].content == '{"city": "Paris", "temp": 21.5, "tags": ["sunny"]}'


async def test_max_steps_raises_with_the_partial_run() -> None:
    runtime = ScriptedRuntime([call("add", a=i, b=1) for i in range(3)])
    with pytest.raises(MaxStepsExceeded) as info:
        await Agent(runtime, tools=[add], max_steps=3).run("count")
    run = info.value.run
    assert run is not None and run.steps == 3 and len(run.tool_calls) == 3
    assert run.stop_reason == "max_steps"
    # Every call in the partial transcript has its result.
    assert len(tool_messages(run)) == 3


async def test_max_steps_can_end_with_a_final_answer_without_tools() -> None:
    runtime = ScriptedRuntime([call("add", a=1, b=1), call("add", a=2, b=2), answer("4")])
    agent = Agent(runtime, tools=[add], max_steps=2, final_answer_on_max_steps=True)
    result = await agent.run("go")
    assert result.output == "4"
    assert result.stop_reason == "final_answer"
    last = runtime.requests[-1]
    assert last.tools == [] and last.tool_choice == "none"
    runtime.assert_complete()


async def test_deadline() -> None:
    @tool
    async def slow() -> str:
        """Slow."""
        await anyio.sleep(10)
        return "late"

    runtime = ScriptedRuntime([call("slow")])
    with pytest.raises(DeadlineExceeded) as info:
        await Agent(runtime, tools=[slow], deadline=0.1).run("go")
    run = info.value.run
    assert run is not None and run.stop_reason == "deadline"
    (message,) = tool_messages(run)
    assert message.content.startswith("Error: cancelled")


async def test_cancelling_a_run_leaves_no_task_and_answers_every_call() -> None:
    started = anyio.Event()
    cancelled: list[str] = []

    @tool
    async def wait_forever(name: str) -> str:
        """Block.

        Args:
            name: A label.
        """
        try:
            started.set()
            await anyio.sleep_forever()
        finally:
            cancelled.append(name)
        return name

    runtime = ScriptedRuntime(
        [ScriptedRuntime.calls(("wait_forever", {"name": "a"}), ("wait_forever", {"name": "b"}))]
    )
    transcript: list[Message] = []
    agent = Agent(runtime, tools=[wait_forever])
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: agent.run("go", transcript=transcript))
        await started.wait()
        tg.cancel_scope.cancel()
    assert sorted(cancelled) == ["a", "b"]  # both tool tasks saw the cancellation and ended
    calls = [c.id for m in transcript for c in m.tool_calls]
    answered = [m.tool_call_id for m in transcript if m.role == "tool"]
    assert len(calls) == 2 and answered == calls


async def test_stream_events_in_order() -> None:
    runtime = ScriptedRuntime([call("add", a=2, b=3), answer("The sum is 5")])
    events = [e async for e in Agent(runtime, tools=[add]).stream("2 + 3?")]
    kinds = [type(e) for e in events]
    assert kinds == [
        StepStarted,
        ToolCallStarted,
        ToolCallFinished,
        StepFinished,
        StepStarted,
        TextDelta,
        TextDelta,
        TextDelta,
        TextDelta,
        StepFinished,
        RunFinished,
    ]
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert text == "The sum is 5"
    finished = events[2]
    assert isinstance(finished, ToolCallFinished) and finished.record.output == "5"
    last = events[-1]
    assert isinstance(last, RunFinished) and last.result.output == "The sum is 5"
    assert runtime.streamed[0] is True


async def test_stream_raises_run_errors_plainly() -> None:
    runtime = ScriptedRuntime([call("add", a=1, b=1)])
    with pytest.raises(MaxStepsExceeded):
        async with aclosing(Agent(runtime, tools=[add], max_steps=1).stream("go")) as events:
            async for _ in events:
                pass


async def test_stopping_a_stream_early_cancels_the_run() -> None:
    cancelled = anyio.Event()

    @tool
    async def block() -> str:
        """Block."""
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()
        return ""

    runtime = ScriptedRuntime([call("block")])
    async with aclosing(Agent(runtime, tools=[block]).stream("go")) as events:
        async for event in events:
            if isinstance(event, ToolCallStarted):
                break
    assert cancelled.is_set()


async def test_result_round_trips_as_json_and_continues_the_conversation() -> None:
    runtime = ScriptedRuntime([call("add", a=2, b=3), answer("5"), answer("10")])
    agent = Agent(runtime, tools=[add], instructions="Be brief.")
    first = await agent.run("2 + 3?")
    loaded = RunResult.model_validate_json(first.model_dump_json())
    assert loaded == first
    second = await agent.run("and doubled?", history=loaded.messages)
    assert second.output == "10"
    sent = runtime.requests[-1].messages
    assert sent is not None
    assert [m.role for m in sent] == ["system", "user", "assistant", "tool", "assistant", "user"]
    assert [m.role for m in second.messages][-2:] == ["user", "assistant"]


async def test_sampling_fields_are_validated_once_and_sent_every_step() -> None:
    with pytest.raises(RequestValidationError, match=r"temperature: must be <= 5 \(got 9\)"):
        Agent(ScriptedRuntime(), temperature=9)
    runtime = ScriptedRuntime([call("add", a=1, b=1), answer("2")])
    await Agent(runtime, tools=[add], temperature=0, seed=7, max_tokens=64).run("go")
    for request in runtime.requests:
        assert (request.temperature, request.seed, request.max_tokens) == (0, 7, 64)


async def test_function_runtime_decides_each_turn() -> None:
    async def model(request: ModelRequest) -> Generation | str:
        assert request.messages is not None
        last = request.messages[-1]
        if last.role == "tool":
            return f"The answer is {last.content}."
        return call("add", a=20, b=22)

    result = await Agent(FunctionRuntime(model), tools=[add]).run("20 + 22?")
    assert result.output == "The answer is 42."


def test_run_sync() -> None:
    runtime = ScriptedRuntime([call("add", a=2, b=2), answer("4")])
    assert Agent(runtime, tools=[add]).run_sync("2 + 2?").output == "4"


def test_scripted_runtime_reports_unused_turns() -> None:
    runtime = ScriptedRuntime([answer("a"), answer("b")])
    Agent(runtime).run_sync("hi")
    with pytest.raises(AssertionError, match="1 scripted turn"):
        runtime.assert_complete()


async def test_runtime_errors_propagate_unchanged() -> None:
    runtime = ScriptedRuntime([ConnectionResetError("gone")])
    with pytest.raises(ConnectionResetError):
        await Agent(runtime).run("hi")


@pytest.mark.parametrize("choice", ["required", "add"])
async def test_tool_choice_is_sent(choice: Literal["required", "add"]) -> None:
    runtime = ScriptedRuntime([answer("x")])
    await Agent(runtime, tools=[add], tool_choice=choice).run("go")
    assert runtime.requests[0].tool_choice == choice


async def test_a_forced_tool_choice_goes_back_to_auto_once_the_tools_answered() -> None:
    runtime = ScriptedRuntime([ScriptedRuntime.call("add", a=2, b=3), ScriptedRuntime.answer("5")])
    result = await Agent(runtime, tools=[add], tool_choice="required").run("2 + 3?")
    assert result.output == "5"
    assert [r.tool_choice for r in runtime.requests] == ["required", "auto"]


async def test_a_forced_tool_choice_can_be_kept_for_every_step() -> None:
    runtime = ScriptedRuntime([ScriptedRuntime.call("add", a=2, b=3), ScriptedRuntime.answer("5")])
    agent = Agent(runtime, tools=[add], tool_choice="add", reset_tool_choice=False)
    await agent.run("2 + 3?")
    assert [r.tool_choice for r in runtime.requests] == ["add", "add"]


async def test_duration_is_the_time_the_tool_ran_and_zero_when_it_never_ran() -> None:
    @tool
    def nap() -> str:
        """Sleep a little."""
        time.sleep(0.05)
        return "rested"

    runtime = ScriptedRuntime(
        [ScriptedRuntime.calls(("nap", {}), ("add", {"a": "x"})), answer("ok")]
    )
    result = await Agent(runtime, tools=[nap, add]).run("go")
    napped, refused = result.tool_calls
    assert napped.duration >= 0.05  # a sleep never ends early
    assert refused.error is not None and refused.duration == 0.0  # invalid: it never ran


# -- a tool's stray CancelledError ----------------------------------------------------------


@tool
async def await_cancelled_job() -> str:
    """Wait for a job that something else cancels."""
    job: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    job.cancel()
    return await job  # raises CancelledError, though nobody cancelled this run


@tool
def sync_cancelled_job() -> str:
    """A sync tool that lets a CancelledError out."""
    raise asyncio.CancelledError()


@pytest.mark.parametrize("stray", [await_cancelled_job, sync_cancelled_job])
async def test_a_stray_cancelled_error_is_a_tool_failure_told_to_the_model(stray: Tool) -> None:
    runtime = ScriptedRuntime([call(stray.name), answer("the job was cancelled")])
    result = await Agent(runtime, tools=[stray]).run("go")
    (message,) = tool_messages(result)
    assert message.content == f"Error: {stray.name} was cancelled by something other than this run"
    assert result.output == "the job was cancelled"
    assert result.tool_calls[0].error is not None


async def test_a_stream_whose_tool_raises_cancelled_error_still_ends_with_run_finished() -> None:
    runtime = ScriptedRuntime([call("await_cancelled_job"), answer("done")])
    events = [e async for e in Agent(runtime, tools=[await_cancelled_job]).stream("go")]
    assert [type(e) for e in events][1:3] == [ToolCallStarted, ToolCallFinished]
    last = events[-1]
    assert isinstance(last, RunFinished) and last.result.output == "done"


async def test_a_stray_cancelled_error_with_raise_tool_errors_is_raised_as_an_error() -> None:
    runtime = ScriptedRuntime([call("await_cancelled_job")])
    agent = Agent(runtime, tools=[await_cancelled_job], raise_tool_errors=True)
    with pytest.raises(RuntimeError, match="'await_cancelled_job' raised CancelledError"):
        async with aclosing(agent.stream("go")) as events:
            async for _ in events:
                pass


async def test_cancelling_the_run_from_asyncio_still_cancels_it() -> None:
    @tool
    async def slow() -> str:
        """Take long."""
        await asyncio.sleep(10)
        return "late"

    runtime = ScriptedRuntime([call("slow"), answer("never")])
    transcript: list[Message] = []
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(Agent(runtime, tools=[slow]).run("go", transcript=transcript), 0.1)
    assert [m.content for m in transcript if m.role == "tool"] == [
        "Error: cancelled: the run stopped before this call finished"
    ]
    assert len(runtime.requests) == 1  # the run did not go on to ask the model again


# -- arguments that are not JSON --------------------------------------------------------------


@pytest.mark.parametrize(
    "value", [..., {1, 2}, 1j, b"x"], ids=["ellipsis", "set", "complex", "bytes"]
)
async def test_arguments_that_are_not_json_are_told_as_invalid(value: object) -> None:
    runtime = ScriptedRuntime(
        [Generation(tool_calls=[ToolCall(name="add", arguments={"a": value, "b": 1})]), answer("x")]
    )
    result = await Agent(runtime, tools=[add]).run("go")
    (message,) = tool_messages(result)
    assert message.content.startswith("Error: invalid arguments for add")
    assert repr(value) in message.content  # what the model sent, as it was read
    assert result.output == "x"
    # The transcript stays sendable: the next request held the call, as text.
    assert runtime.requests[1].messages[1].tool_calls[0].to_wire()["function"]["arguments"]


# -- max_tokens cutting a generation ----------------------------------------------------------

CUT_CALL = '<tool_call>\n{"name": "add", "arguments": {"a": 1, "b'


async def test_a_tool_call_cut_off_by_max_tokens_raises_with_the_partial_run() -> None:
    runtime = ScriptedRuntime(
        [call("add", a=1, b=1), Generation(response=CUT_CALL, finish_reason="length")]
    )
    with pytest.raises(TruncatedToolCall) as info:
        await Agent(runtime, tools=[add], max_tokens=40).run("go")
    error = info.value
    assert error.max_tokens == 40 and error.text == CUT_CALL
    assert "max_tokens=40" in str(error)
    assert error.run is not None and error.run.stop_reason == "truncated_call"
    assert error.run.steps == 2 and error.run.tool_calls[0].output == "2"
    assert CUT_CALL not in [m.content for m in error.run.messages]  # no answer in the transcript


async def test_a_streamed_cut_off_call_raises_too() -> None:
    runtime = ScriptedRuntime([Generation(response=CUT_CALL, finish_reason="length")])
    with pytest.raises(TruncatedToolCall):
        async with aclosing(Agent(runtime, tools=[add]).stream("go")) as events:
            async for _ in events:
                pass


async def test_an_answer_cut_off_by_max_tokens_is_marked_truncated() -> None:
    runtime = ScriptedRuntime(
        [
            Generation(response="The sum is", finish_reason="length"),
            Generation(response='{"name": "Ada"', finish_reason="length"),  # no tools offered
            Generation(response="The sum is 2.", finish_reason="stop"),
        ]
    )
    cut = await Agent(runtime, tools=[add]).run("go")
    assert (cut.output, cut.stop_reason, cut.truncated) == ("The sum is", "answer", True)
    json_cut = await Agent(runtime).run("go")
    assert json_cut.truncated and json_cut.output == '{"name": "Ada"'
    whole = await Agent(runtime, tools=[add]).run("go")
    assert not whole.truncated
    assert RunResult.model_validate_json(cut.model_dump_json()).truncated


# -- budgets ----------------------------------------------------------------------------------


async def test_repeats_do_not_count_as_failures_against_max_tool_retries() -> None:
    runtime = ScriptedRuntime([call("add", a=1, b=2)] * 4)
    with pytest.raises(RepeatedToolCall) as info:
        await Agent(runtime, tools=[add], max_tool_retries=0).run("go")
    run = info.value.run
    assert run is not None and [r.output for r in run.tool_calls][:2] == ["3", "3"]
    assert "3 times in a row" in (run.tool_calls[2].error or "")


async def test_max_tool_retries_counts_every_kind_of_failure_in_a_row() -> None:
    failures = iter([ToolRetry("try again"), LookupError("down"), None])

    @tool
    def flaky(n: int) -> str:
        """Fail, then work.

        Args:
            n: Attempt.
        """
        failure = next(failures)
        if failure is not None:
            raise failure
        return "ok"

    # Bad arguments, ToolRetry, an exception: three failures in a row, one more than allowed.
    runtime = ScriptedRuntime([call("flaky", n="x"), call("flaky", n=1), call("flaky", n=2)])
    with pytest.raises(ToolRetriesExhausted) as info:
        await Agent(runtime, tools=[flaky], max_tool_retries=2).run("go")
    assert info.value.last_error == "LookupError: down"
    # A success in between starts the count again.
    failures = iter([LookupError("down"), None, LookupError("down")])
    runtime = ScriptedRuntime(
        [call("flaky", n=1), call("flaky", n=2), call("flaky", n=3), answer("fine")]
    )
    result = await Agent(runtime, tools=[flaky], max_tool_retries=1).run("go")
    assert result.output == "fine"


async def test_a_tool_added_after_the_agent_was_made_is_sent_and_runs() -> None:
    @tool
    def clock() -> str:
        """The time."""
        return "noon"

    runtime = ScriptedRuntime([answer("hi"), call("clock"), answer("noon")])
    agent = Agent(runtime, tools=[add])
    await agent.run("hi")
    agent.toolset.add(clock)
    result = await agent.run("time?")
    assert [t.name for t in runtime.requests[1].tools or []] == ["add", "clock"]
    assert result.tool_calls[0].output == "noon"


# -- threads of given-up sync calls -----------------------------------------------------------

GIVEN_UP_SCRIPT = """
import logging, time
from agentkit import Agent, ScriptedRuntime, tool
from agentkit.tools._threads import abandoned_threads

logging.basicConfig(level=logging.WARNING)

@tool(timeout=0.5)
def stuck() -> str:
    \"\"\"Sleep long.\"\"\"
    time.sleep(SLEEP)
    return "late"

runtime = ScriptedRuntime([ScriptedRuntime.call("stuck"), ScriptedRuntime.answer("gave up")])
result = Agent(runtime, tools=[stuck]).run_sync("go")
print(result.output, abandoned_threads())
"""


@pytest.mark.subprocess
def test_a_given_up_sync_call_does_not_keep_the_process_alive() -> None:
    sleep = 30
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", GIVEN_UP_SCRIPT.replace("SLEEP", str(sleep))],
        capture_output=True,
        text=True,
        timeout=sleep * 2,
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["gave", "up", "1"]  # answered, one thread still counted
    assert "given up; its thread runs on until it returns (1 such threads" in done.stderr
    assert elapsed < sleep / 3  # it exited without waiting for the sleeping tool


async def wait_for_no_given_up_threads() -> None:
    with anyio.fail_after(20):
        while abandoned_threads():  # noqa: ASYNC110 - a count, not an event, says so
            await anyio.sleep(0.01)


async def test_given_up_threads_are_capped_and_sync_calls_fail_meanwhile(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from agentkit.tools import _threads

    await wait_for_no_given_up_threads()
    monkeypatch.setattr(_threads, "MAX_ABANDONED", 1)
    release = threading.Event()

    # Long enough for the call to start on a loaded machine: one given up before it starts
    # leaves no thread behind.
    @tool(timeout=0.5)
    def stuck() -> str:
        """Block until released."""
        release.wait(10)
        return "late"

    runtime = ScriptedRuntime([call("stuck"), call("add", a=1, b=2), answer("x")])
    try:
        result = await Agent(runtime, tools=[stuck, add]).run("go")
        assert abandoned_threads() == 1
    finally:
        release.set()
    timed_out, refused = tool_messages(result)
    assert timed_out.content == "Error: stuck timed out after 0.5 s"
    assert refused.content == (
        "Error: RuntimeError: not started: 1 threads of earlier sync tool calls that were "
        "given up are still running (the most allowed is 1)"
    )
    await wait_for_no_given_up_threads()  # released, the thread returned: no longer counted
    runtime = ScriptedRuntime([call("add", a=1, b=2), answer("3")])
    assert (await Agent(runtime, tools=[add]).run("go")).tool_calls[0].output == "3"
