"""Traces and metrics in OpenTelemetry's GenAI semantic conventions, off unless configured.

agentkit speaks only the OpenTelemetry API (`pip install 'agentkit[otel]'`); which SDK, which
exporter and where the data goes are the application's choice. Nothing is recorded, and nothing
leaves the process, until either

- the application sets a global tracer provider (`opentelemetry.trace.set_tracer_provider`, or
  `opentelemetry-instrument`, Logfire, ...): agentkit notices it at the start of each run; or
- it calls `instrument(...)`, optionally with its own providers.

Spans: `invoke_agent {name}` per run, `chat {model}` per model call (retries of the HTTP
runtimes as its events), `execute_tool {name}` per tool call, and a server span per request of
`agentkit serve`. Metrics: the `gen_ai.client.token.usage` and
`gen_ai.client.operation.duration` histograms. W3C `traceparent` headers go out with the HTTP
runtimes' requests and are continued by the server.

Prompts, answers, tool arguments and results are recorded only when asked for (`instrument(
capture_content=True)` or `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true`). Request
headers, and so API tokens, are never recorded.

The off path is one dictionary lookup and a type check per run: with no provider configured,
`active()` returns None and the agent runs exactly as it would without this module.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from agentkit.errors import UserError

if TYPE_CHECKING:
    from agentkit.telemetry._otel import Tracing

__all__ = [
    "CAPTURE_CONTENT_VARIABLE",
    "ServerSpans",
    "active",
    "instrument",
    "uninstrument",
]

CAPTURE_CONTENT_VARIABLE = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
"""Set to `true` to record prompts, answers, tool arguments and results (the conventions'
content-capture setting)."""

_explicit: Tracing | None = None  # set by instrument()
_from_global: Tracing | None = None  # built for the global provider, kept while it stays
_global_provider: Any = None
_UNREADABLE = object()


def _install_hint() -> UserError:
    return UserError(
        "telemetry needs the OpenTelemetry API: pip install 'agentkit[otel]' "
        "(and an SDK with an exporter to send the spans somewhere)"
    )


def _capture_from_environment() -> bool:
    return os.environ.get(CAPTURE_CONTENT_VARIABLE, "").strip().lower() == "true"


def instrument(
    *,
    tracer_provider: Any = None,
    meter_provider: Any = None,
    capture_content: bool | None = None,
) -> None:
    """Record agentkit's spans and metrics.

    Not needed when the application sets OpenTelemetry's global tracer provider: agentkit uses
    it by itself. Call it to use providers of your own, or to record content.

    Args:
        tracer_provider: an OpenTelemetry `TracerProvider`; None for the global one.
        meter_provider: an OpenTelemetry `MeterProvider`; None for the global one.
        capture_content: record prompts, answers, tool arguments and results on the spans;
            None reads `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`.

    Raises:
        UserError: the `opentelemetry-api` package is not installed.
    """
    global _explicit
    try:
        from agentkit.telemetry._otel import Tracing
    except ImportError:
        raise _install_hint() from None
    if capture_content is None:
        capture_content = _capture_from_environment()
    _explicit = Tracing(tracer_provider, meter_provider, capture_content=capture_content)


def uninstrument() -> None:
    """Undo `instrument()`: back to following the global tracer provider, if any."""
    global _explicit, _from_global
    _explicit = None
    _from_global = None


def active() -> Tracing | None:
    """The instrumentation in force, or None when nothing would receive the spans."""
    if _explicit is not None:
        return _explicit
    api = sys.modules.get("opentelemetry.trace")
    if api is None:  # nobody imported OpenTelemetry, so nobody configured it
        return None
    # The global provider, once set, is never replaced; reading it directly saves the
    # environment lookup `get_tracer_provider()` makes while none is set.
    provider = getattr(api, "_TRACER_PROVIDER", _UNREADABLE)
    if provider is _UNREADABLE:  # another version of the API: ask it
        provider = api.get_tracer_provider()
    if provider is None or isinstance(provider, (api.ProxyTracerProvider, api.NoOpTracerProvider)):
        return None
    return _for_global(provider)


def _for_global(provider: Any) -> Tracing:
    global _from_global, _global_provider
    if _from_global is None or _global_provider is not provider:
        from agentkit.telemetry._otel import Tracing

        # None: the global providers, as they are now and later.
        _from_global = Tracing(None, None, capture_content=_capture_from_environment())
        _global_provider = provider
    return _from_global


# -- call sites: each is a no-op when `active()` is None ----------------------------------------


@contextmanager
def _no_span() -> Iterator[None]:
    yield None


def traced_runtime(runtime: Any) -> Any:
    """`runtime`, with a `chat {model}` span around each call when telemetry is on."""
    tracing = active()
    return runtime if tracing is None else tracing.runtime(runtime)


def with_traceparent(headers: Mapping[str, str]) -> Mapping[str, str]:
    """`headers`, plus the W3C `traceparent` of the current span when telemetry is on."""
    tracing = active()
    if tracing is None:
        return headers
    carrier: MutableMapping[str, str] = dict(headers)
    tracing.inject(carrier)
    return carrier


def http_retry(url: str, retry: int, error: BaseException, delay: float) -> None:
    """Note a retry of an HTTP runtime's request on the current span."""
    tracing = active()
    if tracing is not None:
        tracing.http_retry(url, retry, error, delay)


def fell_over(runtime: str, error: BaseException) -> None:
    """Note on the current span that `runtime` failed with `error` and the next one is tried
    (`agentkit.runtimes.Fallback`)."""
    tracing = active()
    if tracing is not None:
        tracing.fell_over(runtime, error)


class ServerSpans:
    """ASGI middleware: each HTTP request a server span, continuing the caller's W3C trace
    context (`traceparent`), when telemetry is on."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        tracing = active() if scope["type"] == "http" else None
        if tracing is None:
            await self.app(scope, receive, send)
        else:
            await tracing.serve(self.app, scope, receive, send)
