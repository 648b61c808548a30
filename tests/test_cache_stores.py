"""Cache stores: the in-memory LRU and the SQLite file, their TTL and caps on an injected clock,
several processes writing one file at once, and a locked file that never fails a model call."""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import textwrap
from pathlib import Path

import anyio
import pytest

from agentkit import (
    Cached,
    CacheStore,
    ConfigurationError,
    MemoryCacheStore,
    Message,
    ModelRequest,
    ScriptedRuntime,
    SQLiteCacheStore,
    UserError,
)

from support.helpers import run_together


class Clock:
    """A clock the test moves; each reading is a little later than the last, as time goes."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        self.now += 0.001
        return self.now


def stores(tmp_path: Path, clock: Clock, **limits: int | float) -> list[CacheStore]:
    return [
        MemoryCacheStore(clock=clock, **limits),  # type: ignore[arg-type]
        SQLiteCacheStore(tmp_path / "c.db", clock=clock, **limits),  # type: ignore[arg-type]
    ]


@pytest.mark.parametrize("kind", [0, 1], ids=["memory", "sqlite"])
async def test_an_entry_expires_after_its_ttl(tmp_path: Path, kind: int) -> None:
    clock = Clock()
    store = stores(tmp_path, clock, ttl=10)[kind]
    await store.set("k", b"value")
    clock.now += 9.9
    assert await store.get("k") == b"value"
    clock.now += 0.2
    assert await store.get("k") is None
    await store.set("k", b"fresh")  # stored again, it lives again
    assert await store.get("k") == b"fresh"
    await store.aclose()


async def test_expired_entries_leave_the_file_on_the_next_write(tmp_path: Path) -> None:
    clock = Clock()
    store = SQLiteCacheStore(tmp_path / "c.db", ttl=10, clock=clock)
    for n in range(5):
        await store.set(f"old{n}", b"x" * 10)
    clock.now += 11
    await store.set("new", b"y" * 10)
    assert store.count() == (1, 10)
    await store.aclose()


@pytest.mark.parametrize("kind", [0, 1], ids=["memory", "sqlite"])
async def test_past_max_entries_the_least_recently_used_go(tmp_path: Path, kind: int) -> None:
    clock = Clock()
    store = stores(tmp_path, clock, max_entries=2)[kind]
    await store.set("a", b"1")
    await store.set("b", b"2")
    clock.now += 2  # uses are told apart to the second
    assert await store.get("a") == b"1"  # now `b` is the least recently used
    await store.set("c", b"3")
    assert [await store.get(k) for k in "abc"] == [b"1", None, b"3"]
    await store.aclose()


async def test_past_max_bytes_the_least_recently_used_go(tmp_path: Path) -> None:
    clock = Clock()
    store = SQLiteCacheStore(tmp_path / "c.db", max_bytes=250, clock=clock)
    await store.set("a", b"a" * 100)
    await store.set("b", b"b" * 100)
    clock.now += 2
    assert await store.get("a") == b"a" * 100
    await store.set("c", b"c" * 100)
    assert [await store.get(k) for k in "abc"] == [b"a" * 100, None, b"c" * 100]
    assert store.count() == (2, 200)
    await store.set("huge", b"h" * 251)  # larger than the cap: not stored, nothing evicted
    assert await store.get("huge") is None
    assert store.count() == (2, 200)
    await store.aclose()


def totals(path: Path) -> tuple[int, int]:
    """The entries and bytes the file says it holds, as kept for its caps."""
    with sqlite3.connect(path) as connection:
        entries, size = connection.execute("SELECT entries, bytes FROM totals").fetchone()
    return entries, size


async def test_a_replaced_entry_counts_once_at_its_new_size(tmp_path: Path) -> None:
    store = SQLiteCacheStore(tmp_path / "c.db", max_bytes=150, clock=Clock())
    await store.set("a", b"a" * 100)
    await store.set("a", b"A" * 40)
    await store.set("b", b"b" * 100)  # fits beside the smaller `a`: nothing evicted
    assert [await store.get(k) for k in "ab"] == [b"A" * 40, b"b" * 100]
    assert store.count() == totals(tmp_path / "c.db") == (2, 140)
    await store.aclose()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda p: SQLiteCacheStore(p, ttl=0),
            "SQLiteCacheStore: ttl must be a number of seconds > 0 or None (got 0)",
        ),
        (
            lambda p: SQLiteCacheStore(p, max_bytes=-1),
            "SQLiteCacheStore: max_bytes must be an integer >= 1 or None (got -1)",
        ),
        (
            lambda p: MemoryCacheStore(max_entries=0),
            "MemoryCacheStore: max_entries must be an integer >= 1 or None (got 0)",
        ),
        (
            lambda p: SQLiteCacheStore(p, timeout=0),
            "SQLiteCacheStore: timeout must be seconds > 0 (got 0)",
        ),
    ],
)
def test_bad_limits_are_named_with_their_bound(tmp_path: Path, make: object, message: str) -> None:
    with pytest.raises(UserError) as caught:
        make(tmp_path / "c.db")  # type: ignore[operator]
    assert str(caught.value) == message


async def test_a_file_that_is_not_sqlite_is_named(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"these are my notes, not a database" * 100)
    store = SQLiteCacheStore(path)
    with pytest.raises(ConfigurationError, match=r"notes\.txt: not a SQLite database"):
        await store.get("k")


async def test_a_locked_file_is_a_miss_and_the_event_loop_runs_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "c.db"
    store = SQLiteCacheStore(path, timeout=1.0)
    await store.set("k", b"kept")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process's writer, holding the lock
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await anyio.sleep(0.01)
            ticks += 1

    inner = ScriptedRuntime(["answer"])
    runtime = Cached(inner, store)
    request = ModelRequest(messages=[Message.user("hi")], temperature=0)
    try:
        with caplog.at_level(logging.WARNING, "agentkit.cache"):
            async with anyio.create_task_group() as tg:
                tg.start_soon(tick)
                await store.set("other", b"lost")  # waits out the timeout, then drops it
                generation = await runtime.generate(request)  # the model answers all the same
                tg.cancel_scope.cancel()
            assert await store.get("k") == b"kept"  # readers never wait for the writer
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert generation.response == "answer"
    assert await store.get("other") is None
    assert "unavailable" in caplog.text and "database is locked" in caplog.text
    # The store waited about two timeouts on a worker thread; the loop ticked meanwhile.
    assert ticks >= 20
    await store.aclose()


# -- several processes on one file --------------------------------------------------------------

WRITERS = 4
ENTRIES = 200

WRITER = textwrap.dedent(
    """
    import hashlib, logging, sys, time
    from pathlib import Path
    import anyio
    from agentkit import SQLiteCacheStore

    db, writer, entries, go = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
    dropped = []
    logging.getLogger("agentkit.cache").addHandler(
        type("H", (logging.Handler,), {"emit": lambda self, r: dropped.append(r.getMessage())})()
    )

    def value(name):
        seed = hashlib.sha256(name.encode()).hexdigest()
        return (seed * (1 + int(seed[:2], 16) % 40)).encode()

    async def main():
        stores = [SQLiteCacheStore(db, max_bytes=None) for _ in range(2)]
        while not go.exists():  # all start together, for the most contention
            time.sleep(0.005)

        async def write(part):
            store = stores[part % 2]
            for i in range(part, entries, 4):
                await store.set(f"w{writer}-{i}", value(f"w{writer}-{i}"))
                await store.set(f"shared-{i % 20}", value(f"shared-{i % 20}"))
                assert await store.get(f"w{writer}-{i}") == value(f"w{writer}-{i}")

        async with anyio.create_task_group() as tg:
            for part in range(4):
                tg.start_soon(write, part)
        for store in stores:
            await store.aclose()

    anyio.run(main)
    assert not dropped, dropped
    """
)


def value(name: str) -> bytes:
    seed = hashlib.sha256(name.encode()).hexdigest()
    return (seed * (1 + int(seed[:2], 16) % 40)).encode()


@pytest.mark.subprocess
def test_processes_writing_one_file_at_once_lose_and_damage_nothing(tmp_path: Path) -> None:
    db = tmp_path / "cache.db"
    # Each fails unless every write of its own landed and read back: nothing was dropped.
    run_together(WRITER, [[str(db), str(w), str(ENTRIES)] for w in range(WRITERS)], tmp_path / "go")
    store = SQLiteCacheStore(db, max_bytes=None)
    names = [f"w{w}-{i}" for w in range(WRITERS) for i in range(ENTRIES)]
    names += [f"shared-{i}" for i in range(20)]
    for name in names:
        assert store.get_sync(name) == value(name), name
    assert store.count() == (len(names), sum(len(value(n)) for n in names)) == totals(db)
    store.close()
    with sqlite3.connect(db) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
