"""`agentkit run` on the hosted runtimes, configured by environment variables and pointed at a
loopback server that speaks both APIs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentkit.cli import main

from support.helpers import HOSTED_VARIABLES
from support.loopback import LoopbackServer, Reply

CALCULATOR = str(Path(__file__).resolve().parents[1] / "tools" / "calculator.py")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in HOSTED_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def cloudflare(monkeypatch: pytest.MonkeyPatch, service: LoopbackServer) -> LoopbackServer:
    monkeypatch.setenv("CLOUDFLARE_ACCOUNT_ID", "acc")
    monkeypatch.setenv("CLOUDFLARE_API_TOKEN", "cf-token")
    monkeypatch.setenv("CLOUDFLARE_BASE_URL", service.url + "/client/v4")
    return service


@pytest.fixture
def openai(monkeypatch: pytest.MonkeyPatch, service: LoopbackServer) -> LoopbackServer:
    monkeypatch.setenv("OPENAI_BASE_URL", service.url + "/v1")
    return service


def test_run_on_workers_ai(cloudflare: LoopbackServer, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["run", "What is 2 + 3?", "--runtime", "workers-ai", "--tools", CALCULATOR])
    out, _ = capsys.readouterr()
    assert (status, out) == (0, "The result is 5.\n")
    seen = cloudflare.requests[-1]
    assert seen.path == "/client/v4/accounts/acc/ai/run/@cf/meta/llama-3.1-8b-instruct"
    assert seen.headers["authorization"] == "Bearer cf-token"
    assert seen.json["messages"][-1]["content"] == "5"


def test_run_on_workers_ai_streamed_with_a_model_and_tool_calls_shown(
    cloudflare: LoopbackServer, capsys: pytest.CaptureFixture[str]
) -> None:
    model = "@cf/meta/llama-3.2-3b-instruct"
    argv = ["run", "What is 2 + 3?", "--runtime", "workers-ai", "--model", model]
    status = main([*argv, "--tools", CALCULATOR, "--stream", "-v"])
    out, err = capsys.readouterr()
    assert (status, out) == (0, "The result is 5.\n")
    assert '-> calculate({"expression":"2 + 3"})' in err
    assert "<- calculate: 5" in err
    assert cloudflare.requests[-1].path.endswith("/ai/run/" + model)
    assert cloudflare.requests[-1].json["stream"] is True


def test_run_on_openai_as_json(openai: LoopbackServer, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["run", "What is 2 + 3?", "--runtime", "openai", "--model", "qwen2.5"]
    status = main([*argv, "--tools", CALCULATOR, "--json", "--temperature", "0"])
    out, _ = capsys.readouterr()
    assert status == 0
    result = json.loads(out)
    assert result["output"] == "The result is 5."
    assert result["tool_calls"][0]["call"]["id"] == "call_A"
    sent = openai.requests[-1]
    assert (sent.path, sent.json["model"], sent.json["temperature"]) == (
        "/v1/chat/completions",
        "qwen2.5",
        0,
    )
    assert "authorization" not in sent.headers


def test_run_on_openai_streamed(openai: LoopbackServer, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["run", "What is 2 + 3?", "--runtime", "openai", "--model", "m", "--stream"]
    assert main([*argv, "--tools", CALCULATOR]) == 0
    assert capsys.readouterr().out == "The result is 5.\n"


def test_missing_settings_are_named(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "hi", "--runtime", "workers-ai"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "error: workers-ai runtime: set CLOUDFLARE_ACCOUNT_ID (or pass account_id=) "
        "and CLOUDFLARE_API_TOKEN (or pass api_token=)\n"
    )
    monkeypatch.setenv("CLOUDFLARE_ACCOUNT_ID", "acc")
    assert main(["run", "hi", "--runtime", "workers-ai"]) == 2
    assert capsys.readouterr().err == (
        "error: workers-ai runtime: set CLOUDFLARE_API_TOKEN (or pass api_token=)\n"
    )

    assert main(["run", "hi", "--runtime", "openai"]) == 2
    assert capsys.readouterr().err == (
        "error: openai runtime: set OPENAI_BASE_URL (a local server) or OPENAI_API_KEY (OpenAI) "
        "and OPENAI_MODEL (or pass model=, --model)\n"
    )
    monkeypatch.setenv("OPENAI_API_KEY", "sk-x")
    assert main(["run", "hi", "--runtime", "openai"]) == 2
    assert capsys.readouterr().err == (
        "error: openai runtime: set OPENAI_MODEL (or pass model=, --model)\n"
    )


def test_a_refused_token_is_reported_without_the_token(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    refusal = {"success": False, "errors": [{"code": 10000, "message": "Authentication error"}]}
    with LoopbackServer(lambda seen: Reply(401, refusal)) as server:
        monkeypatch.setenv("CLOUDFLARE_ACCOUNT_ID", "acc")
        monkeypatch.setenv("CLOUDFLARE_API_TOKEN", "wrong-token-123")
        monkeypatch.setenv("CLOUDFLARE_BASE_URL", server.url + "/client/v4")
        assert main(["run", "hi", "--runtime", "workers-ai"]) == 2
    out, err = capsys.readouterr()
    assert err == "error: [HTTP 401 10000] Authentication error\n"
    assert "wrong-token-123" not in out + err
