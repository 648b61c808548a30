"""The playground with a server's own agent (`create_app(agent=...)`, `agentkit serve --agents
FILE`): the agent runs as it is defined, its name and its sub-agents' paths reach the page, and
what the page may not change is refused by name."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from agentkit import Agent, ScriptedRuntime, tool
from agentkit.cli import main as cli_main


@tool
def invoice(order: int) -> str:
    """An order's invoice.

    Args:
        order: The order number.
    """
    return f"order {order}: 12.50 EUR, paid"


def triage() -> Agent:
    billing = Agent(
        ScriptedRuntime([ScriptedRuntime.call("invoice", order=7), "Order 7 is paid."]),
        tools=[invoice],
        name="billing",
    )
    return Agent(
        ScriptedRuntime(
            [ScriptedRuntime.call("billing", input="Is order 7 paid?"), "Yes, order 7 is paid."]
        ),
        tools=[billing.as_tool(description="Answers billing questions.")],
        name="triage",
        instructions="You route questions.",
    )


def frames(text: str) -> list[tuple[str, Any]]:
    """The server-sent events of a body: (event name, data)."""
    out = []
    for block in text.strip().split("\n\n"):
        name, data = block.split("\n", 1)
        out.append((name.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return out


QUESTION = {"messages": [{"role": "user", "content": "Is order 7 paid?"}]}


def test_the_servers_agent_answers_and_says_who_did(client: Callable[..., TestClient]) -> None:
    agent = triage()
    app = client(agent.runtime, agent=agent)
    info = app.get("/playground/info").json()
    assert info["agent"] == "triage"
    assert [t["function"]["name"] for t in info["tools"]] == ["billing"]
    events = frames(app.post("/playground/agent", json=QUESTION).text)
    calls = [(d["path"], d["call"]["name"]) for e, d in events if e == "tool_call_started"]
    assert calls == [("triage", "billing"), ("triage/billing", "invoice")]
    name, finished = events[-1]
    assert name == "run_finished"
    assert (finished["output"], finished["agent"], finished["handoffs"]) == (
        "Yes, order 7 is paid.",
        "triage",
        [],
    )
    # The agent's own instructions, not the page's.
    assert finished["messages"][0] == {"role": "system", "content": "You route questions."}


def test_the_page_may_send_only_the_conversation_to_the_servers_agent(
    client: Callable[..., TestClient],
) -> None:
    agent = triage()
    app = client(agent.runtime, agent=agent)
    body = {**QUESTION, "instructions": "Be rude.", "temperature": 0.5}
    answer = app.post("/playground/agent", json=body)
    assert answer.status_code == 400
    assert answer.json()["errors"] == [
        {
            "code": 5006,
            "message": "Bad input: instructions, temperature: the playground's agent is defined "
            "by the server (serve --agents); send only messages",
        }
    ]


def test_without_an_agent_the_page_builds_one_and_it_answers_as_agent(
    client: Callable[..., TestClient],
) -> None:
    app = client(ScriptedRuntime(["Hello."]))
    assert app.get("/playground/info").json()["agent"] is None
    name, finished = frames(app.post("/playground/agent", json=QUESTION).text)[-1]
    assert (name, finished["agent"], finished["handoffs"]) == ("run_finished", "agent", [])


AGENTS = """
from agentkit import Agent, ScriptedRuntime

agent = Agent(ScriptedRuntime(["Hello from triage."]), name="triage")
"""


def test_serve_agents_serves_the_files_agent_and_its_runtime(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "agents.py"
    path.write_text(AGENTS)
    served: list[Starlette] = []
    monkeypatch.setattr("uvicorn.run", lambda app, **options: served.append(app))
    assert cli_main(["serve", "--agents", str(path)]) == 0
    assert f"agent:      triage ({path})" in capsys.readouterr().err
    with TestClient(served[0], base_url="http://localhost") as app:
        info = app.get("/playground/info").json()
        assert (info["agent"], info["runtime"]) == ("triage", "scripted")
        assert "@agentkit/scripted" in info["models"]
        name, finished = frames(app.post("/playground/agent", json=QUESTION).text)[-1]
    assert (name, finished["output"], finished["agent"]) == (
        "run_finished",
        "Hello from triage.",
        "triage",
    )


@pytest.mark.parametrize(
    "options",
    [
        ["--tools", "tools/calculator.py"],
        ["--runtime", "local"],
        ["--model", "m.gguf"],
        ["--parallel", "2"],
        ["--max-steps", "3"],
        ["--mcp"],
        ["--mcp-http", "http://127.0.0.1:1/mcp"],
    ],
)
def test_serve_refuses_what_the_agents_file_defines(
    tmp_path: Path, options: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "agents.py"
    path.write_text(AGENTS)
    assert cli_main(["serve", "--agents", str(path), *options]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: --agents: {options[0]} cannot be given with it: the agent in {path} "
        "defines its own tools, runtime, instructions and settings"
    ]


def test_serve_with_a_file_without_an_agent_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "agents.py"
    path.write_text("agent = None\n")
    assert cli_main(["serve", "--agents", str(path)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: --agents: {path} defines no `agent` (a module-level Agent to run)"
    ]


def test_after_a_handoff_the_result_names_the_agent_that_answered_and_the_handoff(
    client: Callable[..., TestClient],
) -> None:
    billing = Agent(ScriptedRuntime(["Order 7 is paid."]), name="billing")
    agent = Agent(
        ScriptedRuntime([ScriptedRuntime.call("transfer_to_billing")]),
        name="triage",
        handoffs=[billing],
    )
    app = client(agent.runtime, agent=agent)
    events = frames(app.post("/playground/agent", json=QUESTION).text)
    name, finished = events[-1]
    assert name == "run_finished"
    assert (finished["output"], finished["agent"]) == ("Order 7 is paid.", "billing")
    assert [(h["source"], h["target"], h["returns"]) for h in finished["handoffs"]] == [
        ("triage", "billing", False)
    ]
    texts = [(d["path"], d["text"]) for e, d in events if e == "text_delta"]
    assert {path for path, _ in texts} == {"billing"}
    assert "".join(text for _, text in texts) == "Order 7 is paid."
