"""Tool calls out of model text, in every form Llama-family and ChatML models write them.

Accepted: `{"name": f, "parameters"|"arguments": {...}}` with or without `"type": "function"`
(and the OpenAI `{"function": {...}}` shape); a leading `<|python_tag|>`; several calls
separated by `;`, newlines, or as a JSON list; `<function=f>{...}</function>`;
`<tool_call>...</tool_call>` holding one call or a list; Markdown code fences; prose before
the call; arguments given as a JSON string; a Python-style `[f(a=1), g(b="x")]` list or a
built-in `name.call(query="...")` after `<|python_tag|>`.

Text that holds no well-formed call is an answer. The parser never raises and never makes a
call up: a call needs a name and its arguments (`{}` when there are none).
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Mapping
from typing import Any

from agentkit.model_api import ToolCall

__all__ = ["parse_tool_calls"]

_SPECIAL = re.compile(r"<\|(?:python_tag|eom_id|eot_id|im_end|end_of_text)\|>")
_OPENING = re.compile(r"<tool_call>|<function=([^>\s]+)>")
_SPACE = re.compile(r"\s*")
_START = re.compile(r'\{\s*"|\[\s*\{')
_EMPTY_FENCE = re.compile(r"```[\w-]*\s*```")
_NAME = re.compile(r"^[A-Za-z_][\w.\-:/]{0,127}$")
_CALL_KEYS = {"name", "arguments", "parameters", "type", "id", "function"}
_DECODER = json.JSONDecoder()

Span = tuple[int, int, list[ToolCall]]


def parse_tool_calls(text: str) -> tuple[str, list[ToolCall]]:
    """Split model output into (the answer text without the calls, the calls).

    Never raises; text without a well-formed call comes back whole, with no calls.
    """
    spans = _json_calls(text)
    openings = list(_OPENING.finditer(text))
    for n, match in enumerate(openings):
        if _inside(match.start(), spans):
            continue  # a tag inside a call's strings is text
        limit = openings[n + 1].start() if n + 1 < len(openings) else len(text)
        tagged = _tagged(text, match, limit)
        if tagged is not None:  # the block replaces the bare calls found inside it
            spans = [s for s in spans if not tagged[0] <= s[0] < tagged[1]] + [tagged]
    if not spans:
        bare = _SPECIAL.sub("", text).strip()
        if "<|python_tag|>" in text or bare.startswith("["):
            calls = _python_calls(bare)
            if calls:
                return "", calls
        return (bare if _SPECIAL.search(text) else text), []
    spans.sort(key=lambda s: s[0])
    pieces, end = [], 0
    for start, stop, _ in spans:
        pieces.append(text[end:start])
        end = stop
    pieces.append(text[end:])
    answer = "\n".join(_SPECIAL.sub("", p).strip(" \t\n;,") for p in pieces)
    answer = re.sub(r"\n{3,}", "\n\n", _EMPTY_FENCE.sub("", answer)).strip(" \t\n;,")
    return answer, [c for _, _, calls in spans for c in calls]


def _tagged(text: str, match: re.Match[str], limit: int) -> Span | None:
    """The call of a `<tool_call>` or `<function=f>` block: its JSON, then the closing tag.

    A block that is not JSON right away ends at its closing tag, the next opening tag
    (`limit`) or the end of the text.
    """
    name = match.group(1)
    closing = "</tool_call>" if name is None else "</function>"
    body = _SPACE.match(text, match.end()).end()  # type: ignore[union-attr]
    calls: list[ToolCall] = []
    try:
        value, stop = _DECODER.raw_decode(text, body)
    except (ValueError, RecursionError):
        # Not JSON right away (a code fence, a sentence): look inside up to the closing tag.
        found = text.find(closing, match.end(), limit)
        stop = limit if found == -1 else found
        if name is None:
            calls = [c for _, _, got in _json_calls(text[match.end() : stop]) for c in got]
        elif not text[match.end() : stop].strip() and _NAME.match(name):
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
    return match.start(), stop, calls


def _inside(position: int, spans: list[Span]) -> bool:
    return any(start <= position < stop for start, stop, _ in spans)


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
            value, stop = _DECODER.raw_decode(text, start)
        except (ValueError, RecursionError):
            position = start + 1
            continue
        calls = _calls_of(value)
        if calls:
            found.append((start, stop, calls))
        position = stop if calls or isinstance(value, dict) else start + 1


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
