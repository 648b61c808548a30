"""Answer grammars on llguidance: a JSON Schema compiled by a maintained grammar engine.

```
engine_grammar(schema)                     -> EngineGrammar (llguidance's grammar, cached)
answer_engine_grammar(response_format)     -> the same for `response_format`
check_engine_format(response_format)       -> raises now what a request would raise later
```

llguidance (Microsoft's Rust grammar engine) turns a JSON Schema into a grammar its matcher
holds token by token: `pattern` (as a regular expression), `format` (`date-time`, `email`,
`uuid`, `ipv4`, ...), `multipleOf`, fractional bounds, `patternProperties`, recursion. Its
grammar is written in the same style as the hand-written GBNF builder's
(`agentkit.chat_formats.grammar`): `", "` between items, `": "` after keys, no other
whitespace; properties in the order written. Like that builder, an object with `properties` and
no word on others (`additionalProperties`, `patternProperties`) gets its declared properties
only: a small model offered any key goes on writing keys nobody asked for.

A `format` it does not know is an annotation, as in JSON Schema (a plain string); `oneOf` is
held as `anyOf` (its branches are expected to be disjoint, as the GBNF builder expects them).
What it does not implement (`not`, `if`/`then`/`else`, `dependencies`, ...) is refused with
`SchemaGrammarError` naming the keyword and its path, unless `checked_after` says a validator
checks every answer afterwards (what the Agent does); the rest of the schema is held then. A
`$ref` to nowhere, and a recursion that allows no finite value, are refused either way.

Recursion is held as deep as the answer goes when `max_ref_depth` is None. By default it unfolds
`MAX_REF_DEPTH` levels, as in the GBNF grammars (`agentkit.chat_formats._unfold`): the grammar
could go deeper, but a small model under it nests for as long as it may, and `max_tokens` cuts
the answer before it closes.

The tool-call grammars, and the grammar that allows a call or the answer object (`auto` with
tools offered), are Lark grammars that hold these schemas inside the chat format's text
(`agentkit.chat_formats.calls`), compiled by `compile_lark`.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from agentkit.chat_formats._answer_schema import MAX_REF_DEPTH, answer_schema, check_size
from agentkit.chat_formats._cycles import ref_target
from agentkit.chat_formats._examples import string_examples
from agentkit.chat_formats._unfold import unfolded
from agentkit.errors import ConfigurationError, SchemaGrammarError

__all__ = [
    "ENGINE_PACKAGE",
    "FORMATS",
    "EngineGrammar",
    "answer_engine_grammar",
    "check_engine_format",
    "clear_cache",
    "compile_lark",
    "engine_grammar",
    "json_options",
    "prepared_schema",
]

ENGINE_PACKAGE = "llguidance"
"""The PyPI package of the grammar engine (in the `local` extra)."""

STYLE: dict[str, Any] = {
    "item_separator": ", ",
    "key_separator": ": ",
    "whitespace_flexible": False,
}
"""JSON as `json.dumps` writes it, the style of the prompt's examples and of the GBNF grammars."""

FORMATS = frozenset(
    ("date-time", "date", "time", "duration", "email", "hostname", "ipv4", "ipv6", "uri", "uuid")
)
"""The `format`s the engine holds; any other is an annotation (a plain string)."""

_UNIMPLEMENTED = re.compile(r'Unimplemented keys: \["([^"]+)"')
_NO_POINTER = re.compile(r"Pointer '([^']*)' does not exist")


@dataclass(frozen=True)
class EngineGrammar:
    """A grammar in llguidance's own form, ready for its matcher (one per sequence)."""

    text: str
    """What `llguidance.LLMatcher` compiles (its JSON form, holding the schema)."""
    hints: tuple[str, ...] = ()
    """Strings the schema names or implies for its string values, shortest first: what an
    answer that must end early writes in a string that cannot simply close."""


def _llguidance() -> Any:
    try:
        import llguidance
    except ImportError:
        raise ConfigurationError(
            f"answer grammars need the {ENGINE_PACKAGE} package: pip install 'agentkit[local]'"
        ) from None
    return llguidance


def engine_grammar(
    schema: Mapping[str, Any],
    *,
    checked_after: bool = True,
    max_ref_depth: int | None = MAX_REF_DEPTH,
) -> EngineGrammar:
    """The grammar of the JSON values `schema` allows (compiled once per schema).

    Args:
        schema: a JSON Schema object.
        checked_after: keywords the engine does not implement are left to a validator that
            checks every value afterwards; when False they are refused.
        max_ref_depth: how many times a recursive `$ref` may be open inside itself (a small
            model nests as long as it may, until `max_tokens` cuts its answer); None: as deep
            as the answer goes.

    Raises:
        SchemaGrammarError: naming the keyword and its path.
        ConfigurationError: llguidance is not installed.
    """
    key = json.dumps(schema, ensure_ascii=False, separators=(",", ":"))
    return _compiled(key, checked_after, max_ref_depth)


def answer_engine_grammar(
    response_format: Mapping[str, Any],
    *,
    checked_after: bool = True,
    max_ref_depth: int | None = MAX_REF_DEPTH,
) -> EngineGrammar:
    """`engine_grammar` of the answer `response_format` asks for (`json_object`: any object).

    Raises:
        RequestValidationError: `response_format` has neither shape.
        SchemaGrammarError: see `engine_grammar`.
    """
    schema = answer_schema(response_format)
    return engine_grammar(schema, checked_after=checked_after, max_ref_depth=max_ref_depth)


def check_engine_format(
    response_format: Mapping[str, Any],
    *,
    checked_after: bool = True,
    max_ref_depth: int | None = MAX_REF_DEPTH,
) -> None:
    """Fail now for a `response_format` a request would fail for: its shape, its size shown to
    the model, a keyword the engine cannot hold (see `engine_grammar`).

    Raises:
        RequestValidationError: the shape, or a schema too large for a message.
        SchemaGrammarError: naming the keyword and its path.
    """
    check_size(response_format)
    answer_engine_grammar(response_format, checked_after=checked_after, max_ref_depth=max_ref_depth)


@functools.lru_cache(maxsize=256)
def _compiled(key: str, checked_after: bool, depth: int | None) -> EngineGrammar:
    llguidance = _llguidance()
    schema = json.loads(key)
    prepared = prepared_schema(schema, checked_after=checked_after, max_ref_depth=depth)
    text = _from_schema(prepared, checked_after)
    error = llguidance.LLMatcher.validate_grammar(text)
    if error and "Unsatisfiable" in error:
        # Closed objects can leave nothing to write (an `allOf` of two closed `$ref`s, each
        # requiring its own key): then the objects are held as the schema has them.
        loose = prepared_schema(
            schema, checked_after=checked_after, max_ref_depth=depth, close=False
        )
        loose_text = _from_schema(loose, checked_after)
        if not llguidance.LLMatcher.validate_grammar(loose_text):
            text, error = loose_text, ""
    if error:
        raise _error(schema, error)
    return EngineGrammar(text, string_examples(schema))


def _from_schema(prepared: Any, checked_after: bool) -> str:
    try:
        text: str = _llguidance().LLMatcher.grammar_from_json_schema(
            prepared, overrides=json_options(checked_after)
        )
    except ValueError as exc:  # not a JSON object at all
        raise SchemaGrammarError("$", "type", f"is not a schema llguidance reads ({exc})") from None
    return text


def clear_cache() -> None:
    """Forget every compiled answer grammar."""
    _compiled.cache_clear()


def json_options(checked_after: bool) -> dict[str, Any]:
    """llguidance's options for a JSON Schema (its `x-guidance` key inside a Lark grammar):
    agentkit's style, and `lenient` when a validator checks every value afterwards."""
    return {**STYLE, "lenient": checked_after, "coerce_one_of": True}


def prepared_schema(
    schema: Any,
    *,
    checked_after: bool = True,
    max_ref_depth: int | None = MAX_REF_DEPTH,
    close: bool = True,
) -> Any:
    """`schema` as the engine gets it: recursion unfolded `max_ref_depth` levels (None: as it
    is), objects closed (unless not `close`), unknown formats and uncountable property counts
    dropped (see the module).

    Raises:
        SchemaGrammarError: the schema allows no finite value (within the depth), or a keyword
            is refused without `checked_after`.
    """
    if not isinstance(schema, Mapping):
        return schema
    original = schema
    schema = schema if max_ref_depth is None else unfolded(schema, max_ref_depth)
    bounded = schema is not original  # recursive, and unfolded `max_ref_depth` levels
    schema = _prepared(schema, checked_after, close=close)
    # Before the engine, which would name no path: a schema with no value to end on.
    if not _has_value(schema, schema, frozenset(), [_BUDGET]):
        why = "allows no finite value"
        if bounded:
            why = f"allows no value that nests its references at most {max_ref_depth} levels deep"
        raise SchemaGrammarError("$", "$ref", why)
    return schema


def compile_lark(text: str, schema: Any = None) -> EngineGrammar:
    """A Lark grammar (with `%json` schemas inside) as llguidance's grammar, checked.

    Args:
        text: the grammar.
        schema: where to look for the path of a keyword the engine names in its refusal,
            and the strings its values may take (`EngineGrammar.hints`).

    Raises:
        SchemaGrammarError: the engine refuses the grammar.
    """
    llguidance = _llguidance()
    grammar = llguidance.LLMatcher.grammar_from_lark(text)
    error = llguidance.LLMatcher.validate_grammar(grammar)
    if error:
        raise _error(schema if schema is not None else {}, error)
    return EngineGrammar(grammar, string_examples(schema))


_OPEN = ("additionalProperties", "patternProperties", "unevaluatedProperties")
_COMBINED = ("allOf", "anyOf", "oneOf", "$ref")


def _prepared(
    schema: Any, checked_after: bool, path: str = "$", in_part: bool = False, *, close: bool = True
) -> Any:
    """`schema` as the engine gets it.

    - An object that declares `properties` and says nothing of others gets
      `additionalProperties: false`, keeping the keys its `required` names beside them (not
      the parts of an `allOf`, nor those of an `anyOf` or `oneOf` beside `properties`, which
      would refuse each other's properties; nor one beside `allOf`/`anyOf`/`oneOf`/`$ref`,
      which may bring some). An object whose `allOf` parts are all such objects is closed
      to their properties together (and its own). Subschemas that apply to the
      same object as their parent (`if`, `then`, `dependentSchemas`, ...) are left as written.
    - A `format` the engine does not know is an annotation, as JSON Schema has it: dropped.
    - `minProperties`/`maxProperties` beside optional properties, which the engine cannot
      count, are left to the validator (with `checked_after`) or refused.
    """
    if not isinstance(schema, Mapping):
        return schema
    out: dict[str, Any] = {}
    for keyword, value in schema.items():
        if keyword in _NAMED and isinstance(value, Mapping):
            out[keyword] = {
                name: _prepared(sub, checked_after, _inner(path, keyword, name), close=close)
                for name, sub in value.items()
            }
        elif keyword in _LISTS and isinstance(value, list):
            # Parts the schema's own properties meet: closing one would refuse the others'.
            part = keyword == "allOf" or (keyword != "items" and "properties" in schema)
            out[keyword] = [
                _prepared(sub, checked_after, f"{path}.{keyword}[{i}]", part, close=close)
                for i, sub in enumerate(value)
            ]
        elif keyword in _SUBSCHEMA:
            out[keyword] = _prepared(value, checked_after, f"{path}.{keyword}", close=close)
        elif keyword == "format" and value not in FORMATS:
            continue
        else:
            out[keyword] = value
    properties = schema.get("properties")
    if isinstance(properties, Mapping):
        required = schema.get("required")
        if close and not in_part and not any(k in schema for k in _OPEN + _COMBINED):
            out["additionalProperties"] = False
            # A key `required` names and `properties` does not may hold any value.
            named = [k for k in required or () if isinstance(k, str) and k not in properties]
            if named:
                out["properties"] = {**out["properties"], **dict.fromkeys(named, True)}
        optional = set(properties) - set(required if isinstance(required, list) else ())
        for keyword in ("minProperties", "maxProperties"):
            if keyword in out and optional:
                if not checked_after:
                    why = "cannot be held by a grammar beside optional properties"
                    raise SchemaGrammarError(path, keyword, why)
                del out[keyword]
    if close and not in_part:
        keys = _keys_together(schema)
        if keys is not None:
            out["properties"] = {**dict.fromkeys(keys, True), **out.get("properties", {})}
            out["additionalProperties"] = False
    return out


def _keys_together(schema: Mapping[str, Any]) -> list[str] | None:
    """The keys of an object its `allOf` parts describe together (each part's `properties`
    and `required`, and the object's own), when every part is an object of named properties
    and nothing else may bring more: the object is closed to them. Otherwise None."""
    parts = schema.get("allOf")
    if not isinstance(parts, list) or not parts:
        return None
    if any(k in schema for k in (*_OPEN, "anyOf", "oneOf", "$ref")):
        return None
    keys: list[str] = []
    for part in [schema, *parts]:
        if not isinstance(part, Mapping):
            return None
        if part is not schema and (
            not isinstance(part.get("properties"), Mapping)
            or any(k in part for k in _OPEN + _COMBINED)
        ):
            return None
        named = [*(part.get("properties") or {}), *(part.get("required") or ())]
        keys += [k for k in named if isinstance(k, str) and k not in keys]
    return keys or None  # parts that name no key say nothing of the keys


def _inner(path: str, keyword: str, name: str) -> str:
    return f"{path}.{name}" if keyword == "properties" else f"{path}.{keyword}.{name}"


_NAMED = ("properties", "patternProperties", "$defs", "definitions")
_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems", "items")
_SUBSCHEMA = ("items", "additionalProperties", "additionalItems", "unevaluatedItems")


def _error(schema: Any, message: str) -> SchemaGrammarError:
    """The engine's message as the error agentkit raises: keyword and path, when it tells."""
    first = message.strip().splitlines()[0] if message.strip() else "refused"
    if match := _UNIMPLEMENTED.search(first):
        keyword = match.group(1)
        path = next(_paths_with(schema, lambda s: keyword in s), "$")
        why = "cannot be held by a grammar (pass checked_after=True when a validator checks it)"
        return SchemaGrammarError(path, keyword, why)
    if match := _NO_POINTER.search(first):
        ref = "#" + match.group(1)
        path = next(_paths_with(schema, lambda s: s.get("$ref") == ref), "$")
        return SchemaGrammarError(path, "$ref", f"points to nothing ({ref})")
    return SchemaGrammarError("$", "schema", f"cannot be held by a grammar: {first[:300]}")


def _paths_with(schema: Any, test: Any, path: str = "$") -> Iterator[str]:
    """The paths of the subschemas that pass `test`, depth first (property names as `.name`)."""
    if not isinstance(schema, Mapping):
        return
    if test(schema):
        yield path
    for keyword, value in schema.items():
        if keyword in ("properties", "patternProperties", "$defs", "definitions") and isinstance(
            value, Mapping
        ):
            for name, sub in value.items():
                yield from _paths_with(sub, test, _inner(path, keyword, name))
        elif isinstance(value, list) and keyword not in ("enum", "required", "type"):
            for i, sub in enumerate(value):
                yield from _paths_with(sub, test, f"{path}.{keyword}[{i}]")
        elif isinstance(value, Mapping) and keyword not in ("const", "default", "examples"):
            yield from _paths_with(value, test, f"{path}.{keyword}")


_BUDGET = 10_000
"""Subschemas `_has_value` looks at before it gives up and lets the schema through."""


def _has_value(
    schema: Any, root: Mapping[str, Any], open_refs: frozenset[str], budget: list[int]
) -> bool:
    """Whether `schema` allows some finite value: a `$ref` already being unfolded on the way
    here gives none (a value must end without it); every required part needs one."""
    if schema is False:
        return False
    budget[0] -= 1
    if not isinstance(schema, Mapping) or budget[0] < 0:
        return True
    ref = schema.get("$ref")
    if isinstance(ref, str):
        target = ref_target(root, ref)
        if ref in open_refs:
            return False
        if target is not None and not _has_value(target, root, open_refs | {ref}, budget):
            return False
    parts = schema.get("allOf")
    if isinstance(parts, list) and not all(_has_value(p, root, open_refs, budget) for p in parts):
        return False
    for keyword in ("anyOf", "oneOf"):
        branches = schema.get(keyword)
        if (
            isinstance(branches, list)
            and branches
            and not any(_has_value(b, root, open_refs, budget) for b in branches)
        ):
            return False
    properties = schema.get("properties")
    required = schema.get("required")
    if isinstance(properties, Mapping) and isinstance(required, list):
        for name in required:
            if name in properties and not _has_value(properties[name], root, open_refs, budget):
                return False
    minimum = schema.get("minItems")
    if isinstance(minimum, int) and minimum > 0:
        prefix = schema.get("prefixItems")
        firsts = prefix[:minimum] if isinstance(prefix, list) else []
        if not all(_has_value(p, root, open_refs, budget) for p in firsts):
            return False
        if len(firsts) < minimum and not _has_value(schema.get("items"), root, open_refs, budget):
            return False
    return True
