"""Names and helpers of the conventions: attribute names, provider names, bucket boundaries,
errors, and content in the conventions' structure.

Attribute names are written out here rather than imported from
`opentelemetry-semantic-conventions`, which agentkit does not depend on; the tests check them
against its constants.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from opentelemetry.trace import Span, Status, StatusCode

from agentkit.errors import TransportError
from agentkit.model_api import Message

# Attribute names (GenAI, HTTP and error conventions).
OPERATION = "gen_ai.operation.name"
PROVIDER = "gen_ai.provider.name"
AGENT_NAME = "gen_ai.agent.name"
REQUEST_MODEL = "gen_ai.request.model"
FINISH_REASONS = "gen_ai.response.finish_reasons"
INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
TOKEN_TYPE = "gen_ai.token.type"
INPUT_MESSAGES = "gen_ai.input.messages"
OUTPUT_MESSAGES = "gen_ai.output.messages"
SYSTEM_INSTRUCTIONS = "gen_ai.system_instructions"
TOOL_NAME = "gen_ai.tool.name"
TOOL_CALL_ID = "gen_ai.tool.call.id"
TOOL_TYPE = "gen_ai.tool.type"
TOOL_DESCRIPTION = "gen_ai.tool.description"
TOOL_ARGUMENTS = "gen_ai.tool.call.arguments"
TOOL_RESULT = "gen_ai.tool.call.result"
ERROR_TYPE = "error.type"
RESEND_COUNT = "http.request.resend_count"
STATUS_CODE = "http.response.status_code"
# agentkit's own, for what the conventions have no name for.
STEPS = "agentkit.run.steps"
STOP_REASON = "agentkit.run.stop_reason"
COST = "agentkit.run.cost"
CACHE_HIT = "agentkit.cache.hit"
RETRY_DELAY = "agentkit.retry.delay"
ANSWERED_BY = "agentkit.response.runtime"
"""Which runtime answered a model call, where a wrapper chose (`Generation.runtime`)."""
FALLBACK_EVENT = "agentkit.fallback"
FALLBACK_FROM = "agentkit.fallback.from"
RETRY_EVENT = "agentkit.http.retry"
TOOL_ASKED = "agentkit.tool.asked"
HANDOFF_EVENT = "agentkit.handoff"
HANDOFF_FROM = "agentkit.handoff.from"
HANDOFF_TO = "agentkit.handoff.to"
GUARDRAIL_EVENT = "agentkit.guardrail.tripped"
GUARDRAIL_NAME = "agentkit.guardrail.name"
GUARDRAIL_KIND = "agentkit.guardrail.kind"

SAMPLING = {
    "max_tokens": "gen_ai.request.max_tokens",
    "temperature": "gen_ai.request.temperature",
    "top_p": "gen_ai.request.top_p",
    "top_k": "gen_ai.request.top_k",
    "seed": "gen_ai.request.seed",
    "frequency_penalty": "gen_ai.request.frequency_penalty",
    "presence_penalty": "gen_ai.request.presence_penalty",
}
PROVIDERS = {"workers-ai": "cloudflare.workers_ai", "openai": "openai", "local": "llama_cpp"}
"""`gen_ai.provider.name` per runtime; other runtimes report their own name."""

# The conventions' advised bucket boundaries.
TOKEN_BUCKETS = [4.0**n for n in range(14)]
DURATION_BUCKETS = [0.01 * 2.0**n for n in range(14)]


def provider_of(runtime: Any) -> str:
    name = str(getattr(runtime, "name", "unknown"))
    return PROVIDERS.get(name, name)


def agent_name(agent: Any) -> str:
    """An agent's name as traces show it: the name given, or the agent's (`agent` without
    one, as in events' paths)."""
    if isinstance(agent, str):
        return agent
    return str(getattr(agent, "name", None) or "agent")


def error_type(error: BaseException) -> str:
    """The exception's type; `cancelled` for a cancellation or a consumer that stopped early
    (asyncio's `CancelledError`, trio's `Cancelled`, `GeneratorExit`)."""
    if isinstance(error, GeneratorExit) or type(error).__name__ in _CANCELLED:
        return "cancelled"
    return type(error).__qualname__


_CANCELLED = {"CancelledError", "Cancelled"}


def describe(error: BaseException) -> str:
    # agentkit's transport errors build their own messages with credentials scrubbed out;
    # anything else may carry content, so only its type is told.
    if isinstance(error, TransportError):
        return str(error)[:500]
    return error_type(error)


def fail(span: Span, error: BaseException, kind: str | None = None) -> None:
    span.set_attribute(ERROR_TYPE, kind or error_type(error))
    span.set_status(Status(StatusCode.ERROR, describe(error)))


def dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _parts(message: Message) -> list[dict[str, Any]]:
    if message.role == "tool":
        return [
            {"type": "tool_call_response", "id": message.tool_call_id, "response": message.content}
        ]
    parts: list[dict[str, Any]] = []
    if message.content:
        parts.append({"type": "text", "content": message.content})
    for call in message.tool_calls:
        parts.append(
            {"type": "tool_call", "id": call.id, "name": call.name, "arguments": call.arguments}
        )
    return parts


def input_messages(messages: Sequence[Message]) -> dict[str, str]:
    """The content attributes of a conversation: system instructions apart, as the
    conventions structure them."""
    system = [{"type": "text", "content": m.content} for m in messages if m.role == "system"]
    rest = [{"role": m.role, "parts": _parts(m)} for m in messages if m.role != "system"]
    out = {INPUT_MESSAGES: dump(rest)}
    if system:
        out[SYSTEM_INSTRUCTIONS] = dump(system)
    return out


def output_message(message: Message, finish_reason: str | None) -> str:
    return dump([{"role": "assistant", "parts": _parts(message), "finish_reason": finish_reason}])


def server_of(url: str) -> dict[str, Any]:
    parts = urlsplit(url)
    out: dict[str, Any] = {"server.address": parts.hostname or ""}
    if parts.port:
        out["server.port"] = parts.port
    return out
