"""The token loop of the local runtime: sample, detokenize, stop, stream, watch for a call."""

from __future__ import annotations

import codecs
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import llama_cpp
from llama_cpp.llama import Llama

from agentkit.model_api import FinishReason, StreamChunk, ToolCall
from agentkit.runtimes._grammar_sampler import grammar_first_refusal

__all__ = ["Output", "common_prefix", "sample"]


@dataclass
class Output:
    """What a generation produced so far."""

    text: str = ""
    emitted: int = 0
    """How much of `text` has been streamed."""
    completion_tokens: int = 0
    finish_reason: FinishReason = "stop"
    calls: list[ToolCall] = field(default_factory=list)
    sampled: list[int] = field(default_factory=list)
    """The tokens the last `sample` call generated, end-of-turn excluded."""
    decoded: str = ""
    """Their text, uncut by stop strings."""


def sample(
    llama: Llama,
    tokens: list[int],
    grammar: str | None,
    sampling: dict[str, Any],
    stops: tuple[str, ...],
    watch: tuple[str, ...],
    budget: int,
    out: Output,
    emit: Callable[[StreamChunk], None],
    cancelled: threading.Event,
    *,
    stream: bool = True,
    hold: str | None = None,
) -> int | None:
    """Sample up to `budget` tokens after `tokens` into `out`.

    With `stream`, text is streamed as soon as it can no longer turn into a stop string or a
    watched trigger; a call written under a grammar is parsed at the end and not streamed. With
    `hold`, nothing is streamed while the text written starts with it or could still grow into
    it (a call's opening, under a grammar that allows a call or an answer object). Returns where
    a watched trigger starts in `out.text`, if one was seen (sampling stops there).
    """
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    held = (*stops, *watch)
    longest = max((len(m) for m in held), default=0)
    start = len(out.text)
    out.sampled, out.decoded = [], ""
    for token in _tokens(llama, tokens, grammar, sampling):
        if cancelled.is_set():
            return None
        if llama_cpp.llama_vocab_is_eog(llama._model.vocab, token):
            out.finish_reason = "stop"
            break
        out.completion_tokens += 1
        out.sampled.append(token)
        before = len(out.text)
        piece = decoder.decode(llama.detokenize([token], special=True))
        out.decoded += piece
        out.text += piece
        # A marker that just completed ends within the new piece: look only near it.
        since = max(start, before - longest)
        stop_at = min((at for m in stops if (at := out.text.find(m, since)) != -1), default=-1)
        if stop_at != -1:
            out.text = out.text[:stop_at]
            out.finish_reason = "stop"
            break
        for trigger in watch:
            at = out.text.find(trigger, since)
            if at != -1:
                return at
        if stream and not (hold and _may_be(out.text[start:], hold)):
            _flush(out, held, emit)
        if out.completion_tokens >= budget:
            out.finish_reason = "length"
            break
    else:
        out.finish_reason = "length"
    rest = decoder.decode(b"", final=True)
    out.decoded += rest
    out.text += rest
    return None


def _tokens(
    llama: Llama, tokens: list[int], grammar: str | None, sampling: dict[str, Any]
) -> Iterator[int]:
    undo = grammar_first_refusal(llama, grammar) if grammar is not None else None
    generator = llama.generate(tokens, **sampling)
    try:
        yield from generator
    finally:
        generator.close()
        if undo is not None:
            undo()


def _may_be(text: str, opening: str) -> bool:
    return text.startswith(opening) or opening.startswith(text)


def common_prefix(llama: Llama, tokens: list[int]) -> int:
    """How many leading prompt tokens the KV cache already holds (llama.cpp evaluates the last
    one again when the whole prompt is cached)."""
    n = 0
    for cached, token in zip(llama.input_ids[: llama.n_tokens], tokens, strict=False):
        if cached != token:
            break
        n += 1
    return min(n, len(tokens) - 1)


def _flush(out: Output, held: tuple[str, ...], emit: Callable[[StreamChunk], None]) -> None:
    """Stream the text that cannot be the start of a stop string or trigger."""
    text = out.text
    safe = len(text)
    for marker in held:
        for size in range(min(len(marker) - 1, len(text) - out.emitted), 0, -1):
            if text.endswith(marker[:size]):
                safe = min(safe, len(text) - size)
                break
    if safe > out.emitted:
        emit(StreamChunk(response=text[out.emitted : safe]))
        out.emitted = safe
