"""Approval over AG-UI (`agentkit.protocols._ag_ui_interrupts`): a call of the agent's own tool
that waits for a person ends the run with an interrupt; `resume` entries decide it."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest
from ag_ui.core import ResumeEntry
from starlette.testclient import TestClient

from agentkit import Agent, ApprovalRequired, RunContext, ScriptedRuntime, tool
from agentkit.errors import RequestValidationError
from agentkit.protocols.ag_ui import PausedRuns
from agentkit.server.background import BackgroundServer

from support.ag_ui import (
    ASK_USER,
    check_order,
    client_messages,
    run_input,
    said,
    served,
    stream,
    user,
)
from support.helpers import add


@tool(requires_approval=True)
def delete_file(path: str) -> str:
    """Delete a file.

    Args:
        path: The file.
    """
    return f"deleted {path}"


def test_a_call_waiting_for_approval_is_an_interrupt_that_resume_decides(
    serve: Callable[..., BackgroundServer],
) -> None:
    model = ScriptedRuntime(
        [
            ScriptedRuntime.calls(
                ("delete_file", {"path": "/tmp/a"}),
                ("delete_file", {"path": "/tmp/b"}),
                ("add", {"a": 1, "b": 1}),
            ),
            "Deleted /tmp/a; /tmp/b stays.",
        ]
    )
    server = served(serve, Agent(model, [delete_file, add]))
    first = [user("Delete /tmp/a and /tmp/b.")]
    events = stream(server, run_input(*first))
    check_order(events)
    finished = events[-1]
    assert finished.type.value == "RUN_FINISHED"
    assert finished.outcome.type == "interrupt"
    interrupts = finished.outcome.interrupts
    waiting = [e for e in events if e.type.value == "TOOL_CALL_START"][-2:]
    assert [i.tool_call_id for i in interrupts] == [e.tool_call_id for e in waiting]
    assert {(i.reason, i.message) for i in interrupts} == {
        ("tool_approval", "delete_file waits for approval to run")
    }
    # The call that needed nobody ran; the two waiting ones did not.
    assert [e.content for e in events if e.type.value == "TOOL_CALL_RESULT"] == ["2"]

    resume = [
        {"interruptId": interrupts[0].id, "status": "resolved"},
        {
            "interruptId": interrupts[1].id,
            "status": "resolved",
            "payload": {"approved": False, "reason": "keep b"},
        },
    ]
    messages = client_messages(first, events)
    second = stream(server, run_input(*messages, resume=resume, runId="run-2"))
    check_order(second, earlier=[i.tool_call_id for i in interrupts])
    # Only the results of the calls the front end saw made, then the answer.
    assert [e.type.value for e in second if e.type.value.startswith("TOOL_CALL")] == [
        "TOOL_CALL_RESULT",
        "TOOL_CALL_RESULT",
    ]
    decided = {e.tool_call_id: e.content for e in second if e.type.value == "TOOL_CALL_RESULT"}
    assert decided == {
        interrupts[0].tool_call_id: "deleted /tmp/a",
        interrupts[1].tool_call_id: "denied by the user: keep b",
    }
    assert said(second) == "Deleted /tmp/a; /tmp/b stays."
    assert second[-1].outcome.type == "success"
    model.assert_complete()

    # A paused run is resumed once.
    answer = httpx.post(f"{server.url}/ag-ui", json=run_input(*messages, resume=resume))
    assert answer.status_code == 400
    assert "resume: answers no paused run" in answer.text


def test_resume_entries_must_decide_every_waiting_call(
    client: Callable[..., TestClient],
) -> None:
    model = ScriptedRuntime(
        [
            ScriptedRuntime.calls(("delete_file", {"path": "/a"}), ("delete_file", {"path": "/b"})),
            "Done.",
        ]
    )
    app = client(model, agent=Agent(model, [delete_file]))
    finished = json.loads(
        app.post("/ag-ui", json=run_input(user("Delete."))).text.split("data: ")[-1]
    )
    first, second = (i["id"] for i in finished["outcome"]["interrupts"])
    half = [{"interruptId": first, "status": "resolved"}]
    answer = app.post("/ag-ui", json=run_input(user("Delete."), resume=half))
    assert answer.status_code == 400
    assert "resume: undecided: " in answer.text
    forged = [{"interruptId": "nokey:call_1", "status": "resolved"}]
    answer = app.post("/ag-ui", json=run_input(user("Delete."), resume=forged))
    assert answer.status_code == 400
    assert "resume: answers no paused run" in answer.text
    # Both decided: the run goes on.
    both = [*half, {"interruptId": second, "status": "cancelled"}]
    answer = app.post("/ag-ui", json=run_input(user("Delete."), resume=both))
    assert answer.status_code == 200
    assert '"outcome":{"type":"success"}' in answer.text
    model.assert_complete()


def test_paused_runs_are_bounded_in_number_and_age() -> None:
    now = [0.0]
    paused = PausedRuns(limit=2, max_age=60, clock=lambda: now[0])
    agent = Agent(
        ScriptedRuntime([ScriptedRuntime.call("delete_file", path="/a")] * 3), [delete_file]
    )
    states = [agent.run_sync("Delete.").state for _ in range(3)]
    assert all(state is not None for state in states)
    keys = [paused.put(state)[0].id for state in states if state is not None]
    assert len(paused) == 2  # the oldest was pushed out
    with pytest.raises(RequestValidationError, match="answers no paused run"):
        paused.decide([ResumeEntry(interrupt_id=keys[0], status="resolved")], take=False)
    state, approve, deny = paused.decide(
        [ResumeEntry(interrupt_id=keys[1], status="resolved")], take=False
    )
    assert state is states[1]
    assert (approve, deny) == ([state.pending[0].id], {})
    now[0] = 61.0
    assert len(paused) == 0  # waited past max_age


def test_approval_and_a_front_end_tool_in_one_step_end_with_run_error(
    serve: Callable[..., BackgroundServer],
) -> None:
    model = ScriptedRuntime(
        [ScriptedRuntime.calls(("delete_file", {"path": "/a"}), ("ask_user", {"question": "?"}))]
    )
    server = served(serve, Agent(model, [delete_file]))
    events = stream(server, run_input(user("Delete it."), tools=[ASK_USER]))
    check_order(events)
    assert events[-1].type.value == "RUN_ERROR"
    assert events[-1].code == "approval_required"
    assert "delete_file" in events[-1].message


def test_a_tool_that_asks_while_it_runs_is_an_interrupt_with_its_question(
    serve: Callable[..., BackgroundServer],
) -> None:
    @tool
    def wipe(disk: str, context: RunContext) -> str:
        """Wipe a disk.

        Args:
            disk: Which one.
        """
        decision = context.decision
        if decision is None:
            raise ApprovalRequired(f"{disk} holds 3 backups. Wipe it anyway?")
        return f"wiped {disk}" if decision.approved else f"kept {disk}: {decision.reason}"

    model = ScriptedRuntime([ScriptedRuntime.call("wipe", disk="sdb"), "Kept sdb."])
    server = served(serve, Agent(model, [wipe]))
    first = [user("Wipe sdb.")]
    events = stream(server, run_input(*first))
    check_order(events)
    [interrupt] = events[-1].outcome.interrupts
    assert interrupt.message == "sdb holds 3 backups. Wipe it anyway?"
    # The call was told once, when it started; no result while it waits.
    starts = [e.tool_call_id for e in events if e.type.value == "TOOL_CALL_START"]
    assert starts == [interrupt.tool_call_id]
    assert not [e for e in events if e.type.value == "TOOL_CALL_RESULT"]

    resume = [
        {
            "interruptId": interrupt.id,
            "status": "resolved",
            "payload": {"approved": False, "reason": "backups"},
        }
    ]
    messages = client_messages(first, events)
    second = stream(server, run_input(*messages, resume=resume, runId="run-2"))
    check_order(second, earlier=[interrupt.tool_call_id])
    results = [e.content for e in second if e.type.value == "TOOL_CALL_RESULT"]
    assert results == ["kept sdb: backups"]  # the tool heard the denial and answered
    assert said(second) == "Kept sdb."
