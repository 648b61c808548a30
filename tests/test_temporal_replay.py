"""Durable runs replay: a workflow history, recorded, replays on the current code (the
determinism Temporal needs to resume a run on another worker), and a change that breaks replay
is caught.

`histories/agent_run.json` was recorded by an earlier version of agentkit; if a change to the
loop stops it replaying, runs in flight would fail on the new workers: see docs/durable.md.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import anyio
import pytest
from helpers import add
from temporalio.client import WorkflowHistory
from temporalio.workflow import NondeterminismError

import agentkit.temporal.workflow as durable_workflow
from agentkit import ToolRetry, tool
from agentkit.runtimes import ScriptedRuntime
from agentkit.temporal import Worker, connect, replayer, start_run

RECORDED = Path(__file__).with_name("histories") / "agent_run.json"


@tool
def divide(a: float, b: float) -> float:
    """Divide a by b.

    Args:
        a: The dividend.
        b: The divisor.
    """
    if b == 0:
        raise ToolRetry("b must not be 0")
    return a / b


def _script() -> ScriptedRuntime:
    return ScriptedRuntime(
        [
            ScriptedRuntime.calls(("add", {"a": 2, "b": 3}), ("divide", {"a": 1, "b": 0})),
            ScriptedRuntime.calls(("divide", {"a": 1, "b": 4}), ("add", {"a": 1})),
            ScriptedRuntime.answer("5 and 0.25"),
        ]
    )


async def _record(address: str) -> WorkflowHistory:
    client = await connect(address)
    queue = f"q-{uuid.uuid4().hex[:8]}"
    async with Worker(
        client, task_queue=queue, runtimes=_script(), tools=[add, divide], identity="recorder"
    ):
        handle = await start_run(client, "What are 2 + 3 and 1 / 4?", task_queue=queue)
        result = await handle.result()
    assert result.output == "5 and 0.25"
    assert [r.error for r in result.tool_calls] == [
        None,
        "b must not be 0",
        None,
        # Checked in the workflow against the tool's JSON Schema (its wording).
        'invalid arguments for add: "b" is a required property. You sent: {"a":1}',
    ]
    return await handle.fetch_history()


@pytest.fixture(scope="module")
def history(temporal_server: Any) -> WorkflowHistory:
    """The history of a run just made on the current code."""
    return asyncio.run(_record(temporal_server.address))


async def test_a_recorded_run_replays(history: WorkflowHistory) -> None:
    outcome = await replayer().replay_workflow(history)
    assert outcome.replay_failure is None


async def test_a_history_recorded_by_an_earlier_version_replays() -> None:
    recorded = WorkflowHistory.from_json("recorded", json.loads(RECORDED.read_text()))
    outcome = await replayer().replay_workflow(recorded)
    assert outcome.replay_failure is None


async def test_renaming_an_activity_breaks_replay(
    history: WorkflowHistory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(durable_workflow, "TOOL", "agentkit.tool.v2")
    with pytest.raises(NondeterminismError, match=r"agentkit\.tool"):
        await replayer().replay_workflow(history)


async def test_a_loop_that_schedules_other_calls_breaks_replay(
    history: WorkflowHistory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A deploy whose loop runs a step's calls one after another rather than together: the same
    # calls, but not the commands the history holds (both activities scheduled at once).
    async def one_at_a_time(self: Any, run: Any, jobs: list[Any]) -> None:
        self._limiter = self._limiter or anyio.CapacityLimiter(1)
        for job in jobs:
            await self._run_together(run, [job])

    monkeypatch.setattr(durable_workflow._DurableAgent, "_run_jobs", one_at_a_time)
    with pytest.raises(NondeterminismError):
        await replayer().replay_workflow(history)
