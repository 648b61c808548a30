"""Sync tool calls on worker threads, a step's calls batched onto as few threads as keep up.

A hop to a worker thread (`anyio.to_thread.run_sync`) costs tens of microseconds, more than a
fast tool takes, so the calls of a step do not get a hop each. They wait in one queue, drained
by workers that each hold a token of the run's `CapacityLimiter` while they work. One worker
starts; another joins only while calls are waiting and every running worker has been inside a
single call for longer than `BLOCKED_AFTER` (a tool waiting on I/O or a lock). Fast tools thus
cost one hop per step, and blocking ones still overlap, up to the limiter's capacity. A worker
that has just finished a slow call hands its results back at once, so they are not held up by
the calls it would take next.

A call has a deadline if it has a timeout, counted from the start of the batch (time spent
waiting for a worker counts, as it does under `fail_after`). The event loop watches the
deadlines; a call past its own is given up where it stands: taken off the queue if it has not
started, otherwise its worker is abandoned, like `to_thread.run_sync(..., abandon_on_cancel=True)`
under `fail_after`: the limiter token is returned, the thread finishes the call on its own, its
result is dropped, and it takes no further call. Cancelling the batch gives up every call the
same way; queued calls never start.

Workers are daemon threads of agentkit's own, kept for reuse while busy and for a while after
(anyio's are not daemons: a tool abandoned at its timeout would keep the process from exiting
until the tool returned). A thread given up runs on until its call returns; each is logged as
a warning, `abandoned_threads()` counts those still running, and while `MAX_ABANDONED` of them
run, sync calls fail at once with that said to the model instead of starting more threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel
from anyio.abc import TaskGroup

try:
    import sniffio
except ImportError:  # pragma: no cover - anyio then reads the running loop itself
    sniffio = None  # type: ignore[assignment]

__all__ = ["BLOCKED_AFTER", "MAX_ABANDONED", "ThreadBatch", "ThreadedCall", "abandoned_threads"]

log = logging.getLogger("agentkit.tools")

BLOCKED_AFTER = 0.001
"""Seconds a worker may spend in one call before it counts as blocked and another may join."""

MAX_ABANDONED = 64
"""Threads of given-up calls that may still be running before sync calls are refused."""

IDLE_EXIT = 10.0
"""Seconds an idle worker thread waits for work before it ends."""


# -- daemon worker threads -------------------------------------------------------------------

_pool_lock = threading.Lock()
_idle: list[_Thread] = []  # most recently idle last
_abandoned = 0


def abandoned_threads() -> int:
    """How many threads of sync tool calls given up (timed out or cancelled) still run."""
    return _abandoned


class _Job:
    __slots__ = ("abandoned", "args", "context", "done", "function", "wake")

    def __init__(self, function: Callable[..., Any], args: tuple[Any, ...], wake: Any) -> None:
        self.function = function
        self.args = args
        self.context = contextvars.copy_context()  # as anyio.to_thread does
        self.wake: Callable[[], None] = wake
        self.done = False
        self.abandoned = False


class _Thread(threading.Thread):
    def __init__(self) -> None:
        super().__init__(name="agentkit tool worker", daemon=True)
        self.jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()

    def run(self) -> None:
        global _abandoned
        while True:
            try:
                job = self.jobs.get(timeout=IDLE_EXIT)
            except queue.Empty:
                with _pool_lock:
                    if self in _idle:
                        _idle.remove(self)
                        return
                continue  # taken just now: its job is on the way
            try:
                job.context.run(job.function, *job.args)
            except BaseException:  # pragma: no cover - the function files its own outcome
                log.exception("a tool worker's job raised")
            with _pool_lock:
                job.done = True
                if job.abandoned:
                    _abandoned -= 1
                _idle.append(self)
            if not job.abandoned:
                with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits
                    job.wake()


def _asyncio_loop() -> asyncio.AbstractEventLoop | None:
    """The running asyncio event loop; None under another backend."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _waker(event: anyio.Event) -> Callable[[], None]:
    """A function any thread may call to set `event` on this event loop."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # another backend: the thread waits for the loop to take it
        token = anyio.lowlevel.current_token()
        return lambda: anyio.from_thread.run_sync(event.set, token=token)

    def wake() -> None:
        loop.call_soon_threadsafe(event.set)

    return wake


async def _in_thread(
    function: Callable[..., None], *args: Any, limiter: anyio.CapacityLimiter
) -> None:
    """`function(*args)` on a daemon worker thread; cancelled, the thread is abandoned (it
    finishes on its own) and the limiter's token is returned at once."""
    global _abandoned
    async with limiter:
        event = anyio.Event()
        job = _Job(function, args, _waker(event))
        with _pool_lock:
            thread = _idle.pop() if _idle else None
        if thread is None:
            thread = _Thread()
            thread.start()
        thread.jobs.put(job)
        try:
            await event.wait()
        except BaseException:
            with _pool_lock:
                if not job.done:
                    job.abandoned = True
                    _abandoned += 1
            if job.abandoned:
                log.warning(
                    "a sync tool call was given up; its thread runs on until it returns "
                    "(%d such threads running)",
                    _abandoned,
                )
            raise


# -- batches ---------------------------------------------------------------------------------

_QUEUED, _RUNNING, _DONE, _GIVEN_UP = range(4)


class ThreadedCall:
    """One call of a batch: a function of no arguments, and what came of it."""

    __slots__ = ("deadline", "duration", "error", "function", "owner", "state", "timeout", "value")

    def __init__(self, function: Callable[[], Any], timeout: float | None, owner: Any) -> None:
        self.function = function
        self.timeout = timeout
        self.owner = owner
        """Whatever the caller needs to file the outcome (the agent: its record and tool)."""
        self.deadline: float | None = None
        self.state = _QUEUED
        self.value: Any = None
        self.error: BaseException | None = None
        """What the function raised; `TimeoutError` when it was given up at its deadline."""
        self.duration = 0.0
        """Seconds the function ran; for a call given up, seconds since the batch started."""


class _Worker:
    __slots__ = ("abandoned", "call", "done", "finished", "scope", "since")

    def __init__(self) -> None:
        self.scope: anyio.CancelScope | None = None  # set where it runs as a task of its own
        self.call: ThreadedCall | None = None  # the call it is running
        self.since: float | None = None  # when that call started
        self.done: list[ThreadedCall] = []  # finished in the thread, not yet handed back
        self.abandoned = False
        self.finished = False


class ThreadBatch:
    """Run sync calls on worker threads; `settled(call)` is called on the event loop as each
    call finishes or is given up (not for calls cut off by cancellation).

    With `eager`, every result goes back the moment its call returns, fast or not, at the cost
    of a hop per call: for runs that journal each result as it finishes (sessions)."""

    def __init__(
        self,
        calls: Sequence[ThreadedCall],
        limiter: anyio.CapacityLimiter,
        settled: Callable[[ThreadedCall], None],
        *,
        eager: bool = False,
    ) -> None:
        self._queue = deque(calls)
        self._open = list(calls)  # not settled yet
        self._limiter = limiter
        self._settled = settled
        self._eager = eager
        self._lock = threading.Lock()  # guards call states, the queue and worker handovers
        self._workers: list[_Worker] = []
        self._closed = False
        self._scope: anyio.CancelScope | None = None
        self._nap: anyio.CancelScope | None = None

    async def run(self) -> None:
        """Run every call; return once each has settled."""
        start = time.monotonic()
        for call in self._open:
            if call.timeout is not None:
                call.deadline = start + call.timeout
        most = min(len(self._open), int(self._limiter.total_tokens))
        try:
            if all(call.deadline is None for call in self._open):
                if most == 1:
                    # Nothing to watch and no one to add: one worker, awaited right here (not
                    # even a cancel scope of its own, which costs more than a fast tool).
                    await self._hops(self._add_worker())
                    return
                loop = _asyncio_loop()
                if loop is not None:
                    await self._run_timed(loop, most)
                    return
            async with anyio.create_task_group() as tg:
                self._scope = tg.cancel_scope
                tg.start_soon(self._work, self._add_worker())
                await self._watch(tg, most, start)
        finally:
            with self._lock:
                self._closed = True  # after a cancellation, queued calls must not start

    async def _run_timed(self, loop: asyncio.AbstractEventLoop, most: int) -> None:
        """No deadlines, on asyncio: the first worker is awaited right here and a timer of the
        event loop, not a watching task, adds workers while every one is blocked. Fast calls
        thus cost one hop and no task, sleep or cancellation."""
        async with anyio.create_task_group() as tg:
            self._scope = tg.cancel_scope
            timer: asyncio.TimerHandle

            def reinforce() -> None:
                nonlocal timer
                if not self._queue or self._closed:
                    return
                now = time.monotonic()
                look = self._reinforce(tg, most, now)
                timer = loop.call_later(max(0.0, look - now), reinforce, context=context)

            # A timer runs outside any task: say which library runs the loop, for anyio's
            # task group (sniffio tells it when installed, from the current task otherwise).
            context = contextvars.copy_context()
            if sniffio is not None:
                context.run(sniffio.current_async_library_cvar.set, "asyncio")
            timer = loop.call_later(BLOCKED_AFTER, reinforce, context=context)
            try:
                await self._hops(self._add_worker())  # returns once the queue is empty
            finally:
                timer.cancel()

    def stop(self) -> None:
        """Give up the calls still running or waiting; `run` returns soon after."""
        with self._lock:
            self._closed = True
        if self._scope is not None:
            self._scope.cancel()

    # -- on the event loop ------------------------------------------------------------------

    def _add_worker(self) -> _Worker:
        worker = _Worker()
        self._workers.append(worker)
        return worker

    async def _work(self, worker: _Worker) -> None:
        try:
            # Cancelled alone when its call passes its deadline.
            with anyio.CancelScope() as worker.scope:
                await self._hops(worker)
            self._hand_back(worker)  # what it finished before it was abandoned
        finally:
            worker.finished = True
            self._wake()

    async def _hops(self, worker: _Worker) -> None:
        while not worker.abandoned:
            if _abandoned >= MAX_ABANDONED:
                self._refuse_queued()
                return
            await _in_thread(self._drain, worker, limiter=self._limiter)
            self._hand_back(worker)
            if not self._queue or self._closed:
                return

    def _refuse_queued(self) -> None:
        """Fail the calls still queued: too many abandoned threads run already."""
        error = RuntimeError(
            f"not started: {_abandoned} threads of earlier sync tool calls that were given up "
            f"are still running (the most allowed is {MAX_ABANDONED})"
        )
        with self._lock:
            refused = list(self._queue)
            self._queue.clear()
            for call in refused:
                call.state = _DONE
                call.error = error
        for call in refused:
            self._settle(call)

    def _hand_back(self, worker: _Worker) -> None:
        if not worker.done:
            return
        with self._lock:
            done, worker.done = worker.done, []
        for call in done:
            self._settle(call)

    def _settle(self, call: ThreadedCall) -> None:
        self._open.remove(call)
        self._settled(call)
        self._wake()

    def _wake(self) -> None:
        if self._nap is not None:
            self._nap.cancel()

    async def _watch(self, tg: TaskGroup, most: int, start: float) -> None:
        """Give up calls past their deadline; add a worker while calls wait and every worker
        is blocked. Sleeps until the next thing to look at, or until a worker hands back."""
        while self._open:
            now = time.monotonic()
            wake = self._give_up_overdue(now, start)
            if self._queue:
                look = self._reinforce(tg, most, now)
                wake = look if wake is None else min(wake, look)
            if wake is None:
                return  # nothing left to watch: the running workers finish the rest
            with anyio.CancelScope() as self._nap:
                await anyio.sleep(max(0.0, wake - time.monotonic()))
            self._nap = None

    def _reinforce(self, tg: TaskGroup, most: int, now: float) -> float:
        """Calls wait: add a worker if none runs, or if every one is blocked and there is room
        for another. When to look again."""
        live = [w for w in self._workers if not (w.abandoned or w.finished)]
        blocked = [w.since for w in live if w.since is not None]
        if not live or (
            len(live) < most and len(blocked) == len(live) and now - max(blocked) >= BLOCKED_AFTER
        ):
            tg.start_soon(self._work, self._add_worker())
            return now + BLOCKED_AFTER
        # The soonest a busy worker can count as blocked (all busy or not).
        return (max(blocked) if len(blocked) == len(live) else now) + BLOCKED_AFTER

    def _give_up_overdue(self, now: float, start: float) -> float | None:
        """Give up the calls past their deadline; the next deadline of the others."""
        wake: float | None = None
        for call in list(self._open):
            if call.deadline is None or call.state == _DONE:
                continue
            if call.deadline > now:
                wake = call.deadline if wake is None else min(wake, call.deadline)
                continue
            owner: _Worker | None = None
            with self._lock:
                if call.state == _DONE:
                    continue  # finished just now; its worker hands it back
                if call.state == _QUEUED:
                    self._queue.remove(call)
                else:
                    owner = next(w for w in self._workers if w.call is call)
                    owner.abandoned = True
                call.state = _GIVEN_UP
            if owner is not None and owner.scope is not None:
                owner.scope.cancel()
            call.error = TimeoutError()
            call.duration = now - start
            self._settle(call)
        return wake

    # -- on a worker thread -----------------------------------------------------------------

    def _drain(self, worker: _Worker) -> None:
        """Take calls off the queue until it is empty, or a call was slow (its result goes
        back at once), or this worker is abandoned."""
        lock, queue, clock = self._lock, self._queue, time.monotonic
        while True:
            with lock:
                if self._closed or worker.abandoned or not queue:
                    return
                call = queue.popleft()
                call.state = _RUNNING
                worker.call = call
                worker.since = started = clock()
            value: Any = None
            error: BaseException | None = None
            try:
                value = call.function()
            except BaseException as exc:  # handed to the event loop, which decides
                error = exc
            ended = clock()
            with lock:
                worker.call = worker.since = None
                if call.state == _RUNNING:  # not given up meanwhile
                    call.state = _DONE
                    call.value, call.error, call.duration = value, error, ended - started
                    worker.done.append(call)
            if self._eager or ended - started >= BLOCKED_AFTER:
                return
