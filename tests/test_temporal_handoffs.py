"""Handoffs in durable runs, on a real Temporal dev server: workers of agents, a handoff as a
step of the workflow, a pause for approval in the agent handed to, a worker killed after the
handoff."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import anyio
import pytest
from pydantic import BaseModel, ValidationError

from agentkit import Agent, RunHooks, ScriptedRuntime, handoff, keep_last, tool
from agentkit.cli import main
from agentkit.errors import UserError
from agentkit.results import RunResult
from agentkit.temporal import (
    DurableRunFailed,
    RunInput,
    Worker,
    connect,
    decide,
    progress,
    run,
    start_run,
)
from agentkit.temporal import result as result_of

from support.agents_files import TRIAGE_TO_BILLING
from support.temporal_processes import crash_and_finish, recorded_calls, wait_for


def _queue() -> str:
    return f"q-{uuid.uuid4().hex[:8]}"


class Question(BaseModel):
    order: int


def _invoice_tool(ran: list[int]) -> Any:
    @tool
    def invoice(order: int) -> str:
        """An order's invoice.

        Args:
            order: The order number.
        """
        ran.append(order)
        return f"order {order}: 12.50 EUR, paid"

    return invoice


async def test_triage_hands_off_to_billing_which_answers_through_its_tool(
    temporal_server: Any,
) -> None:
    ran: list[int] = []

    @tool
    def lookup(order: int) -> str:
        """Look an order up.

        Args:
            order: The order number.
        """
        return f"order {order}: delivered"

    billing_model = ScriptedRuntime(
        [ScriptedRuntime.call("invoice", order=7), "Order 7 cost 12.50 EUR and is paid."]
    )
    billing = Agent(
        billing_model,
        tools=[_invoice_tool(ran)],
        name="billing",
        instructions="You answer billing questions.",
    )
    triage_model = ScriptedRuntime(
        [
            ScriptedRuntime.call("lookup", order=7),
            ScriptedRuntime.call("transfer_to_billing", order=7),
        ]
    )
    triage = Agent(
        triage_model,
        tools=[lookup],
        name="triage",
        handoffs=[handoff(billing, input_type=Question, input_filter=keep_last(2))],
    )
    client = await connect(temporal_server.address)
    queue = _queue()
    async with Worker(client, task_queue=queue, agents=[triage]):
        handle = await start_run(client, "Did I pay for order 7?", task_queue=queue)
        result = await result_of(handle)
        seen = await progress(handle)
    assert result.output == "Order 7 cost 12.50 EUR and is paid."
    assert result.agent == "billing"
    assert [(h.source, h.target, h.input) for h in result.handoffs] == [
        ("triage", "billing", {"order": 7})
    ]
    assert [r.call.name for r in result.tool_calls] == ["lookup", "transfer_to_billing", "invoice"]
    assert ran == [7]  # billing's own tool, run once, on the worker
    # Billing saw its own instructions and tools, and what the filter kept: the transfer.
    request = billing_model.requests[0]
    assert [m.role for m in request.messages] == ["system", "assistant", "tool"]
    assert request.messages[0].content == "You answer billing questions."
    assert request.messages[-1].content == 'Transferred to billing. Input: {"order": 7}'
    assert [t.name for t in request.tools or []] == ["invoice"]
    assert seen.steps == 4 and seen.tool_calls == 3 and seen.done
    triage_model.assert_complete()
    billing_model.assert_complete()


async def test_a_pause_for_approval_in_the_agent_handed_to_is_decided_by_signal(
    temporal_server: Any,
) -> None:
    refunded: list[int] = []

    @tool(requires_approval=lambda args: args["order"] > 5)
    def refund(order: int) -> str:
        """Refund an order.

        Args:
            order: The order number.
        """
        refunded.append(order)
        return f"refunded order {order}"

    refunds = Agent(
        ScriptedRuntime([ScriptedRuntime.call("refund", order=7), "Refunded."]),
        tools=[refund],
        name="refunds",
    )
    triage_model = ScriptedRuntime(
        [ScriptedRuntime.call("transfer_to_refunds"), "Done: order 7 is refunded."]
    )
    triage = Agent(triage_model, name="triage", handoffs=[handoff(refunds, returns=True)])
    client = await connect(temporal_server.address)
    queue = _queue()
    async with Worker(client, task_queue=queue, agents=triage):
        handle = await start_run(client, "Refund order 7.", task_queue=queue)
        for _ in range(1200):
            waiting = (await progress(handle)).pending_approvals
            if waiting:
                break
            await anyio.sleep(0.05)
        assert [(c.name, c.arguments) for c in waiting] == [("refund", {"order": 7})]
        assert refunded == []
        await decide(handle, approve=[waiting[0].id])
        result = await result_of(handle)
    assert refunded == [7]
    # Resumed in refunds, which gave control back: triage's answer is the run's.
    assert result.output == "Done: order 7 is refunded." and result.agent == "triage"
    assert result.handoffs[0].returned
    assert triage_model.requests[1].messages[-1].content == "Refunded."


async def test_a_run_names_the_agent_it_starts_with(temporal_server: Any) -> None:
    billing = Agent(ScriptedRuntime(["Billing here."]), name="billing")
    triage = Agent(ScriptedRuntime([]), name="triage", handoffs=[billing])
    client = await connect(temporal_server.address)
    queue = _queue()
    async with Worker(client, task_queue=queue, agents=[triage]):
        result = await run(client, "Hello", task_queue=queue, agent="billing")
        with pytest.raises(DurableRunFailed, match="'shipping' is not registered") as caught:
            await run(client, "Hello", task_queue=queue, agent="shipping")
        assert caught.value.kind == "UnknownAgent"
        with pytest.raises(DurableRunFailed, match="leave unset: max_steps") as refused:
            await run(client, "Hello", task_queue=queue, max_steps=3)
        assert refused.value.kind == "UserError"
    assert result.output == "Billing here." and result.agent == "billing"
    assert result.handoffs == []
    with pytest.raises(ValidationError, match="leave unset: instructions, tools"):
        RunInput(prompt="Hello", agent="billing", instructions="Be brief.", tools=["add"])


class _Noted(RunHooks[Any]):
    pass


def _triage(billing: Agent[Any], **options: Any) -> Agent[Any]:
    return Agent(ScriptedRuntime([]), name="triage", **{"handoffs": [billing], **options})


@pytest.mark.parametrize(
    ("make", "said"),
    [
        (
            lambda b: [_triage(b, handoffs=[handoff(b, input_filter=lambda m: m[-1:])])],
            "agents: 'triage' cannot run durably: handoff to 'billing': input_filter=<function",
        ),
        (
            lambda b: [_triage(b, deadline=30)],
            "'triage' cannot run durably: deadline=30.0: a durable run's is start_run(timeout=)",
        ),
        (
            lambda b: [_triage(b, hooks=[_Noted()])],
            "'triage' cannot run durably: hooks and guardrails would run inside the workflow",
        ),
        (
            lambda b: [Agent(ScriptedRuntime([]))],
            "agents: a worker's agent needs a name: Agent(..., name=...)",
        ),
        (
            lambda b: [_triage(b), Agent(ScriptedRuntime([]), name="billing")],
            "agents: two agents are named 'billing'; each needs its own",
        ),
    ],
)
async def test_a_worker_refuses_agents_that_cannot_run_durably(
    temporal_server: Any, make: Any, said: str
) -> None:
    billing = Agent(ScriptedRuntime([]), name="billing")
    client = await connect(temporal_server.address)
    with pytest.raises(UserError) as caught:
        Worker(client, task_queue=_queue(), agents=make(billing))
    assert said in str(caught.value)


@pytest.mark.subprocess
async def test_a_worker_killed_after_the_handoff_another_finishes_it_and_no_tool_runs_twice(
    temporal_server: Any, tmp_path: Path, workers: list[subprocess.Popen[bytes]]
) -> None:
    # Billing's second model call begins once its first tool call is recorded.
    result, first, second = await crash_and_finish(
        temporal_server.address, _queue(), tmp_path, workers, "--handoff"
    )
    assert result.output == "crash: recorded crash-1, recorded crash-2"
    assert result.agent == "billing"
    assert [(h.source, h.target) for h in result.handoffs] == [("triage", "billing")]
    assert recorded_calls(tmp_path) == [("crash-1", first), ("crash-2", second)]
    assert [r.call.name for r in result.tool_calls] == ["transfer_to_billing", "record", "record"]


def test_the_command_line_worker_refuses_options_the_agents_file_defines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    agents = tmp_path / "agents.py"
    agents.write_text(TRIAGE_TO_BILLING)
    assert main(["worker", "--agents", str(agents), "--tools", "x.py", "--model", "m"]) == 2
    assert "--agents: --tools, --model cannot be given with it" in capsys.readouterr().err


@pytest.mark.subprocess
def test_the_command_line_worker_serves_the_agents_of_a_file(
    temporal_server: Any, tmp_path: Path, workers: list[subprocess.Popen[bytes]]
) -> None:
    agents = tmp_path / "agents.py"
    agents.write_text(TRIAGE_TO_BILLING)
    queue = _queue()
    log = tmp_path / "worker-0.log"
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "agentkit.cli", "worker", "--agents", str(agents)),
            *("--task-queue", queue, "--address", temporal_server.address),
        ],
        stderr=log.open("wb"),
    )
    workers.append(process)
    said = "agentkit worker: agents triage, billing on"
    wait_for(lambda: said in log.read_text(), process, tmp_path)

    def ask(*options: str) -> RunResult[Any]:
        done = subprocess.run(
            [
                *(sys.executable, "-m", "agentkit.cli", "run", "Did I pay for order 7?"),
                *("--temporal", temporal_server.address, "--task-queue", queue, "--json"),
                *options,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return RunResult.model_validate_json(done.stdout)

    # The workers' first agent starts a run unless the command names another.
    result = ask()
    assert result.output == "Order 7 is paid." and result.agent == "billing"
    assert [h.target for h in result.handoffs] == ["billing"]
    assert result.tool_calls[-1].output == "order 7: 12.50 EUR, paid"
    result = ask("--agent", "billing")
    assert result.output == "Order 7 is paid." and result.handoffs == []
    assert [c.call.name for c in result.tool_calls] == ["invoice"]
