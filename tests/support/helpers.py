"""What several test modules share: the `add` tool, a client whose HTTP goes to a function, the
hosted runtimes' settings, and processes started together."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cloudflare
import httpx
import jsonschema
import jsonschema_rs
import openai

from agentkit import tool

_META_2020_12 = jsonschema_rs.Draft202012Validator(
    jsonschema.Draft202012Validator.META_SCHEMA, validate_formats=True
)


def check_schema(schema: Any) -> None:
    """Raise if `schema` is not a valid JSON Schema (2020-12), as
    `jsonschema.Draft202012Validator.check_schema` does (formats checked: a `pattern` must be
    a regular expression), whatever `$schema` it names. The meta-schema is compiled once, in
    Rust: checking the BFCL set's thousands of schemas in Python took half a minute."""
    _META_2020_12.validate(schema)


@tool
def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: The first number.
        b: The second number.
    """
    return a + b


ACCOUNT = "acc"

HOSTED_VARIABLES = (
    "CLOUDFLARE_ACCOUNT_ID",
    "CLOUDFLARE_API_TOKEN",
    "CLOUDFLARE_BASE_URL",
    "OPENAI_BASE_URL",
    "OPENAI_API_KEY",
    "OPENAI_MODEL",
)
"""The environment variables the hosted runtimes read: a test of the command line clears them
and sets its own."""


def run_together(script: str, argvs: list[list[str]], go: Path, timeout: float = 300) -> None:
    """Run `python -c script` once per argument list, all at once: each is given the path `go`
    as its last argument and waits for that file, made once they have all started, for the
    most contention. Fails, with its stderr, on any that does not exit 0."""
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", script, *argv, str(go)], stderr=subprocess.PIPE, text=True
        )
        for argv in argvs
    ]
    go.touch()
    for process in processes:
        _, err = process.communicate(timeout=timeout)
        assert process.returncode == 0, err


"""The account id in the SDKs' URLs (our server takes any)."""


def cloudflare_sdk(url: str, token: str) -> cloudflare.Cloudflare:
    """The official `cloudflare` SDK, pointed at a server on loopback, no retries."""
    return cloudflare.Cloudflare(api_token=token, base_url=url + "/client/v4", max_retries=0)


def openai_sdk(url: str, token: str) -> openai.OpenAI:
    """The official `openai` SDK, pointed at a server's OpenAI-compatible routes, no retries."""
    return openai.OpenAI(
        api_key=token, base_url=f"{url}/client/v4/accounts/{ACCOUNT}/ai/v1", max_retries=0
    )


def mocked_client(
    answer: Callable[[httpx.Request], httpx.Response],
) -> tuple[httpx.AsyncClient, list[httpx.Request]]:
    """An `httpx.AsyncClient` whose requests go to `answer`; the requests it sent are collected."""
    sent: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return answer(request)

    return httpx.AsyncClient(transport=httpx.MockTransport(handle)), sent


def answers(body: Any) -> Callable[[httpx.Request], httpx.Response]:
    """An answer function that always replies 200 with `body` as JSON."""
    return lambda request: httpx.Response(200, json=body)


def write_lora(path: Path, *, rank: int = 8, scale: float = 0.5, seed: int = 0) -> Path:
    """A LoRA adapter for SmolLM2-135M: random low-rank updates of every attention query."""
    import gguf
    import numpy as np

    rng = np.random.default_rng(seed)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_string("general.type", "adapter")
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", float(rank))
    for layer in range(30):  # SmolLM2-135M: 30 blocks, 576 wide
        a = rng.normal(0, scale, (rank, 576)).astype(np.float32)
        b = rng.normal(0, scale, (576, rank)).astype(np.float32)
        writer.add_tensor(f"blk.{layer}.attn_q.weight.lora_a", a)
        writer.add_tensor(f"blk.{layer}.attn_q.weight.lora_b", b)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def raw_llama(model_path: Path, **options: Any) -> Any:
    """llama-cpp-python's own `Llama` on `model_path`, as a reference to compare with. On a
    llama.cpp build with AMX its weights stay out of AMX buffers, where the local runtime keeps
    them too: llama.cpp's AMX matrix product crashes the process on some machines."""
    import llama_cpp
    import llama_cpp.llama_cpp as bindings

    amx = b"AMX_INT8 = 1" in llama_cpp.llama_print_system_info()
    original = bindings.llama_model_default_params

    def defaults() -> Any:
        params = original()
        params.use_extra_bufts = params.use_extra_bufts and not amx
        return params

    bindings.llama_model_default_params = defaults
    try:
        return llama_cpp.Llama(model_path=str(model_path), verbose=False, **options)
    finally:
        bindings.llama_model_default_params = original


def kill_when_paused(process: subprocess.Popen[str], tmp_path: Path) -> str:
    """Wait for a worker process to reach its pause point (it writes TMP_PATH/paused, saying
    where, and sleeps), then SIGKILL it; where it paused."""
    marker = tmp_path / "paused"
    deadline = time.monotonic() + 60
    while not marker.exists():
        if process.poll() is not None:
            raise AssertionError(f"the worker ended before pausing: {process.stderr.read()}")  # type: ignore[union-attr]
        assert time.monotonic() < deadline, "the worker never paused"
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.communicate(timeout=30)  # reaps it and closes its pipes
    assert process.returncode == -signal.SIGKILL
    where = marker.read_text()
    marker.unlink()
    return where


class FakeClock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now
