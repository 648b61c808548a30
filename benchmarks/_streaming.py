"""Concurrent streaming clients of an OpenAI-compatible `/chat/completions` endpoint, and the
server processes they talk to: started on a free loopback port, awaited, and stopped.

Used by W7; one client for every server, so that what differs is only the server.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx

PR_SET_PDEATHSIG = 1
READY_TIMEOUT = 180.0
"""Seconds a server may take to load the model and answer its readiness probe."""


@dataclass
class Reply:
    """One streamed request, as the client saw it."""

    sent: float
    first: float | None = None
    done: float = 0.0
    text: str = ""
    usage_tokens: int | None = None
    finish_reason: str | None = None
    error: str | None = None

    @property
    def ttft(self) -> float | None:
        """Seconds from sending the request to its first content-bearing chunk."""
        return None if self.first is None else self.first - self.sent


@dataclass
class Batch:
    """N requests sent at once: each reply, and the wall time from the first sent to the last
    stream's end."""

    replies: list[Reply]
    wall: float


async def _one(client: httpx.AsyncClient, url: str, body: dict[str, Any], reply: Reply) -> None:
    reply.sent = time.perf_counter()
    try:
        async with client.stream("POST", url, json=body) as response:
            if response.status_code != 200:
                await response.aread()
                reply.error = f"HTTP {response.status_code}: {response.text[:200]}"
                return
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                chunk = json.loads(data)
                if chunk.get("usage"):
                    reply.usage_tokens = int(chunk["usage"]["completion_tokens"])
                for choice in chunk.get("choices") or ():
                    content = (choice.get("delta") or {}).get("content")
                    if content:
                        if reply.first is None:
                            reply.first = time.perf_counter()
                        reply.text += content
                    if choice.get("finish_reason"):
                        reply.finish_reason = choice["finish_reason"]
    except (httpx.HTTPError, json.JSONDecodeError, KeyError, ValueError) as exc:
        reply.error = f"{type(exc).__name__}: {exc}"[:200]
    finally:
        reply.done = time.perf_counter()


async def stream_batch(
    base_url: str,
    path: str,
    model: str,
    prompts: Sequence[str],
    *,
    max_tokens: int,
    include_usage: bool,
    timeout: float = 600.0,
) -> Batch:
    """Send one streamed chat request per prompt, all at once, greedy; wait for every stream."""
    limits = httpx.Limits(max_connections=len(prompts) + 1, max_keepalive_connections=0)
    async with httpx.AsyncClient(
        base_url=base_url, limits=limits, timeout=httpx.Timeout(timeout)
    ) as client:
        replies: list[Reply] = []
        tasks = []
        for prompt in prompts:
            body: dict[str, Any] = {
                "model": model,
                "messages": [{"role": "user", "content": prompt}],
                "max_tokens": max_tokens,
                "temperature": 0,
                "stream": True,
            }
            if include_usage:
                body["stream_options"] = {"include_usage": True}
            reply = Reply(sent=0.0)
            replies.append(reply)
            tasks.append(asyncio.create_task(_one(client, path, body, reply)))
        await asyncio.gather(*tasks)
    wall = max(r.done for r in replies) - min(r.sent for r in replies)
    return Batch(replies, wall)


def _die_with_parent() -> None:
    """In the child, before exec: SIGKILL when the benchmark's process dies, however it dies,
    so that no server outlives an interrupted run (Linux; elsewhere nothing)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def free_port() -> int:
    """A TCP port nobody listens on at 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerProcess:
    """A server started as a subprocess on 127.0.0.1, its output kept in a temporary file."""

    name: str
    argv: list[str]
    port: int
    ready_path: str
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the server and wait until its readiness probe answers 200."""
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (closed by stop)
        self.process = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.env},
            preexec_fn=_die_with_parent,
        )
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with status {self.process.returncode}: {self.tail()}"
                )
            try:
                if httpx.get(self.base_url + self.ready_path, timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{self.name} was not ready after {READY_TIMEOUT:.0f} s: {self.tail()}")

    def tail(self, chars: int = 1500) -> str:
        """The end of the server's output."""
        if self.log is None:
            return ""
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-chars:].strip()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s; closes the output file."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self.log is not None:
            self.log.close()
            self.log = None


def help_text(argv: list[str]) -> str:
    """What `argv --help` prints (both streams), or "" if it cannot run."""
    try:
        out = subprocess.run(
            [*argv, "--help"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout + out.stderr


def token_counter(model: Path) -> Callable[[str], int]:
    """Tokens of a text under the model's own tokenizer (no BOS, specials as text)."""
    import llama_cpp

    vocab = llama_cpp.Llama(model_path=str(model), vocab_only=True, verbose=False)

    def count(text: str) -> int:
        return len(vocab.tokenize(text.encode(), add_bos=False, special=False))

    return count
