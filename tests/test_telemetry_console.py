"""`agentkit run --trace` prints the run's span tree; `--otlp URL` exports spans and metrics to
an OTLP/HTTP collector (a loopback receiver here)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from opentelemetry.semconv._incubating.metrics import gen_ai_metrics

from agentkit import telemetry
from agentkit.cli import main

from support.loopback import Collector, LoopbackServer, Reply

CALCULATOR = str(Path(__file__).resolve().parents[1] / "tools" / "calculator.py")
MODEL = "@cf/meta/llama-3.1-8b-instruct"
USAGE = {"prompt_tokens": 20, "completion_tokens": 6, "total_tokens": 26}


@pytest.fixture
def workers_ai(monkeypatch: pytest.MonkeyPatch, server: LoopbackServer) -> LoopbackServer:
    monkeypatch.setenv("CLOUDFLARE_ACCOUNT_ID", "acct")
    monkeypatch.setenv("CLOUDFLARE_API_TOKEN", "cf-token")
    monkeypatch.setenv("CLOUDFLARE_BASE_URL", server.url + "/client/v4")
    return server


def _script(server: LoopbackServer, expression: str = "2 + 3") -> None:
    """A 503 (retry after 1 ms), a call of calculate, then the answer."""
    call = [{"name": "calculate", "arguments": {"expression": expression}}]
    server.script(
        Reply(
            status=503,
            json={"success": False, "errors": [{"code": 7010, "message": "busy"}]},
            headers={"retry-after-ms": "1"},
        ),
        Reply(
            json={"result": {"response": None, "tool_calls": call, "usage": USAGE}, "success": True}
        ),
        Reply(json={"result": {"response": "It is 5.", "usage": USAGE}, "success": True}),
    )


def _without_durations(text: str) -> str:
    return re.sub(r"\d+\.\d ms", "_ ms", text)


def test_trace_prints_the_span_tree_on_stderr(
    workers_ai: LoopbackServer, capsys: pytest.CaptureFixture[str]
) -> None:
    _script(workers_ai)
    status = main(["run", "2 + 3?", "--runtime", "workers-ai", "--tools", CALCULATOR, "--trace"])
    out, err = capsys.readouterr()
    assert (status, out) == (0, "It is 5.\n")
    assert _without_durations(err) == (
        "invoke_agent  _ ms  steps 2 · tokens 40 in / 12 out · stop answer\n"
        f"├── chat {MODEL}  _ ms  tokens 20 in / 6 out · finish tool_calls\n"
        "│   └── retry 1 after ServerError (HTTP 503), waited 0.00 s\n"
        "├── execute_tool calculate  _ ms\n"
        f"└── chat {MODEL}  _ ms  tokens 20 in / 6 out · finish stop\n"
    )
    assert "cf-token" not in err
    assert telemetry.active() is None  # the command's set-up ended with it


def test_trace_shows_a_failed_tool_and_a_failed_run(
    workers_ai: LoopbackServer, capsys: pytest.CaptureFixture[str]
) -> None:
    call = [{"name": "calculate", "arguments": {"expression": "1 / 0"}}]
    reply = Reply(
        json={"result": {"response": None, "tool_calls": call, "usage": USAGE}, "success": True}
    )
    workers_ai.script(reply, reply)
    argv = ["run", "1 / 0?", "--runtime", "workers-ai", "--tools", CALCULATOR]
    status = main([*argv, "--max-steps", "2", "--trace"])
    _, err = capsys.readouterr()
    assert status == 1
    *tree, error = _without_durations(err).splitlines()
    assert error.startswith("error: ") and "2" in error
    assert tree[0] == (
        "invoke_agent  _ ms  steps 2 · tokens 40 in / 12 out · stop max_steps · "
        "ERROR MaxStepsExceeded"
    )
    # The calculator refuses to divide by zero with ToolRetry: the model is told, the span
    # says so.
    assert tree[2] == "├── execute_tool calculate  _ ms  ERROR ToolRetry"


def test_otlp_exports_spans_and_metrics_to_a_collector(
    workers_ai: LoopbackServer, capsys: pytest.CaptureFixture[str]
) -> None:
    _script(workers_ai)
    collector = Collector()
    with collector.server:
        argv = ["run", "2 + 3?", "--runtime", "workers-ai", "--tools", CALCULATOR]
        status = main([*argv, "--otlp", collector.server.url])
    out, err = capsys.readouterr()
    assert (status, out, err) == (0, "It is 5.\n", "")
    names = sorted(span.name for span in collector.spans())
    assert names == [f"chat {MODEL}", f"chat {MODEL}", "execute_tool calculate", "invoke_agent"]
    assert {
        gen_ai_metrics.GEN_AI_CLIENT_TOKEN_USAGE,
        gen_ai_metrics.GEN_AI_CLIENT_OPERATION_DURATION,
    } <= collector.metric_names()
    assert "cf-token" not in str(collector.traces) + str(collector.metrics)
