"""What running a tool call gives back, in the words of everything that runs one (the agent
loop, the MCP server, the Temporal tool activity)."""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

import anyio
from pydantic import BaseModel
from pydantic_core import to_jsonable_python

from agentkit.model_api import ToolCall

__all__ = ["closing_exit", "cut_output", "json_ready", "output_text", "really_cancelled"]


def output_text(value: Any) -> str:
    """A tool's return value as the text the model reads: a string as is, a pydantic model as
    its JSON, anything else as JSON data."""
    if isinstance(value, str):
        return value
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    return json.dumps(to_jsonable_python(value), ensure_ascii=False)


def cut_output(text: str, limit: int) -> str:
    """Keep the head and the tail of an oversized output, with a marker in between."""
    if len(text) <= limit:
        return text
    head = limit * 2 // 3
    tail = limit - head
    return f"{text[:head]}\n[... {len(text) - limit} characters cut ...]\n{text[-tail:]}"


def really_cancelled() -> bool:
    """Whether the current task is being cancelled, rather than merely seeing a stray
    `CancelledError` (e.g. from awaiting a task something else cancelled)."""
    if anyio.current_effective_deadline() == -math.inf:
        return True  # an enclosing anyio scope is cancelled
    try:
        task = asyncio.current_task()
    except RuntimeError:  # not on asyncio: only a real cancellation raises trio's Cancelled
        return True
    # Python 3.11+ counts cancel requests; before, a stray one cannot be told apart.
    cancelling = getattr(task, "cancelling", None)
    return cancelling is None or cancelling() > 0


def closing_exit(error: BaseException) -> GeneratorExit | None:
    """The `GeneratorExit` `error` was raised in the handling of, if any: the coroutine was
    being closed."""
    seen = error.__context__
    while seen is not None:
        if isinstance(seen, GeneratorExit):
            return seen
        seen = seen.__context__
    return None


def json_ready(call: ToolCall) -> tuple[ToolCall, str]:
    """The call, with arguments that are not JSON data (e.g. a Python-literal set or `...`
    from a runtime) kept as raw text, so they are told to the model as invalid arguments; and
    its arguments as compact JSON (`ToolCall.arguments_json`), written once."""
    if call.raw_arguments is not None:
        return call, call.raw_arguments
    try:
        text = json.dumps(
            call.arguments, ensure_ascii=False, separators=(",", ":"), allow_nan=False
        )
    except (TypeError, ValueError):
        kept = repr(call.arguments)
        return call.model_copy(update={"arguments": {}, "raw_arguments": kept}), kept
    return call, text
