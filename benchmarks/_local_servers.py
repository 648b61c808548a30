"""The servers W7 compares, each started the same way: the model, the context, the slots and
the threads W7 sets, on a free loopback port."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks._common import Unavailable
from benchmarks._plain_cpu import amx_build
from benchmarks._streaming import ServerProcess, help_text

LLAMA_SERVER_VARIABLE = "AGENTKIT_LLAMA_SERVER"
HINT = (
    f"build llama-server as docs/benchmarks.md (W7) says, then set {LLAMA_SERVER_VARIABLE} to "
    "it or put it on PATH"
)
AGENTKIT = "agentkit serve"
LLAMA_SERVER = "llama-server"
LLAMA_CPP_PYTHON = "llama-cpp-python server"
SERVER_DEPS = ("fastapi", "sse_starlette", "pydantic_settings", "starlette_context", "yaml")


@dataclass
class Contender:
    """A server under test: how to start it on a port, and where its chat endpoint is."""

    key: str
    """AGENTKIT, LLAMA_SERVER or LLAMA_CPP_PYTHON."""
    name: str
    """What the table calls it: the key and what it was told."""
    start: Callable[[int], ServerProcess]
    path: str
    model: str
    threads: int | None = None
    """Threads it was told to use; None: its own default."""


def agentkit(model: Path, *, slots: int, threads: int, max_queue: int) -> Contender:
    """`agentkit serve --runtime local`, with `--parallel` and `--threads` when it has them."""
    entry = [sys.executable, "-c", "import sys; from agentkit.cli import main; sys.exit(main())"]
    options = help_text([*entry, "serve"])
    extra = ["--parallel", str(slots)] if "--parallel" in options else []
    told = threads if "--threads" in options else None  # None: the runtime's, every core
    if told:
        extra += ["--threads", str(told)]
    api = "/client/v4/accounts/local/ai/v1"

    def start(port: int) -> ServerProcess:
        argv = [*entry, "serve", "--runtime", "local", "--port", str(port)]
        argv += ["--max-queue", str(max_queue), "--log-level", "warning", *extra]
        return ServerProcess(AGENTKIT, argv, port, f"{api}/models")

    label = f"{AGENTKIT} --parallel {slots}" if extra[:1] == ["--parallel"] else AGENTKIT
    return Contender(AGENTKIT, label, start, f"{api}/chat/completions", "@agentkit/local", told)


def llama_server_binary() -> str:
    """The llama-server to compare against; raises Unavailable with the hint if none runs."""
    path = os.environ.get(LLAMA_SERVER_VARIABLE) or shutil.which("llama-server")
    if not path:
        raise Unavailable(f"no llama-server: {HINT}")
    if not Path(path).is_file():
        raise Unavailable(f"{LLAMA_SERVER_VARIABLE}={path} is not a file: {HINT}")
    return path


def llama_server(model: Path, *, slots: int, threads: int, n_ctx: int) -> Contender:
    """llama.cpp's own server; raises Unavailable (with how to get one) if none runs."""
    binary = llama_server_binary()
    options = help_text([binary])
    if "--port" not in options:
        raise Unavailable(
            f"{binary} --help does not run (a shared build needs its .so.0 libraries on "
            f"LD_LIBRARY_PATH): {options[-300:].strip()}"
        )
    quiet = ["--no-webui"] if re.search(r"--no-webui(?![-\w])", options) else []
    if amx_build() and "--no-repack" in options:
        quiet.append("--no-repack")  # the weights where agentkit keeps them (see _plain_cpu)
    name = f"{LLAMA_SERVER} --parallel {slots}"

    def start(port: int) -> ServerProcess:
        argv = [binary, "-m", str(model), "-c", str(n_ctx), "--parallel", str(slots)]
        argv += ["-t", str(threads), "--host", "127.0.0.1", "--port", str(port), *quiet]
        return ServerProcess(name, argv, port, "/health")

    return Contender(LLAMA_SERVER, name, start, "/v1/chat/completions", "smollm2", threads)


def llama_cpp_python(model: Path, *, threads: int, n_ctx: int) -> Contender:
    """llama-cpp-python's server, one request at a time; raises Unavailable without its extra."""
    missing = [name for name in SERVER_DEPS if importlib.util.find_spec(name) is None]
    if missing:
        raise Unavailable(
            f"needs llama-cpp-python[server] (missing {', '.join(missing)}): "
            "pip install -r benchmarks/requirements.txt"
        )

    def start(port: int) -> ServerProcess:
        # Threads for the prompt and for decoding alike, as llama-server's -t and agentkit's
        # local runtime set them (its own default decodes on half the cores). interrupt_requests
        # off: with it on (the default) a streaming request that sees another waiting for the
        # model sends [DONE] and stops, so all but one client get a cut stream.
        argv = [sys.executable, "-m", "benchmarks._plain_cpu", "--model", str(model)]
        argv += ["--n_ctx", str(n_ctx), "--interrupt_requests", "False"]
        argv += ["--n_threads", str(threads), "--n_threads_batch", str(threads)]
        argv += ["--host", "127.0.0.1", "--port", str(port)]
        return ServerProcess(LLAMA_CPP_PYTHON, argv, port, "/v1/models")

    return Contender(
        LLAMA_CPP_PYTHON, LLAMA_CPP_PYTHON, start, "/v1/chat/completions", "smollm2", threads
    )
