"""Crash safety, for real: a process running an agent with a SQLite session is killed with
SIGKILL at chosen points, and another process continues the run
(tests/support/session_worker.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from agentkit import Message, SQLiteSession
from agentkit.sessions import INTERRUPTED, InterruptedRun, interrupted_run

from support import SUPPORT
from support.helpers import kill_when_paused

pytestmark = [
    pytest.mark.subprocess,
    pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX"),
]

WORKER = SUPPORT / "session_worker.py"


def worker(
    tmp_path: Path, mode: str, pause: str = "", plan: str = "steps"
) -> subprocess.Popen[str]:
    args = [sys.executable, str(WORKER), str(tmp_path / "s.db"), "orders", str(tmp_path), mode]
    return subprocess.Popen(
        [*args, *([pause] if pause else [])],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PLAN": plan},
    )


def finish(process: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    result: dict[str, Any] = json.loads(out)
    return result


def finish_failing(process: subprocess.Popen[str]) -> str:
    _, err = process.communicate(timeout=120)
    assert process.returncode != 0
    return err


def session_state(session: SQLiteSession) -> InterruptedRun | None:
    return anyio.run(interrupted_run, session)


def effects(tmp_path: Path, name: str) -> list[str]:
    log = tmp_path / f"{name}.log"
    return log.read_text().splitlines() if log.exists() else []


def assert_valid(messages: list[Message]) -> None:
    """Every tool call answered once, right after the message that made it, in call order;
    no result without its call; the last message an answer."""
    index = 0
    while index < len(messages):
        message = messages[index]
        assert message.role != "tool", f"a result without its call at {index}"
        if message.tool_calls:
            ids = [c.id for c in message.tool_calls]
            answers = messages[index + 1 : index + 1 + len(ids)]
            assert [m.tool_call_id for m in answers] == ids, (ids, answers)
            index += len(ids)
        index += 1
    assert messages[-1].role == "assistant" and not messages[-1].tool_calls


def transcript(result: dict[str, Any]) -> list[Message]:
    return [Message.model_validate(m) for m in result["messages"]]


def results(messages: list[Message]) -> list[str]:
    return [m.content for m in messages if m.role == "tool"]


def test_an_uninterrupted_run_does_each_effect_once(tmp_path: Path) -> None:
    result = finish(worker(tmp_path, "start"))
    assert result["output"] == "done: charged 5 | saved order | sent a | sent b"
    assert (effects(tmp_path, "charge"), effects(tmp_path, "notify")) == (["5"], ["a", "b"])
    assert_valid(transcript(result))


def test_killed_after_a_tool_completed_the_run_goes_on_without_redoing_it(
    tmp_path: Path,
) -> None:
    assert kill_when_paused(worker(tmp_path, "start", "model:2"), tmp_path) == "model"
    session = SQLiteSession(tmp_path / "s.db", "orders")
    pending = session_state(session)
    assert pending is not None and pending.unfinished == pending.not_started == []
    result = finish(worker(tmp_path, "continue"))
    assert result["output"] == "done: charged 5 | saved order | sent a | sent b"
    assert effects(tmp_path, "charge") == ["5"]  # completed before the kill: not redone
    assert effects(tmp_path, "save") == ["order=paid"]
    assert effects(tmp_path, "notify") == ["a", "b"]
    messages = transcript(result)
    assert_valid(messages)
    assert [m.role for m in messages[:2]] == ["user", "assistant"]
    assert result["steps"] == 4 and len(result["tool_calls"]) == 4


def test_killed_inside_a_tool_that_is_not_idempotent_the_model_is_told_and_it_never_reruns(
    tmp_path: Path,
) -> None:
    # Inside notify("a"), after its effect; notify("b"), of the same step, never started.
    assert kill_when_paused(worker(tmp_path, "start", "notify:1"), tmp_path) == "notify"
    pending = session_state(SQLiteSession(tmp_path / "s.db", "orders"))
    assert pending is not None
    assert (pending.unfinished, pending.not_started) == (["notify"], ["notify"])
    result = finish(worker(tmp_path, "continue"))
    assert effects(tmp_path, "charge") == ["5"]
    assert effects(tmp_path, "save") == ["order=paid"]
    assert effects(tmp_path, "notify") == ["a", "b"]  # a once (not rerun), b run after the crash
    messages = transcript(result)
    assert_valid(messages)
    assert results(messages) == ["charged 5", "saved order", f"Error: {INTERRUPTED}", "sent b"]
    assert result["output"].startswith("done: charged 5 | saved order | Error: interrupted")


def test_a_run_continued_after_a_kill_gives_its_tools_the_new_process_deps(
    tmp_path: Path,
) -> None:
    assert kill_when_paused(worker(tmp_path, "start", "notify:1"), tmp_path) == "notify"
    result = finish(worker(tmp_path, "continue"))
    run_id = anyio.run(SQLiteSession(tmp_path / "s.db", "orders").load)[0]["run"]
    # Deps are never stored: each process gives its own, the run's id stays the same.
    assert effects(tmp_path, "deps") == [
        f"a first process call_3_0 {run_id}",
        f"b second process call_3_1 {run_id}",
    ]
    assert result["output"].startswith("done: charged 5 | saved order | Error: interrupted")


def test_killed_inside_an_idempotent_tool_it_runs_again(tmp_path: Path) -> None:
    assert kill_when_paused(worker(tmp_path, "start", "save:1"), tmp_path) == "save"
    pending = session_state(SQLiteSession(tmp_path / "s.db", "orders"))
    assert pending is not None and pending.unfinished == ["save"]
    result = finish(worker(tmp_path, "continue"))
    assert result["output"] == "done: charged 5 | saved order | sent a | sent b"
    assert effects(tmp_path, "charge") == ["5"]
    assert effects(tmp_path, "save") == ["order=paid", "order=paid"]  # run again: it may
    assert (tmp_path / "order.state").read_text() == "paid"
    assert effects(tmp_path, "notify") == ["a", "b"]
    assert_valid(transcript(result))


def test_killed_twice_the_second_continuation_finishes_the_run(tmp_path: Path) -> None:
    kill_when_paused(worker(tmp_path, "start", "save:1"), tmp_path)
    # The continuing process dies too, inside the first notify.
    kill_when_paused(worker(tmp_path, "continue", "notify:1"), tmp_path)
    result = finish(worker(tmp_path, "continue"))
    assert effects(tmp_path, "charge") == ["5"]
    assert effects(tmp_path, "save") == ["order=paid", "order=paid"]
    assert effects(tmp_path, "notify") == ["a", "b"]
    messages = transcript(result)
    assert_valid(messages)
    assert results(messages) == ["charged 5", "saved order", f"Error: {INTERRUPTED}", "sent b"]


def test_a_new_prompt_on_a_session_with_an_interrupted_run_is_refused(tmp_path: Path) -> None:
    kill_when_paused(worker(tmp_path, "start", "model:2"), tmp_path)
    done = finish_failing(worker(tmp_path, "start"))
    assert "RunInterrupted" in done and "continue it first" in done


def test_a_run_whose_process_is_alive_is_not_taken_for_interrupted(tmp_path: Path) -> None:
    process = worker(tmp_path, "start", "model:2")
    marker = tmp_path / "paused"
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    session = SQLiteSession(tmp_path / "s.db", "orders")
    try:
        assert session_state(session) is None  # paused, not dead: nobody may take it over
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    assert session_state(session) is not None


def test_killed_while_one_call_of_a_step_runs_the_finished_one_is_kept(tmp_path: Path) -> None:
    # charge and save run side by side; the kill comes inside save, once charge's result is
    # in the journal (save waits for it): charge is not redone, save (idempotent) is.
    paused = worker(tmp_path, "start", "save:1", plan="parallel")
    assert kill_when_paused(paused, tmp_path) == "save"
    pending = session_state(SQLiteSession(tmp_path / "s.db", "orders"))
    assert pending is not None and (pending.unfinished, pending.not_started) == (["save"], [])
    result = finish(worker(tmp_path, "continue", plan="parallel"))
    assert result["output"] == "done: charged 5 | saved order | sent a | sent b"
    assert effects(tmp_path, "charge") == ["5"]
    assert effects(tmp_path, "save") == ["order=paid", "order=paid"]
    assert effects(tmp_path, "notify") == ["a", "b"]
    assert_valid(transcript(result))
