"""Worker processes for the durable-run tests (`temporal_worker.py`): start one and wait until
it polls, wait for a marker file it writes, read the tool calls it recorded."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

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
