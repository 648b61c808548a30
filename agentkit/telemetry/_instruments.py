"""What every span and metric is made with: a tracer, the GenAI histograms, the content setting.

`Tracing` (`_otel`) is built on them, and the model-call spans (`_model`) need nothing more, so
both import this module and neither imports the other's.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from opentelemetry import metrics, trace

from agentkit.telemetry._conventions import DURATION_BUCKETS, TOKEN_BUCKETS


class Instruments:
    """A tracer and the `gen_ai.client.*` histograms, from the given providers (None: the
    global ones), and whether content is recorded."""

    def __init__(self, tracer_provider: Any, meter_provider: Any, *, capture_content: bool) -> None:
        try:
            release = version("agentkit")
        except PackageNotFoundError:  # pragma: no cover - run from a source tree
            release = "0"
        self.tracer_provider = tracer_provider
        self.capture_content = capture_content
        self.tracer = trace.get_tracer("agentkit", release, tracer_provider=tracer_provider)
        meter = metrics.get_meter("agentkit", release, meter_provider=meter_provider)
        self.token_usage = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Number of input and output tokens used",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
        )
        self.duration = meter.create_histogram(
            "gen_ai.client.operation.duration",
            unit="s",
            description="GenAI operation duration",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
