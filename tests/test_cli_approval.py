"""`agentkit run` / `chat` with a tool that needs approval: asked on a terminal, or saved for
`--resume` with a distinct exit status; against a loopback OpenAI-compatible model."""

from __future__ import annotations

import io
import json
import os
import pty
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agentkit.cli import main

from support.loopback import LoopbackServer

pytestmark = pytest.mark.subprocess

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def tools_file(tmp_path: Path) -> Path:
    """An `add` tool that needs approval and leaves a mark in `ran.txt` when it runs."""
    path = tmp_path / "tools.py"
    path.write_text(
        textwrap.dedent(
            f"""
            from pathlib import Path
            from agentkit import tool

            @tool(requires_approval=True)
            def add(a: int, b: int) -> int:
                '''Add two integers.

                Args:
                    a: The first number.
                    b: The second number.
                '''
                mark = Path({str(tmp_path / "ran.txt")!r})
                mark.write_text(mark.read_text() + "ran\\n" if mark.exists() else "ran\\n")
                return a + b
            """
        )
    )
    return path


def agentkit(
    service: LoopbackServer, cwd: Path, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLOUDFLARE_", "OPENAI_"))}
    env["OPENAI_BASE_URL"] = service.url + "/v1"
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "agentkit.cli", *args, "--runtime", "openai", "--model", "m"],
        cwd=cwd,
        env=env,
        input=stdin,
        stdin=subprocess.DEVNULL if stdin is None else None,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_run_that_cannot_ask_saves_its_state_and_exits_3_then_resumes_denied(
    service: LoopbackServer, tools_file: Path, tmp_path: Path
) -> None:
    state = tmp_path / "paused.json"
    done = agentkit(
        service,
        tmp_path,
        "run",
        "add 2 and 3",
        "--tools",
        str(tools_file),
        "--state-file",
        str(state),
    )
    assert done.returncode == 3, done.stderr
    assert done.stdout == ""
    assert 'paused: waiting for approval of add({"a": 2, "b": 3}) [call_A]' in done.stderr
    assert f"agentkit run --resume {state} --approve call_A" in done.stderr
    assert json.loads(state.read_text())["pending"][0]["name"] == "add"
    assert not (tmp_path / "ran.txt").exists()

    argv = ["run", "--resume", str(state), "--tools", str(tools_file), "--deny", "call_A=not today"]
    resumed = agentkit(service, tmp_path, *argv)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout == "The result is Error: denied by the user: not today.\n"
    assert not (tmp_path / "ran.txt").exists()
    assert not state.exists()  # taken: it cannot be resumed twice
    again = agentkit(service, tmp_path, *argv)
    assert again.returncode == 2
    assert f"error: --resume: cannot read {state}: No such file or directory" in again.stderr


def test_the_default_state_file_is_named_on_stderr_and_approve_runs_the_tool(
    service: LoopbackServer, tools_file: Path, tmp_path: Path
) -> None:
    done = agentkit(service, tmp_path, "run", "add 2 and 3", "--tools", str(tools_file))
    assert done.returncode == 3, done.stderr
    [saved] = list(tmp_path.glob("agentkit-state-*.json"))
    assert f"state saved to {saved.name}" in done.stderr
    resumed = agentkit(
        service, tmp_path, "run", "--resume", saved.name, "--tools", str(tools_file),
        "--approve", "call_A", "--json",
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    result = json.loads(resumed.stdout)
    assert (result["output"], result["stop_reason"], result["steps"]) == (
        "The result is 5.",
        "answer",
        2,
    )
    assert (tmp_path / "ran.txt").read_text() == "ran\n"


def test_a_state_resumed_with_other_tools_is_refused_and_kept(
    service: LoopbackServer, tools_file: Path, tmp_path: Path
) -> None:
    state = tmp_path / "paused.json"
    argv = ["run", "add", "--tools", str(tools_file), "--state-file", str(state)]
    assert agentkit(service, tmp_path, *argv).returncode == 3
    calculator = str(ROOT / "tools" / "calculator.py")
    refused = agentkit(
        service,
        tmp_path,
        "run",
        "--resume",
        str(state),
        "--tools",
        calculator,
        "--approve",
        "call_A",
    )
    assert refused.returncode == 2
    assert refused.stderr == (
        "error: cannot resume this run: tool 'add': used by the paused run, missing in this agent\n"
    )
    assert state.exists()


def test_approve_all_runs_without_asking(
    service: LoopbackServer, tools_file: Path, tmp_path: Path
) -> None:
    argv = ["run", "add 2 and 3", "--tools", str(tools_file), "--approve-all", "--stream", "-v"]
    done = agentkit(service, tmp_path, *argv)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "The result is 5.\n"
    assert "<- add: 5" in done.stderr and "approve" not in done.stderr
    assert (tmp_path / "ran.txt").read_text() == "ran\n"


class Terminal(io.StringIO):
    """Typed answers on what passes for a terminal."""

    def isatty(self) -> bool:
        return True


def test_run_on_a_terminal_asks_with_the_arguments_and_a_reason_for_no(
    service: LoopbackServer,
    tools_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", service.url + "/v1")
    monkeypatch.setattr(sys, "stdin", Terminal("maybe\nn\ntoo risky\n"))
    argv = ["run", "add 2 and 3", "--tools", str(tools_file), "--runtime", "openai"]
    status = main([*argv, "--model", "m"])
    out, err = capsys.readouterr()
    assert status == 0
    assert out == "The result is Error: denied by the user: too risky.\n"
    # Asked again after an answer that is neither yes nor no.
    assert err.count('approve add({"a": 2, "b": 3})? [y/n]') == 2
    assert "reason (optional):" in err
    assert not (tmp_path / "ran.txt").exists()


ASKING_ADD = '''
from agentkit import ApprovalRequired, RunContext, tool


@tool
def add(a: int, b: int, context: RunContext) -> int:
    """Add two integers.

    Args:
        a: The first number.
        b: The second number.
    """
    if context.decision is None:
        raise ApprovalRequired(f"Adding {a} and {b} costs a credit. Go ahead?")
    return a + b
'''


def test_a_tool_that_asks_while_it_runs_has_its_question_shown(
    service: LoopbackServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "asking.py"
    path.write_text(ASKING_ADD)
    monkeypatch.setenv("OPENAI_BASE_URL", service.url + "/v1")
    monkeypatch.setattr(sys, "stdin", Terminal("y\n"))
    status = main(
        ["run", "add 2 and 3", "--tools", str(path), "--runtime", "openai", "--model", "m"]
    )
    out, err = capsys.readouterr()
    assert status == 0
    assert out == "The result is 5.\n"
    assert "add asks: Adding 2 and 3 costs a credit. Go ahead?\n" in err
    assert 'approve add({"a": 2, "b": 3})? [y/n]' in err


def test_chat_asks_on_its_input_and_goes_on_with_the_conversation(
    service: LoopbackServer, tools_file: Path, tmp_path: Path
) -> None:
    done = agentkit(
        service, tmp_path, "chat", "--tools", str(tools_file), stdin="add 2 and 3\ny\n/exit\n"
    )
    assert done.returncode == 0, done.stderr
    assert "The result is 5." in done.stdout
    assert 'approve add({"a": 2, "b": 3})? [y/n]' in done.stderr
    assert (tmp_path / "ran.txt").read_text() == "ran\n"


def test_run_on_a_real_terminal_asks_and_runs_the_approved_call(
    service: LoopbackServer, tools_file: Path, tmp_path: Path
) -> None:
    controller, terminal = pty.openpty()
    try:
        os.write(controller, b"y\n")  # typed ahead: the terminal keeps the line until read
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CLOUDFLARE_", "OPENAI_"))}
        done = subprocess.run(
            [sys.executable, "-m", "agentkit.cli", "run", "add 2 and 3", "--tools", str(tools_file),
             "--runtime", "openai", "--model", "m"],
            cwd=tmp_path,
            env={**env, "OPENAI_BASE_URL": service.url + "/v1", "PYTHONPATH": str(ROOT)},
            stdin=terminal,
            capture_output=True,
            text=True,
            timeout=120,
        )  # fmt: skip
    finally:
        os.close(terminal)
        os.close(controller)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "The result is 5.\n"
    assert 'approve add({"a": 2, "b": 3})? [y/n]' in done.stderr
    assert (tmp_path / "ran.txt").read_text() == "ran\n"
    assert not list(tmp_path.glob("agentkit-state-*.json"))


def test_run_needs_a_prompt_or_a_state_to_resume(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run"]) == 2
    assert capsys.readouterr().err == (
        "error: agentkit run: give a prompt, or --resume FILE (not both)\n"
    )
    assert main(["run", "hi", "--resume", "x.json", "--deny", "=no"]) == 2
    assert capsys.readouterr().err == (
        "error: agentkit run: give a prompt, or --resume FILE (not both)\n"
    )


def test_a_paused_run_of_a_session_resumes_into_it_in_another_process(
    service: LoopbackServer, tools_file: Path, tmp_path: Path
) -> None:
    from agentkit import SQLiteSession

    db = str(tmp_path / "s.db")
    session = ["--session", "jobs", "--session-db", db, "--tools", str(tools_file)]
    state = tmp_path / "paused.json"
    done = agentkit(service, tmp_path, "run", "add 2 and 3", *session, "--state-file", str(state))
    assert done.returncode == 3, done.stderr
    assert SQLiteSession(db, "jobs").load_sync()[-1]["stop_reason"] == "approval"
    argv = ["run", "--resume", str(state), "--approve", "call_A", *session]
    resumed = agentkit(service, tmp_path, *argv)
    assert (resumed.returncode, resumed.stdout) == (0, "The result is 5.\n"), resumed.stderr
    entries = SQLiteSession(db, "jobs").load_sync()
    assert len({e["run"] for e in entries}) == 1  # the same run, resumed
    roles = [e["message"]["role"] for e in entries if e["kind"] == "message"]
    assert roles == ["user", "assistant", "tool", "assistant"]
    assert entries[-1] == {"kind": "end", "run": entries[0]["run"], "stop_reason": "answer"}
