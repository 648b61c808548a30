"""`agentkit run --agents FILE` and `agentkit chat --agents FILE`: the file's `agent`, with its
tools and sub-agents, on the prompt; who answers, shown; the options the file defines refused by
name. Agents files on scripted runtimes, run in this process."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from agentkit.cli import main

from support.agents_files import TRIAGE_TO_BILLING

AGENTS = '''
from agentkit import Agent, ScriptedRuntime, tool


@tool
def invoice(order: int) -> str:
    """An order's invoice.

    Args:
        order: The order number.
    """
    return f"order {order}: 12.50 EUR, paid"


billing = Agent(
    ScriptedRuntime([ScriptedRuntime.call("invoice", order=7), "Order 7 is paid."]),
    tools=[invoice],
    name="billing",
)
agent = Agent(
    ScriptedRuntime(
        [
            ScriptedRuntime.call("billing", input="Is order 7 paid?"),
            "Yes, order 7 is paid.",
            "You asked whether order 7 is paid.",
        ]
    ),
    tools=[billing.as_tool(description="Answers billing questions.")],
    name="triage",
)
'''


@pytest.fixture
def agents(tmp_path: Path) -> str:
    path = tmp_path / "agents.py"
    path.write_text(AGENTS)
    return str(path)


def test_run_answers_with_the_files_agent(agents: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "Is order 7 paid?", "--agents", agents]) == 0
    assert capsys.readouterr().out == "Yes, order 7 is paid.\n"


def test_verbose_names_the_path_of_a_sub_agents_calls(
    agents: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "Is order 7 paid?", "--agents", agents, "-v"]) == 0
    out, err = capsys.readouterr()
    assert out == "Yes, order 7 is paid.\n"
    lines = [line.rsplit(" (", 1)[0] for line in err.splitlines()]  # without the durations
    assert lines == [
        '-> billing({"input":"Is order 7 paid?"})',
        '[triage/billing] -> invoice({"order":7})',
        "[triage/billing] <- invoice: order 7: 12.50 EUR, paid",
        "<- billing: Order 7 is paid.",
    ]


def test_stream_prefixes_a_sub_agents_lines_with_its_name(
    agents: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "Is order 7 paid?", "--agents", agents, "--stream"]) == 0
    assert capsys.readouterr().out == "billing> Order 7 is paid.\nYes, order 7 is paid.\n"


def test_json_keeps_the_sub_run_in_the_calls_record(
    agents: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "Is order 7 paid?", "--agents", agents, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["output"] == "Yes, order 7 is paid."
    (call,) = result["tool_calls"]
    assert call["call"]["name"] == "billing"
    assert call["run"]["output"] == "Order 7 is paid."
    assert [r["call"]["name"] for r in call["run"]["tool_calls"]] == ["invoice"]


def test_a_session_keeps_the_conversation_of_the_files_agent(
    agents: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    session = ["--agents", agents, "--session", "orders", "--session-db", str(tmp_path / "s.db")]
    assert main(["run", "Is order 7 paid?", *session]) == 0
    assert main(["run", "What did I ask?", *session, "--json"]) == 0
    out = capsys.readouterr().out
    second = json.loads(out[out.index("{") :])
    users = [m["content"] for m in second["messages"] if m["role"] == "user"]
    assert users == ["Is order 7 paid?", "What did I ask?"]
    assert second["output"] == "You asked whether order 7 is paid."


def test_chat_shows_which_agent_is_answering(
    agents: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("Is order 7 paid?\n/exit\n"))
    assert main(["chat", "--agents", agents]) == 0
    out = capsys.readouterr().out
    assert out.endswith("billing> Order 7 is paid.\nYes, order 7 is paid.\nyou> ")


APPROVAL = """
from agentkit import Agent, ScriptedRuntime, tool


@tool(requires_approval=True)
def refund(order: int) -> str:
    \"\"\"Refund an order.

    Args:
        order: The order number.
    \"\"\"
    return f"order {order} refunded"


agent = Agent(
    ScriptedRuntime([ScriptedRuntime.call("refund", order=7), "Refunded."]), tools=[refund]
)
"""


def test_approval_options_apply_to_the_files_agent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "refunds.py"
    path.write_text(APPROVAL)
    assert main(["run", "Refund 7", "--agents", str(path), "--approve-all", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["tool_calls"][0]["output"] == "order 7 refunded"


@pytest.mark.parametrize(
    "options",
    [
        ["--tools", "tools/calculator.py"],
        ["--runtime", "local"],
        ["--model", "m.gguf"],
        ["--instructions", "Be brief."],
        ["--max-steps", "3"],
        ["--tool-choice", "required"],
        ["--temperature", "0"],
        ["--seed", "0"],
        ["--mcp-stdio", "mcp-server-time"],
        ["--output-schema", "{}"],
        ["--temporal", "127.0.0.1:1"],
    ],
)
def test_options_the_agent_defines_are_refused_by_name(
    agents: str, options: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "hi", "--agents", agents, *options]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: --agents: {options[0]} cannot be given with it: the agent in {agents} "
        "defines its own tools, runtime, instructions and settings"
    ]


def test_chat_refuses_them_too(agents: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["chat", "--agents", agents, "--tools", "a.py", "--top-k", "5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --agents: --tools, --top-k cannot be given with it")


@pytest.mark.parametrize(
    ("content", "error"),
    [
        ("from agentkit import Agent\n", "{path} defines no `agent` (a module-level Agent to run)"),
        ("agent = 'triage'\n", "`agent` in {path} must be an Agent (got str)"),
        ("raise ValueError('no model')\n", "importing {path} failed: ValueError: no model"),
        (None, "no such file: {path}"),
    ],
)
def test_an_agents_file_without_an_agent_is_one_clear_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: str | None,
    error: str,
) -> None:
    path = tmp_path / "agents.py"
    if content is not None:
        path.write_text(content)
    assert main(["run", "hi", "--agents", str(path)]) == 2
    out, err = capsys.readouterr()
    assert (out, err.splitlines()) == ("", ["error: --agents: " + error.format(path=path)])


def test_verbose_and_stream_show_the_handoff_and_who_answers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "handoffs.py"
    path.write_text(TRIAGE_TO_BILLING)
    assert main(["run", "Is order 7 paid?", "--agents", str(path), "-v", "--stream"]) == 0
    out, err = capsys.readouterr()
    assert out == "billing> Order 7 is paid.\n"
    lines = [line.rsplit(" (", 1)[0] for line in err.splitlines()]  # without the durations
    assert lines == [
        "-> transfer_to_billing({})",
        "<- transfer_to_billing: Transferred to billing.",
        "handoff triage -> billing",
        '[billing] -> invoice({"order":7})',
        "[billing] <- invoice: order 7: 12.50 EUR, paid",
    ]
