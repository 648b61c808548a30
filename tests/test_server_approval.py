"""The playground's approval of tool calls: the paused run stays on the server under a key, the
page sends the decisions; in process (what the server answers) and in Chromium (the buttons)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from agentkit import (
    ApprovalRequired,
    FunctionRuntime,
    Generation,
    ModelRequest,
    RunContext,
    RunState,
    ScriptedRuntime,
    tool,
)
from agentkit.server import create_app
from agentkit.server.background import BackgroundServer
from agentkit.server.errors import ApiError
from agentkit.server.paused import PausedRuns

from support.browser import screenshot

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


def frames(text: str) -> list[tuple[str, dict[str, Any]]]:
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


def pause(http: httpx.Client, headers: dict[str, str]) -> dict[str, Any]:
    """A run of the travel agent, paused for approval; its `run_finished` data."""
    answer = http.post("/playground/agent", json=QUESTION, headers=headers)
    assert answer.status_code == 200, answer.text
    kind, finished = frames(answer.text)[-1]
    assert kind == "run_finished" and finished["stop_reason"] == "approval"
    return finished


def resume(http: httpx.Client, paused: dict[str, Any], headers: dict[str, str]) -> int:
    decisions = {"run": paused["run"], "deny": {p["id"]: "no" for p in paused["pending"]}}
    answer = http.post("/playground/resume", json=decisions, headers=headers)
    return answer.status_code


@pytest.mark.parametrize("token", [None, "test-token-123"])
def test_a_caller_pausing_many_runs_pushes_out_only_its_own(
    serve: Callable[..., BackgroundServer], caplog: pytest.LogCaptureFixture, token: str | None
) -> None:
    server = serve(FunctionRuntime(travel_model), tools=[book, get_weather], api_token=token)
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    playground = {"Origin": server.url, **auth}  # the page, from the server's own origin
    script = dict(auth)  # a local program: no Origin
    # One client for the 67 requests: the server tells callers apart by Origin and peer
    # address, never by connection, and a client each would build an SSL context each.
    with httpx.Client(base_url=server.url) as http:
        waiting = pause(http, playground)
        flood = [pause(http, script) for _ in range(PausedRuns().limit + 1)]
        assert resume(http, waiting, playground) == 200
        assert resume(http, flood[-1], script) == 200
        assert resume(http, flood[0], script) == 404
    pushed_out = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    cap = PausedRuns().per_caller
    assert len(pushed_out) == len(flood) - cap
    assert pushed_out[0] == (
        f"paused runs: a caller past its cap of {cap} waiting runs pushed out its oldest "
        f"({cap + 1} were waiting)"
    )
    if token:
        assert token not in caplog.text


def test_past_the_global_bound_the_caller_holding_the_most_gives_way() -> None:
    store = PausedRuns(limit=4, per_caller=3)
    agent: Any = object()
    state = RunState(messages=[], tool_calls=[], pending=[], steps=1)
    a1, b1 = store.put(agent, state, "a"), store.put(agent, state, "b")
    a2, a3, c1 = (
        store.put(agent, state, "a"),
        store.put(agent, state, "a"),
        store.put(agent, state, "c"),
    )
    assert len(store) == 4
    for kept in (b1, a2, a3, c1):
        store.peek(kept)
    with pytest.raises(ApiError):
        store.peek(a1)


def send_prompt(page: Page, url: str, prompt: str) -> None:
    """Open the playground at `url` and send `prompt` once it is ready."""
    page.goto(url + "/")
    expect(page.locator("#status")).to_have_text("ready")
    page.fill("#prompt", prompt)
    page.press("#prompt", "Enter")


def test_the_page_approves_one_call_and_denies_the_other_with_a_reason(page: Page) -> None:
    booked.clear()
    app = create_app(FunctionRuntime(travel_model), tools=[book, get_weather])
    with BackgroundServer(app) as server:
        send_prompt(page, server.url, "Book Paris and Rome.")
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


@tool
def charge(amount: int, context: RunContext) -> str:
    """Charge the card.

    Args:
        amount: How much, in euros.
    """
    if context.decision is None:
        raise ApprovalRequired(f"The card expires tomorrow. Charge {amount} EUR today?")
    return f"charged {amount}" if context.decision.approved else "not charged"


def charge_model(request: ModelRequest) -> Generation | str:
    if request.messages[-1].role == "tool":
        return f"Result: {request.messages[-1].content}"
    return ScriptedRuntime.call("charge", amount=30)


def test_a_tool_that_asks_has_its_question_in_the_paused_run(
    client: Callable[..., TestClient],
) -> None:
    app = client(FunctionRuntime(charge_model), tools=[charge])
    kind, finished = frames(app.post("/playground/agent", json=QUESTION).text)[-1]
    assert kind == "run_finished"
    [pending] = finished["pending"]
    assert pending["question"] == "The card expires tomorrow. Charge 30 EUR today?"
    decisions = {"run": finished["run"], "approve": [pending["id"]]}
    last = frames(app.post("/playground/resume", json=decisions).text)[-1][1]
    assert last["output"] == "Result: charged 30"


def test_the_page_shows_the_question_on_the_card_of_the_call_that_asked(page: Page) -> None:
    app = create_app(FunctionRuntime(charge_model), tools=[charge])
    with BackgroundServer(app) as server:
        send_prompt(page, server.url, "Charge me.")
        card = page.locator(".toolcall.waiting")
        expect(card).to_have_count(1)  # the card of the started call, now waiting
        expect(page.locator(".toolcall")).to_have_count(1)
        expect(card.locator(".question")).to_have_text(
            "The card expires tomorrow. Charge 30 EUR today?"
        )
        card.locator("button.deny").click()
        expect(page.locator(".msg.assistant .bubble").last).to_have_text("Result: not charged")
