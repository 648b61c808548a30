"""Model calls: a `chat {model}` span and the GenAI metrics per call, through a runtime
wrapper."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from agentkit.model_api import Generation, Message, StreamChunk
from agentkit.telemetry._conventions import (
    CACHE_HIT,
    ERROR_TYPE,
    FINISH_REASONS,
    INPUT_TOKENS,
    OPERATION,
    OUTPUT_MESSAGES,
    OUTPUT_TOKENS,
    PROVIDER,
    REQUEST_MODEL,
    SAMPLING,
    TOKEN_TYPE,
    error_type,
    fail,
    input_messages,
    output_message,
    provider_of,
)
from agentkit.telemetry._instruments import Instruments
from agentkit.usage import model_name

_IN_CHAT = otel_context.create_key("agentkit.chat")  # a chat span is open: don't nest another


class _Chat:
    """One `chat {model}` span and its metrics."""

    def __init__(self, tracing: Instruments, runtime: Any, request: Any, stream: bool) -> None:
        self.tracing = tracing
        self.model = model_name(runtime)
        self.base = {
            OPERATION: "chat",
            PROVIDER: provider_of(runtime),
            REQUEST_MODEL: self.model,
        }
        attributes: dict[str, Any] = {**self.base, "gen_ai.request.stream": stream}
        for field, key in SAMPLING.items():
            value = getattr(request, field, None)
            if value is not None:
                attributes[key] = value
        messages = getattr(request, "messages", None)
        if tracing.capture_content and messages:
            attributes.update(input_messages(messages))
        self.span = tracing.tracer.start_span(
            f"chat {self.model}", kind=SpanKind.CLIENT, attributes=attributes
        )
        self.context = otel_context.set_value(_IN_CHAT, True, trace.set_span_in_context(self.span))
        self.started = time.perf_counter()

    def finish(self, generation: Generation) -> None:
        span = self.span
        usage = generation.usage
        reason = generation.finish_reason or ("tool_calls" if generation.tool_calls else None)
        if reason:
            span.set_attribute(FINISH_REASONS, [reason])
        if generation.cached:  # answered by a response cache: no model was called
            span.set_attribute(CACHE_HIT, True)
        span.set_attributes(
            {INPUT_TOKENS: usage.prompt_tokens, OUTPUT_TOKENS: usage.completion_tokens}
        )
        if self.tracing.capture_content:
            message = Message.assistant(generation.response, generation.tool_calls)
            span.set_attribute(OUTPUT_MESSAGES, output_message(message, reason))
        span.end()
        self.tracing.duration.record(time.perf_counter() - self.started, self.base)
        for kind, count in (("input", usage.prompt_tokens), ("output", usage.completion_tokens)):
            self.tracing.token_usage.record(count, {**self.base, TOKEN_TYPE: kind})

    def fail(self, error: BaseException, kind: str | None = None) -> None:
        fail(self.span, error, kind)
        self.span.end()
        failed = {**self.base, ERROR_TYPE: kind or error_type(error)}
        self.tracing.duration.record(time.perf_counter() - self.started, failed)


class TracedRuntime:
    """A runtime whose calls each get a `chat {model}` span (unless one is already open: a
    runtime that delegates to another is one model call, not two)."""

    def __init__(self, tracing: Instruments, inner: Any) -> None:
        self._tracing = tracing
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def __repr__(self) -> str:
        return repr(self.inner)

    async def generate(self, request: Any) -> Generation:
        if otel_context.get_value(_IN_CHAT):
            return await self.inner.generate(request)  # type: ignore[no-any-return]
        chat = _Chat(self._tracing, self.inner, request, False)
        token = otel_context.attach(chat.context)
        try:
            generation: Generation = await self.inner.generate(request)
        except BaseException as exc:
            chat.fail(exc)
            raise
        finally:
            otel_context.detach(token)
        chat.finish(generation)
        return generation

    def stream(self, request: Any) -> AsyncIterator[StreamChunk]:
        if otel_context.get_value(_IN_CHAT):
            return self.inner.stream(request)  # type: ignore[no-any-return]
        chat = _Chat(self._tracing, self.inner, request, True)
        token = otel_context.attach(chat.context)
        try:
            # Called at once, as the runtime would be: a refused request raises here.
            iterator: AsyncIterator[StreamChunk] = self.inner.stream(request)
        except BaseException as exc:
            chat.fail(exc)
            raise
        finally:
            otel_context.detach(token)
        return _traced_chunks(chat, iterator)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def _traced_chunks(
    chat: _Chat, iterator: AsyncIterator[StreamChunk]
) -> AsyncIterator[StreamChunk]:
    chunks: list[StreamChunk] = []
    try:
        while True:
            # The chat span is current only while the runtime works, not across our own
            # yields: the consumer's context is its own business.
            token = otel_context.attach(chat.context)
            try:
                chunk = await iterator.__anext__()
            except StopAsyncIteration:
                break
            finally:
                otel_context.detach(token)
            chunks.append(chunk)
            yield chunk
    except GeneratorExit:  # the consumer stopped early
        chat.fail(GeneratorExit())
        raise
    except BaseException as exc:
        chat.fail(exc)
        raise
    finally:
        close = getattr(iterator, "aclose", None)
        if close is not None:
            await close()
    chat.finish(StreamChunk.join(chunks))
