"""Durable runs replay: a workflow history, recorded, replays on the current code (the
determinism Temporal needs to resume a run on another worker), and a change that breaks replay
is caught.

`histories/*.json` were recorded by earlier versions of agentkit (a run with tool calls that
fail in each way; a run paused twice for approval and decided by signals; a run whose triage
agent hands off to billing); if a change to the loop stops them replaying, runs in flight would
fail on the new workers: see docs/durable.md.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import anyio
import pytest
from temporalio.client import WorkflowHistory
from temporalio.workflow import NondeterminismError

import agentkit.agent.run as agent_run
import agentkit.temporal.calls as durable_calls
import agentkit.temporal.workflow as durable_workflow
from agentkit import Agent, ToolRetry, handoff, tool
from agentkit.agent.handoffs import Fresh
from agentkit.runtimes import ScriptedRuntime
from agentkit.temporal import Worker, connect, decide, progress, replayer, start_run
from agentkit.temporal.contract import Description, RunInput

from support.helpers import add

HISTORIES = Path(__file__).with_name("histories")


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


@tool(requires_approval=lambda args: args["amount"] > 100)
def pay(amount: int) -> str:
    """Pay an amount.

    Args:
        amount: How much.
    """
    return f"paid {amount}"


async def _record_approval(address: str) -> WorkflowHistory:
    """A run that pauses for approval and is decided by two signals."""
    client = await connect(address)
    queue = f"q-{uuid.uuid4().hex[:8]}"
    script = ScriptedRuntime(
        [
            ScriptedRuntime.calls(("pay", {"amount": 5}), ("pay", {"amount": 500})),
            ScriptedRuntime.calls(("pay", {"amount": 700}), ("add", {"a": 1, "b": 2})),
            ScriptedRuntime.answer("paid 505"),
        ]
    )
    async with Worker(
        client, task_queue=queue, runtimes=script, tools=[add, pay], identity="recorder"
    ):
        handle = await start_run(client, "Pay 5, 500 and 700", task_queue=queue)
        for decision in ("approve", "deny"):
            for _ in range(1200):
                waiting = (await progress(handle)).pending_approvals
                if waiting:
                    break
                await anyio.sleep(0.05)
            if decision == "approve":
                await decide(handle, approve=[waiting[0].id])
            else:
                await decide(handle, deny={waiting[0].id: "too much"})
        result = await handle.result()
    assert [(r.output, r.error) for r in result.tool_calls] == [
        ("paid 5", None),
        ("paid 500", None),
        (None, "denied by the user: too much"),
        ("3", None),
    ]
    return await handle.fetch_history()


@pytest.fixture(scope="module")
def history(temporal_server: Any) -> WorkflowHistory:
    """The history of a run just made on the current code."""
    return asyncio.run(_record(temporal_server.address))


async def test_a_recorded_run_replays(history: WorkflowHistory) -> None:
    outcome = await replayer().replay_workflow(history)
    assert outcome.replay_failure is None


@pytest.mark.parametrize("name", ["agent_run.json", "approval_run.json", "handoff_run.json"])
async def test_a_history_recorded_by_an_earlier_version_replays(name: str) -> None:
    recorded = WorkflowHistory.from_json(name, json.loads((HISTORIES / name).read_text()))
    outcome = await replayer().replay_workflow(recorded)
    assert outcome.replay_failure is None


async def test_renaming_an_activity_breaks_replay(
    history: WorkflowHistory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(durable_calls, "TOOL", "agentkit.tool.v2")
    with pytest.raises(NondeterminismError, match=r"agentkit\.tool"):
        await replayer().replay_workflow(history)


async def test_a_loop_that_schedules_other_calls_breaks_replay(
    history: WorkflowHistory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A deploy whose loop runs a step's calls one after another rather than together: the same
    # calls, but not the commands the history holds (both activities scheduled at once).
    from agentkit.agent.tool_step import ToolStep

    async def one_at_a_time(self: ToolStep, jobs: list[Any]) -> None:
        for job in jobs:
            await self.run_together([job])

    monkeypatch.setattr(ToolStep, "_run_batches", one_at_a_time)
    with pytest.raises(NondeterminismError):
        await replayer().replay_workflow(history)


@tool
def invoice(order: int) -> str:
    """An order's invoice.

    Args:
        order: The order number.
    """
    return f"order {order}: 12.50 EUR, paid"


async def _record_handoff(address: str) -> WorkflowHistory:
    """A run of workers' agents: triage hands off to billing, which answers through its tool."""
    client = await connect(address)
    queue = f"q-{uuid.uuid4().hex[:8]}"
    billing = Agent(
        ScriptedRuntime([ScriptedRuntime.call("invoice", order=7), "Order 7 is paid."]),
        tools=[invoice],
        name="billing",
    )
    triage = Agent(
        ScriptedRuntime([ScriptedRuntime.call("transfer_to_billing")]),
        tools=[add],
        name="triage",
        handoffs=[handoff(billing, description="Answers billing questions.")],
    )
    async with Worker(client, task_queue=queue, agents=[triage], identity="recorder"):
        handle = await start_run(client, "Did I pay for order 7?", task_queue=queue)
        result = await handle.result()
    assert result.output == "Order 7 is paid." and result.agent == "billing"
    return await handle.fetch_history()


@pytest.fixture(scope="module")
def handoff_history(temporal_server: Any) -> WorkflowHistory:
    """The history of a run with a handoff, just made on the current code."""
    return asyncio.run(_record_handoff(temporal_server.address))


async def test_a_run_with_a_handoff_replays(handoff_history: WorkflowHistory) -> None:
    outcome = await replayer().replay_workflow(handoff_history)
    assert outcome.replay_failure is None


async def test_a_loop_that_does_not_make_the_handoff_breaks_replay(
    handoff_history: WorkflowHistory, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def never(run: Any) -> Fresh | None:
        return None

    monkeypatch.setattr(agent_run, "take_up", never)
    with pytest.raises(NondeterminismError):
        await replayer().replay_workflow(handoff_history)


def _renamed(description: Description) -> Description:
    """The description with billing called accounts."""
    text = description.model_dump_json().replace('"billing"', '"accounts"')
    return Description.model_validate_json(text)


def _without_target(description: Description) -> Description:
    """The description with billing, and triage's handoff to it, left out."""
    agents = [a for a in description.agents if a.name != "billing"]
    agents[0] = agents[0].model_copy(update={"handoffs": []})
    return description.model_copy(update={"agents": agents})


@pytest.mark.parametrize("change", [_renamed, _without_target])
async def test_workflow_agents_that_differ_from_the_history_break_replay(
    handoff_history: WorkflowHistory, monkeypatch: pytest.MonkeyPatch, change: Any
) -> None:
    # A deploy whose workflow makes its agents otherwise than the recorded description says:
    # the transfer call no longer hands over, and billing's tool call is not made.
    build = durable_calls.build_agent

    def changed(description: Description, request: RunInput, progress: Any) -> Agent[Any]:
        return build(change(description), request, progress)

    monkeypatch.setattr(durable_workflow, "build_agent", changed)
    with pytest.raises(NondeterminismError):
        await replayer().replay_workflow(handoff_history)
