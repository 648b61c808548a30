"""The command line's telemetry options: `--trace` prints a run's span tree on stderr,
`--otlp URL` sends spans and metrics to an OTLP/HTTP collector, `--capture-content` records
content. `--trace` and `--otlp` need the SDK (`pip install 'agentkit[otlp]'`), imported only
when they are used.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import IO, Any

from agentkit.errors import UserError
from agentkit.telemetry import instrument, uninstrument

__all__ = ["add_telemetry_options", "configure"]


def add_telemetry_options(parser: argparse.ArgumentParser, *, tree: bool = True) -> None:
    """Add `--otlp` and `--capture-content` to a command, and `--trace` if `tree`."""
    if tree:
        parser.add_argument(
            "--trace", action="store_true", help="print the run's span tree on stderr at the end"
        )
    else:
        parser.set_defaults(trace=False)
    parser.add_argument(
        "--otlp",
        metavar="URL",
        help="send spans and metrics to this OTLP/HTTP collector (e.g. http://localhost:4318)",
    )
    parser.add_argument(
        "--capture-content",
        action="store_true",
        default=None,
        help="record prompts, answers, tool arguments and results on the spans",
    )


def _endpoint(base: str, signal: str) -> str:
    base = base.rstrip("/")
    for known in ("/v1/traces", "/v1/metrics"):
        base = base.removesuffix(known)
    return f"{base}/v1/{signal}"


def configure(
    *, tree: bool, otlp: str | None, capture_content: bool | None = None
) -> Callable[[IO[str]], None]:
    """Set up an SDK for one command; returns what to call at its end (prints the tree on
    the given stream, flushes the exporters).

    Args:
        tree: keep the spans to print them as a tree.
        otlp: the base URL of an OTLP/HTTP collector (e.g. `http://localhost:4318`), or None.
        capture_content: as `instrument`.
    """
    try:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    except ImportError as exc:
        raise UserError(
            "--trace and --otlp need the OpenTelemetry SDK: pip install 'agentkit[otlp]'"
        ) from exc
    from agentkit.telemetry.tree import SpanTree, render

    provider = TracerProvider()
    collected = SpanTree()
    if tree:
        provider.add_span_processor(SimpleSpanProcessor(collected))
    meter_provider: Any = None
    if otlp:
        try:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.metrics import MeterProvider
            from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
        except ImportError as exc:
            raise UserError("--otlp needs the OTLP exporter: pip install 'agentkit[otlp]'") from exc
        provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=_endpoint(otlp, "traces")))
        )
        reader = PeriodicExportingMetricReader(
            OTLPMetricExporter(endpoint=_endpoint(otlp, "metrics"))
        )
        meter_provider = MeterProvider(metric_readers=[reader])
    instrument(
        tracer_provider=provider, meter_provider=meter_provider, capture_content=capture_content
    )

    def finish(out: IO[str]) -> None:
        uninstrument()
        provider.shutdown()  # flushes the exporters
        if meter_provider is not None:
            meter_provider.shutdown()
        if tree and collected.spans:
            print(render(collected.spans), file=out, flush=True)

    return finish
