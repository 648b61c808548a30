"""Sessions on the scripted runtimes: conversations across runs, history limits, the journal,
and continuing a run from a journal (crashes for real are in test_sessions_crash.py)."""

from __future__ import annotations

import random
import sqlite3
import threading
from collections.abc import Awaitable, Callable, Sequence
from contextlib import aclosing
from pathlib import Path
from typing import Any

import anyio
import pytest

from agentkit import (
    Agent,
    ConfigurationError,
    FunctionRuntime,
    HistoryLimit,
    MaxStepsExceeded,
    MemorySession,
    Message,
    ModelRequest,
    RunInterrupted,
    ScriptedRuntime,
    Session,
    SQLiteSession,
    ToolCall,
    UserError,
    tool,
)
from agentkit.events import RunFinished
from agentkit.sessions import (
    INTERRUPTED,
    Entry,
    discard_interrupted,
    estimate_tokens,
    history,
    limit_history,
)

from support.helpers import add

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["memory", "sqlite"])
def session(request: pytest.FixtureRequest, tmp_path: Path) -> Session:
    if request.param == "memory":
        return MemorySession("alice")
    return SQLiteSession(tmp_path / "sessions.db", "alice")


def kinds(entries: list[Entry]) -> list[str]:
    return [e["kind"] if e["kind"] != "message" else e["message"]["role"] for e in entries]


# -- conversations across runs -----------------------------------------------------------


async def test_a_second_run_sees_the_first_and_the_session_holds_both(session: Session) -> None:
    runtime = ScriptedRuntime([ScriptedRuntime.call("add", a=2, b=3), "5", "You asked 2 + 3."])
    agent = Agent(runtime, tools=[add], instructions="Be brief.")
    first = await agent.run("What is 2 + 3?", session=session)
    second = await agent.run("What did I ask?", session=session)
    assert (first.output, second.output) == ("5", "You asked 2 + 3.")
    sent = runtime.requests[-1].messages
    assert [m.role for m in sent] == ["system", "user", "assistant", "tool", "assistant", "user"]
    assert sent[0].content == "Be brief." and sent[3].content == "5"
    assert second.messages[1:] == [*first.messages[1:], *second.messages[5:]]
    assert kinds(await session.load()) == [
        *("run", "user", "assistant", "started", "tool", "assistant", "end"),
        *("run", "user", "assistant", "end"),
    ]
    roles = [m.role for m in await history(session)]
    assert roles == ["user", "assistant", "tool", "assistant", "user", "assistant"]


async def test_a_conversation_continues_in_another_session_object_on_the_same_file(
    tmp_path: Path,
) -> None:
    runtime = FunctionRuntime(lambda r: f"{sum(m.role == 'user' for m in r.messages)} prompts")
    agent = Agent(runtime)
    await agent.run("one", session=SQLiteSession(tmp_path / "s.db", "bob"))
    result = await agent.run("two", session=SQLiteSession(tmp_path / "s.db", "bob"))
    assert result.output == "2 prompts"
    other = await agent.run("hello", session=SQLiteSession(tmp_path / "s.db", "carol"))
    assert other.output == "1 prompts"


def test_run_sync_takes_a_session(tmp_path: Path) -> None:
    session = SQLiteSession(tmp_path / "s.db", "sync")
    agent = Agent(FunctionRuntime(lambda r: f"{len(r.messages)} messages"))
    agent.run_sync("a", session=session)
    assert agent.run_sync("b", session=session).output == "3 messages"
    assert [e["kind"] for e in session.load_sync()].count("end") == 2


async def test_a_streamed_run_journals_and_continues_the_same_way(session: Session) -> None:
    runtime = ScriptedRuntime([ScriptedRuntime.call("add", a=1, b=1), "2", "yes"])
    agent = Agent(runtime, tools=[add])
    await agent.run("1 + 1?", session=session)
    async with aclosing(agent.stream("Sure?", session=session)) as events:
        finished = [e async for e in events if isinstance(e, RunFinished)]
    assert finished[0].result.output == "yes"
    assert runtime.streamed == [False, False, True]
    assert len(runtime.requests[-1].messages) == 5
    assert kinds(await session.load())[-3:] == ["user", "assistant", "end"]


async def test_a_transcript_list_receives_the_history_and_the_run(session: Session) -> None:
    agent = Agent(FunctionRuntime(lambda r: "ok"))
    await agent.run("first", session=session)
    transcript: list[Message] = [Message.user("stale")]
    await agent.run("second", session=session, transcript=transcript)
    assert [m.content for m in transcript] == ["first", "ok", "second", "ok"]


async def test_clear_forgets_the_conversation(session: Session) -> None:
    agent = Agent(FunctionRuntime(lambda r: f"{len(r.messages)}"))
    await agent.run("a", session=session)
    await session.clear()
    assert await session.load() == []
    assert (await agent.run("b", session=session)).output == "1"


async def test_misuse_is_refused_clearly(session: Session) -> None:
    agent = Agent(FunctionRuntime(lambda r: "ok"))
    with pytest.raises(UserError, match="prompt: required for a run without a session"):
        await agent.run()
    with pytest.raises(UserError, match="takes its history from the session"):
        await agent.run("x", session=session, history=[Message.user("y")])
    with pytest.raises(UserError, match="no interrupted run to continue: pass a prompt"):
        await agent.run(session=session)
    with pytest.raises(UserError, match=r"entries\[0\]: must be a JSON object"):
        await session.append([{"no kind": 1}])
    with pytest.raises(UserError, match=r"entries\[1\]: not JSON data"):
        await session.append([{"kind": "a"}, {"kind": "b", "value": object()}])
    with pytest.raises(UserError, match=r"HistoryLimit.max_messages: must be >= 1 \(got 0\)"):
        HistoryLimit(max_messages=0)


# -- history limits ----------------------------------------------------------------------


def exchange(n: int, calls: int = 0) -> list[Message]:
    ids = [ToolCall(name="add", arguments={"a": n, "b": k}) for k in range(calls)]
    out = [Message.user(f"q{n}")]
    if calls:
        out.append(Message.assistant("", ids))
        out += [Message.tool(str(n + k), tool_call_id=c.id, name="add") for k, c in enumerate(ids)]
    out.append(Message.assistant(f"a{n}"))
    return out


def test_a_message_limit_never_splits_a_call_from_its_results() -> None:
    messages = [*exchange(1), *exchange(2, calls=2), *exchange(3)]  # 2 + 5 + 2 messages
    assert [m.content for m in limit_history(messages, HistoryLimit(max_messages=2))] == [
        "q3",
        "a3",
    ]
    # 6 messages: the call, its results and the answer fit, but not the question before
    # them; a history that opens on an assistant turn is cut to the next user turn.
    kept = limit_history(messages, HistoryLimit(max_messages=6))
    assert [m.content for m in kept] == ["q3", "a3"]
    kept = limit_history(messages, HistoryLimit(max_messages=7))
    roles = [m.role for m in kept]
    assert roles == ["user", "assistant", "tool", "tool", "assistant", "user", "assistant"]
    assert limit_history(messages, None) == messages


def test_a_token_limit_keeps_the_newest_exchanges_that_fit_and_the_system_message() -> None:
    system = Message.system("rules " * 100)
    messages = [system, *exchange(1), *exchange(2, calls=1), *exchange(3)]
    five = HistoryLimit(max_tokens=5, count_tokens=lambda m: 1)
    assert [m.content for m in limit_history(messages, five)] == [system.content, "q3", "a3"]
    six = HistoryLimit(max_tokens=6, count_tokens=lambda m: 1)
    assert [m.content for m in limit_history(messages, six)][:2] == [system.content, "q2"]
    by_estimate = HistoryLimit(max_tokens=100)
    assert len(limit_history(messages, by_estimate)) == len(messages)  # the system is free
    assert estimate_tokens(Message.user("x" * 400)) == 104


async def test_a_session_limit_shortens_what_the_model_sees_not_what_is_stored() -> None:
    session = MemorySession("short", limit=HistoryLimit(max_messages=2))
    runtime = FunctionRuntime(lambda r: f"saw {len(r.messages)}")
    agent = Agent(runtime)
    for prompt in ["a", "b", "c"]:
        result = await agent.run(prompt, session=session)
    assert result.output == "saw 3"  # the last exchange and the new prompt
    assert [m.content for m in runtime.requests[-1].messages] == ["b", "saw 3", "c"]
    assert len(await MemorySession.load(session)) == 3 * 4


# -- the journal -------------------------------------------------------------------------


async def test_each_tool_result_is_stored_as_its_call_finishes(session: Session) -> None:
    release = anyio.Event()
    seen: list[list[str]] = []

    @tool
    async def fast() -> str:
        """Fast."""
        return "fast done"

    @tool
    async def slow() -> str:
        """Slow."""
        await release.wait()
        return "slow done"

    @tool
    def threaded() -> str:
        """Runs on a worker thread."""
        return "threaded done"

    runtime = ScriptedRuntime(
        [ScriptedRuntime.calls(("fast", {}), ("slow", {}), ("threaded", {})), "all done"]
    )
    agent = Agent(runtime, tools=[fast, slow, threaded])

    async def watch() -> None:
        # While `slow` still runs, the others' results are stored already.
        for _ in range(500):
            entries = await session.load()
            stored = [e["message"]["content"] for e in entries if kinds([e]) == ["tool"]]
            if len(stored) == 2:
                seen.append(sorted(stored))
                release.set()
                return
            await anyio.sleep(0.01)
        release.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch)
        result = await agent.run("go", session=session)
    assert seen == [["fast done", "threaded done"]]
    assert result.output == "all done"
    entries = await session.load()
    started = [e for e in entries if e["kind"] == "started"]
    assert [len(e["calls"]) for e in started] == [3]  # one marker for the step, before any ran
    assert kinds(entries).index("started") < kinds(entries).index("tool")


async def test_a_fast_sync_call_is_stored_while_a_slow_one_of_its_step_still_runs(
    session: Session,
) -> None:
    release = threading.Event()

    @tool
    def quick() -> str:
        """Returns at once."""
        return "quick done"

    @tool
    def blocking() -> str:
        """Waits."""
        release.wait(10)
        return "blocking done"

    seen: list[str] = []

    async def watch() -> None:
        for _ in range(500):
            stored = [
                e["message"]["content"] for e in await session.load() if kinds([e]) == ["tool"]
            ]
            if stored:
                seen.extend(stored)
                break
            await anyio.sleep(0.01)
        release.set()

    runtime = ScriptedRuntime([ScriptedRuntime.calls(("quick", {}), ("blocking", {})), "ok"])
    agent = Agent(runtime, tools=[quick, blocking])
    async with anyio.create_task_group() as tg:
        tg.start_soon(watch)
        assert (await agent.run("go", session=session)).output == "ok"
    assert seen == ["quick done"]


async def test_a_run_that_stops_with_an_error_is_closed_and_the_next_one_goes_on(
    session: Session,
) -> None:
    runtime = ScriptedRuntime([ScriptedRuntime.call("add", a=1, b=2), "next"])
    agent = Agent(runtime, tools=[add], max_steps=1)
    with pytest.raises(MaxStepsExceeded):
        await agent.run("loop", session=session)
    assert (await session.load())[-1] == {
        "kind": "end",
        "run": (await session.load())[0]["run"],
        "stop_reason": "max_steps",
    }
    assert (await agent.run("again", session=session)).output == "next"
    roles = [m.role for m in runtime.requests[-1].messages]
    assert roles == ["user", "assistant", "tool", "user"]


async def test_a_cancelled_run_is_closed_with_every_call_answered(session: Session) -> None:
    @tool
    async def hang() -> str:
        """Never returns."""
        await anyio.sleep_forever()
        return ""

    agent = Agent(ScriptedRuntime([ScriptedRuntime.call("hang")]), tools=[hang])
    with anyio.move_on_after(0.2):
        await agent.run("wait", session=session)
    entries = await session.load()
    assert kinds(entries)[-3:] == ["started", "tool", "end"]
    assert entries[-2]["message"]["content"].startswith("Error: cancelled")
    assert entries[-1]["stop_reason"] == "error"
    assert [m.role for m in await history(session)] == ["user", "assistant", "tool"]


# -- continuing an interrupted run (journals written by a process that is gone) ----------


def crashed(*entries: dict[str, Any]) -> list[Entry]:
    """A journal left by a run on another machine that never ended."""
    head: Entry = {"kind": "run", "run": "run_x", "pid": 1, "host": "elsewhere"}
    return [head, *({"run": "run_x", **e} for e in entries)]


def message(m: Message, **extra: Any) -> dict[str, Any]:
    return {"kind": "message", "message": m.model_dump(mode="json"), **extra}


CALL = ToolCall(id="call_1", name="add", arguments={"a": 2, "b": 3})


async def test_a_run_killed_after_the_answer_returns_it_without_asking_the_model() -> None:
    session = MemorySession()
    await session.append(
        crashed(
            message(Message.user("2 + 3?")),
            message(Message.assistant("It is 5."), usage={"prompt_tokens": 7}),
        )
    )
    runtime = ScriptedRuntime([])
    result = await Agent(runtime).run(session=session)
    assert (result.output, result.steps, result.usage.prompt_tokens) == ("It is 5.", 1, 7)
    assert runtime.requests == []
    assert (await session.load())[-1]["kind"] == "end"


async def test_a_new_prompt_waits_for_the_interrupted_run() -> None:
    session = MemorySession("s1")
    await session.append(crashed(message(Message.user("2 + 3?"))))
    agent = Agent(ScriptedRuntime(["5", "hi"]))
    with pytest.raises(RunInterrupted, match="'s1' holds run run_x, interrupted"):
        await agent.run("hello", session=session)
    assert (await agent.run(session=session)).output == "5"  # asks the model again
    assert (await agent.run("hello", session=session)).output == "hi"


async def test_interrupted_calls_are_settled_by_whether_they_started_and_are_idempotent() -> None:
    ran: list[str] = []

    @tool
    def pay(amount: int) -> str:
        """Pay.

        Args:
            amount: Euros.
        """
        ran.append(f"pay {amount}")
        return "paid"

    @tool(idempotent=True)
    def look(key: str) -> str:
        """Look something up.

        Args:
            key: What.
        """
        ran.append(f"look {key}")
        return f"{key} found"

    calls = [
        ToolCall(id="c1", name="pay", arguments={"amount": 1}),  # done before the crash
        ToolCall(id="c2", name="pay", arguments={"amount": 2}),  # started, not idempotent
        ToolCall(id="c3", name="look", arguments={"key": "k"}),  # started, idempotent
        ToolCall(id="c4", name="pay", arguments={"amount": 4}),  # never started
    ]
    session = MemorySession()
    await session.append(
        crashed(
            message(Message.user("go")),
            message(Message.assistant("", calls)),
            {"kind": "started", "calls": ["c1", "c2", "c3"]},
            message(Message.tool("paid", tool_call_id="c1", name="pay")),
        )
    )
    runtime = ScriptedRuntime(["finished"])
    result = await Agent(runtime, tools=[pay, look]).run(session=session)
    assert ran == ["look k", "pay 4"]
    sent = runtime.requests[0].messages
    assert [(m.tool_call_id, m.content) for m in sent if m.role == "tool"] == [
        ("c1", "paid"),
        ("c2", f"Error: {INTERRUPTED}"),
        ("c3", "k found"),
        ("c4", "paid"),
    ]
    assert result.output == "finished" and result.steps == 2
    assert [(r.call.id, r.ok) for r in result.tool_calls] == [
        ("c1", True),
        ("c2", False),
        ("c3", True),
        ("c4", True),
    ]
    # The session now holds the whole run, closed: a new prompt may follow.
    assert [m.tool_call_id for m in await history(session) if m.role == "tool"] == [
        "c1",
        "c2",
        "c3",
        "c4",
    ]


class Rival(MemorySession):
    """A session where another process claims the interrupted run just before us."""

    async def append(self, entries: Sequence[Entry]) -> None:
        if entries and entries[0]["kind"] == "run" and entries[0].get("claim"):
            await super().append([{**entries[0], "pid": 99, "claim": "theirs"}])
        await super().append(entries)


async def test_of_two_processes_continuing_one_run_the_later_claim_gives_up() -> None:
    session = Rival()
    await session.append(crashed(message(Message.user("2 + 3?"))))
    runtime = ScriptedRuntime(["5"])
    with pytest.raises(UserError, match="run_x is being continued by process 99"):
        await Agent(runtime).run(session=session)
    assert runtime.requests == []
    assert [e["kind"] for e in await session.load()][-3:] == ["run", "run", "withdrawn"]


# -- SQLite specifics --------------------------------------------------------------------


def test_the_sqlite_file_is_in_wal_mode_and_clear_touches_one_session(tmp_path: Path) -> None:
    a = SQLiteSession(tmp_path / "deep" / "s.db", "a")
    b = SQLiteSession(tmp_path / "deep" / "s.db", "b")
    a.append_sync([{"kind": "note", "n": 1}])
    b.append_sync([{"kind": "note", "n": 2}])
    a.clear_sync()
    assert (a.load_sync(), b.load_sync()) == ([], [{"kind": "note", "n": 2}])
    with sqlite3.connect(tmp_path / "deep" / "s.db") as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    a.close()
    assert SQLiteSession.sessions(tmp_path / "deep" / "s.db") == {"b": 1}
    assert SQLiteSession.sessions(tmp_path / "none.db") == {}
    with pytest.raises(UserError, match="synchronous: must be FULL or NORMAL"):
        SQLiteSession(tmp_path / "x.db", "a", synchronous="OFF")  # type: ignore[arg-type]


NOT_SQLITE = {
    "random bytes": random.Random(7).randbytes(8192),
    "a text file": b"alice: hello\nbob: hi\n" * 200,
}


@pytest.mark.parametrize("content", sorted(NOT_SQLITE))
async def test_a_sessions_file_that_is_not_sqlite_is_an_error_naming_it(
    tmp_path: Path, content: str
) -> None:
    path = tmp_path / "sessions.db"
    path.write_bytes(NOT_SQLITE[content])
    session = SQLiteSession(path, "alice")
    attempts: list[Callable[[], Awaitable[Any]]] = [
        session.load, lambda: session.append([{"kind": "a", "run": "r"}]), session.clear,
        lambda: anyio.to_thread.run_sync(SQLiteSession.sessions, path),
    ]  # fmt: skip
    for attempt in attempts:
        with pytest.raises(ConfigurationError) as refused:
            await attempt()
        assert str(refused.value) == (
            f"{path}: not a SQLite database, or a damaged one (SQLite: file is not a database)"
        )
    assert path.read_bytes() == NOT_SQLITE[content]  # left as it was


@pytest.mark.parametrize("name", ["\ud800", "chat \udcff", "\udfff\ud800"])
def test_a_session_name_utf8_cannot_encode_is_refused_by_name(tmp_path: Path, name: str) -> None:
    with pytest.raises(UserError) as refused:
        SQLiteSession(tmp_path / "sessions.db", name)
    assert str(refused.value) == (
        f"session_id: must be text UTF-8 can encode, without unpaired surrogates (got {name!r})"
    )
    assert not (tmp_path / "sessions.db").exists()


async def test_a_prompt_of_several_messages_is_journaled_whole() -> None:
    session = MemorySession()
    seen: list[ModelRequest] = []

    def model(request: ModelRequest) -> str:
        seen.append(request)
        return "ok"

    agent = Agent(FunctionRuntime(model))
    await agent.run("hi", session=session)
    await agent.run([Message.user("one"), Message.user("two")], session=session)
    assert [m.content for m in seen[-1].messages] == ["hi", "ok", "one", "two"]
    assert [m.content for m in await history(session)] == ["hi", "ok", "one", "two", "ok"]


# -- the embedded model --------------------------------------------------------------------


@pytest.mark.model
async def test_the_embedded_model_continues_a_conversation_through_a_sqlite_file(
    tmp_path: Path,
) -> None:
    async with Agent("local", max_tokens=8) as agent:
        first = await agent.run("My name is Ada.", session=SQLiteSession(tmp_path / "s.db", "a"))
        again = SQLiteSession(tmp_path / "s.db", "a")  # as another process would open it
        second = await agent.run("What is my name?", session=again)
    assert [m.content for m in second.messages[:2]] == ["My name is Ada.", first.output]
    # The model was sent the first exchange too: real token counts say so.
    alone = first.usage.prompt_tokens
    assert second.usage.prompt_tokens > alone + first.usage.completion_tokens
    assert [m.role for m in await history(again)] == ["user", "assistant"] * 2


async def test_a_limited_history_of_a_long_session_keeps_its_system_message() -> None:
    session = MemorySession("long", limit=HistoryLimit(max_messages=3))
    agent = Agent(FunctionRuntime(lambda r: "ok"))
    await agent.run([Message.system("Speak French."), Message.user("u0")], session=session)
    for n in range(1, 30):
        await agent.run(f"u{n}", session=session)
    assert [m.content for m in await history(session)] == ["Speak French.", "u29", "ok"]


class Full(MemorySession):
    """A store that fails once it holds `room` appends."""

    def __init__(self, room: int) -> None:
        super().__init__()
        self.room = room

    async def append(self, entries: Sequence[Entry]) -> None:
        if self.room == 0:
            raise OSError("no space left on device")
        self.room -= 1
        await super().append(entries)


@pytest.mark.parametrize("room", [0, 1, 2, 3])
async def test_a_journal_that_cannot_be_written_stops_the_run_with_the_storage_error(
    room: int,
) -> None:
    # Appends: the prompt, the model's call, the started marker, the result (by the writer).
    ran: list[int] = []

    @tool
    async def act() -> str:
        """Act."""
        ran.append(1)
        return "acted"

    agent = Agent(ScriptedRuntime([ScriptedRuntime.call("act"), "done"]), tools=[act])
    with pytest.raises(OSError, match="no space left on device"):
        await agent.run("go", session=Full(room))
    assert len(ran) == (1 if room >= 3 else 0)  # a call runs only once its start is stored


async def test_a_stream_without_a_prompt_continues_the_interrupted_run() -> None:
    session = MemorySession()
    await session.append(
        crashed(
            message(Message.user("2 + 3?")),
            message(Message.assistant("", [CALL])),
            {"kind": "started", "calls": ["call_1"]},
            message(Message.tool("5", tool_call_id="call_1", name="add")),
        )
    )
    runtime = ScriptedRuntime(["It is 5."])
    async with aclosing(Agent(runtime, tools=[add]).stream(session=session)) as events:
        results = [e.result async for e in events if isinstance(e, RunFinished)]
    assert results[0].output == "It is 5." and results[0].steps == 2
    assert [m.role for m in runtime.requests[0].messages] == ["user", "assistant", "tool"]
    assert runtime.streamed == [True]


async def test_a_discarded_run_keeps_its_completed_exchanges_and_drops_its_open_step() -> None:
    session = MemorySession()
    await session.append(
        crashed(
            message(Message.user("2 + 3?")),
            message(Message.assistant("", [CALL])),
            {"kind": "started", "calls": ["call_1"]},
        )
    )
    dropped = await discard_interrupted(session)
    assert dropped is not None and dropped.unfinished == ["add"]
    assert await discard_interrupted(session) is None
    runtime = ScriptedRuntime(["hello"])
    assert (await Agent(runtime).run("hi", session=session)).output == "hello"
    assert [m.content for m in runtime.requests[0].messages] == ["2 + 3?", "hi"]


# -- with approval -----------------------------------------------------------------------

sent: list[str] = []


@tool(requires_approval=True)
def send(to: str) -> str:
    """Send a message.

    Args:
        to: Who.
    """
    sent.append(to)
    return f"sent to {to}"


async def test_a_run_paused_for_approval_resumes_into_its_session(session: Session) -> None:
    sent.clear()
    runtime = ScriptedRuntime(
        [ScriptedRuntime.calls(("add", {"a": 1, "b": 2}), ("send", {"to": "bob"})), "Done.", "Hi"]
    )
    agent = Agent(runtime, tools=[add, send])
    paused = await agent.run("Add, then send.", session=session)
    assert paused.stop_reason == "approval" and paused.state is not None
    assert (await session.load())[-1]["stop_reason"] == "approval"
    # Meanwhile the history leaves the open step out: it stays a conversation a model takes.
    assert [m.role for m in await history(session)] == ["user"]
    call_id = paused.pending[0].id
    result = await agent.resume(paused.state, approve=[call_id], session=session)
    assert (result.output, sent) == ("Done.", ["bob"])
    messages = await history(session)
    assert [m.role for m in messages] == ["user", "assistant", "tool", "tool", "assistant"]
    assert [m.content for m in messages[2:4]] == ["3", "sent to bob"]
    assert kinds(await session.load()).count("tool") == 2  # each result journaled once
    assert (await agent.run("Hello", session=session)).output == "Hi"
    assert len(runtime.requests[-1].messages) == 6


async def test_resuming_into_a_session_that_did_not_pause_the_run_is_refused() -> None:
    agent = Agent(ScriptedRuntime([ScriptedRuntime.call("send", to="x")]), tools=[send])
    paused = await agent.run("Send.")
    assert paused.state is not None
    with pytest.raises(UserError, match="holds no run paused for the calls"):
        await agent.resume(paused.state, approve=[paused.pending[0].id], session=MemorySession())


async def test_a_call_a_crash_left_unstarted_still_waits_for_approval() -> None:
    sent.clear()
    session = MemorySession()
    call = ToolCall(id="c9", name="send", arguments={"to": "ann"})
    await session.append(
        crashed(message(Message.user("Send.")), message(Message.assistant("", [call])))
    )
    agent = Agent(ScriptedRuntime(["Sent."]), tools=[send])
    paused = await agent.run(session=session)
    assert (paused.stop_reason, [p.id for p in paused.pending], sent) == ("approval", ["c9"], [])
    assert paused.state is not None
    result = await agent.resume(paused.state, approve=["c9"], session=session)
    assert (result.output, sent) == ("Sent.", ["ann"])
    assert [m.role for m in await history(session)] == ["user", "assistant", "tool", "assistant"]
