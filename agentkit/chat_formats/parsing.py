"""Tool calls out of model text, in every form Llama-family and ChatML models write them.

Accepted: `{"name": f, "parameters"|"arguments": {...}}` with or without `"type": "function"`
(and the OpenAI `{"function": {...}}` shape); a leading `<|python_tag|>`; several calls
separated by `;`, newlines, or as a JSON list; `<function=f>{...}</function>`;
`<tool_call>...</tool_call>` holding one call or a list; Markdown code fences; prose before
the call; arguments given as a JSON string; a Python-style `[f(a=1), g(b="x")]` list or a
built-in `name.call(query="...")` after `<|python_tag|>`.

Text that holds no well-formed call is an answer. The parser never raises and never makes a
call up: a call needs a name and its arguments (`{}` when there are none). Its time is linear
in the length of the text, whatever the text holds (a value nested deeper than `_MAX_DEPTH`
levels and longer than `_WINDOW` characters is not read as a call).
"""

from __future__ import annotations

import ast
import bisect
import itertools
import json
import re
from collections.abc import Mapping
from typing import Any

from agentkit.model_api import ToolCall

__all__ = ["parse_tool_calls"]

_SPECIAL = re.compile(r"<\|(?:python_tag|eom_id|eot_id|im_end|end_of_text)\|>")
_TAG = re.compile(r"<tool_call>|<function=")
_NAME_END = re.compile(r"[>\s]")
_SPACE = re.compile(r"\s*")
_START = re.compile(r'\{\s*"|\[\s*\{')
_EMPTY_FENCE = re.compile(r"```[\w-]*\s*```")
_NAME = re.compile(r"^[A-Za-z_][\w.\-:/]{0,127}$")
_CALL_KEYS = {"name", "arguments", "parameters", "type", "id", "function"}
_DECODER = json.JSONDecoder()
_WINDOW = 1024  # characters a value is first read from (see `_decode`)
_LOOKAHEAD = 16  # characters the JSON parser may look past a value's end (`-Infinity`)
_MAX_DEPTH = 100
_STEPS = {"[": 1, "{": 1, "]": -1, "}": -1}
# A JSON string (an unclosed one runs to the end), or a bracket.
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"?|[\[\]{}]', re.DOTALL)

Span = tuple[int, int, list[ToolCall]]


def parse_tool_calls(text: str) -> tuple[str, list[ToolCall]]:
    """Split model output into (the answer text without the calls, the calls).

    Never raises; text without a well-formed call comes back whole, with no calls.
    """
    spans = _Spans(_json_calls(text))
    openings = _openings(text)
    for n, (start, end, name) in enumerate(openings):
        if spans.covers(start):
            continue  # a tag inside a call's strings is text
        limit = openings[n + 1][0] if n + 1 < len(openings) else len(text)
        tagged = _tagged(text, start, end, name, limit)
        if tagged is not None:  # the block replaces the bare calls found inside it
            spans.add_block(tagged)
    found = spans.kept()
    if not found:
        bare = _SPECIAL.sub("", text).strip()
        if "<|python_tag|>" in text or bare.startswith("["):
            calls = _python_calls(bare)
            if calls:
                return "", calls
        return (bare if _SPECIAL.search(text) else text), []
    pieces, end = [], 0
    for start, stop, _ in found:
        pieces.append(text[end:start])
        end = stop
    pieces.append(text[end:])
    answer = "\n".join(_SPECIAL.sub("", p).strip(" \t\n;,") for p in pieces)
    answer = re.sub(r"\n{3,}", "\n\n", _EMPTY_FENCE.sub("", answer)).strip(" \t\n;,")
    return answer, [c for _, _, calls in found for c in calls]


def _openings(text: str) -> list[tuple[int, int, str | None]]:
    """Every `<tool_call>` and `<function=name>` tag: (start, end, the name or None).

    What `<tool_call>|<function=([^>\\s]+)>` finds with `finditer`, without its quadratic cost
    on many unclosed `<function=`: the end of a name (the next `>` or blank) is looked up once
    and reused by every tag that starts before it.
    """
    found: list[tuple[int, int, str | None]] = []
    after = 0  # matches do not overlap: a tag inside a name is part of the name
    stop = -1  # where the last looked-up name ended (the `>` or blank after it)
    for match in _TAG.finditer(text):
        start, body = match.start(), match.end()
        if start < after:
            continue
        if match.group() == "<tool_call>":
            found.append((start, body, None))
            after = body
            continue
        if stop < body:
            ended = _NAME_END.search(text, body)
            stop = len(text) if ended is None else ended.start()
        if stop > body and stop < len(text) and text[stop] == ">":
            found.append((start, stop + 1, text[body:stop]))
            after = stop + 1
    return found


class _Spans:
    """The bare JSON calls (sorted, disjoint) and the tag blocks that replace those inside them.

    Blocks are found in text order and never overlap (a tag inside one is skipped), so each
    question is a binary search or a look at the last block.
    """

    def __init__(self, bare: list[Span]) -> None:
        self._bare = bare
        self._starts = [s[0] for s in bare]
        self._dropped = [False] * len(bare)
        self._blocks: list[Span] = []

    def covers(self, position: int) -> bool:
        if self._blocks and position < self._blocks[-1][1]:
            return True
        i = bisect.bisect_right(self._starts, position) - 1
        return i >= 0 and not self._dropped[i] and position < self._bare[i][1]

    def add_block(self, block: Span) -> None:
        first = bisect.bisect_left(self._starts, block[0])
        for i in range(first, bisect.bisect_left(self._starts, block[1])):
            self._dropped[i] = True
        self._blocks.append(block)

    def kept(self) -> list[Span]:
        bare = [s for s, dropped in zip(self._bare, self._dropped, strict=True) if not dropped]
        return sorted(bare + self._blocks, key=lambda s: s[0])


def _tagged(text: str, start: int, end: int, name: str | None, limit: int) -> Span | None:
    """The call of a `<tool_call>` or `<function=f>` block: its JSON, then the closing tag.

    A block that is not JSON right away ends at its closing tag, the next opening tag
    (`limit`) or the end of the text.
    """
    closing = "</tool_call>" if name is None else "</function>"
    body = _SPACE.match(text, end).end()  # type: ignore[union-attr]
    calls: list[ToolCall] = []
    try:
        value, stop = _decode(text, body)
    except (ValueError, RecursionError):
        # Not JSON right away (a code fence, a sentence): look inside up to the closing tag.
        found = text.find(closing, end, limit)
        stop = limit if found == -1 else found
        if name is None:
            calls = [c for _, _, got in _json_calls(text[end:stop]) for c in got]
        elif not text[end:stop].strip() and _NAME.match(name):
            calls = [ToolCall(name=name)]
    else:
        if name is None:
            calls = _calls_of(value)
        elif isinstance(value, dict) and _NAME.match(name):
            calls = [ToolCall(name=name, arguments=value)]
    if not calls:
        return None
    after = _SPACE.match(text, stop).end()  # type: ignore[union-attr]
    if text.startswith(closing, after):
        stop = after + len(closing)
    return start, stop, calls


def _json_calls(text: str) -> list[Span]:
    """Every call-shaped JSON value in `text` (objects or lists of them), with its span."""
    found: list[Span] = []
    position = 0
    while True:
        match = _START.search(text, position)
        if match is None:
            return found
        start = match.start()
        try:
            value, stop = _decode(text, start)
        except (ValueError, RecursionError):
            position = start + 1
            continue
        calls = _calls_of(value)
        if calls:
            found.append((start, stop, calls))
        position = stop if calls or isinstance(value, dict) else start + 1


def _decode(text: str, start: int) -> tuple[Any, int]:
    """`json.JSONDecoder.raw_decode(text, start)`, in time proportional to what it reads.

    A decoding error counts the lines of the whole text before it (`JSONDecodeError.lineno`),
    so failing at many places of a long text would be quadratic. The value is read from a
    window of the text instead, doubled while the window's end may be what made it fail.

    Raises:
        ValueError: no JSON value starts at `start`, or it nests deeper than `_MAX_DEPTH`.
        RecursionError: it nests deeper than Python's recursion limit, within `_WINDOW`.
    """
    size = _WINDOW
    while True:
        end = start + size
        if end >= len(text):
            if size > _WINDOW:
                _check_depth(text, start)
            return _DECODER.raw_decode(text, start)
        window = text[start:end]
        try:
            value, stop = _DECODER.raw_decode(window)
        except json.JSONDecodeError as exc:
            # Cut off by the window: the parser ran into its end (literals and numbers look a
            # few characters ahead), or a string is still open.
            if exc.pos < size - _LOOKAHEAD and not exc.msg.startswith("Unterminated string"):
                raise ValueError(f"{exc.msg} at {start + exc.pos}") from None
        else:
            if stop < size - _LOOKAHEAD:  # a number might go on past the window
                return value, start + stop
        _check_depth(window)  # before reading further into a value that may never end
        size *= 2


def _check_depth(text: str, start: int = 0) -> None:
    """Refuse a value nested deeper than `_MAX_DEPTH` before decoding it.

    Decoding one would run into Python's recursion limit, about a thousand levels down, at
    every start inside it. Strings are skipped whole (an unclosed one runs to the end).
    """
    if text[start : start + 1] not in ("[", "{"):
        return
    steps = map(_STEPS.get, _TOKEN.findall(text, start), itertools.repeat(0))
    depths = list(itertools.accumulate(steps))
    closed = depths.index(0) if 0 in depths else len(depths)  # where the value ends
    if max(depths[:closed], default=0) > _MAX_DEPTH:
        raise ValueError(f"nested deeper than {_MAX_DEPTH} levels")


def _calls_of(value: Any) -> list[ToolCall]:
    """The calls a decoded JSON value holds; none unless every item is a call."""
    if isinstance(value, list):
        calls = [_call(v) for v in value]
        return [c for c in calls if c is not None] if value and None not in calls else []
    if isinstance(value, dict) and isinstance(value.get("tool_calls"), list):
        return _calls_of(value["tool_calls"])
    call = _call(value)
    return [call] if call is not None else []


def _call(value: Any) -> ToolCall | None:
    if not isinstance(value, dict) or not value.keys() <= _CALL_KEYS:
        return None
    if isinstance(value.get("function"), Mapping):
        return _call({**value["function"], "id": value.get("id")})
    name = value.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        return None
    if "arguments" in value:
        arguments = value["arguments"]
    elif "parameters" in value:
        arguments = value["parameters"]
    elif value.get("type") == "function":
        arguments = {}
    else:
        return None  # {"name": "Ada"} is data, not a call
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, (dict, str)):
        return None
    call_id = value.get("id")
    wire = {"name": name, "arguments": arguments}
    return ToolCall.from_wire({**wire, "id": call_id} if isinstance(call_id, str) else wire)


def _python_calls(text: str) -> list[ToolCall]:
    """`[f(a=1), g(b="x")]` or `brave_search.call(query="x")`, keyword arguments only."""
    try:
        tree = ast.parse(text, mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return []
    nodes = tree.elts if isinstance(tree, ast.List) else [tree]
    calls = []
    for node in nodes:
        if not isinstance(node, ast.Call) or node.args:
            return []
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr == "call":
            func = func.value  # built-in tools: brave_search.call(query=...)
        if not isinstance(func, ast.Name) or any(k.arg is None for k in node.keywords):
            return []
        try:
            arguments = {k.arg: ast.literal_eval(k.value) for k in node.keywords if k.arg}
        except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
            return []
        try:
            json.dumps(arguments, allow_nan=False)
        except (TypeError, ValueError):  # `...`, a set, bytes, 1j: a call, but not JSON data
            written = ", ".join(ast.get_source_segment(text, k) or "" for k in node.keywords)
            calls.append(ToolCall(name=func.id, raw_arguments=written))
            continue
        calls.append(ToolCall(name=func.id, arguments=arguments))
    return calls
