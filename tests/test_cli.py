"""The `agentkit` command, run as a user runs it: a subprocess, on the embedded model."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from agentkit import SQLiteSession
from agentkit.cli import main

from support.loopback import LoopbackServer
from support.temporal_server import free_port

ROOT = Path(__file__).resolve().parents[1]


def agentkit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentkit.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.model
@pytest.mark.subprocess
def test_the_main_job_answers_1517_having_called_the_calculator() -> None:
    done = agentkit("run", "What is 37 * 41?", "--tools", "tools/calculator.py", "-v")
    assert done.returncode == 0, done.stderr
    assert "1517" in done.stdout
    assert '-> calculate({"expression":"37 * 41"})' in done.stderr
    assert "<- calculate: 1517" in done.stderr


@pytest.mark.model
@pytest.mark.subprocess
def test_json_prints_the_whole_run_result() -> None:
    done = agentkit("run", "What is 37 * 41?", "--tools", "tools/calculator.py", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert "1517" in result["output"]
    assert [r["call"]["name"] for r in result["tool_calls"]] == ["calculate"]
    assert result["tool_calls"][0]["output"] == "1517"
    assert result["usage"]["prompt_tokens"] > 0
    assert result["steps"] == 2


@pytest.mark.model
@pytest.mark.subprocess
def test_stream_prints_the_answer_as_it_comes() -> None:
    done = agentkit("run", "Say hello.", "--stream", "--max-tokens", "12", "--seed", "3")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()


@pytest.mark.subprocess
def test_a_bad_sampling_value_is_one_clear_line_and_a_non_zero_exit() -> None:
    done = agentkit("run", "hi", "--temperature", "6")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: invalid request: temperature: must be <= 5 (got 6.0)"
    ]


@pytest.mark.subprocess
def test_a_missing_model_file_is_one_clear_line() -> None:
    done = agentkit("run", "hi", "--model", "no/such/model.gguf")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: model_path: no such file: no/such/model.gguf"
    ]


@pytest.mark.subprocess
def test_a_missing_tools_file_is_one_clear_line() -> None:
    done = agentkit("run", "hi", "--tools", "tools/nope.py")
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: ") and "tools/nope.py" in line


@pytest.mark.model
@pytest.mark.subprocess
def test_output_schema_prints_the_object_from_the_embedded_model() -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "celsius": {"type": "integer"}},
        "required": ["city", "celsius"],
    }
    prompt = "Oslo is cold today: -3 degrees."
    done = agentkit("run", prompt, "--output-schema", json.dumps(schema), "--max-tokens", "60")
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert set(record) == {"city", "celsius"} and isinstance(record["celsius"], int)
    assert record["city"] == "Oslo"


# -- sessions: on a loopback Workers AI service (fast), then once on the embedded model -------

CALCULATOR = str(ROOT / "tools" / "calculator.py")


def test_run_with_a_session_continues_the_conversation_in_a_sessions_file(
    workers_ai: LoopbackServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "s.db"
    base = ["--runtime", "workers-ai", "--session", "math", "--session-db", str(db)]
    assert main(["run", "What is 2 + 3?", "--tools", CALCULATOR, *base]) == 0
    assert capsys.readouterr().out == "The result is 5.\n"
    assert main(["run", "And again?", *base]) == 0
    sent = workers_ai.requests[-1].json["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "assistant", "user"]
    assert sent[0]["content"] == "What is 2 + 3?" and sent[-1]["content"] == "And again?"
    assert SQLiteSession.sessions(db) == {"math": 11}


def test_chat_resumes_a_named_session_and_says_so(
    workers_ai: LoopbackServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("AGENTKIT_SESSION_DB", str(tmp_path / "env.db"))
    base = ["chat", "--runtime", "workers-ai", "--session", "talk"]
    monkeypatch.setattr("sys.stdin", io.StringIO("Hello there\n/exit\n"))
    assert main(base) == 0
    first = capsys.readouterr()
    assert f"new session talk ({tmp_path / 'env.db'})" in first.err
    assert "The result is Hello there." in first.out
    monkeypatch.setattr("sys.stdin", io.StringIO("Still there?\n/exit\n"))
    assert main(base) == 0
    second = capsys.readouterr()
    assert f"resumed session talk ({tmp_path / 'env.db'}): 2 messages" in second.err
    sent = workers_ai.requests[-1].json["messages"]
    assert [m["content"] for m in sent] == [
        "Hello there",
        "The result is Hello there.",
        "Still there?",
    ]


def test_run_first_finishes_a_run_a_dead_process_left_in_the_session(
    workers_ai: LoopbackServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "s.db"
    left = SQLiteSession(db, "job")
    left.append_sync(
        [
            {"kind": "run", "run": "run_old", "pid": 1, "host": "another-machine"},
            {"kind": "message", "run": "run_old", "message": {"role": "user", "content": "Old"}},
        ]
    )
    argv = ["run", "New", "--runtime", "workers-ai", "--session", "job", "--session-db", str(db)]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert "session job: continuing a run that was interrupted" in err
    assert out == "The result is Old.\nThe result is New.\n"


@pytest.mark.subprocess
@pytest.mark.parametrize("command", ["run", "chat"])
def test_a_sessions_file_that_is_not_sqlite_is_one_clear_line(
    workers_ai: LoopbackServer, tmp_path: Path, command: str
) -> None:
    db = tmp_path / "notes.txt"
    db.write_text("not a database\n" * 100)
    argv = [command, *(["hi"] if command == "run" else []), "--runtime", "workers-ai"]
    done = subprocess.run(
        [sys.executable, "-m", "agentkit.cli", *argv, "--session", "s", "--session-db", str(db)],
        input="hi\n", cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: {db}: not a SQLite database, or a damaged one (SQLite: file is not a database)"
    )
    assert "Traceback" not in done.stderr


@pytest.mark.subprocess
def test_a_session_name_that_is_not_utf8_is_one_clear_line(
    workers_ai: LoopbackServer, tmp_path: Path
) -> None:
    # A name in another encoding: Python reads the byte it cannot decode as a lone surrogate.
    argv = [b"run", b"hi", b"--runtime", b"workers-ai", b"--session", b"caf\xe9"]
    done = subprocess.run(
        [sys.executable, "-m", "agentkit.cli", *argv, b"--session-db", bytes(tmp_path / "s.db")],
        cwd=ROOT, capture_output=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.decode().strip().splitlines() == [
        "error: --session: must be text UTF-8 can encode, without unpaired surrogates "
        "(got 'caf\\udce9')"
    ]
    assert not (tmp_path / "s.db").exists()


@pytest.mark.model
@pytest.mark.subprocess
def test_chat_on_the_embedded_model_resumes_its_session_in_a_new_process(tmp_path: Path) -> None:
    db = str(tmp_path / "s.db")
    args = ["chat", "--session", "local", "--session-db", db, "--max-tokens", "8"]
    first = subprocess.run(
        [sys.executable, "-m", "agentkit.cli", *args],
        input="Say hello.\n",
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert first.returncode == 0, first.stderr
    assert "new session local" in first.stderr
    second = subprocess.run(
        [sys.executable, "-m", "agentkit.cli", *args],
        input="Again.\n",
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert second.returncode == 0, second.stderr
    assert "resumed session local" in second.stderr and ": 2 messages" in second.stderr
    assert SQLiteSession.sessions(db) == {"local": 8}


def test_validate_names_every_problem_in_a_json_or_json_lines_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weather = {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "The city."}},
            "required": ["city"],
        },
    }
    broken = {
        "type": "function",
        "function": {
            "name": "bad name!",
            "description": "Count.",
            "parameters": {
                "type": "object",
                "properties": {"n": {"type": "integer", "minimum": "zero", "description": "N."}},
            },
        },
    }
    tools = tmp_path / "tools.json"
    tools.write_text(json.dumps([weather, broken]))
    assert main(["validate", str(tools)]) == 1
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        "$[1].function.name: 'bad name!' is not a valid function name (letters, digits, _ and -, "
        "at most 64); renamed to 'bad_name_'",
        '$[1].function.parameters: $.properties.n.minimum: "zero" is not of type "number"',
    ]
    assert "2 definitions, 2 problems" in err
    # JSON Lines, the definitions under "function" (as BFCL's files): all of them are read.
    lines = tmp_path / "tools.jsonl"
    lines.write_text(
        "".join(
            json.dumps({"function": [{**weather, "name": name}]}) + "\n"
            for name in ("weather_now", "weather_tomorrow", "weather_week")
        )
    )
    assert main(["validate", str(lines)]) == 0
    assert "3 definitions, 0 problems" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("content", "error"),
    [
        (None, "cannot read {file}: No such file or directory"),
        (
            '[\n{"name": "a",\n "parameters": {]\n',
            "{file} is not JSON or JSON Lines: Expecting "
            "property name enclosed in double quotes at line 3, column 17",
        ),
        (
            '{"function": []}\n{"function": []}\n{"function": oops}\n',
            "{file} is not JSON or JSON Lines: Expecting value at line 3, column 14",
        ),
        ("", "{file} is empty"),
        (b"\xff\xfe[]", "{file} is not UTF-8 text (byte 0)"),
    ],
    ids=["missing", "bad-json", "bad-line", "empty", "not-utf8"],
)
def test_validate_says_what_is_wrong_with_a_file_it_cannot_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | bytes | None, error: str
) -> None:
    file = tmp_path / "tools.json"
    if isinstance(content, bytes):
        file.write_bytes(content)
    elif content is not None:
        file.write_text(content)
    assert main(["validate", str(file)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"error: validate: {error.format(file=file)}\n"


@pytest.mark.subprocess
@pytest.mark.parametrize("how", [["hi"], ["--resume", "wf-1"]], ids=["start", "resume"])
def test_a_durable_run_that_cannot_reach_temporal_is_one_clear_line(how: list[str]) -> None:
    pytest.importorskip("temporalio", reason="needs the temporal extra")
    port = free_port()  # nothing listens there
    done = agentkit("run", "--temporal", f"127.0.0.1:{port}", *how)
    # The Temporal client's native threads start with the attempt to connect: the process
    # still ends with its own status, not an abort in the interpreter's teardown.
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"error: cannot reach Temporal at 127.0.0.1:{port}")
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("option", ["--mcp-stdio", "--mcp-http"])
def test_a_durable_run_leaves_mcp_servers_to_the_workers(
    option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["run", "--temporal", "127.0.0.1:7233", option, "x", "hi"])
    assert status == 2
    assert "MCP servers belong to the workers with --temporal" in capsys.readouterr().err


def test_serve_without_the_server_extra_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import agentkit.cli

    monkeypatch.delitem(sys.modules, "agentkit.cli.serve", raising=False)
    monkeypatch.delattr(agentkit.cli, "serve", raising=False)
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # importing it raises ImportError
    status = main(["serve", "--port", "8788", "--runtime", "local"])
    assert status == 2
    err = capsys.readouterr().err
    assert err == "error: agentkit serve needs uvicorn: pip install 'agentkit[server]'\n"


def test_agent_names_a_workers_agent_and_needs_temporal(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "hi", "--agent", "billing"]) == 2
    assert (
        "--agent names one of the workers' agents: it needs --temporal" in capsys.readouterr().err
    )
