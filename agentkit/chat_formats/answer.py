"""Answer grammars: a local model's final answer held to `response_format`.

```
answer_schema(response_format)                      -> the JSON Schema the answer must fit
answer_grammar(fmt, response_format)                -> GBNF: the answer object only
answer_grammar(fmt, response_format, tools, "auto") -> GBNF: tool call(s) or the answer object
with_instructions(fmt, messages, response_format)   -> messages that ask for the object
```

`response_format` has agentkit's canonical shape (the Workers AI one): `{"type": "json_object"}`
(any JSON object) or `{"type": "json_schema", "json_schema": <a JSON Schema>}`. The OpenAI shape
`{"json_schema": {"name", "schema", "strict"}}` is read too.

The grammar is the one tool calls use (`agentkit.chat_formats.grammar`), with two differences:

- recursive `$ref`s unfold at most `MAX_REF_DEPTH` levels (an optional property or the items of
  an array end there), so a small model cannot nest without end;
- `checked_after` (default True): keywords no grammar can hold (`pattern`, `multipleOf`,
  `uniqueItems`, `not`, ...) are left to a validator that checks the answer afterwards, as the
  Agent does with every structured answer (it tells the model the field errors and lets it
  retry). A caller that validates nothing afterwards passes `checked_after=False` and gets
  `SchemaGrammarError` naming the keyword and its path: nothing is silently dropped.

Grammars are compiled once per (format, schema, tools, mode) and cached (`lru_cache`); the key
is the schema's JSON text with its key order kept, since property order is the order written.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from typing import Any

from agentkit.chat_formats.base import MAX_ITEMS, MAX_STRING, ChatFormat
from agentkit.chat_formats.chatml import ChatMLFormat
from agentkit.chat_formats.grammar import NEVER, GrammarBuilder, never_error
from agentkit.errors import FieldError, RequestValidationError
from agentkit.model_api import MAX_TEXT, FunctionDefinition, Message

__all__ = [
    "MAX_REF_DEPTH",
    "answer_grammar",
    "answer_schema",
    "check_format",
    "check_size",
    "clear_grammar_cache",
    "grammar_cache_info",
    "instructions",
    "is_call",
    "with_instructions",
]

MAX_REF_DEPTH = 3
"""How many levels deep a recursive `$ref` unfolds in an answer grammar."""
_ANY_OBJECT: Mapping[str, Any] = {"type": "object"}


def answer_schema(response_format: Mapping[str, Any]) -> Mapping[str, Any]:
    """The JSON Schema an answer in `response_format` must fit (`json_object`: any object).

    Raises:
        RequestValidationError: `response_format` is not one of the two shapes; the error names
            the field (`response_format.type`, `response_format.json_schema`) and the value.
    """
    if not isinstance(response_format, Mapping):
        raise _bad("response_format", "must be an object", response_format)
    kind = response_format.get("type")
    if kind == "json_object":
        return _ANY_OBJECT
    if kind != "json_schema":
        raise _bad("response_format.type", 'must be "json_object" or "json_schema"', kind)
    schema = response_format.get("json_schema")
    if isinstance(schema, Mapping) and isinstance(schema.get("schema"), Mapping):
        schema = schema["schema"]  # the OpenAI shape {name, schema, strict}
    if not isinstance(schema, Mapping) or isinstance(schema, bool):
        raise _bad("response_format.json_schema", "must be a JSON Schema object", schema)
    return schema


def _bad(path: str, why: str, value: Any) -> RequestValidationError:
    shown = json.dumps(value, ensure_ascii=False, default=repr)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return RequestValidationError([FieldError(path, f"{why} (got {shown})")])


def _key(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise _bad("response_format", "must be plain JSON", repr(exc)) from None


def answer_grammar(
    fmt: ChatFormat,
    response_format: Mapping[str, Any],
    tools: Sequence[FunctionDefinition] = (),
    tool_choice: str = "none",
    *,
    parallel: bool = False,
    checked_after: bool = True,
) -> str:
    """GBNF for the answer object, or (with tools and `tool_choice` `auto`) for either the
    format's tool call(s) or the answer object, whichever the model starts.

    Args:
        fmt: The chat format; it decides how a call is written.
        response_format: `{"type": "json_object"}` or `{"type": "json_schema", ...}`.
        tools: The tools offered; used only with `tool_choice="auto"`.
        tool_choice: `auto` offers calls beside the answer; anything else the answer only
            (`required` and a tool's name need no answer grammar: the call grammar holds).
        parallel: Several calls in one turn.
        checked_after: Leave keywords no grammar can hold to a validator (see the module).

    Raises:
        RequestValidationError: `response_format` has neither shape.
        SchemaGrammarError: the schema (or a tool's) cannot be held; names keyword and path.
    """
    schema_key = _key(answer_schema(response_format))
    offered = tuple(tools) if tools and tool_choice == "auto" else ()
    tools_key = _key([[t.name, t.parameters] for t in offered])
    return _compiled(fmt, schema_key, tools_key, parallel, checked_after)


@functools.lru_cache(maxsize=256)
def _compiled(
    fmt: ChatFormat, schema_key: str, tools_key: str, parallel: bool, checked_after: bool
) -> str:
    schema = json.loads(schema_key)
    builder = GrammarBuilder(checked_after=checked_after, max_ref_depth=MAX_REF_DEPTH)
    answer = builder.visit(schema, "$", schema, "answer")
    if answer == NEVER:
        raise never_error("$", MAX_REF_DEPTH)
    tools = [
        FunctionDefinition(name=name, description="", parameters=parameters)
        for name, parameters in json.loads(tools_key)
    ]
    if not tools:
        return builder.text(answer)
    # The calls as `call_grammar` writes them (its bounds, arguments checked after).
    builder.checked_after, builder.max_ref_depth = True, None
    builder.max_string, builder.max_items = MAX_STRING, MAX_ITEMS
    calls = fmt.call_expression(builder, tools, "auto", parallel=parallel)
    return builder.text(f"{calls} | {answer}")


def grammar_cache_info() -> functools._CacheInfo:
    """Hits and misses of the answer grammar cache."""
    return _compiled.cache_info()


def clear_grammar_cache() -> None:
    """Forget every compiled answer grammar (benchmarks time cold compiles with it)."""
    _compiled.cache_clear()


def is_call(fmt: ChatFormat, text: str, tools: Sequence[FunctionDefinition]) -> bool:
    """Whether `text`, written under an `auto` answer grammar, is tool calls (else the answer).

    A format that wraps calls (ChatML's `<tool_call>`) tells by the wrapper. One that writes a
    bare JSON call (Llama 3's `{"name": ..., "parameters": ...}`) tells by the shape: an object
    with exactly those two keys, naming an offered tool, is a call.
    """
    before = fmt.wrap_call("\0").split("\0")[0]
    if before:
        return text.startswith(before)
    answer, calls = fmt.parse(text)
    names = {t.name for t in tools}
    return bool(calls) and not answer and all(c.name in names for c in calls)


def instructions(response_format: Mapping[str, Any]) -> str:
    """What the prompt tells the model about the answer's form."""
    schema = answer_schema(response_format)
    if schema is _ANY_OBJECT:
        return "Your final answer to the user is a JSON object."
    shown = json.dumps(schema, ensure_ascii=False, separators=(",", ":"))
    return f"Your final answer to the user is a JSON object that fits this JSON Schema:\n{shown}"


def with_instructions(
    fmt: ChatFormat, messages: Sequence[Message], response_format: Mapping[str, Any]
) -> list[Message]:
    """`messages` with the answer's form stated in the system message (added when there is
    none: after the format's default system prompt, if it has one)."""
    text = instructions(response_format)
    out = list(messages)
    if out and out[0].role == "system":
        _fits(f"{out[0].content}\n\n{text}")
        out[0] = out[0].model_copy(update={"content": f"{out[0].content}\n\n{text}"})
        return out
    default = getattr(fmt, "system_prompt", None)
    text = f"{default}\n\n{text}" if default else text
    _fits(text)
    return [Message.system(text), *out]


def _fits(system: str) -> None:
    """Refuse a schema whose text makes the system message longer than a message may be."""
    if len(system) <= MAX_TEXT:
        return
    raise RequestValidationError(
        [
            FieldError(
                "response_format.json_schema",
                f"is too large for the model's context: the system message that shows it to "
                f"the model would take {len(system):,} characters, more than the "
                f"{MAX_TEXT:,} a message holds",
            )
        ]
    )


def check_format(response_format: Mapping[str, Any], *, checked_after: bool = True) -> None:
    """Compile the answer grammar now, so a schema no grammar can hold fails before any request.

    Raises:
        RequestValidationError: `response_format` has neither shape, or its schema is too
            large to be shown to the model (the sizes named).
        SchemaGrammarError: naming the keyword and its path; a schema whose grammar would
            pass `MAX_RULES` rules names the place it got there.
    """
    check_size(response_format)
    answer_grammar(_CHECKER, response_format, checked_after=checked_after)


def check_size(response_format: Mapping[str, Any]) -> None:
    """Refuse a `response_format` whose schema, shown to the model, is longer than a message.

    Raises:
        RequestValidationError: it has neither shape, or it is too large (the sizes named).
    """
    _fits(instructions(response_format))


_CHECKER = ChatMLFormat()
