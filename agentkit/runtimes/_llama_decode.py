"""One generation's text as its tokens arrive: detokenize, stop, stream, watch for a call."""

from __future__ import annotations

import codecs
from collections.abc import Callable
from dataclasses import dataclass, field

from agentkit.model_api import FinishReason, StreamChunk, ToolCall

__all__ = ["Output", "Text"]


@dataclass
class Output:
    """What a generation produced so far."""

    text: str = ""
    emitted: int = 0
    """How much of `text` has been streamed."""
    completion_tokens: int = 0
    fast_forwarded: int = 0
    """Of the completion tokens, those the grammar forced (appended without sampling)."""
    finish_reason: FinishReason = "stop"
    calls: list[ToolCall] = field(default_factory=list)
    sampled: list[int] = field(default_factory=list)
    """The tokens the current part generated, end-of-turn excluded."""
    decoded: str = ""
    """Their text, uncut by stop strings."""


class Text:
    """Takes one part of a generation's tokens into `out`, one at a time.

    With `stream`, text is streamed as soon as it can no longer turn into a stop string or a
    watched trigger; a call written under a grammar is parsed at the end and not streamed. With
    `hold`, nothing is streamed while the text written starts with it or could still grow into
    it (a call's opening, under a grammar that allows a call or an answer object). `found` is
    where a watched trigger starts in `out.text`, once one is seen (the part ends there).
    """

    def __init__(
        self,
        out: Output,
        detokenize: Callable[[int], bytes],
        *,
        stops: tuple[str, ...],
        watch: tuple[str, ...],
        budget: int,
        emit: Callable[[StreamChunk], None],
        stream: bool = True,
        hold: str | None = None,
    ) -> None:
        self.out, self.detokenize, self.emit = out, detokenize, emit
        self.stops, self.watch, self.budget = stops, watch, budget
        self.stream, self.hold = stream, hold
        self.held = (*stops, *watch)
        self.longest = max((len(m) for m in self.held), default=0)
        self.start = len(out.text)
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.found: int | None = None
        out.sampled, out.decoded = [], ""

    def end_of_turn(self) -> None:
        """The model ended its turn."""
        self.out.finish_reason = "stop"
        self._finish()

    def take(self, token: int, forced: bool = False) -> bool:
        """Take the next token (`forced`: by the grammar, not sampled); True when the part is
        over (a stop string, a trigger, the budget)."""
        out = self.out
        out.completion_tokens += 1
        out.fast_forwarded += forced
        out.sampled.append(token)
        before = len(out.text)
        piece = self.decoder.decode(self.detokenize(token))
        out.decoded += piece
        out.text += piece
        # A marker that just completed ends within the new piece: look only near it.
        since = max(self.start, before - self.longest)
        stop_at = min((at for m in self.stops if (at := out.text.find(m, since)) != -1), default=-1)
        if stop_at != -1:
            out.text = out.text[:stop_at]
            out.finish_reason = "stop"
            self._finish()
            return True
        for trigger in self.watch:
            at = out.text.find(trigger, since)
            if at != -1:
                self.found = at
                return True
        if self.stream and not (self.hold and _may_be(out.text[self.start :], self.hold)):
            self._flush()
        if out.completion_tokens >= self.budget:
            out.finish_reason = "length"
            self._finish()
            return True
        return False

    def _finish(self) -> None:
        rest = self.decoder.decode(b"", final=True)
        self.out.decoded += rest
        self.out.text += rest

    def _flush(self) -> None:
        """Stream the text that cannot be the start of a stop string or trigger."""
        out = self.out
        text = out.text
        safe = len(text)
        for marker in self.held:
            for size in range(min(len(marker) - 1, len(text) - out.emitted), 0, -1):
                if text.endswith(marker[:size]):
                    safe = min(safe, len(text) - size)
                    break
        if safe > out.emitted:
            self.emit(StreamChunk(response=text[out.emitted : safe]))
            out.emitted = safe


def _may_be(text: str, opening: str) -> bool:
    return text.startswith(opening) or opening.startswith(text)
