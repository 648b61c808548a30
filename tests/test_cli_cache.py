"""`--cache PATH` on `agentkit run`, `chat`, `serve` and `worker`: repeated greedy requests are
answered from the SQLite file, counted at a loopback server speaking both APIs."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentkit import RunResult, SQLiteCacheStore
from agentkit.cli import main

from support.helpers import HOSTED_VARIABLES
from support.loopback import LoopbackServer
from support.temporal_processes import wait_for
from support.temporal_server import free_port

ROOT = Path(__file__).resolve().parents[1]
CALCULATOR = str(ROOT / "tools" / "calculator.py")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in HOSTED_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def hosted(monkeypatch: pytest.MonkeyPatch, service: LoopbackServer) -> LoopbackServer:
    monkeypatch.setenv("CLOUDFLARE_ACCOUNT_ID", "acc")
    monkeypatch.setenv("CLOUDFLARE_API_TOKEN", "cf-token-never-cached")
    monkeypatch.setenv("CLOUDFLARE_BASE_URL", service.url + "/client/v4")
    monkeypatch.setenv("OPENAI_BASE_URL", service.url + "/v1")
    return service


@pytest.mark.parametrize("runtime", ["workers-ai", "openai"])
def test_run_twice_with_a_cache_asks_the_model_once(
    hosted: LoopbackServer, tmp_path: Path, runtime: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = tmp_path / "responses.db"
    argv = ["run", "What is 2 + 3?", "--runtime", runtime, "--model", "m", "--tools", CALCULATOR]
    argv += ["--temperature", "0", "--cache", str(cache), "--json"]
    assert main(argv) == 0
    first = json.loads(capsys.readouterr().out)
    assert len(hosted.requests) == 2
    assert main([*argv, "--stream"]) == 0  # a stream is answered from the same entries
    second = json.loads(capsys.readouterr().out)
    assert len(hosted.requests) == 2
    assert second["output"] == first["output"] == "The result is 5."
    assert (first["usage"]["cache_hits"], second["usage"]["cache_hits"]) == (0, 2)
    assert second["usage"]["total_tokens"] == 0
    assert SQLiteCacheStore(cache).count()[0] == 2
    assert b"cf-token-never-cached" not in cache.read_bytes()


def test_run_without_greedy_sampling_asks_the_model_each_time(
    hosted: LoopbackServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["run", "Hi", "--runtime", "openai", "--model", "m", "--cache", str(tmp_path / "c.db")]
    assert main(argv) == 0
    assert main(argv) == 0
    assert capsys.readouterr().out.count("The result is Hi.") == 2
    assert len(hosted.requests) == 2  # the default temperature samples: nothing was cached
    assert main([*argv, "--seed", "7"]) == main([*argv, "--seed", "7"]) == 0
    assert len(hosted.requests) == 3  # a seeded request repeats: cached


def test_chat_with_a_cache(
    hosted: LoopbackServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    argv = ["chat", "--runtime", "openai", "--model", "m", "--temperature", "0"]
    argv += ["--cache", str(tmp_path / "c.db")]
    for _ in range(2):
        monkeypatch.setattr("sys.stdin", io.StringIO("Hello\n"))
        assert main(argv) == 0
    assert len(hosted.requests) == 1


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "hi", "--agents", "agents.py"],
        ["chat", "--agents", "agents.py"],
        ["serve", "--agents", "agents.py"],
        ["worker", "--agents", "agents.py"],
    ],
)
def test_cache_is_refused_with_an_agents_file(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*argv, "--cache", "c.db"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --agents: --cache cannot be given with it"), err


def test_cache_belongs_to_the_workers_of_a_durable_run(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["run", "hi", "--temporal", "127.0.0.1:1", "--cache", "c.db"]
    assert main(argv) == 2
    assert capsys.readouterr().err == (
        "error: --cache belongs to the workers with --temporal: start them with "
        "`agentkit worker --cache PATH ...`\n"
    )


@pytest.mark.subprocess
def test_serve_with_a_cache_answers_a_repeated_request_from_it(
    service: LoopbackServer, tmp_path: Path
) -> None:
    port = free_port()
    cache = tmp_path / "c.db"
    argv = ["serve", "--runtime", "openai", "--model", "m", "--cache", str(cache)]
    env = {**os.environ, "OPENAI_BASE_URL": service.url + "/v1"}
    server = subprocess.Popen(
        [sys.executable, "-m", "agentkit.cli", *argv, "--port", str(port)],
        env=env,
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}/client/v4/accounts/a/ai/run/@cf/meta/llama-3.1-8b-instruct"
    body = {"messages": [{"role": "user", "content": "Hi"}], "temperature": 0}
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.communicate()[1]
            try:
                first = httpx.post(url, json=body, timeout=10)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the server never came up"
                time.sleep(0.1)
        second = httpx.post(url, json=body, timeout=10)
        streamed = httpx.post(url, json={**body, "stream": True}, timeout=10)
    finally:
        server.terminate()
        server.communicate(timeout=30)
    assert first.status_code == second.status_code == streamed.status_code == 200
    assert first.json()["result"]["response"] == second.json()["result"]["response"]
    assert "The result is Hi." in streamed.text
    assert len(service.requests) == 1
    assert SQLiteCacheStore(cache).count()[0] == 1


@pytest.mark.subprocess
def test_a_worker_with_a_cache_answers_a_repeated_durable_run_from_it(
    temporal_server: Any,
    service: LoopbackServer,
    tmp_path: Path,
    workers: list[subprocess.Popen[bytes]],
) -> None:
    queue = f"cache-{uuid.uuid4().hex[:8]}"
    log = tmp_path / "worker-0.log"
    argv = ["worker", "--runtime", "openai", "--model", "m", "--tools", CALCULATOR]
    argv += ["--cache", str(tmp_path / "c.db"), "--task-queue", queue]
    worker = subprocess.Popen(
        [sys.executable, "-m", "agentkit.cli", *argv, "--address", temporal_server.address],
        env={**os.environ, "OPENAI_BASE_URL": service.url + "/v1"},
        stderr=log.open("wb"),
    )
    workers.append(worker)
    wait_for(lambda: "agentkit worker: openai" in log.read_text(), worker, tmp_path)
    run = [sys.executable, "-m", "agentkit.cli", "run", "What is 2 + 3?", "--json"]
    run += ["--temporal", temporal_server.address, "--task-queue", queue]
    run += ["--runtime", "openai", "--temperature", "0"]
    results = []
    for _ in range(2):
        done = subprocess.run(run, capture_output=True, text=True, timeout=240)
        assert done.returncode == 0, done.stderr
        results.append(RunResult.model_validate_json(done.stdout))
    assert [r.output for r in results] == ["The result is 5."] * 2
    assert len(service.requests) == 2  # the first run's call and answer; none for the second
    assert results[1].usage.cache_hits == 2
