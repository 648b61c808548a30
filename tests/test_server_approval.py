"""The playground's approval of tool calls: the paused run stays on the server under a key, the
page sends the decisions; in process (what the server answers) and in Chromium (the buttons)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest
from playwright.sync_api import Page, expect
from test_server_playground import browser, page, screenshot  # noqa: F401  (fixtures)

from agentkit import FunctionRuntime, Generation, ModelRequest, RunState, ScriptedRuntime, tool
from agentkit.server import create_app
from agentkit.server.background import BackgroundServer
from agentkit.server.errors import ApiError
from agentkit.server.paused import PausedRuns

if TYPE_CHECKING:
    from starlette.testclient import TestClient

booked: list[str] = []


@tool(requires_approval=True)
def book(city: str) -> str:
    """Book a flight.

    Args:
        city: Where to.
    """
    booked.append(city)
    return f"booked {city}"


@tool
def get_weather(city: str) -> str:
    """Get the weather.

    Args:
        city: The city name.
    """
    return f"{city}: sunny"


def travel_model(request: ModelRequest) -> Generation | str:
    """Books Paris and Rome and checks the weather in one step, then reports every result."""
    if request.messages[-1].role == "tool":
        return " | ".join(m.content or "" for m in request.messages if m.role == "tool")
    return ScriptedRuntime.calls(
        ("book", {"city": "Paris"}), ("get_weather", {"city": "Paris"}), ("book", {"city": "Rome"})
    )


QUESTION = {"messages": [{"role": "user", "content": "Book Paris and Rome."}], "stream": True}


def frames(text: str) -> list[tuple[str, Any]]:
    out = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        out.append((lines["event"], json.loads(lines["data"])))
    return out


def test_a_paused_run_is_kept_on_the_server_and_resumed_once(
    client: Callable[..., TestClient],
) -> None:
    booked.clear()
    app = client(FunctionRuntime(travel_model), tools=[book, get_weather])
    answer = app.post("/playground/agent", json=QUESTION)
    assert answer.status_code == 200
    events = frames(answer.text)
    kind, finished = events[-1]
    assert kind == "run_finished" and finished["stop_reason"] == "approval"
    assert [(p["name"], p["arguments"]) for p in finished["pending"]] == [
        ("book", {"city": "Paris"}),
        ("book", {"city": "Rome"}),
    ]
    assert len(finished["run"]) >= 32 and booked == []
    paris, rome = (p["id"] for p in finished["pending"])

    undecided = app.post("/playground/resume", json={"run": finished["run"], "approve": [paris]})
    assert undecided.status_code == 400
    assert undecided.json()["errors"][0]["message"] == f"Bad input: undecided: {rome}"

    decisions = {"run": finished["run"], "approve": [paris], "deny": {rome: "too far"}}
    resumed = app.post("/playground/resume", json=decisions)
    assert resumed.status_code == 200
    last = frames(resumed.text)[-1][1]
    assert last["stop_reason"] == "answer"
    assert last["output"] == "booked Paris | Paris: sunny | Error: denied by the user: too far"
    assert booked == ["Paris"]

    again = app.post("/playground/resume", json=decisions)
    assert again.status_code == 404
    assert "no paused run under this key" in again.json()["errors"][0]["message"]


def test_resume_is_refused_from_another_origin_and_without_json(
    client: Callable[..., TestClient],
) -> None:
    app = client(FunctionRuntime(travel_model), tools=[book, get_weather])
    evil = {"Origin": "https://evil.example"}
    assert app.post("/playground/resume", json={"run": "x"}, headers=evil).status_code == 403
    form = app.post("/playground/resume", content=b"run=x", headers={"content-type": "text/plain"})
    assert form.status_code == 415


def test_the_store_is_bounded_in_number_and_age() -> None:
    now = [0.0]
    store = PausedRuns(limit=2, max_age=60, clock=lambda: now[0])
    agent: Any = object()
    state = RunState(messages=[], tool_calls=[], pending=[], steps=1)
    first = store.put(agent, state)
    second = store.put(agent, state)
    third = store.put(agent, state)
    assert len(store) == 2
    for gone in (first, "guess", None):
        with pytest.raises(ApiError) as caught:
            store.peek(gone)
        assert caught.value.status == 404
    now[0] = 61
    assert len(store) == 0
    assert {second, third}.isdisjoint({first})


def test_the_page_approves_one_call_and_denies_the_other_with_a_reason(page: Page) -> None:  # noqa: F811
    booked.clear()
    app = create_app(FunctionRuntime(travel_model), tools=[book, get_weather])
    with BackgroundServer(app) as server:
        page.goto(server.url + "/")
        expect(page.locator("#status")).to_have_text("ready")
        page.fill("#prompt", "Book Paris and Rome.")
        page.press("#prompt", "Enter")
        waiting = page.locator(".toolcall.waiting")
        expect(waiting).to_have_count(2)
        expect(page.locator("#status")).to_have_text("waiting for approval")
        expect(page.locator("#send")).to_be_disabled()
        expect(page.locator(".toolcall.ok .name")).to_have_text(["get_weather"])
        asking = page.locator(".toolcall:has(.approval)")  # stays put as the classes change
        paris, rome = asking.nth(0), asking.nth(1)
        assert json.loads(paris.locator("pre").first.inner_text()) == {"city": "Paris"}
        screenshot(page, "playground-approval.png")

        rome.locator(".reason").fill("too far")
        rome.locator("button.deny").click()
        expect(rome.locator(".state")).to_have_text("denied")
        assert booked == []  # nothing is sent before every call is decided
        paris.locator("button.approve").click()

        answer = "booked Paris | Paris: sunny | Error: denied by the user: too far"
        expect(page.locator(".msg.assistant .bubble").last).to_have_text(answer)
        expect(paris).to_have_class("toolcall ok")
        expect(paris.locator(".result")).to_have_text("booked Paris")
        expect(rome).to_have_class("toolcall failed")
        expect(rome.locator(".result")).to_have_text("denied by the user: too far")
        expect(page.locator("#status")).to_have_text("ready")
        expect(page.locator("#send")).to_be_enabled()
        assert booked == ["Paris"]
        screenshot(page, "playground-approval-done.png")
