"""`--fallback`, `--rpm` and `--tpm` on the command line: a run that falls over from Workers AI
to an OpenAI-compatible server, the composition each command builds, and `agentkit serve` in
front of a fallback chain (a real process)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest

from agentkit import Cached, Fallback, RateLimit
from agentkit.cli import _parser, main
from agentkit.cli.options import build_agent

from support.helpers import HOSTED_VARIABLES
from support.loopback import LoopbackServer, Reply, Seen
from support.server import serve_process

CALCULATOR = str(Path(__file__).resolve().parents[1] / "tools" / "calculator.py")
PRIMARY = "workers-ai:@cf/meta/llama-3.1-8b-instruct"


def busy(seen: Seen) -> Reply:
    """A Workers AI service out of capacity for the next minute."""
    errors = [{"code": 3040, "message": "out of capacity"}]
    body = {"result": None, "success": False, "errors": errors, "messages": []}
    return Reply(status=429, json=body, headers={"Retry-After": "60"})


@pytest.fixture
def environment(
    monkeypatch: pytest.MonkeyPatch, service: LoopbackServer
) -> Iterator[LoopbackServer]:
    """Workers AI on a busy loopback server, OpenAI-compatible on the model service."""
    for name in HOSTED_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    with LoopbackServer(busy) as cloudflare:
        monkeypatch.setenv("CLOUDFLARE_ACCOUNT_ID", "acc")
        monkeypatch.setenv("CLOUDFLARE_API_TOKEN", "cf-token-compose")
        monkeypatch.setenv("CLOUDFLARE_BASE_URL", cloudflare.url + "/client/v4")
        monkeypatch.setenv("OPENAI_BASE_URL", service.url + "/v1")
        yield cloudflare


def test_a_run_falls_over_to_the_fallback(
    environment: LoopbackServer, service: LoopbackServer, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["run", "What is 2 + 3?", "--runtime", "workers-ai", "--fallback", "openai:qwen2.5"]
    status = main([*argv, "--tools", CALCULATOR, "--json", "--rpm", "600"])
    out, err = capsys.readouterr()
    assert status == 0, err
    result = json.loads(out)
    assert result["output"] == "The result is 5."
    assert result["step_runtimes"] == {"1": "openai:qwen2.5", "2": "openai:qwen2.5"}
    # Tried once, not retried; then the limit, paused by the Retry-After, keeps the second step
    # from the busy service: it goes straight to the fallback.
    assert len(environment.requests) == 1
    assert service.requests[-1].json["model"] == "qwen2.5"


def test_each_command_composes_the_same_way(environment: LoopbackServer, tmp_path: Path) -> None:
    parser = _parser()
    flags = ["--runtime", "workers-ai", "--rpm", "300", "--tpm", "90000"]
    more = ["--fallback", "openai:a", "--fallback", "workers-ai:@cf/other"]
    args = parser.parse_args(["run", "hi", *flags, *more])
    runtime = build_agent(args).runtime
    assert isinstance(runtime, Fallback)
    assert list(runtime.breakers) == [PRIMARY, "openai:a", "workers-ai:@cf/other"]
    limited = runtime.members[0].runtime
    assert isinstance(limited, RateLimit)
    assert (limited.requests_per_minute, limited.tokens_per_minute) == (300, 90000)
    assert runtime.owns and limited.owns
    # Without a fallback, only the limit; without either, the runtime as it is.
    args = parser.parse_args(["chat", "--runtime", "workers-ai", "--rpm", "300"])
    assert isinstance(build_agent(args).runtime, RateLimit)
    args = parser.parse_args(["run", "hi", "--runtime", "workers-ai"])
    assert build_agent(args).runtime.name == "workers-ai"
    # The cache goes outside the whole composition: a hit needs no runtime and no room.
    cache = str(tmp_path / "responses.db")
    args = parser.parse_args(["run", "hi", *flags, "--fallback", "openai:a", "--cache", cache])
    cached = build_agent(args).runtime
    assert isinstance(cached, Cached) and isinstance(cached.runtime, Fallback)
    anyio.run(cached.aclose)
    for command in (["serve"], ["worker"]):
        args = parser.parse_args([*command, "--fallback", "openai:b", "--rpm", "5", "--tpm", "9"])
        assert (args.fallback, args.rpm, args.tpm) == (["openai:b"], 5, 9)


def test_bad_values_are_named(
    environment: LoopbackServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["run", "hi", "--runtime", "workers-ai"]
    assert main([*base, "--fallback", "nowhere:m"]) == 2
    assert "--fallback: unknown runtime 'nowhere' (got 'nowhere:m')" in capsys.readouterr().err
    assert main([*base, "--rpm", "0"]) == 2
    assert "--rpm: must be >= 1 (got 0)" in capsys.readouterr().err
    assert main([*base, "--tpm", "0.5"]) == 2
    assert "--tpm: must be >= 1 (got 0.5)" in capsys.readouterr().err
    agents = tmp_path / "agents.py"
    agents.write_text(
        "from agentkit import Agent, ScriptedRuntime\nagent = Agent(ScriptedRuntime([]))\n"
    )
    assert main(["run", "hi", "--agents", str(agents), "--fallback", "openai:a"]) == 2
    assert "--agents: --fallback cannot be given with it" in capsys.readouterr().err


@pytest.mark.subprocess
def test_serve_in_front_of_a_fallback_chain(
    environment: LoopbackServer, service: LoopbackServer, tmp_path: Path
) -> None:
    options = ["--runtime", "workers-ai", "--fallback", "openai:qwen2.5", "--rpm", "600"]
    log = tmp_path / "serve.log"
    with serve_process(options, log, os.environ) as url:
        info = httpx.get(url + "/playground/info")
        assert info.json()["capabilities"]["lora"] is False  # what both runtimes honour
        answer = httpx.post(
            url + "/client/v4/accounts/local/ai/run/@cf/meta/llama-3.1-8b-instruct",
            json={"messages": [{"role": "user", "content": "hello"}]},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["result"]["response"] == "The result is hello."
    assert "fallback runtime as" in log.read_text()
    assert len(environment.requests) == 1
    assert service.requests[-1].json["model"] == "qwen2.5"
