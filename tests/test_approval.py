"""Tool calls that wait for a person: the run pauses, `resume` goes on with the decisions."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from contextlib import aclosing
from pathlib import Path

import anyio
import pytest

from agentkit import (
    Agent,
    DeadlineExceeded,
    Message,
    RunResult,
    RunState,
    RunStateError,
    ScriptedRuntime,
    ToolRetriesExhausted,
    tool,
)
from agentkit.events import Event, RunFinished, StepFinished, ToolCallFinished, ToolCallStarted

from support.helpers import add

ROOT = Path(__file__).resolve().parents[1]
sent: list[tuple[str, int]] = []


@tool(requires_approval=True)
def transfer(to: str, amount: int = 10) -> str:
    """Send money.

    Args:
        to: Who gets it.
        amount: How much.
    """
    sent.append((to, amount))
    return f"sent {amount} to {to}"


@tool(requires_approval=lambda args: args["amount"] > 100)
def pay(amount: int) -> str:
    """Pay an amount.

    Args:
        amount: How much.
    """
    sent.append(("pay", amount))
    return f"paid {amount}"


@pytest.fixture(autouse=True)
def _nothing_sent() -> None:
    sent.clear()


def tool_results(messages: list[Message]) -> list[tuple[str | None, str]]:
    return [(m.tool_call_id, m.content or "") for m in messages if m.role == "tool"]


def paused_mixed_step() -> tuple[Agent[str], ScriptedRuntime, RunResult[str]]:
    runtime = ScriptedRuntime(
        [
            ScriptedRuntime.calls(("transfer", {"to": "bob"}), ("add", {"a": 2, "b": 3})),
            "Sent, and 2 + 3 = 5.",
        ]
    )
    agent = Agent(runtime, tools=[add, transfer])
    return agent, runtime, agent.run_sync("Send bob money and add 2 and 3.")


def test_a_step_with_one_call_to_approve_runs_the_other_and_pauses() -> None:
    agent, runtime, result = paused_mixed_step()
    assert result.stop_reason == "approval"
    assert result.output == ""
    [pending] = result.pending
    assert (pending.name, pending.arguments, pending.step) == (
        "transfer",
        {"to": "bob", "amount": 10},
        1,
    )
    assert sent == []  # the transfer waits
    # The call that needs no approval ran and its result is filed.
    by_name = {r.call.name: r for r in result.tool_calls}
    assert by_name["add"].output == "5"
    assert by_name["transfer"].output is None and by_name["transfer"].error is None
    transfer_id, add_id = (c.id for c in result.messages[-2].tool_calls)
    assert tool_results(result.messages) == [(add_id, "5")]
    assert result.state is not None and result.state.pending == result.pending
    assert runtime.remaining == 1  # the model was not asked again

    resumed = agent.resume_sync(result.state, approve=[transfer_id])
    assert resumed.stop_reason == "answer"
    assert resumed.output == "Sent, and 2 + 3 = 5."
    assert sent == [("bob", 10)]
    assert resumed.state is None and resumed.pending == []
    # Every result of the step, in the order the model made the calls.
    assert tool_results(resumed.messages) == [(transfer_id, "sent 10 to bob"), (add_id, "5")]
    assert tool_results(runtime.requests[1].messages) == tool_results(resumed.messages)
    assert resumed.steps == 2
    assert [r.call.name for r in resumed.tool_calls] == ["transfer", "add"]
    runtime.assert_complete()


def test_a_denied_call_is_told_to_the_model_with_the_reason() -> None:
    agent, runtime, result = paused_mixed_step()
    [pending] = result.pending
    assert result.state is not None
    resumed = agent.resume_sync(result.state, deny={pending.id: "bob is not a customer"})
    assert sent == []
    told = tool_results(runtime.requests[1].messages)
    assert told[0] == (pending.id, "Error: denied by the user: bob is not a customer")
    record = resumed.tool_calls[0]
    assert (record.call.name, record.error) == (
        "transfer",
        "denied by the user: bob is not a customer",
    )
    assert resumed.output == "Sent, and 2 + 3 = 5."


def test_a_denial_without_a_reason_says_only_that() -> None:
    agent, runtime, result = paused_mixed_step()
    [pending] = result.pending
    assert result.state is not None
    agent.resume_sync(result.state, deny={pending.id: "  "})
    assert tool_results(runtime.requests[1].messages)[0] == (
        pending.id,
        "Error: denied by the user",
    )


def test_a_predicate_that_raises_asks_for_approval() -> None:
    @tool(requires_approval=lambda args: args["missing"] > 1)
    def wipe(disk: str) -> str:
        """Wipe a disk.

        Args:
            disk: Which one.
        """
        sent.append(("wipe", 0))
        return "wiped"

    runtime = ScriptedRuntime([ScriptedRuntime.call("wipe", disk="sda")])
    result = Agent(runtime, tools=[wipe]).run_sync("wipe sda")
    assert result.stop_reason == "approval" and sent == []
    assert [p.arguments for p in result.pending] == [{"disk": "sda"}]


def test_a_predicate_decides_from_the_validated_arguments() -> None:
    runtime = ScriptedRuntime(
        [ScriptedRuntime.call("pay", amount="50"), ScriptedRuntime.call("pay", amount=500), "ok"]
    )
    agent = Agent(runtime, tools=[pay])
    result = agent.run_sync("pay 50 then 500")
    assert result.stop_reason == "approval"
    assert sent == [("pay", 50)]  # "50" validated to 50: under the bound, no approval
    assert [(p.name, p.arguments) for p in result.pending] == [("pay", {"amount": 500})]
    assert result.steps == 2
    assert result.state is not None
    done = agent.resume_sync(result.state, approve=[result.pending[0].id])
    assert sent == [("pay", 50), ("pay", 500)]
    assert done.output == "ok"


def test_invalid_and_unknown_calls_are_told_before_any_approval() -> None:
    runtime = ScriptedRuntime(
        [
            ScriptedRuntime.calls(("transfer", {"amount": 5}), ("wire", {"to": "x"})),
            "fixed",
        ]
    )
    result = Agent(runtime, tools=[transfer]).run_sync("go")
    assert result.stop_reason == "answer"  # nothing valid waited
    errors = [r.error or "" for r in result.tool_calls]
    assert errors[0].startswith("invalid arguments for transfer")
    assert errors[1].startswith("unknown tool 'wire'")


def test_resuming_twice_or_with_ids_not_pending_fails_naming_them() -> None:
    agent, _, result = paused_mixed_step()
    state = result.state
    assert state is not None
    [pending] = result.pending
    with pytest.raises(RunStateError) as caught:
        agent.resume_sync(state, approve=["call_nope"])
    assert str(caught.value) == (
        f"cannot resume this run: not pending: call_nope (pending: {pending.id}); "
        f"undecided: {pending.id}; approve or deny every pending call"
    )
    with pytest.raises(RunStateError, match="both approved and denied: " + pending.id):
        agent.resume_sync(state, approve=[pending.id], deny={pending.id: "no"})
    copy = RunState.from_json(state.to_json())
    agent.resume_sync(state, approve=[pending.id])
    for again in (state, copy):
        with pytest.raises(RunStateError, match=f"state {state.id} was already resumed"):
            agent.resume_sync(again, approve=[pending.id])
    assert sent == [("bob", 10)]


def test_a_state_of_an_agent_configured_differently_is_refused_by_name() -> None:
    _, _, result = paused_mixed_step()
    assert result.state is not None
    state = RunState.from_json(result.state.to_json())
    [pending] = result.pending

    with pytest.raises(RunStateError) as caught:
        Agent(ScriptedRuntime(["x"]), tools=[add]).resume_sync(state, approve=[pending.id])
    assert caught.value.problems == [
        "tool 'transfer': used by the paused run, missing in this agent"
    ]

    @tool(name="transfer", requires_approval=True)
    def transfer_v2(to: str, amount: int, memo: str) -> str:
        """Send money with a memo.

        Args:
            to: Who gets it.
            amount: How much.
            memo: Why.
        """
        return "sent"

    with pytest.raises(RunStateError) as caught:
        Agent(ScriptedRuntime(["x"]), tools=[add, transfer_v2]).resume_sync(
            state, approve=[pending.id]
        )
    assert caught.value.problems == ["tool 'transfer': its schema changed since the run paused"]

    other = Agent(ScriptedRuntime(["x"]), tools=[add, transfer])
    other.output_type = dict  # a setting in the fingerprint
    with pytest.raises(RunStateError) as caught:
        other.resume_sync(state, approve=[pending.id])
    assert caught.value.problems == [
        "setting 'output_type': set in this agent, not in the paused run's"
    ]
    assert sent == []
    # Refused before anything ran: the state can still be resumed by the right agent.
    runtime = ScriptedRuntime(["done"])
    assert (
        Agent(runtime, tools=[add, transfer]).resume_sync(state, approve=[pending.id]).output
        == "done"
    )


def test_a_state_of_an_unknown_version_or_not_a_state_is_refused() -> None:
    _, _, result = paused_mixed_step()
    assert result.state is not None
    data = json.loads(result.state.to_json())
    data["version"] = 2
    with pytest.raises(RunStateError, match=r"version: this agentkit reads version 1 \(got 2\)"):
        RunState.from_json(json.dumps(data))
    with pytest.raises(RunStateError, match="expected a JSON object"):
        RunState.from_json("[]")
    del data["steps"]
    data["version"] = 1
    with pytest.raises(RunStateError, match="steps: Field required"):
        RunState.from_json(json.dumps(data))


def test_the_state_round_trips_through_json_with_counters_and_usage() -> None:
    _, _, result = paused_mixed_step()
    state = result.state
    assert state is not None
    again = RunState.from_json(state.to_json(indent=2))
    assert again == state
    assert again.version == 1 and again.steps == 1
    assert set(again.fingerprint) == {"tool:add", "tool:transfer"}
    assert again.repeats == 1 and again.last_signature is not None


def test_failures_before_the_pause_still_count_after_it() -> None:
    @tool(requires_approval=True)
    def flaky(x: int) -> str:
        """Fails.

        Args:
            x: Anything.
        """
        raise ValueError("broken")

    runtime = ScriptedRuntime(
        [ScriptedRuntime.call("flaky", x=1), ScriptedRuntime.call("flaky", x=2), "never"]
    )
    agent = Agent(runtime, tools=[flaky], max_tool_retries=1)
    first = agent.run_sync("go")
    assert first.state is not None
    first = agent.resume_sync(first.state, approve=[first.pending[0].id])
    assert first.stop_reason == "approval"
    assert first.tool_calls[0].error == "ValueError: broken"
    assert first.state is not None
    state = RunState.from_json(first.state.to_json())
    assert state.failures == {"flaky": 1}
    with pytest.raises(ToolRetriesExhausted) as caught:
        agent.resume_sync(state, approve=[state.pending[0].id])
    assert caught.value.run is not None and caught.value.run.stop_reason == "tool_retries"


async def test_a_streamed_run_that_pauses_ends_with_run_finished_and_resumes_streamed() -> None:
    runtime = ScriptedRuntime([ScriptedRuntime.call("transfer", to="carol", amount=3), "all done"])
    agent = Agent(runtime, tools=[transfer])
    events: list[Event] = []
    async with aclosing(agent.stream("send carol 3")) as stream:
        async for event in stream:
            events.append(event)
    assert isinstance(events[-1], RunFinished)
    paused = events[-1].result
    assert paused.stop_reason == "approval" and paused.state is not None
    assert not any(isinstance(e, ToolCallStarted) for e in events)
    assert isinstance(events[-2], StepFinished)

    [pending] = paused.pending
    resumed: list[Event] = []
    async with aclosing(agent.stream_resume(paused.state, approve=[pending.id])) as stream:
        async for event in stream:
            resumed.append(event)
    kinds = [e.kind for e in resumed]
    assert kinds[:3] == ["tool_call_started", "tool_call_finished", "step_finished"]
    assert kinds[-1] == "run_finished"
    finished = resumed[1]
    assert isinstance(finished, ToolCallFinished) and finished.record.output == "sent 3 to carol"
    assert isinstance(resumed[-1], RunFinished) and resumed[-1].result.output == "all done"


async def test_a_streamed_resume_refused_raises_from_the_stream() -> None:
    agent = Agent(ScriptedRuntime([ScriptedRuntime.call("transfer", to="x")]), tools=[transfer])
    result = await agent.run("go")
    assert result.state is not None
    with pytest.raises(RunStateError, match="undecided"):
        async with aclosing(agent.stream_resume(result.state)) as stream:
            async for _ in stream:
                pass


@pytest.mark.subprocess
def test_a_run_pauses_in_one_process_and_resumes_in_another(tmp_path: Path) -> None:
    module = tmp_path / "bank.py"
    module.write_text(
        textwrap.dedent(
            """
            import json, sys
            from pathlib import Path
            from agentkit import Agent, RunState, ScriptedRuntime, tool

            LEDGER = Path(sys.argv[2])

            @tool(requires_approval=True)
            def transfer(to: str, amount: int) -> str:
                '''Send money.'''
                LEDGER.write_text(LEDGER.read_text() + f"{to}:{amount}\\n")
                return "done"

            state_file = Path(sys.argv[3])
            if sys.argv[1] == "pause":
                runtime = ScriptedRuntime([ScriptedRuntime.call("transfer", to="bob", amount=7)])
                result = Agent(runtime, tools=[transfer]).run_sync("pay bob 7")
                state_file.write_text(result.state.to_json())
                print(result.stop_reason, result.pending[0].id)
            else:
                state = RunState.from_json(state_file.read_text())
                runtime = ScriptedRuntime(["Paid bob 7."])
                agent = Agent(runtime, tools=[transfer])
                result = agent.resume_sync(state, approve=[state.pending[0].id])
                print(json.dumps([result.output, [m.role for m in result.messages]]))
            """
        )
    )
    ledger, state_file = tmp_path / "ledger.txt", tmp_path / "state.json"
    ledger.write_text("")

    def run(mode: str) -> str:
        done = subprocess.run(
            [sys.executable, str(module), mode, str(ledger), str(state_file)],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    reason, call_id = run("pause").split()
    assert reason == "approval" and ledger.read_text() == ""
    assert json.loads(state_file.read_text())["pending"][0]["id"] == call_id
    output, roles = json.loads(run("resume"))
    assert output == "Paid bob 7."
    assert roles == ["user", "assistant", "tool", "assistant"]
    assert ledger.read_text() == "bob:7\n"


def test_a_resumed_run_cut_by_its_deadline_keeps_every_call_answered() -> None:
    @tool(requires_approval=True)
    async def slow(x: int) -> str:
        """Takes its time.

        Args:
            x: Anything.
        """
        await anyio.sleep(10)
        return "late"

    runtime = ScriptedRuntime(
        [ScriptedRuntime.calls(("slow", {"x": 1}), ("add", {"a": 1, "b": 1}))]
    )
    agent = Agent(runtime, tools=[slow, add], deadline=0.3)
    paused = agent.run_sync("go")
    assert paused.state is not None
    with pytest.raises(DeadlineExceeded) as caught:
        agent.resume_sync(paused.state, approve=[paused.pending[0].id])
    run = caught.value.run
    assert run is not None
    slow_id, add_id = (c.id for c in run.messages[-3].tool_calls)
    assert tool_results(run.messages) == [
        (slow_id, "Error: cancelled: the run stopped before this call finished"),
        (add_id, "2"),
    ]
