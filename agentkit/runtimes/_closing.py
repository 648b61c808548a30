"""A short way to end what a grammar holds, from wherever the generation stands.

A generation held to a JSON grammar that runs out of `max_tokens` would stop in the middle of a
string or an object. `Closer.ending(matcher, written)` finds tokens that take the matcher from
its state to one where the grammar may end, writing as little as it can:

- what the grammar forces is written as it forces it (keys, punctuation, the rest of a value);
- outside strings, a closing quote, brace or bracket, or a comma, before anything else, then a
  `0` for a number, then whatever the grammar allows;
- inside a string, the closing quote if the grammar allows it; else a string the schema names or
  implies (an `enum` value, a `default`, a pattern's shortest match, a `format`'s example), when
  the grammar takes it whole; else one character at a time, each tried less often the more it
  was already written in this string (so that a pattern the walk cannot read still ends).

The ending found is a valid completion, not always the shortest: a pattern that must contain a
word the schema does not spell may defeat it (then `ending` returns None). Measured on
JSONSchemaBench in docs/grammar-engine.md. Each call costs about a millisecond.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from typing import Any

import llguidance

from agentkit.runtimes._guidance import engine_error

__all__ = ["Closer", "EngineGaveUp", "NoRoom", "Steering", "closer_for"]

_QUOTE, _BACKSLASH = 0x22, 0x5C
_SHUTTING = b'"}],'
"""Outside strings: tried first, in this order (a comma only where a value must follow)."""
_OUTSIDE = list(b"0") + [b for b in range(0x20, 0x7F) if b not in _SHUTTING + b"0"]
_INSIDE = list(b"@.:-/a0") + [b for b in range(0x20, 0x7F) if b not in b'@.:-/a0"\\']
"""Inside strings, after the closing quote: separators formats use, then the rest (never a
backslash: an escape is never the short way)."""
_RANK = {b: i for i, b in enumerate(_INSIDE)} | {b: i for i, b in enumerate(_OUTSIDE)}
DEFAULT_CAP = 4096
"""The most tokens an ending may take before the walk gives up."""
_BYTES_A_TOKEN = 8
"""How many of its own steps the walk may take for each token of the cap."""


class Closer:
    """Endings for one model's vocabulary.

    Args:
        tokenizer: llguidance's tokenizer of the model.
    """

    def __init__(self, tokenizer: llguidance.LLTokenizer) -> None:
        self.tokenizer = tokenizer
        self.byte_token: dict[int, int] = {}
        for byte in range(0x20, 0x7F):
            tokens = tokenizer.tokenize_bytes(bytes([byte]))
            if len(tokens) == 1:
                self.byte_token[byte] = tokens[0]
        self._hint_tokens: dict[tuple[str, ...], list[list[int]]] = {}
        self._first: dict[str, int | None] = {}

    def first_ending(
        self, grammar: str, matcher: llguidance.LLMatcher, hints: Sequence[str]
    ) -> int | None:
        """The length of the ending from the start of `grammar` (the text it is compiled
        from; `matcher` stands at its start), or None when the walk finds none: the same for
        every request with that grammar, so walked once."""
        if grammar not in self._first:
            if len(self._first) > 256:
                self._first.clear()
            ending = self.ending(matcher, b"", hints)
            self._first[grammar] = None if ending is None else len(ending)
        return self._first[grammar]

    def ending(
        self,
        matcher: llguidance.LLMatcher,
        written: bytes,
        hints: Sequence[str] = (),
        *,
        cap: int = DEFAULT_CAP,
    ) -> list[int] | None:
        """Tokens from the matcher's state to an end of the grammar (the matcher is left as
        it was), or None when the walk finds none within `cap` tokens.

        Args:
            matcher: the sequence's matcher.
            written: the text written under the grammar so far (whether it stands inside a
                string is read from it).
            hints: strings the schema names (`agentkit.chat_formats._examples`).
            cap: the most tokens the ending may take.
        """
        walk = _Walk(self, matcher.deep_copy(), _inside_string(written), self._hints(hints))
        # The walk writes a byte a token where it chooses; the same text comes to fewer tokens.
        tokens = walk.run(min(DEFAULT_CAP, _BYTES_A_TOKEN * cap + 16))
        if tokens is None:
            return None
        shorter = self.tokenizer.tokenize_bytes(self.tokenizer.decode_bytes(tokens))
        if len(shorter) < len(tokens):
            check = matcher.deep_copy()
            if check.validate_tokens(shorter) == len(shorter) and _ends(check, shorter):
                tokens = list(shorter)
        return tokens if len(tokens) <= cap else None

    def _hints(self, hints: Sequence[str]) -> list[list[int]]:
        key = tuple(hints)
        found = self._hint_tokens.get(key)
        if found is None:
            # Each as the rest of a string: its JSON text and the closing quote.
            texts = (json.dumps(h, ensure_ascii=False)[1:].encode() for h in key)
            found = [self.tokenizer.tokenize_bytes(t) for t in texts]
            if len(self._hint_tokens) > 256:
                self._hint_tokens.clear()
            self._hint_tokens[key] = found
        return found


_CLOSERS: dict[int, Closer] = {}


def closer_for(tokenizer: llguidance.LLTokenizer) -> Closer:
    """The `Closer` of a tokenizer, made once (it keeps the tokenizer, so the id stays its)."""
    closer = _CLOSERS.get(id(tokenizer))
    if closer is None:
        closer = _CLOSERS[id(tokenizer)] = Closer(tokenizer)
    return closer


def _ends(matcher: llguidance.LLMatcher, tokens: Sequence[int]) -> bool:
    matcher.consume_tokens(list(tokens))
    return bool(matcher.is_accepting())


def _inside_string(text: bytes) -> bool:
    inside = escaped = False
    for byte in text:
        if escaped:
            escaped = False
        elif inside and byte == _BACKSLASH:
            escaped = True
        elif byte == _QUOTE:
            inside = not inside
    return inside


class EngineGaveUp(Exception):
    """The grammar engine stopped on a limit of its own (`Current row has 23999 items; max is
    2000`: an object of thousands of optional properties)."""


class _Walk:
    def __init__(self, closer: Closer, matcher: Any, inside: bool, hints: list[list[int]]) -> None:
        self.closer, self.matcher, self.inside, self.hints = closer, matcher, inside, hints
        self.out: list[int] = []
        self.used: Counter[int] = Counter()
        """Characters written since the last string or value began: tried less often."""
        self.escaped = False

    def run(self, cap: int) -> list[int] | None:
        matcher = self.matcher
        while len(self.out) < cap:
            if matcher.is_accepting():
                return self.out
            if matcher.is_error():
                return None
            forced = matcher.compute_ff_tokens()
            if forced:
                self._take(forced)
                continue
            step = self._inside() if self.inside else self._outside()
            if step is None:
                step = self._any()
            if step is None:
                return None
            self._take(step)
        return None

    def _allows(self, byte: int) -> bool:
        token = self.closer.byte_token.get(byte)
        return token is not None and self.matcher.validate_tokens([token]) == 1

    def _outside(self) -> list[int] | None:
        for byte in _SHUTTING:
            if self._allows(byte):
                return [self.closer.byte_token[byte]]
        return self._least_used(_OUTSIDE)

    def _inside(self) -> list[int] | None:
        if self._allows(_QUOTE):
            return [self.closer.byte_token[_QUOTE]]
        for tokens in self.hints:
            if self.matcher.validate_tokens(tokens) == len(tokens):
                return tokens
        return self._least_used(_INSIDE)

    def _least_used(self, order: list[int]) -> list[int] | None:
        allowed = [b for b in order if self._allows(b)]
        if not allowed:
            return None
        byte = min(allowed, key=lambda b: (self.used[b], _RANK[b]))
        return [self.closer.byte_token[byte]]

    def _any(self) -> list[int] | None:
        """A token of any bytes the grammar allows (the fewest), when no printable byte does."""
        tokenizer = self.closer.tokenizer
        words = self.matcher.compute_bitmask()
        ends = set(tokenizer.eos_tokens)
        best: tuple[int, int] | None = None
        for index, word in enumerate(words):
            if not word:
                continue
            for bit in range(8):
                token = index * 8 + bit
                if word >> bit & 1 and token not in ends and not tokenizer.is_special_token(token):
                    size = len(tokenizer.decode_bytes([token]))
                    if best is None or size < best[0]:
                        best = (size, token)
        return None if best is None else [best[1]]

    def _take(self, tokens: list[int]) -> None:
        if self.matcher.consume_tokens(tokens) is False:
            # Only the engine's own limits refuse what its mask allowed (a huge grammar).
            raise EngineGaveUp(engine_error(self.matcher))
        self.out += tokens
        for byte in self.closer.tokenizer.decode_bytes(tokens):
            if self.escaped:
                self.escaped = False
            elif self.inside and byte == _BACKSLASH:
                self.escaped = True
            elif byte == _QUOTE:
                self.inside = not self.inside
                self.used.clear()
            elif not self.inside and byte in b"}],:":
                self.used.clear()
            else:
                self.used[byte] += 1


class NoRoom(Exception):
    """The shortest value the grammar allows does not fit in the tokens left."""

    def __init__(self, needed: int, left: int) -> None:
        super().__init__(f"the shortest value allowed takes {needed} tokens; {left} left")
        self.needed, self.left = needed, left


class Steering:
    """Keeps one sequence able to end within its budget: after the tokens the grammar took
    (one sampled, and those fast-forwarded after it), the ending from there must still fit in
    the tokens left; when it would not, they are taken back and the ending from before them is
    written instead (`took` returns it, the grammar has taken it in).

    The ending is looked for only near the end of the budget (within twice the last ending's
    length and 64 tokens): far from it no token makes an ending that much longer.

    Args:
        closer: the model's `Closer`.
        grammar: the text the matcher's grammar is compiled from (its ending from the start
            is walked once per grammar).
        matcher: the sequence's llguidance matcher, at the grammar's start.
        hints: strings the schema names.
        left: tokens the generation may still write.

    Raises:
        NoRoom: even the shortest ending does not fit in `left`.
        EngineGaveUp: the engine stopped on a limit of its own on the way to an ending.
    """

    MARGIN = 64

    def __init__(
        self,
        closer: Closer,
        grammar: str,
        matcher: llguidance.LLMatcher,
        hints: Sequence[str],
        left: int,
    ) -> None:
        self.closer, self.matcher, self.hints = closer, matcher, tuple(hints)
        self.left = left
        self.ends = frozenset(closer.tokenizer.eos_tokens)
        self.pieces: list[bytes] = []
        self.queue: list[int] = []
        """The rest of an ending, taken in by the grammar, for a sampler that writes one
        token a step."""
        self.steered = False
        """The ending was written: the value is complete, but shorter than the model's own."""
        first = closer.first_ending(grammar, matcher, self.hints)
        self.active = first is not None
        """False when no ending is known from the start (the walk could not end it): the
        sequence runs unguarded, as any generation does, and `max_tokens` may cut it."""
        if first is not None and first > left:
            raise NoRoom(first, left)
        self.last = first or 0

    def took(self, tokens: list[int]) -> list[int]:
        """The grammar just took `tokens` (an end of generation last, if the grammar ended):
        the tokens to write, `tokens` themselves or the ending from before them."""
        text = [t for t in tokens if t not in self.ends]
        self._write(text)
        self.left -= len(tokens)
        if not self.active or self.left > 2 * self.last + self.MARGIN:
            return tokens
        if len(text) < len(tokens) and self.left >= 0:
            return tokens  # the grammar ended, within the budget
        ending = self._ending() if self.left >= 0 else None
        if ending is not None and len(ending) <= self.left:
            self.last = len(ending)
            return tokens
        # No room after them: back to before them, and end from there.
        self.matcher.rollback(len(text))
        del self.pieces[len(self.pieces) - len(text) :]
        self.left += len(tokens)
        before = self._ending()
        if before is None or len(before) > self.left:
            # Lost already (the ending jumped past the window at once): go on as the model
            # writes, unguarded.
            self.matcher.consume_tokens(text)
            self._write(text)
            self.left -= len(tokens)
            self.active = False
            return tokens
        self.steered = True
        if not before:  # the grammar may end here: the turn ends
            return [int(self.closer.tokenizer.eos_tokens[0])]
        self.matcher.consume_tokens(before)
        self._write(before)
        self.left -= len(before)
        return before

    def _write(self, tokens: list[int]) -> None:
        decode = self.closer.tokenizer.decode_bytes
        self.pieces += [decode([t]) for t in tokens]

    def _ending(self) -> list[int] | None:
        try:
            return self.closer.ending(
                self.matcher, b"".join(self.pieces), self.hints, cap=self.left + 1
            )
        except EngineGaveUp:
            return None
