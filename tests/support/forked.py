"""Run a Python program as `python -c` would, in a process of its own, forked from a server
process that has imported agentkit once. Every program still gets a process and a `__main__` of
its own; what it no longer pays for is importing agentkit, pydantic and httpx each time, which
costs more CPU than most of the programs themselves."""

from __future__ import annotations

import multiprocessing
import os
import sys
import tempfile
import traceback
import types
from pathlib import Path

PRELOAD = [
    "agentkit",
    "agentkit.runtimes.workers_ai",
    "agentkit.server",
    "agentkit.sessions",
    "agentkit.testing",
    "agentkit.wire",
]

if sys.platform == "win32":  # no forkserver: each program starts a fresh interpreter
    _context = multiprocessing.get_context("spawn")
else:
    _context = multiprocessing.get_context("forkserver")
    _context.set_forkserver_preload(PRELOAD)


def _main(code: str, cwd: str, output: str) -> None:
    """The child: the program's stdout and stderr both go to `output`; exit as `python -c`."""
    fd = os.open(output, os.O_WRONLY | os.O_APPEND)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdout = open(1, "w", buffering=1, encoding="utf-8", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, encoding="utf-8", closefd=False)  # noqa: SIM115
    os.chdir(cwd)
    sys.path.insert(0, "")
    sys.argv = ["-c"]
    main = types.ModuleType("__main__")
    sys.modules["__main__"] = main
    try:
        exec(compile(code, "<string>", "exec"), main.__dict__)
    except SystemExit:
        raise
    except BaseException:
        traceback.print_exc()
        raise SystemExit(1) from None


def run_program(code: str, cwd: Path, timeout: float) -> tuple[int, str]:
    """Run `code` as a program in `cwd`; its exit status and everything it printed."""
    with tempfile.NamedTemporaryFile("r", encoding="utf-8", suffix=".out") as output:
        child = _context.Process(target=_main, args=(code, str(cwd), output.name))
        child.start()
        child.join(timeout)
        if child.exitcode is None:
            child.kill()
            child.join()
            return -9, output.read() + f"\n(killed after {timeout} s)"
        return child.exitcode, output.read()
