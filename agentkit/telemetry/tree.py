"""A run's spans as a tree on the terminal (`agentkit run --trace`); needs the SDK.

```
invoke_agent  41.2 ms  steps 2 · tokens 40 in / 12 out · stop answer
├── chat @cf/meta/llama-3.1-8b-instruct  20.3 ms  tokens 20 in / 6 out · finish tool_calls
│   └── retry 1 after ServerError (HTTP 503), waited 0.50 s
├── execute_tool add  0.1 ms
└── chat @cf/meta/llama-3.1-8b-instruct  19.8 ms  tokens 20 in / 6 out · finish stop
```
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agentkit.errors import UserError
from agentkit.telemetry import _conventions as names

__all__ = ["SpanTree", "render"]

try:
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise UserError(
        "--trace and --otlp need the OpenTelemetry SDK: pip install 'agentkit[otlp]'"
    ) from exc


class SpanTree(SpanExporter):
    """Keeps the spans it is given, to print them as a tree."""

    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def _details(span: ReadableSpan) -> str:
    attributes: dict[str, Any] = dict(span.attributes or {})
    parts: list[str] = []
    if names.STEPS in attributes:
        parts.append(f"steps {attributes[names.STEPS]}")
    if names.INPUT_TOKENS in attributes:
        parts.append(
            f"tokens {attributes[names.INPUT_TOKENS]} in / "
            f"{attributes.get(names.OUTPUT_TOKENS, 0)} out"
        )
    if names.COST in attributes:
        parts.append(f"cost {float(attributes[names.COST]):.6f}")
    if names.STOP_REASON in attributes:
        parts.append(f"stop {attributes[names.STOP_REASON]}")
    reasons = attributes.get(names.FINISH_REASONS)
    if reasons:
        parts.append("finish " + ",".join(str(r) for r in reasons))
    if names.STATUS_CODE in attributes and names.OPERATION not in attributes:
        parts.append(f"HTTP {attributes[names.STATUS_CODE]}")
    if names.ERROR_TYPE in attributes:
        parts.append(f"ERROR {attributes[names.ERROR_TYPE]}")
    return " · ".join(parts)


def _event_line(event: Any) -> str:
    attributes: dict[str, Any] = dict(event.attributes or {})
    if event.name == names.GUARDRAIL_EVENT:
        where = attributes.get(names.TOOL_NAME) or attributes.get(names.GUARDRAIL_KIND)
        return f"guardrail {attributes.get(names.GUARDRAIL_NAME)} tripped on {where}"
    if event.name == names.HANDOFF_EVENT:
        return f"handoff {attributes.get(names.HANDOFF_FROM)} -> {attributes.get(names.HANDOFF_TO)}"
    if event.name != names.RETRY_EVENT:
        return str(event.name)
    status = attributes.get(names.STATUS_CODE)
    cause = attributes.get(names.ERROR_TYPE, "error")
    if status is not None:
        cause = f"{cause} (HTTP {status})"
    return (
        f"retry {attributes.get(names.RESEND_COUNT)} after {cause}, "
        f"waited {float(attributes.get(names.RETRY_DELAY, 0.0)):.2f} s"
    )


def render(spans: Sequence[ReadableSpan]) -> str:
    """The spans as an indented tree, children in the order they started."""
    ids = {span.context.span_id for span in spans if span.context is not None}
    children: dict[int | None, list[ReadableSpan]] = {}
    for span in spans:
        parent = span.parent.span_id if span.parent is not None else None
        children.setdefault(parent if parent in ids else None, []).append(span)
    for group in children.values():
        group.sort(key=lambda s: s.start_time or 0)
    lines: list[str] = []

    def walk(span: ReadableSpan, prefix: str, branch: str, last: bool) -> None:
        millis = ((span.end_time or 0) - (span.start_time or 0)) / 1e6
        details = _details(span)
        lines.append(
            f"{prefix}{branch}{span.name}  {millis:.1f} ms" + (f"  {details}" if details else "")
        )
        inner = prefix + ("" if not branch else ("    " if last else "│   "))
        kids: list[Any] = [("event", e) for e in span.events]
        assert span.context is not None
        kids += [("span", s) for s in children.get(span.context.span_id, [])]
        for n, (kind, item) in enumerate(kids):
            end = n == len(kids) - 1
            mark = "└── " if end else "├── "
            if kind == "event":
                lines.append(f"{inner}{mark}{_event_line(item)}")
            else:
                walk(item, inner, mark, end)

    for root in children.get(None, []):
        walk(root, "", "", True)
    return "\n".join(lines)
