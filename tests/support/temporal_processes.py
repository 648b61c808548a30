"""Worker processes for the durable-run tests (`temporal_worker.py`): start one and wait until
it polls, wait for a marker file it writes, read the tool calls it recorded, kill one mid-run
and let another finish."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

from agentkit.results import RunResult
from agentkit.temporal import ActivityOptions, connect, result, start_run

from support import SUPPORT

WORKER_SCRIPT = SUPPORT / "temporal_worker.py"


def start_worker(address: str, queue: str, directory: Path, *extra: str) -> subprocess.Popen[bytes]:
    """A worker process on `queue`, once it polls (its stderr in DIR/worker-N.log)."""
    before = set(directory.glob("ready-*"))
    process = subprocess.Popen(
        [sys.executable, str(WORKER_SCRIPT), address, queue, str(directory), *extra],
        stderr=(directory / f"worker-{len(before)}.log").open("wb"),
    )
    wait_for(lambda: (directory / f"ready-{process.pid}").exists(), process, directory)
    return process


def wait_for(
    condition: Callable[[], bool], process: subprocess.Popen[bytes], directory: Path
) -> None:
    """Until a marker file says so; fails at once if the worker died."""
    deadline = time.monotonic() + 60
    while not condition():
        if process.poll() is not None:
            logs = "".join(p.read_text() for p in directory.glob("worker-*.log"))
            raise AssertionError(f"the worker exited ({process.returncode}): {logs[-3000:]}")
        assert time.monotonic() < deadline, "the worker never got there"
        time.sleep(0.02)


def recorded_calls(directory: Path) -> list[tuple[str, int]]:
    """The calls of the workers' `record` tool: label and the pid of the worker that ran it."""
    lines = (directory / "calls").read_text().splitlines()
    return [(label, int(pid)) for label, pid in (line.split() for line in lines)]


async def crash_and_finish(
    address: str,
    queue: str,
    directory: Path,
    workers: list[subprocess.Popen[bytes]],
    *extra: str,
) -> tuple[RunResult[Any], int, int]:
    """A run ("crash") on a worker started with `--hold` that is SIGKILLed once its first
    tool call is recorded, finished by a second worker: the result, and the two workers' pids.
    Both workers join `workers` (the fixture stops what is left)."""
    client = await connect(address)
    first = start_worker(address, queue, directory, *extra, "--hold")
    workers.append(first)
    handle = await start_run(
        client,
        "crash",
        task_queue=queue,
        activities=ActivityOptions(heartbeat_timeout=1.0, retry_interval=0.1),
    )
    # The model's second call begins only once the first tool call's completion is recorded.
    await anyio.to_thread.run_sync(wait_for, (directory / "holding").exists, first, directory)
    assert recorded_calls(directory) == [("crash-1", first.pid)]
    first.send_signal(signal.SIGKILL)
    first.wait()
    second = start_worker(address, queue, directory, *extra)
    workers.append(second)
    return await result(handle), first.pid, second.pid
