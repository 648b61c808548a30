"""Tool-call grammars on the grammar engine: a Lark grammar with each tool's schema inside.

```
call_engine_grammar(tools, wrapping, ...)              -> the text of one call (or several)
call_engine_grammar(tools, wrapping, ..., answer=...)  -> calls, or the answer object instead
```

A call is the JSON object the chat format writes, `{"name": <the tool>, <arguments key>:
<arguments>}`, held as one `%json` schema of its own: the name a `const`, the arguments the
tool's parameters schema, prepared as `agentkit.chat_formats.engine` prepares an answer's
(objects closed, unknown formats dropped, uncountable property counts left to the validator),
in the same style (`", "` between items, `": "` after keys, keys in the order written). The
format's wrapper (ChatML's `<tool_call>\\n` ... `\\n</tool_call>`) and separator (`"; "`, `"\\n"`)
are literal text around it.

Every schema in one grammar has the same options, so llguidance merges their lexers: where a
Llama 3 call and an answer object both begin with `{`, the grammar is the union of the two,
as an `anyOf` would be, and the text decides.

A call's arguments are checked by the tool before it runs, so keywords the engine does not
implement are left to that check (`checked_after`); everything else is held: `pattern`,
`format`, `multipleOf`, fractional bounds, `patternProperties`, recursion (`CALL_REF_DEPTH`
levels deep).
Strings and arrays without their own bound get one (`max_string`, `max_items`): a small model
sometimes never closes a quote or a list, and the bound makes it, long before `max_tokens`
would cut the call in half.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agentkit.chat_formats._examples import string_examples
from agentkit.chat_formats._unfold import MAX_NESTING
from agentkit.chat_formats.engine import (
    EngineGrammar,
    compile_lark,
    engine_grammar,
    json_options,
    prepared_schema,
)
from agentkit.errors import SchemaGrammarError
from agentkit.model_api import FunctionDefinition
from agentkit.tools.formats import normalize_definition

__all__ = [
    "CALL_REF_DEPTH",
    "MAX_DEPTH",
    "CallBounds",
    "Wrapping",
    "cache_info",
    "call_engine_grammar",
    "check_call_schema",
    "clear_cache",
]

MAX_DEPTH = 64
"""Parameters nested deeper than this (properties in properties, items in items, ...) are
refused: no call needs it, and preparing the schema walks it recursively."""
CALL_REF_DEPTH = MAX_NESTING
"""How many levels a recursive `$ref` of a call's arguments unfolds to (the engine holds no
recursion through a `$ref` with sibling keywords, and a small model nests as long as it may)."""
_VALUES = ("const", "enum", "default", "examples")
"""Keywords whose values are data, never schemas: left as they are."""


@dataclass(frozen=True)
class Wrapping:
    """How a chat format writes the calls of one turn."""

    arguments_key: str
    """The key of a call's arguments (`parameters`, `arguments`)."""
    before: str = ""
    """Text before each call's JSON."""
    after: str = ""
    """Text after each call's JSON."""
    separator: str = "\n"
    """Text between two calls."""


@dataclass(frozen=True)
class CallBounds:
    """What a call may hold beyond its tool's schema."""

    max_calls: int = 1
    """The most calls in one turn."""
    max_string: int | None = None
    """The most characters of a string argument without its own `maxLength`; None: no bound."""
    max_items: int | None = None
    """The most items of an array argument without its own `maxItems`; None: no bound."""
    checked_after: bool = True
    """Keywords the engine does not implement are left to the tool's validator (else refused)."""


def check_call_schema(
    name: str, parameters: Mapping[str, Any], checked_after: bool = True
) -> Mapping[str, Any]:
    """Compile one tool's parameters alone (normalized first), so a refusal names the tool and
    the path; returns the normalized schema.

    Raises:
        SchemaGrammarError: with the path `<tool>.parameters.<...>`.
    """
    schema: Mapping[str, Any] = normalize_definition({"name": name, "parameters": parameters})[0][
        "parameters"
    ]
    too_deep = _too_deep(schema, "$", MAX_DEPTH)
    if too_deep is not None:
        why = f"nests deeper than {MAX_DEPTH} levels"
        raise SchemaGrammarError(f"{name}.parameters{too_deep[1:]}", "schema", why)
    try:
        engine_grammar(schema, checked_after=checked_after, max_ref_depth=CALL_REF_DEPTH)
    except SchemaGrammarError as exc:
        raise SchemaGrammarError(
            f"{name}.parameters{exc.path[1:]}", exc.keyword, exc.reason
        ) from None
    return schema


def call_engine_grammar(
    tools: Sequence[FunctionDefinition],
    wrapping: Wrapping,
    bounds: CallBounds,
    *,
    answer: Mapping[str, Any] | None = None,
    answer_checked_after: bool = True,
    answer_ref_depth: int | None = None,
) -> EngineGrammar:
    """The grammar of one turn's calls to `tools` (compiled once per tools and options).

    Args:
        tools: The tools that may be called (their parameters are normalized first: BFCL's
            `dict`, `float`, ... become standard types).
        wrapping: How the format writes calls.
        bounds: How many calls, and the bounds of unbounded arguments.
        answer: A JSON Schema: the grammar allows this object instead of the calls.
        answer_checked_after: The answer's unimplemented keywords are left to a validator.
        answer_ref_depth: How deep the answer's recursive references unfold (None: as deep as
            the answer goes).

    Raises:
        SchemaGrammarError: a tool's parameters (named, with the path) or the answer's schema
            cannot be held.
    """
    key = json.dumps(
        [[t.name, t.parameters] for t in tools], ensure_ascii=False, separators=(",", ":")
    )
    answer_key = None if answer is None else json.dumps(answer, ensure_ascii=False)
    return _compiled(key, wrapping, bounds, answer_key, answer_checked_after, answer_ref_depth)


@functools.lru_cache(maxsize=256)
def _compiled(
    tools_key: str,
    wrapping: Wrapping,
    bounds: CallBounds,
    answer_key: str | None,
    answer_checked_after: bool,
    answer_ref_depth: int | None,
) -> EngineGrammar:
    options = json_options(bounds.checked_after)
    rules = []
    tools = json.loads(tools_key)
    for i, (name, parameters) in enumerate(tools):
        schema = check_call_schema(name, parameters, bounds.checked_after)
        held = prepared_schema(
            schema, checked_after=bounds.checked_after, max_ref_depth=CALL_REF_DEPTH
        )
        held = _rebased(_bounded(held, bounds), f"#/properties/{wrapping.arguments_key}")
        call = {
            "type": "object",
            "properties": {"name": {"const": name}, wrapping.arguments_key: held},
            "required": ["name", wrapping.arguments_key],
            "additionalProperties": False,
            "x-guidance": options,
        }
        rules.append(f"call-{i}: %json {json.dumps(call, ensure_ascii=False)}")
    alternatives = " | ".join(f"call-{i}" for i in range(len(rules)))
    one = " ".join(
        part
        for part in (_literal(wrapping.before), f"( {alternatives} )", _literal(wrapping.after))
        if part
    )
    calls = "one-call"
    if bounds.max_calls > 1:
        calls += f" ( {_literal(wrapping.separator)} one-call ){{0,{bounds.max_calls - 1}}}"
    lines = [f"start: {calls}", f"one-call: {one}", *rules]
    answer = None
    if answer_key is not None:
        answer = json.loads(answer_key)
        held_answer = prepared_schema(
            answer, checked_after=answer_checked_after, max_ref_depth=answer_ref_depth
        )
        if isinstance(held_answer, Mapping):
            # The same lexer as the calls' (see the module): llguidance merges equal options.
            held_answer = {**held_answer, "x-guidance": options}
        lines[0] = f"start: calls | answer\ncalls: {calls}"
        lines.append(f"answer: %json {json.dumps(held_answer, ensure_ascii=False)}")
    grammar = compile_lark("\n".join(lines) + "\n", answer)
    # What a call or answer ended early writes in a string: from any tool's schema, or the answer's.
    schemas = [parameters for _, parameters in tools]
    return dataclasses.replace(grammar, hints=string_examples([answer, *schemas]))


def cache_info() -> functools._CacheInfo:
    """Hits and misses of the call grammar cache."""
    return _compiled.cache_info()


def clear_cache() -> None:
    """Forget every compiled call grammar."""
    _compiled.cache_clear()


def _too_deep(schema: Any, path: str, room: int) -> str | None:
    """The path of the first subschema nested `room` levels below `schema`, if any."""
    if not isinstance(schema, Mapping):
        return None
    if room == 0:
        return path
    for keyword, value in schema.items():
        if keyword in _VALUES:
            continue
        if keyword in ("properties", "patternProperties", "$defs", "definitions") and isinstance(
            value, Mapping
        ):
            inner = [
                (f"{path}.{k}" if keyword == "properties" else f"{path}.{keyword}.{k}", v)
                for k, v in value.items()
            ]
        elif isinstance(value, list):
            inner = [(f"{path}.{keyword}[{i}]", v) for i, v in enumerate(value)]
        else:
            inner = [(f"{path}.{keyword}", value)]
        for where, sub in inner:
            found = _too_deep(sub, where, room - 1)
            if found is not None:
                return found
    return None


def _literal(text: str) -> str:
    """`text` as a Lark string literal (JSON's escapes; "" for no text)."""
    return json.dumps(text, ensure_ascii=False) if text else ""


def _bounded(schema: Any, bounds: CallBounds) -> Any:
    """`schema` with `maxLength` on strings and `maxItems` on arrays that have none (not on a
    string with a `pattern` or `format`, which bound it already or whose regular expression
    the bound would only make larger)."""
    out = _inner_mapped(schema, lambda sub: _bounded(sub, bounds))
    if not isinstance(schema, Mapping):
        return out
    kinds = schema.get("type")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    if (
        "string" in kinds
        and bounds.max_string is not None
        and not any(k in schema for k in ("maxLength", "pattern", "format", *_VALUES[:2]))
    ):
        out["maxLength"] = max(bounds.max_string, _count(schema.get("minLength")))
    if "array" in kinds and bounds.max_items is not None and "maxItems" not in schema:
        out["maxItems"] = max(bounds.max_items, _count(schema.get("minItems")))
    return out


def _inner_mapped(schema: Any, change: Callable[[Any], Any]) -> Any:
    """`schema` with `change` applied to what it holds (a list's items, an object's values but
    data: `const`, `enum`, ...)."""
    if isinstance(schema, list):
        return [change(item) for item in schema]
    if not isinstance(schema, Mapping):
        return schema
    return {k: v if k in _VALUES else change(v) for k, v in schema.items()}


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _rebased(schema: Any, base: str) -> Any:
    """`schema` with its local references (`#...`) pointing into it at `base`, where it now
    sits inside the call's schema."""
    out = _inner_mapped(schema, lambda sub: _rebased(sub, base))
    if not isinstance(schema, Mapping):
        return out
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#"):
        out["$ref"] = base + ref[1:]
    return out
