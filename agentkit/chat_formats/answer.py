"""Answer grammars: a local model's final answer held to `response_format`.

```
answer_schema(response_format)                      -> the JSON Schema the answer must fit
answer_grammar(fmt, response_format)                -> the answer object only
answer_grammar(fmt, response_format, tools, "auto") -> tool call(s) or the answer object
with_instructions(fmt, messages, response_format)   -> messages that ask for the object
```

`response_format` has agentkit's canonical shape (the Workers AI one): `{"type": "json_object"}`
(any JSON object) or `{"type": "json_schema", "json_schema": <a JSON Schema>}`. The OpenAI shape
`{"json_schema": {"name", "schema", "strict"}}` is read too.

Grammars are compiled by the grammar engine, llguidance: the answer alone by
`agentkit.chat_formats.engine`, a call or the answer by `agentkit.chat_formats.calls` (one
Lark grammar holding the calls' schemas and the answer's). In both:

- recursive `$ref`s unfold at most `MAX_REF_DEPTH` levels (an optional property or the items of
  an array end there), so a small model cannot nest without end;
- `checked_after` (default True): keywords the engine does not implement (`not`,
  `if`/`then`/`else`, `uniqueItems`, ...) are left to a validator that checks the answer
  afterwards, as the Agent does with every structured answer (it tells the model the field
  errors and lets it retry). A caller that validates nothing afterwards passes
  `checked_after=False` and gets `SchemaGrammarError` naming the keyword and its path: nothing
  is silently dropped. `pattern`, `format`, `multipleOf` and fractional bounds are held.

Grammars are compiled once per (format, schema, tools, mode) and cached (`lru_cache`); the key
is the schema's JSON text with its key order kept, since property order is the order written.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from agentkit.chat_formats import calls, engine
from agentkit.chat_formats._answer_schema import (
    MAX_REF_DEPTH,
    answer_schema,
    check_size,
    fits,
    instructions,
    json_key,
)
from agentkit.chat_formats.base import MAX_ITEMS, MAX_PARALLEL_CALLS, MAX_STRING, ChatFormat
from agentkit.chat_formats.calls import CallBounds, call_engine_grammar
from agentkit.chat_formats.engine import EngineGrammar, answer_engine_grammar, check_engine_format
from agentkit.model_api import FunctionDefinition, Message

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


def answer_grammar(
    fmt: ChatFormat,
    response_format: Mapping[str, Any],
    tools: Sequence[FunctionDefinition] = (),
    tool_choice: str = "none",
    *,
    parallel: bool = False,
    checked_after: bool = True,
    max_ref_depth: int | None = MAX_REF_DEPTH,
) -> EngineGrammar:
    """The grammar engine's grammar of the answer object, or (with tools and `tool_choice`
    `auto`) of either the format's tool call(s) or the answer object, whichever the model
    starts.

    Args:
        fmt: The chat format; it decides how a call is written.
        response_format: `{"type": "json_object"}` or `{"type": "json_schema", ...}`.
        tools: The tools offered; used only with `tool_choice="auto"`.
        tool_choice: `auto` offers calls beside the answer; anything else the answer only
            (`required` and a tool's name need no answer grammar: the call grammar holds).
        parallel: Several calls in one turn.
        checked_after: Leave keywords the engine does not implement to a validator (see the
            module); the calls' arguments are always checked by their tools.
        max_ref_depth: How deep the answer's recursive references unfold (None: no bound).

    Raises:
        RequestValidationError: `response_format` has neither shape.
        SchemaGrammarError: the schema (or a tool's) cannot be held; names keyword and path.
    """
    schema = answer_schema(response_format)
    offered = list(tools) if tools and tool_choice == "auto" else []
    if not offered:
        return answer_engine_grammar(
            response_format, checked_after=checked_after, max_ref_depth=max_ref_depth
        )
    json_key(schema)  # plain JSON, or the error names `response_format`
    bounds = CallBounds(
        max_calls=MAX_PARALLEL_CALLS if parallel else 1,
        max_string=MAX_STRING,
        max_items=MAX_ITEMS,
    )
    return call_engine_grammar(
        offered,
        fmt.wrapping,
        bounds,
        answer=schema,
        answer_checked_after=checked_after,
        answer_ref_depth=max_ref_depth,
    )


def grammar_cache_info() -> functools._CacheInfo:
    """Hits and misses of the grammar cache of calls or the answer (with tools offered)."""
    return calls.cache_info()


def clear_grammar_cache() -> None:
    """Forget every compiled answer and call grammar (benchmarks time cold compiles with it)."""
    calls.clear_cache()
    engine.clear_cache()


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


def with_instructions(
    fmt: ChatFormat,
    messages: Sequence[Message],
    response_format: Mapping[str, Any],
    fits_in: Callable[[str], bool] | None = None,
) -> list[Message]:
    """`messages` with the answer's form stated in the system message (added when there is
    none: after the format's default system prompt, if it has one); `fits_in` tells whether
    a statement of it fits (see `instructions`)."""
    text = instructions(response_format, fits_in)
    out = list(messages)
    if out and out[0].role == "system":
        fits(f"{out[0].content}\n\n{text}")
        out[0] = out[0].model_copy(update={"content": f"{out[0].content}\n\n{text}"})
        return out
    default = getattr(fmt, "system_prompt", None)
    text = f"{default}\n\n{text}" if default else text
    fits(text)
    return [Message.system(text), *out]


def check_format(response_format: Mapping[str, Any], *, checked_after: bool = True) -> None:
    """Compile the answer grammar now, so a schema the engine cannot hold fails before any
    request.

    Raises:
        RequestValidationError: `response_format` has neither shape, or its schema is too
            large to be shown to the model (the sizes named).
        SchemaGrammarError: naming the keyword and its path.
    """
    check_engine_format(response_format, checked_after=checked_after)
