"""The trace context travels: a client's `traceparent` is continued by `agentkit serve`, whose
model calls carry it on to the service behind it. In process (the server's app on a loopback
port, spans in the SDK's in-memory exporter) and as a real `agentkit serve --otlp` process
exporting to a loopback OTLP/HTTP receiver."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as gen_ai
from opentelemetry.semconv.attributes.http_attributes import (
    HTTP_REQUEST_METHOD,
    HTTP_RESPONSE_STATUS_CODE,
    HTTP_ROUTE,
)
from opentelemetry.trace import SpanKind

from agentkit import WorkersAI
from agentkit.server import create_app

from support.loopback import Collector, LoopbackServer
from support.server import serve_process
from support.tracing import recorded_spans

MODEL = "@cf/meta/llama-3.1-8b-instruct"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{CLIENT_SPAN}-01"
ROUTE = "/client/v4/accounts/{account_id}/ai/run/{model:path}"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    with recorded_spans() as exporter:
        yield exporter


def test_the_server_continues_the_clients_trace_and_passes_it_on(
    spans: InMemorySpanExporter, service: LoopbackServer
) -> None:
    upstream = WorkersAI("acct", "tok-7c1d-upstream-secret", base_url=service.url + "/client/v4")
    with LoopbackServer(app=create_app(upstream)) as served:
        answer = httpx.post(
            f"{served.url}/client/v4/accounts/me/ai/run/{MODEL}",
            json={"messages": [{"role": "user", "content": "Hi"}]},
            headers={"traceparent": TRACEPARENT},
        )
    assert answer.status_code == 200, answer.text

    [server_span] = [s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert server_span.context is not None and server_span.parent is not None
    assert f"{server_span.context.trace_id:032x}" == TRACE_ID
    assert f"{server_span.parent.span_id:016x}" == CLIENT_SPAN
    assert server_span.parent.is_remote
    assert server_span.name == f"POST {ROUTE}"
    assert server_span.attributes is not None
    assert server_span.attributes[HTTP_REQUEST_METHOD] == "POST"
    assert server_span.attributes[HTTP_ROUTE] == ROUTE
    assert server_span.attributes[HTTP_RESPONSE_STATUS_CODE] == 200

    [chat] = [s for s in spans.get_finished_spans() if s.name == f"chat {MODEL}"]
    assert chat.context is not None and chat.parent is not None
    assert chat.parent.span_id == server_span.context.span_id
    assert chat.attributes is not None
    assert chat.attributes[gen_ai.GEN_AI_OPERATION_NAME] == "chat"

    # The upstream model service received the same trace, as a child of the chat span.
    _, trace_id, parent, _ = service.requests[-1].headers["traceparent"].split("-")
    assert (trace_id, parent) == (TRACE_ID, f"{chat.context.span_id:016x}")


def test_without_telemetry_the_server_sends_no_traceparent(service: LoopbackServer) -> None:
    upstream = WorkersAI("acct", "tok-7c1d-upstream-secret", base_url=service.url + "/client/v4")
    with LoopbackServer(app=create_app(upstream)) as served:
        answer = httpx.post(
            f"{served.url}/client/v4/accounts/me/ai/run/{MODEL}",
            json={"prompt": "Hi"},
            headers={"traceparent": TRACEPARENT},
        )
    assert answer.status_code == 200
    assert "traceparent" not in service.requests[-1].headers


# -- a real `agentkit serve --otlp` process ----------------------------------------------------


@pytest.mark.subprocess
def test_agentkit_serve_continues_the_trace_and_exports_it_over_otlp(
    tmp_path: Path, service: LoopbackServer
) -> None:
    collector = Collector()
    env = {
        **os.environ,
        "CLOUDFLARE_ACCOUNT_ID": "acct",
        "CLOUDFLARE_API_TOKEN": "tok-7c1d-upstream-secret",
        "CLOUDFLARE_BASE_URL": service.url + "/client/v4",
        "OTEL_BSP_SCHEDULE_DELAY": "50",
    }
    with collector.server:
        options = ["--runtime", "workers-ai", "--otlp", collector.server.url]
        with serve_process(options, tmp_path / "serve.log", env) as server:
            answer = httpx.post(
                f"{server}/client/v4/accounts/me/ai/run/{MODEL}",
                json={"prompt": "Hi"},
                headers={"traceparent": TRACEPARENT},
            )
            assert answer.status_code == 200, answer.text

    spans = collector.spans()
    by_name = {span.name: span for span in spans}
    server_span = by_name[f"POST {ROUTE}"]
    chat = by_name[f"chat {MODEL}"]
    assert server_span.trace_id.hex() == TRACE_ID
    assert server_span.parent_span_id.hex() == CLIENT_SPAN
    assert chat.trace_id.hex() == TRACE_ID
    assert chat.parent_span_id == server_span.span_id
    _, trace_id, parent, _ = service.requests[-1].headers["traceparent"].split("-")
    assert (trace_id, parent) == (TRACE_ID, chat.span_id.hex())
    assert "tok-7c1d-upstream-secret" not in str(collector.traces)
