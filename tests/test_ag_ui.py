"""AG-UI (`agentkit.protocols.ag_ui`, `POST /ag-ui`): a run streamed as the protocol's events,
checked against the `ag-ui-protocol` package's own types; a front end's tools round-tripped;
failures and bad input; the guards of the routes that run a model."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from ag_ui.core import (
    RunAgentInput,
    TextMessageContentEvent,
    ToolCallStartEvent,
)
from ag_ui.encoder import EventEncoder
from starlette.testclient import TestClient

from agentkit import Agent, FunctionRuntime, ModelRequest, ScriptedRuntime, tool
from agentkit.cli import main as cli_main
from agentkit.protocols.ag_ui import AGUIAdapter
from agentkit.server.background import BackgroundServer
from agentkit.server.sse import data_frame

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
from support.server import HangingRuntime

SECRET = "sk-live-0123456789abcdef"


@tool
def weather(city: str) -> dict[str, Any]:
    """The weather in a city.

    Args:
        city: The city.
    """
    return {"city": city, "sky": "clear", "celsius": 21}


# -- the stream -------------------------------------------------------------------------------


def test_parallel_tool_calls_stream_as_valid_events_in_order(
    serve: Callable[..., BackgroundServer],
) -> None:
    model = ScriptedRuntime(
        [
            ScriptedRuntime.calls(("add", {"a": 2, "b": 3}), ("weather", {"city": "Paris"})),
            "2 + 3 = 5, and Paris is clear at 21 °C.",
        ]
    )
    server = served(serve, Agent(model, [add, weather], name="helper"))
    events = stream(server, run_input(user("Add 2 and 3; and the weather in Paris?")))
    check_order(events)
    kinds = [e.type.value for e in events]
    assert kinds == [
        "RUN_STARTED",
        "STEP_STARTED",
        *["TOOL_CALL_START", "TOOL_CALL_ARGS", "TOOL_CALL_END"] * 2,
        "TOOL_CALL_RESULT",
        "TOOL_CALL_RESULT",
        "STEP_FINISHED",
        "STEP_STARTED",
        "TEXT_MESSAGE_START",
        *["TEXT_MESSAGE_CONTENT"] * (kinds.count("TEXT_MESSAGE_CONTENT")),
        "TEXT_MESSAGE_END",
        "STEP_FINISHED",
        "RUN_FINISHED",
    ]
    assert (events[0].thread_id, events[0].run_id) == ("thread-1", "run-1")
    # Both calls belong to the first step's assistant message, in the model's order.
    starts = [e for e in events if e.type.value == "TOOL_CALL_START"]
    assert [e.tool_call_name for e in starts] == ["add", "weather"]
    assert starts[0].parent_message_id == starts[1].parent_message_id
    calls = model.requests[1].messages[-3].tool_calls
    assert [e.tool_call_id for e in starts] == [c.id for c in calls]
    results = {e.tool_call_id: e.content for e in events if e.type.value == "TOOL_CALL_RESULT"}
    assert results == {
        calls[0].id: "5",
        calls[1].id: '{"city": "Paris", "sky": "clear", "celsius": 21}',
    }
    text = said(events)
    assert text == "2 + 3 = 5, and Paris is clear at 21 °C."
    assert events[-1].outcome.type == "success" and events[-1].result == text
    assert [e.step_name for e in events if e.type.value == "STEP_STARTED"] == [
        "helper step 1",
        "helper step 2",
    ]


def test_a_front_end_tool_round_trip(serve: Callable[..., BackgroundServer]) -> None:
    model = ScriptedRuntime(
        [
            ScriptedRuntime.calls(
                ("add", {"a": 40, "b": 2}),
                ("ask_user", {"question": "Shall I book 42 seats?"}),
                text="Checking.",
            ),
            "Booked 42 seats, as you agreed.",
        ]
    )
    server = served(serve, Agent(model, [add]))
    first = [user("Book seats for 40 and 2 more.")]
    events = stream(server, run_input(*first, tools=[ASK_USER]))
    check_order(events)
    # The model was offered the front end's tool beside the agent's own.
    assert [t.name for t in model.requests[0].tools] == ["add", "ask_user"]
    # The agent's call ran; the front end's came back to it, last, and ended the run.
    kinds = [e.type.value for e in events]
    assert kinds[-4:] == ["TOOL_CALL_START", "TOOL_CALL_ARGS", "TOOL_CALL_END", "RUN_FINISHED"]
    asked = events[-4]
    assert asked.tool_call_name == "ask_user"
    assert json.loads(events[-3].delta) == {"question": "Shall I book 42 seats?"}
    assert events[-1].outcome.pending_tool_call_ids == [asked.tool_call_id]
    assert events[-1].result is None
    assert len(model.requests) == 1

    # The front end answers the call; the run goes on from the conversation.
    messages = client_messages(first, events)
    messages.append(
        {"id": "t2", "role": "tool", "toolCallId": asked.tool_call_id, "content": "yes"}
    )
    second = stream(server, run_input(*messages, tools=[ASK_USER], runId="run-2"))
    check_order(second)
    text = said(second)
    assert text == "Booked 42 seats, as you agreed."
    assert second[-1].type.value == "RUN_FINISHED" and second[-1].run_id == "run-2"
    sent = model.requests[1].messages
    assert [(m.role, m.content) for m in sent] == [
        ("user", "Book seats for 40 and 2 more."),
        ("assistant", "Checking."),
        ("tool", "42"),
        ("tool", "yes"),
    ]
    assert [c.name for c in sent[1].tool_calls] == ["add", "ask_user"]
    assert (sent[3].tool_call_id, sent[3].name) == (asked.tool_call_id, "ask_user")
    model.assert_complete()


def test_the_packages_encoder_and_the_servers_frames_agree_byte_for_byte() -> None:
    """The stream is written by the protocol package's encoder; the server's own SSE frames
    would write the same bytes, so either may serve a route."""
    events = [
        TextMessageContentEvent(message_id="m1", delta="21 °C — “clear”\n<b>"),
        ToolCallStartEvent(tool_call_id="c1", tool_call_name="weather", parent_message_id="m1"),
    ]
    for event in events:
        own = data_frame(event.model_dump(mode="json", by_alias=True))
        assert EventEncoder().encode(event).encode() == own


def test_two_front_ends_at_once_each_offer_their_own_tools() -> None:
    """The agent is shared; the tools a request offers belong to its run alone."""

    def model(request: ModelRequest) -> str:
        return ", ".join(t.name for t in request.tools)

    agent = Agent(FunctionRuntime(model), [add])
    adapter = AGUIAdapter(agent)
    seen: dict[str, str] = {}

    async def one(name: str) -> None:
        offered = {**ASK_USER, "name": name}
        parsed = adapter.parse(run_input(user("Which tools?"), tools=[offered], runId=name))
        events = [e async for e in adapter.events(parsed)]
        seen[name] = said(events)

    async def both() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(one, "pick_colour")
            tg.start_soon(one, "pick_date")

    anyio.run(both)
    assert seen == {"pick_colour": "add, pick_colour", "pick_date": "add, pick_date"}
    assert agent.toolset.names == ["add"]


def test_a_handoff_is_a_custom_event_and_a_sub_agent_stays_inside_its_call() -> None:
    billing = Agent(
        ScriptedRuntime([ScriptedRuntime.call("add", a=10, b=2), "Order 7 cost 12."]),
        [add],
        name="billing",
    )
    desk = Agent(
        ScriptedRuntime([ScriptedRuntime.call("billing", input="Order 7?"), "It cost 12."]),
        [billing.as_tool(description="Answers billing questions.")],
        name="desk",
    )
    triage = Agent(
        ScriptedRuntime([ScriptedRuntime.call("transfer_to_desk")]), name="triage", handoffs=[desk]
    )
    adapter = AGUIAdapter(triage)

    async def collect() -> list[Any]:
        return [e async for e in adapter.events(adapter.parse(run_input(user("Order 7?"))))]

    events = anyio.run(collect)
    check_order(events)
    handoffs = [e.value for e in events if e.type.value == "CUSTOM"]
    assert handoffs == [{"source": "triage", "target": "desk", "back": False}]
    # The sub-agent's own call (add) is not streamed: its answer is its call's result.
    names = [e.tool_call_name for e in events if e.type.value == "TOOL_CALL_START"]
    assert names == ["transfer_to_desk", "billing"]
    results = [e.content for e in events if e.type.value == "TOOL_CALL_RESULT"]
    assert results[-1] == "Order 7 cost 12."
    assert events[-1].result == "It cost 12."


def test_a_client_leaving_cancels_the_run(serve: Callable[..., BackgroundServer]) -> None:
    model = HangingRuntime()
    server = served(serve, Agent(model))
    with httpx.stream("POST", f"{server.url}/ag-ui", json=run_input(user("hi"))) as answer:
        lines = (line for line in answer.iter_lines() if line)
        kinds = [json.loads(next(lines).removeprefix("data: "))["type"] for _ in range(4)]
        assert kinds == [
            "RUN_STARTED",
            "STEP_STARTED",
            "TEXT_MESSAGE_START",
            "TEXT_MESSAGE_CONTENT",
        ]
        assert not model.stopped.is_set()
    # Leaving the block closes the connection mid-stream.
    assert model.stopped.wait(10), "the model's stream was not closed"
    assert not model.release.is_set()


# -- failures ---------------------------------------------------------------------------------


def test_a_failing_model_ends_the_stream_with_run_error_without_its_secret(
    serve: Callable[..., BackgroundServer], caplog: pytest.LogCaptureFixture
) -> None:
    def broken(request: ModelRequest) -> str:
        raise RuntimeError(f"upstream refused key {SECRET}")

    server = served(serve, Agent(FunctionRuntime(broken)))
    events = stream(server, run_input(user("hi")))
    check_order(events)
    error = events[-1]
    assert error.type.value == "RUN_ERROR"
    assert error.code == "internal_error"
    assert error.message == "the run failed: the server's log has the detail (run run-1)"
    assert SECRET not in json.dumps([e.model_dump(mode="json") for e in events])


def test_a_run_past_its_limit_ends_with_run_error_naming_it(
    serve: Callable[..., BackgroundServer],
) -> None:
    model = FunctionRuntime(
        lambda request: ScriptedRuntime.call("add", a=1, b=len(request.messages))
    )
    server = served(serve, Agent(model, [add], max_steps=2))
    events = stream(server, run_input(user("Add forever.")))
    check_order(events)
    assert events[-1].type.value == "RUN_ERROR"
    assert events[-1].code == "MaxStepsExceeded"
    assert "2" in events[-1].message


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"runId": "r", "messages": []}, "threadId: Field required"),
        (
            run_input({"id": "u1", "role": "user", "content": 7}),
            "messages[0].content: Input should be a valid string; or Input should be a valid "
            "list (got 7)",
        ),
        (
            run_input({"id": "u1", "role": "user", "content": [{"type": "text"}]}),
            "messages[0].content[0].text: Field required",
        ),
        (
            run_input(user("hi"), resume=[{"interruptId": "k:c", "status": "maybe"}]),
            "resume[0].status: Input should be 'resolved' or 'cancelled' (got 'maybe')",
        ),
        (
            run_input(
                {
                    "id": "u1",
                    "role": "user",
                    "content": [{"type": "image", "source": {"type": "url", "value": "x"}}],
                }
            ),
            "messages[0].content[0]: only text parts are supported (got 'image')",
        ),
        (
            run_input(user("hi"), {"id": "t", "role": "tool", "toolCallId": "c9", "content": "1"}),
            "messages[1].toolCallId: answers no tool call of an earlier assistant message "
            "(got 'c9')",
        ),
        (run_input(), "messages: must end with a user message or a tool result (got none)"),
        (
            run_input(user("hi"), tools=[{**ASK_USER, "name": "add"}]),
            "tools[0].name: 'add' is the name of the agent's own tools",
        ),
        (
            run_input(user("hi"), tools=[{"name": "x", "description": "y", "parameters": 3}]),
            "tools[0]: tool 'x'",
        ),
    ],
)
def test_bad_input_gets_a_400_naming_the_field(
    client: Callable[..., TestClient], body: dict[str, Any], expected: str
) -> None:
    model = ScriptedRuntime(["never"])
    app = client(model, agent=Agent(model, [add]))
    answer = app.post("/ag-ui", json=body)
    assert answer.status_code == 400, answer.text
    messages = " ".join(e["message"] for e in answer.json()["errors"])
    assert expected in messages
    assert model.requests == []


def test_parse_names_the_fields_as_the_wire_spells_them() -> None:
    adapter = AGUIAdapter(Agent(ScriptedRuntime()))
    parsed = adapter.parse(run_input(user("hi")))
    assert isinstance(parsed, RunAgentInput)
    with pytest.raises(Exception, match=r"runId: Field required") as caught:
        adapter.parse({"threadId": "t", "messages": []})
    assert type(caught.value).__name__ == "RequestValidationError"


# -- the guards -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Origin": "http://evil.example:8787"}, 403),
        ({"Host": "evil.example:8787"}, 403),
        ({"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "cors"}, 403),
        ({"Content-Type": "text/plain"}, 415),
    ],
)
def test_a_cross_site_request_is_refused_before_the_model_runs(
    client: Callable[..., TestClient], headers: dict[str, str], status: int
) -> None:
    model = ScriptedRuntime(["never"])
    app = client(model, agent=Agent(model))
    body = json.dumps(run_input(user("hi")))
    answer = app.post(
        "/ag-ui", content=body, headers={"Content-Type": "application/json", **headers}
    )
    assert answer.status_code == status, answer.text
    assert model.requests == []


def test_the_token_is_required_when_the_server_has_one(client: Callable[..., TestClient]) -> None:
    model = ScriptedRuntime(["Hello."])
    app = client(model, agent=Agent(model), api_token="s3cret-token")
    assert app.post("/ag-ui", json=run_input(user("hi"))).status_code == 401
    with_token = {"Authorization": "Bearer s3cret-token"}
    answer = app.post("/ag-ui", json=run_input(user("hi")), headers=with_token)
    assert answer.status_code == 200
    assert '"type":"RUN_FINISHED"' in answer.text


def test_a_body_past_the_limit_is_refused(client: Callable[..., TestClient]) -> None:
    model = ScriptedRuntime(["never"])
    app = client(model, agent=Agent(model), max_body=1000)
    answer = app.post("/ag-ui", json=run_input(user("x" * 2000)))
    assert answer.status_code == 413
    assert model.requests == []


def test_serve_agents_offers_the_files_agent_over_ag_ui(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "agents.py"
    path.write_text(
        "from agentkit import Agent, ScriptedRuntime\n"
        "agent = Agent(ScriptedRuntime(['Hello from triage.']), name='triage')\n"
    )
    apps: list[Any] = []
    monkeypatch.setattr("uvicorn.run", lambda app, **options: apps.append(app))
    assert cli_main(["serve", "--agents", str(path)]) == 0
    assert "AG-UI:      http://127.0.0.1:8787/ag-ui" in capsys.readouterr().err
    with TestClient(apps[0], base_url="http://localhost") as app:
        answer = app.post("/ag-ui", json=run_input(user("Hi")))
    assert '"delta":"Hello"' in answer.text
    last = json.loads(answer.text.rstrip().rpartition("data: ")[2])
    assert (last["type"], last["result"]) == ("RUN_FINISHED", "Hello from triage.")


def test_without_an_agent_there_is_no_ag_ui_route(client: Callable[..., TestClient]) -> None:
    assert client(ScriptedRuntime()).post("/ag-ui", json=run_input(user("hi"))).status_code == 404
