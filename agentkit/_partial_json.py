"""A tolerant, incremental parser for a JSON object that is still being written: the partial
values a streamed structured answer shows (`agentkit.events.PartialOutput`)."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["PartialJSON"]

_VALUE, _KEY, _COLON, _AFTER, _STRING, _NUMBER, _WORD, _SEEK, _DONE = range(9)
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_WORDS = {"true": True, "false": False, "null": None}
_NUMBER_CHARS = frozenset("0123456789+-.eE")
_MISSING = object()


class PartialJSON:
    """A tolerant, incremental parser for one JSON object that is still being written.

    `feed` takes the text as it arrives, each character read once (linear in the whole text);
    `value()` is the value so far: open objects and arrays closed, a string cut where the text
    stops; a number, `true`, `false` or `null` once it is whole, a key once its value begins.
    Text before the first `{` (prose, a code fence) and after the object's end is ignored; text
    that is not JSON ends the parse, keeping what was read.
    """

    def __init__(self) -> None:
        self._state = _SEEK
        self._root: Any = _MISSING
        self._stack: list[dict[str, Any] | list[Any]] = []
        self._keys: list[str | None] = []  # per open container: the key its value goes under
        self._buffer: list[str] = []
        self._in_key = False
        self._escape = ""  # "" (none), "\\" (after a backslash) or "u...." being read

    def feed(self, text: str) -> bool:
        """Read more text; True if the value may have changed."""
        before = (len(self._stack), self._state)
        i, n = 0, len(text)
        while i < n and self._state != _DONE:
            if self._state == _STRING and not self._escape:
                # Strings are most of an answer: copy runs of plain characters at once.
                j = i
                while j < n and text[j] not in '"\\':
                    j += 1
                if j > i:
                    self._buffer.append(text[i:j])
                    i = j
                    continue
            self._step(text[i])
            i += 1
        return bool(text) and (self._state != _SEEK or before != (0, _SEEK))

    def _step(self, ch: str) -> None:
        state = self._state
        if state == _STRING:
            self._string_char(ch)
        elif state == _NUMBER:
            if ch in _NUMBER_CHARS:
                self._buffer.append(ch)
                return
            text = "".join(self._buffer)
            try:
                number = json.loads(text)
            except ValueError:
                self._state = _DONE
                return
            self._buffer = []
            self._put(number)
            self._step(ch)
        elif state == _WORD:
            self._buffer.append(ch)
            word = "".join(self._buffer)
            if word in _WORDS:
                self._buffer = []
                self._put(_WORDS[word])
            elif not any(w.startswith(word) for w in _WORDS):
                self._state = _DONE
        elif ch in " \t\r\n":
            return
        elif state == _SEEK:
            if ch == "{":
                self._open({})
        elif state == _VALUE:
            self._value_char(ch)
        elif state == _KEY:
            if ch == '"':
                self._state, self._in_key = _STRING, True
            elif ch == "}":
                self._close()
            else:
                self._state = _DONE
        elif state == _COLON:
            self._state = _VALUE if ch == ":" else _DONE
        elif state == _AFTER:
            top = self._stack[-1]
            if ch == ",":
                self._state = _KEY if isinstance(top, dict) else _VALUE
            elif ch == ("}" if isinstance(top, dict) else "]"):
                self._close()
            else:
                self._state = _DONE

    def _value_char(self, ch: str) -> None:
        if ch == "{":
            self._open({})
        elif ch == "[":
            self._open([])
        elif ch == '"':
            self._state, self._in_key = _STRING, False
        elif ch == "]" and isinstance(self._stack[-1], list) and not self._stack[-1]:
            self._close()  # an empty array
        elif ch in _NUMBER_CHARS:
            self._state, self._buffer = _NUMBER, [ch]
        elif ch in "tfn":
            self._state, self._buffer = _WORD, [ch]
        else:
            self._state = _DONE

    def _string_char(self, ch: str) -> None:
        if self._escape == "\\":
            if ch == "u":
                self._escape = "u"
                return
            self._buffer.append(_ESCAPES.get(ch, ch))
            self._escape = ""
        elif self._escape:
            self._escape += ch
            if len(self._escape) == 5:
                try:
                    code = int(self._escape[1:], 16)
                except ValueError:
                    self._state = _DONE
                    return
                self._escape = ""
                last = self._buffer[-1][-1] if self._buffer else ""
                if 0xDC00 <= code <= 0xDFFF and "\ud800" <= last <= "\udbff":
                    # The second half of a surrogate pair: one character with the first.
                    high = self._buffer.pop()
                    self._buffer.append(high[:-1])
                    code = 0x10000 + ((ord(last) - 0xD800) << 10) + (code - 0xDC00)
                self._buffer.append(chr(code))
        elif ch == "\\":
            self._escape = "\\"
        elif ch == '"':
            text = "".join(self._buffer)
            self._buffer = []
            if self._in_key:
                self._keys[-1] = text
                self._state = _COLON
            else:
                self._put(text)
        else:
            self._buffer.append(ch)

    def _attach(self, value: Any) -> None:
        if not self._stack:
            self._root = value
            return
        top = self._stack[-1]
        if isinstance(top, list):
            top.append(value)
        else:
            key = self._keys[-1]
            assert key is not None
            top[key] = value

    def _open(self, container: dict[str, Any] | list[Any]) -> None:
        self._attach(container)
        self._stack.append(container)
        self._keys.append(None)
        self._state = _KEY if isinstance(container, dict) else _VALUE

    def _close(self) -> None:
        self._stack.pop()
        self._keys.pop()
        self._state = _AFTER if self._stack else _DONE

    def _put(self, value: Any) -> None:
        self._attach(value)
        self._state = _AFTER

    def value(self) -> Any:
        """The value so far (a fresh copy), or None before the object begins."""
        if self._root is _MISSING:
            return None
        root = _copy(self._root)
        pending = self._pending()
        if pending is _MISSING or not self._stack:
            return root
        # The open containers form a chain from the root; the innermost gets the pending part.
        node = root
        for level in range(len(self._stack) - 1):
            key = self._keys[level]
            node = node[-1] if isinstance(node, list) else node[key]
        if isinstance(node, list):
            node.append(pending)
        elif self._keys[-1] is not None and self._state != _COLON:
            node[self._keys[-1]] = pending
        return root

    def _pending(self) -> Any:
        """The string being read, as far as it goes."""
        if self._state == _STRING and not self._in_key:
            text = "".join(self._buffer)
            # The first half of a surrogate pair waits for its second.
            return text[:-1] if text and "\ud800" <= text[-1] <= "\udbff" else text
        return _MISSING  # a number shows once it ends: 15 on the way to 1517 would mislead


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value
