"""A tool that asks a person while it runs: `ApprovalRequired` pauses the run, resume calls the
tool again with the decision."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from agentkit import (
    Agent,
    ApprovalRequired,
    Decision,
    Generation,
    PendingCall,
    RunContext,
    RunResult,
    RunState,
    ScriptedRuntime,
    SQLiteSession,
    tool,
)
from agentkit.events import ToolCallFinished, ToolCallStarted

heard: list[tuple[str, Decision | None]] = []


@tool
def refund(order: str, amount: int, context: RunContext) -> str:
    """Refund an order; large refunds need a person's word.

    Args:
        order: The order's id.
        amount: How much, in euros.
    """
    decision = context.decision
    heard.append((order, decision))
    if amount > 100 and decision is None:
        raise ApprovalRequired(
            f"Refund {amount} EUR on {order}? The customer has 3 earlier refunds.",
            data={"checked": ["history", "stock"]},
        )
    if decision is not None and not decision.approved:
        return f"not refunded: {decision.reason}"
    return f"refunded {amount} EUR on {order}"


@tool
def lookup(order: str) -> str:
    """Look an order up.

    Args:
        order: The order's id.
    """
    return f"{order}: shipped"


def _agent(*turns: Generation | str) -> tuple[Agent, ScriptedRuntime]:
    runtime = ScriptedRuntime(list(turns))
    return Agent(runtime, tools=[refund, lookup]), runtime


def state(result: RunResult) -> RunState:
    assert result.state is not None, result.stop_reason
    return result.state


def last_decision() -> Decision:
    decision = heard[-1][1]
    assert decision is not None
    return decision


@pytest.fixture(autouse=True)
def _clear() -> None:
    heard.clear()


def test_a_tool_that_asks_pauses_the_run_with_its_question() -> None:
    agent, _ = _agent(ScriptedRuntime.call("refund", order="A-1", amount=250), "Refunded.")
    result = agent.run_sync("Refund A-1")
    assert result.stop_reason == "approval"
    [call] = result.pending
    assert call.question == "Refund 250 EUR on A-1? The customer has 3 earlier refunds."
    assert call.data == {"checked": ["history", "stock"]}
    assert (call.name, call.arguments) == ("refund", {"order": "A-1", "amount": 250})
    # No result yet: the transcript ends with the call, as for a call held back.
    assert result.messages[-1].role == "assistant"
    assert result.tool_calls[0].output is None and result.tool_calls[0].error is None


def test_approve_calls_the_tool_again_with_the_decision() -> None:
    agent, runtime = _agent(ScriptedRuntime.call("refund", order="A-1", amount=250), "Refunded.")
    paused = agent.run_sync("Refund A-1")
    result = agent.resume_sync(state(paused), approve=[paused.pending[0].id])
    assert result.output == "Refunded."
    assert result.tool_calls[0].output == "refunded 250 EUR on A-1"
    decision = last_decision()
    assert decision.approved and decision.reason is None
    assert decision.data == {"checked": ["history", "stock"]}
    assert decision.question.startswith("Refund 250 EUR")
    told = [m.content for m in runtime.requests[1].messages if m.role == "tool"]
    assert told == ["refunded 250 EUR on A-1"]


def test_deny_is_heard_by_the_tool_that_asked() -> None:
    agent, runtime = _agent(ScriptedRuntime.call("refund", order="A-1", amount=250), "Not done.")
    paused = agent.run_sync("Refund A-1")
    result = agent.resume_sync(state(paused), deny={paused.pending[0].id: "fraud suspected"})
    # The tool ran again and chose what the model is told; no error of its own.
    assert result.tool_calls[0].output == "not refunded: fraud suspected"
    assert result.tool_calls[0].error is None
    decision = last_decision()
    assert not decision.approved
    assert decision.reason == "fraud suspected"
    told = [m.content for m in runtime.requests[1].messages if m.role == "tool"]
    assert told == ["not refunded: fraud suspected"]


def test_resume_from_json_in_another_agent() -> None:
    first, _ = _agent(ScriptedRuntime.call("refund", order="B-7", amount=500), "x")
    text = state(first.run_sync("Refund B-7")).to_json()
    loaded = RunState.from_json(text)
    assert loaded.pending[0].question is not None
    other, _ = _agent("Refunded B-7.")
    result = other.resume_sync(loaded, approve=[loaded.pending[0].id])
    assert result.output == "Refunded B-7."
    assert result.tool_calls[0].output == "refunded 500 EUR on B-7"
    assert last_decision().data == {"checked": ["history", "stock"]}


def test_a_state_written_before_questions_existed_still_loads() -> None:
    agent, _ = _agent(ScriptedRuntime.call("refund", order="A-1", amount=250), "x")
    raw = state(agent.run_sync("Refund A-1")).model_dump(mode="json")
    for call in raw["pending"]:
        del call["question"], call["data"]
    call = RunState.model_validate(raw).pending[0]
    assert (call.question, call.data) == (None, None)
    assert PendingCall(id="c", name="n", arguments={}, step=1).question is None


def test_two_calls_in_a_step_one_asks_one_runs() -> None:
    agent, runtime = _agent(
        ScriptedRuntime.calls(
            ("refund", {"order": "A-1", "amount": 250}), ("lookup", {"order": "A-1"})
        ),
        "Done.",
    )
    events = []

    async def main() -> None:
        paused = None
        async for event in agent.stream("Refund A-1 and check it"):
            events.append(event)
            if event.kind == "run_finished":
                paused = event.result
        assert paused is not None
        assert [c.name for c in paused.pending] == ["refund"]
        # The other call ran and was filed; the one that asked has started but not finished.
        assert [m.content for m in paused.messages if m.role == "tool"] == ["A-1: shipped"]
        assert sum(isinstance(e, ToolCallStarted) for e in events) == 2
        assert [e.record.call.name for e in events if isinstance(e, ToolCallFinished)] == ["lookup"]
        result = await agent.resume(state(paused), approve=[paused.pending[0].id])
        assert result.output == "Done."
        # One result per call, in the model's order.
        told = [m.content for m in runtime.requests[1].messages if m.role == "tool"]
        assert told == ["refunded 250 EUR on A-1", "A-1: shipped"]

    anyio.run(main)


def test_asking_again_pauses_again() -> None:
    answers = iter(["Which account, savings or current?", None])

    @tool
    def move(amount: int, context: RunContext) -> str:
        """Move money.

        Args:
            amount: How much.
        """
        decision = context.decision
        question = next(answers)
        if question is not None:
            raise ApprovalRequired(question, data={"round": 2})
        assert decision is not None
        return f"moved {amount} after {decision.data}"

    runtime = ScriptedRuntime([ScriptedRuntime.call("move", amount=5), "Moved."])
    agent = Agent(runtime, tools=[move])
    answers = iter(["Move 5 EUR?", "Which account, savings or current?", None])
    first = agent.run_sync("Move 5")
    assert first.pending[0].question == "Move 5 EUR?"
    second = agent.resume_sync(state(first), approve=[first.pending[0].id])
    assert second.stop_reason == "approval"
    assert second.pending[0].question == "Which account, savings or current?"
    assert second.pending[0].id == first.pending[0].id  # the same call, asking again
    assert state(second).id != state(first).id
    third = agent.resume_sync(state(second), approve=[second.pending[0].id])
    assert third.output == "Moved."
    assert third.tool_calls[0].output == "moved 5 after {'round': 2}"
    assert len(runtime.requests) == 2  # no model call while the tool and the person talked


def test_a_tool_without_context_is_called_again_on_approval_and_not_on_denial() -> None:
    calls: list[str] = []

    @tool
    def wipe(disk: str) -> str:
        """Wipe a disk.

        Args:
            disk: Which one.
        """
        calls.append(disk)
        if len(calls) == 1:
            raise ApprovalRequired(f"Wipe {disk}?")
        return f"wiped {disk}"

    def paused() -> tuple[Agent, RunResult]:
        runtime = ScriptedRuntime([ScriptedRuntime.call("wipe", disk="sdb"), "ok"])
        agent = Agent(runtime, tools=[wipe])
        return agent, agent.run_sync("wipe sdb")

    agent, result = paused()
    done = agent.resume_sync(state(result), approve=[result.pending[0].id])
    assert done.tool_calls[0].output == "wiped sdb" and calls == ["sdb", "sdb"]
    calls.clear()
    agent, result = paused()
    done = agent.resume_sync(state(result), deny={result.pending[0].id: "no"})
    assert done.tool_calls[0].error == "denied by the user: no" and calls == ["sdb"]


def test_a_question_must_be_text_and_its_data_json() -> None:
    with pytest.raises(TypeError, match=r"data: must be JSON data"):
        ApprovalRequired("ok?", data={1, 2})
    with pytest.raises(TypeError, match=r"question: expected text \(got int\)"):
        ApprovalRequired(3)  # type: ignore[arg-type]
    assert ApprovalRequired("ok?", data=(1, 2)).data == [1, 2]  # as JSON reads it back


def test_a_journaled_run_survives_a_question(tmp_path: Path) -> None:
    store = tmp_path / "runs.db"
    runtime = ScriptedRuntime([ScriptedRuntime.call("refund", order="A-1", amount=250), "Done."])

    async def main() -> None:
        agent = Agent(runtime, tools=[refund, lookup])
        paused = await agent.run("Refund A-1", session=SQLiteSession(store, "s1"))
        assert paused.pending[0].question is not None
        text = state(paused).to_json()
        # Later, another agent and another connection to the same file.
        loaded = RunState.from_json(text)
        session = SQLiteSession(store, "s1")
        agent = Agent(ScriptedRuntime(["Done."]), tools=[refund, lookup])
        result = await agent.resume(loaded, approve=[loaded.pending[0].id], session=session)
        assert result.output == "Done."
        # The session's conversation holds the call's one result, then the answer.
        follow = Agent(ScriptedRuntime(["ok"]), tools=[refund])
        after = await follow.run("and?", session=SQLiteSession(store, "s1"))
        contents = [(m.role, m.content) for m in after.messages]
        assert ("tool", "refunded 250 EUR on A-1") in contents
        assert contents.count(("tool", "refunded 250 EUR on A-1")) == 1
        assert ("assistant", "Done.") in contents

    anyio.run(main)


def test_a_journaled_dialogue_of_two_questions_stays_one_run(tmp_path: Path) -> None:
    questions = iter(["Move 5 EUR?", "From savings?"])

    @tool
    def move(amount: int, context: RunContext) -> str:
        """Move money.

        Args:
            amount: How much.
        """
        question = next(questions, None)
        if question is not None:
            raise ApprovalRequired(question)
        return f"moved {amount}"

    store = tmp_path / "runs.db"

    async def main() -> None:
        runtime = ScriptedRuntime([ScriptedRuntime.call("move", amount=5), "Moved."])
        agent = Agent(runtime, tools=[move])
        result = await agent.run("Move 5", session=SQLiteSession(store, "s2"))
        asked = []
        while result.stop_reason == "approval":
            asked.append(result.pending[0].question)
            approve = [result.pending[0].id]
            session = SQLiteSession(store, "s2")
            result = await agent.resume(state(result), approve=approve, session=session)
        assert asked == ["Move 5 EUR?", "From savings?"]
        assert result.output == "Moved."
        after = await Agent(ScriptedRuntime(["ok"]), tools=[move]).run(
            "and?", session=SQLiteSession(store, "s2")
        )
        told = [m.content for m in after.messages if m.role == "tool"]
        assert told == ["moved 5"]  # one result for the call that asked twice

    anyio.run(main)
