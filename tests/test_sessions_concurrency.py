"""Several processes writing one SQLite file at once: their own sessions and a shared one."""

from __future__ import annotations

import textwrap
from collections import defaultdict
from pathlib import Path

import anyio
import pytest

from agentkit import SQLiteSession
from agentkit.sessions import history

from support.helpers import run_together

pytestmark = pytest.mark.subprocess

WRITERS = 4
APPENDS = 150

APPENDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from agentkit import SQLiteSession

    db, writer, appends, go = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
    own = SQLiteSession(db, f"writer-{writer}")
    shared = SQLiteSession(db, "shared")
    while not go.exists():  # all start together, for the most contention
        time.sleep(0.005)
    for i in range(appends):
        own.append_sync([{"kind": "note", "run": "r", "writer": writer, "i": i}])
        shared.append_sync(
            [{"kind": "note", "run": "r", "writer": writer, "i": i, "part": p} for p in range(3)]
        )
    """
)

RUNNER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from agentkit import Agent, FunctionRuntime, SQLiteSession, ScriptedRuntime, tool

    db, writer, runs, go = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])

    @tool
    def echo(text: str) -> str:
        '''Echo.

        Args:
            text: The text.
        '''
        return text

    def model(request):
        if request.messages[-1].role == "tool":
            return "ok " + request.messages[-1].content
        return ScriptedRuntime.call("echo", text=request.messages[-1].content)

    agent = Agent(FunctionRuntime(model), tools=[echo])
    session = SQLiteSession(db, "conversation")
    while not go.exists():
        time.sleep(0.005)
    for i in range(runs):
        agent.run_sync(f"w{writer} r{i}", session=session)
    """
)


def start(script: str, tmp_path: Path, count: int) -> None:
    argvs = [[str(tmp_path / "s.db"), str(w), str(count)] for w in range(WRITERS)]
    run_together(script, argvs, tmp_path / "go")


def test_processes_appending_to_their_own_and_to_a_shared_session_lose_nothing(
    tmp_path: Path,
) -> None:
    start(APPENDER, tmp_path, APPENDS)
    db = tmp_path / "s.db"
    for w in range(WRITERS):
        own = SQLiteSession(db, f"writer-{w}").load_sync()
        assert [(e["writer"], e["i"]) for e in own] == [(w, i) for i in range(APPENDS)]
    shared = SQLiteSession(db, "shared").load_sync()
    assert len(shared) == WRITERS * APPENDS * 3
    # Each append's entries together and in order, each once; each writer's in its order.
    groups = [shared[n : n + 3] for n in range(0, len(shared), 3)]
    seen: dict[int, list[int]] = defaultdict(list)
    for group in groups:
        assert len({(e["writer"], e["i"]) for e in group}) == 1, group
        assert [e["part"] for e in group] == [0, 1, 2]
        seen[group[0]["writer"]].append(group[0]["i"])
    assert seen == {w: list(range(APPENDS)) for w in range(WRITERS)}
    assert SQLiteSession.sessions(db) == {
        "shared": WRITERS * APPENDS * 3,
        **{f"writer-{w}": APPENDS for w in range(WRITERS)},
    }


def test_agents_in_several_processes_on_one_session_keep_a_valid_conversation(
    tmp_path: Path,
) -> None:
    runs = 5
    start(RUNNER, tmp_path, runs)
    messages = anyio.run(history, SQLiteSession(tmp_path / "s.db", "conversation"))
    assert len(messages) == WRITERS * runs * 4
    # Runs overlapped in time, yet each exchange reads whole: prompt, call, result, answer.
    prompts = []
    for n in range(0, len(messages), 4):
        user, call, result, answer = messages[n : n + 4]
        assert user.role == "user"
        assert call.tool_calls[0].arguments == {"text": user.content}
        assert result.tool_call_id == call.tool_calls[0].id and result.content == user.content
        assert answer.content == "ok " + user.content
        prompts.append(user.content)
    assert sorted(prompts) == sorted(f"w{w} r{i}" for w in range(WRITERS) for i in range(runs))
    for w in range(WRITERS):
        mine = [p for p in prompts if p.startswith(f"w{w} ")]
        assert mine == [f"w{w} r{i}" for i in range(runs)]
