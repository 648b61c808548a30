"""JSON Schema -> GBNF, the grammar language of llama.cpp, for llama.cpp hosts outside agentkit.

The local runtime holds calls and answers with the grammar engine (`agentkit.chat_formats.engine`,
`agentkit.chat_formats.calls`); this builder is what the engine cannot be: GBNF text.

The grammar writes JSON in one canonical style, the style `json.dumps` uses: `", "` between
items, `": "` after keys, no other whitespace. A tiny model left free to choose its spacing
drifts into endless blanks; one fixed style also matches the calls rendered in the prompt.

Every keyword that constrains a value is either held by the grammar or refused with
`SchemaGrammarError`, naming the keyword and its path. Nothing silently becomes "any JSON":
only `{}` and `true` mean any value. What the grammar holds:

- `type` (one or a list; `nullable: true` adds `null`), `enum`, `const` (any JSON value),
  `anyOf`, `oneOf` (as alternatives; branches are expected to be disjoint), `allOf` (merged when
  the parts do not overlap; their `properties` and `required` lists join), local `$ref` into
  `$defs`/`definitions` or to `#` (recursion allowed; a builder given `max_ref_depth` unfolds a
  recursive reference that many levels deep and leaves it out below: an optional property or
  an array's items end there, a required one makes its branch impossible);
- objects: `properties` in their order, `required` (optional ones may be left out),
  `additionalProperties` (`false`, `true` or a schema); `minProperties`/`maxProperties` of an
  object with no declared properties (a dictionary). With `properties` and no
  `additionalProperties`, only the declared properties are written: extra keys would be
  dropped or refused by the tool anyway;
- strings: `minLength`, `maxLength`, `format` `date`, `time`, `date-time`, `uuid` (other
  formats are annotations in JSON Schema and stay plain strings), escapes as JSON has them;
- integers: `minimum`, `maximum`, `exclusiveMinimum`, `exclusiveMaximum` (exactly); numbers:
  the same bounds when they are whole numbers (with `checked_after`, a bound such as 0.5 is
  held as the whole number just outside it); at most 16 digits before the point;
- arrays: `items`, `prefixItems` (all written), `minItems`, `maxItems`.

Keywords a grammar cannot hold (`pattern`, `multipleOf`, `uniqueItems`, `not`, ...) raise, unless
the caller passes `checked_after=True` to say a validator checks every value afterwards (the
agent validates each call's arguments with the tool's own schema before running it); the
grammar then holds the rest of the schema.

`GrammarBuilder` walks the schema; the rules it writes are named, shared and counted by
`RuleSet` (`_rules.py`, which knows GBNF and nothing of JSON Schema), and what needs the schema
alone (which keywords are held, `allOf` merged, counts) is read by `_keywords.py`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from agentkit.chat_formats._cycles import ref_cycles, ref_target
from agentkit.chat_formats._gbnf import class_char, gbnf_literal, int_range
from agentkit.chat_formats._keywords import (
    ANNOTATIONS,
    NUMERIC,
    TYPE_HINTS,
    UNHELD,
    count,
    fits_type,
    merge_all_of,
)
from agentkit.chat_formats._rules import FORMATS, JSON_CHAR, RuleSet, seq
from agentkit.chat_formats._rules import MAX_RULES as MAX_RULES
from agentkit.chat_formats._rules import NEVER as NEVER
from agentkit.chat_formats._rules import REPEAT_BLOCK as REPEAT_BLOCK
from agentkit.errors import SchemaGrammarError

__all__ = ["SchemaGrammarError", "gbnf_literal", "schema_to_gbnf"]

MAX_INT_DIGITS = 16
MAX_REF_NESTING = 12
"""The most levels references that refer to each other unfold to, with a `max_ref_depth`."""
MAX_DEPTH = 64
"""Schemas nested deeper than this (properties in properties, items in items, ...) are refused:
no call needs it, and the builder would otherwise run into Python's recursion limit."""


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


class GrammarBuilder(RuleSet):
    """Collects rules for one grammar; several schemas can share it (one rule per shape).

    Args:
        checked_after: keywords a grammar cannot hold are left to a validator, not refused.
        max_string: the most characters of a string without its own `maxLength`.
        max_items: the most items of an array without its own `maxItems`.
        max_ref_depth: how many times one `$ref` may be open inside itself; None: no bound
            (GBNF recursion, as deep as the model goes). References that refer to each other
            (a cycle of n definitions) may be open `max_ref_depth` * n times in all, at most
            `MAX_REF_NESTING`: one rule per definition and level, not one per combination of
            the levels of each, which grows exponentially with n.
        max_rules: past this many rules (and `enum` values), `SchemaGrammarError`.
    """

    def __init__(
        self,
        *,
        checked_after: bool = False,
        max_string: int | None = None,
        max_items: int | None = None,
        max_ref_depth: int | None = None,
        max_rules: int = MAX_RULES,
    ) -> None:
        super().__init__(max_rules=max_rules)
        self.checked_after = checked_after
        self._cycles: dict[int, dict[str, tuple[int, int]]] = {}
        self._roots: dict[int, Mapping[str, Any]] = {}
        self.max_string = max_string
        self.max_items = max_items
        self.max_ref_depth = max_ref_depth
        self._refs: dict[tuple[int, str, str, int], str] = {}
        self._open: list[str] = []
        """The references being unfolded, outermost first (with `max_ref_depth`)."""
        self._depth = 0

    def visit(self, schema: Any, path: str, root: Mapping[str, Any], hint: str) -> str:
        """A GBNF expression (usually a rule name) for the values `schema` allows.

        Raises:
            SchemaGrammarError: a keyword the grammar cannot hold, or a schema nested deeper
                than `MAX_DEPTH` levels; named, with its path.
        """
        if self._depth >= MAX_DEPTH:
            raise SchemaGrammarError(path, "schema", f"nests deeper than {MAX_DEPTH} levels")
        self.at = (path, "schema")
        self.spend(0, path, "schema")
        self._depth += 1
        try:
            return self._visit(schema, path, root, hint)
        finally:
            self._depth -= 1

    def _visit(self, schema: Any, path: str, root: Mapping[str, Any], hint: str) -> str:
        if schema is True or schema == {}:
            return self.base("value")
        if schema is False:
            raise SchemaGrammarError(path, "false", "allows no value at all")
        if not isinstance(schema, Mapping):
            raise SchemaGrammarError(path, "schema", f"must be an object (got {_json(schema)})")
        schema = merge_all_of(schema, path)
        unheld = UNHELD & schema.keys()
        if not (schema.get("properties") or schema.get("required")):
            unheld -= {"minProperties", "maxProperties"}  # held for a dictionary (see _object)
        if not self.checked_after:
            for key in sorted(unheld):
                raise SchemaGrammarError(
                    path,
                    key,
                    "cannot be held by a grammar (pass checked_after=True when a "
                    "validator checks the values afterwards)",
                )
        if schema.get("nullable") is True:
            rest = {k: v for k, v in schema.items() if k != "nullable"}
            inner = self.visit(rest, path, root, hint)
            return "null" if inner == NEVER else self.rule(f"{hint}-or-null", f"{inner} | null")
        if "$ref" in schema:
            return self._ref(schema, path, root, hint)
        if "const" in schema:
            return self.rule(hint, gbnf_literal(_json(schema["const"])))
        if "enum" in schema:
            values = schema["enum"]
            if not isinstance(values, list) or not values:
                raise SchemaGrammarError(path, "enum", "must be a non-empty list")
            self.spend(len(values), path, "enum")
            kept = [v for v in values if fits_type(v, schema.get("type"))]
            if not kept:
                raise SchemaGrammarError(path, "enum", "no value has the schema's type")
            return self.rule(hint, " | ".join(gbnf_literal(_json(v)) for v in kept))
        for key in ("anyOf", "oneOf"):
            if key in schema:
                rest = {k: v for k, v in schema.items() if k != key}
                branches = [
                    self.visit(
                        {**rest, **branch} if isinstance(branch, Mapping) else branch,
                        f"{path}.{key}[{i}]",
                        root,
                        f"{hint}-{i}",
                    )
                    for i, branch in enumerate(schema[key])
                ]
                if not branches:
                    raise SchemaGrammarError(path, key, "must list at least one schema")
                return self.either(hint, branches)
        kind = schema.get("type")
        if kind is None:
            kind = next((t for t, keys in TYPE_HINTS if any(k in schema for k in keys)), None)
            if kind is None:
                return self.base("value")
        if isinstance(kind, list):
            if not kind:
                raise SchemaGrammarError(path, "type", "an empty list allows no value")
            alts = [self._typed(t, schema, path, root, f"{hint}-{t}") for t in kind]
            return self.either(hint, alts)
        return self._typed(kind, schema, path, root, hint)

    def _ref(self, schema: Mapping[str, Any], path: str, root: Mapping[str, Any], hint: str) -> str:
        ref = str(schema["$ref"])
        match = re.fullmatch(r"#/(\$defs|definitions)/([^/]+)", ref)
        target = ref_target(root, ref)
        if target is None:
            raise SchemaGrammarError(path, "$ref", f"{ref!r} points to no local definition")
        siblings = {k: v for k, v in schema.items() if k != "$ref" and k not in ANNOTATIONS}
        # One rule per reference and siblings: a definition that refers to itself (with the
        # same siblings or none) refers to its own rule, as GBNF allows, instead of unfolding.
        # With a depth bound, what a reference on a cycle allows depends on how many of its
        # cycle's references are open around it (those of other cycles cannot be reached from
        # it again): one rule per level, and none past the bound.
        context = 0
        if self.max_ref_depth is not None:
            if id(root) not in self._cycles:
                self._cycles[id(root)] = ref_cycles(root)
            cycles = self._cycles[id(root)]
            if ref in cycles:
                number, size = cycles[ref]
                context = sum(cycles.get(r, (-1, 0))[0] == number for r in self._open)
                if context >= min(self.max_ref_depth * size, MAX_REF_NESTING):
                    return NEVER
        self._roots.setdefault(id(root), root)  # kept, so no other schema takes its id
        key = (id(root), ref, _json(siblings) if siblings else "", context)
        if key not in self._refs:
            label = match.group(2) if match else "root-ref"
            name = self.rule(label, f"__pending_{len(self._refs)}")
            self._refs[key] = name  # set first: the definition may refer to itself
            merged = {**target, **siblings} if siblings else target
            self._open.append(ref)
            try:
                body = self.visit(merged, f"{path}.$ref", root, f"{name}-body")
            finally:
                self._open.pop()
            self.settle(name, body)
            if body == NEVER:
                self._refs[key] = NEVER
        return self._refs[key]

    def _typed(
        self, kind: Any, schema: Mapping[str, Any], path: str, root: Mapping[str, Any], hint: str
    ) -> str:
        if kind == "string":
            return self._string(schema, path, hint)
        if kind in ("integer", "number"):
            return self._number(kind, schema, path, hint)
        if kind in ("boolean", "null"):
            return self.base(kind)
        if kind == "object":
            return self._object(schema, path, root, hint)
        if kind == "array":
            return self._array(schema, path, root, hint)
        raise SchemaGrammarError(path, "type", f"unknown type {_json(kind)}")

    def _string(self, schema: Mapping[str, Any], path: str, hint: str) -> str:
        fmt = schema.get("format")
        if fmt in FORMATS:
            return self.rule(f"{fmt}-string", f'"\\"" {FORMATS[fmt]} "\\""')
        low, high = count(schema, "minLength", path) or 0, count(schema, "maxLength", path)
        if high is None and self.max_string is not None:
            high = max(low, self.max_string)
        if low == 0 and high is None:
            return self.base("string")
        chars = self.repeat(self.base("char"), low, high, path, "minLength")
        return self.rule(hint, f'"\\"" {chars} "\\""')

    def _number(self, kind: str, schema: Mapping[str, Any], path: str, hint: str) -> str:
        bounds = {k: schema[k] for k in NUMERIC if k in schema}
        if not bounds:
            return self.base(kind)
        for key, value in bounds.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise SchemaGrammarError(f"{path}.{key}", key, f"must be a number (got {value!r})")
        limit = 10**MAX_INT_DIGITS - 1
        if kind == "number":
            for key, value in list(bounds.items()):
                if value == math.floor(value) and abs(value) <= limit:
                    continue
                if not self.checked_after:
                    raise SchemaGrammarError(
                        f"{path}.{key}",
                        key,
                        f"{value!r}: a grammar holds number bounds only when they are whole",
                    )
                # The nearest whole bound outside it holds; the validator checks the rest.
                del bounds[key]
                if abs(value) <= limit:
                    lower = key.endswith("inimum")
                    side = "minimum" if lower else "maximum"
                    whole = math.floor(value) if lower else math.ceil(value)
                    bounds[side] = (
                        max(bounds.get(side, whole), whole)
                        if lower
                        else min(bounds.get(side, whole), whole)
                    )
            if not bounds:
                return self.base(kind)
        low, high = -limit, limit
        if "minimum" in bounds:
            low = max(low, math.ceil(bounds["minimum"]))
        if "exclusiveMinimum" in bounds:
            low = max(low, math.floor(bounds["exclusiveMinimum"]) + 1)
        if "maximum" in bounds:
            high = min(high, math.floor(bounds["maximum"]))
        if "exclusiveMaximum" in bounds:
            high = min(high, math.ceil(bounds["exclusiveMaximum"]) - 1)
        if kind == "integer":
            if low > high:
                raise SchemaGrammarError(path, "minimum", f"no integer lies in [{low}, {high}]")
            return self.rule(hint, int_range(low, high))
        # Whole bounds: a fraction ip.f (last digit not 0) lies strictly between ip and ip + 1,
        # so it fits when both of those do, whether the bounds are inclusive or not.
        floor = max(bounds.get("minimum", -limit), bounds.get("exclusiveMinimum", -limit))
        ceil = min(bounds.get("maximum", limit), bounds.get("exclusiveMaximum", limit))
        frac = '"." [0-9]{0,15} [1-9]'
        alts = [int_range(low, high)]
        pos = int_range(max(int(floor), 0), int(ceil) - 1)
        neg = int_range(max(-int(ceil), 0), -int(floor) - 1)
        alts += [f"( {pos} ) {frac}" if pos else "", f'"-" ( {neg} ) {frac}' if neg else ""]
        if not any(alts):
            raise SchemaGrammarError(path, "minimum", f"the bounds {bounds} allow no number")
        return self.rule(hint, " | ".join(a for a in alts if a))

    def _object(
        self, schema: Mapping[str, Any], path: str, root: Mapping[str, Any], hint: str
    ) -> str:
        props = dict(schema.get("properties") or {})
        required = list(schema.get("required") or [])
        extra_schema = schema.get("additionalProperties", None if props else True)
        for name in required:  # required but undeclared: declared here, as extras would be
            if name not in props:
                if extra_schema in (None, False):
                    raise SchemaGrammarError(
                        f"{path}.required", "required", f"names {name!r}, which may not be given"
                    )
                props[name] = {} if extra_schema is True else extra_schema
        pairs = []
        for name, sub in props.items():
            value = self.visit(sub, f"{path}.{name}", root, f"{hint}-{name}")
            if value == NEVER:
                if name in required:
                    return NEVER
                continue  # an optional property past the depth bound is left out
            pairs.append((gbnf_literal(_json(name) + ": ") + " " + value, name in required))
        self.at = (path, "properties")
        after = first = ""  # "" is the empty sequence
        value = NEVER
        if extra_schema not in (None, False):
            value = self.visit(extra_schema, f"{path}.additionalProperties", root, f"{hint}-extra")
        low = high = None
        if not pairs:  # a dictionary: its size bounds are held
            low = count(schema, "minProperties", path)
            high = count(schema, "maxProperties", path)
        if high is None and self.max_items is not None:
            high = max(low or 0, self.max_items)
        if value == NEVER or high == 0:
            if low:
                raise SchemaGrammarError(path, "minProperties", "asks for more than is allowed")
        else:
            key = self._key_except(list(props), f"{hint}-key") if props else "string"
            extra = self.rule(f"{hint}-extra-pair", f'{key} ": " {value}')
            more = self.repeat(
                self.rule(f"{hint}-extra-next", f'", " {extra}'),
                max((low or 0) - 1, 0),
                None if high is None else high - 1,
                path,
                "minProperties",
            )
            after = self.rule(f"{hint}-extra-rest", more)
            first = f"{extra} {after}" if low else f"( {extra} {after} )?"
        # Walking back from the last property: `after` is what may follow once something was
        # written (each pair behind a comma), `first` what may come while nothing is written.
        for pair, is_required in reversed(pairs):
            if is_required:
                first = seq(pair, after)
                after = self.rule(f"{hint}-rest", seq('", "', pair, after))
            else:
                first = f"{seq(pair, after)} | {first}" if first else f"( {seq(pair, after)} )?"
                after = self.rule(f"{hint}-rest", seq(f'( ", " {pair} )?', after))
            first = self.rule(f"{hint}-first", first)
        return self.rule(hint, seq('"{"', first, '"}"'))

    def _key_except(self, names: list[str], hint: str) -> str:
        """A JSON string that is none of `names` (a trie of them: leave it at any step)."""
        trie: dict[str, Any] = {}
        for name in names:
            node = trie
            for ch in name:
                node = node.setdefault(ch, {})
            node[""] = {}  # the name ends here

        # Children before their parent, in order, as a recursive walk would (a name may be
        # longer than the recursion limit is deep).
        built: dict[int, str] = {}
        pending: list[tuple[dict[str, Any], bool]] = [(trie, False)]
        while pending:
            node, expanded = pending.pop()
            nexts = [ch for ch in node if ch]
            if not expanded:
                pending.append((node, True))
                pending += [(node[ch], False) for ch in reversed(nexts)]
                continue
            alts = [f"{gbnf_literal(_json(ch)[1:-1])} {built[id(node[ch])]}" for ch in nexts]
            other = "".join(class_char(ch) for ch in nexts)
            alts.append(f"( {JSON_CHAR.format(other)} ) char*")
            body = " | ".join(alts)
            built[id(node)] = self.rule(hint, body if "" in node else f"( {body} )?")
        return self.rule(hint, f'"\\"" {built[id(trie)]} "\\""')

    def _array(
        self, schema: Mapping[str, Any], path: str, root: Mapping[str, Any], hint: str
    ) -> str:
        prefix = [
            self.visit(s, f"{path}.prefixItems[{i}]", root, f"{hint}-{i}")
            for i, s in enumerate(schema.get("prefixItems") or [])
        ]
        if NEVER in prefix:
            return NEVER
        items = schema.get("items", None if prefix else True)
        low = max((count(schema, "minItems", path) or 0) - len(prefix), 0)
        high = count(schema, "maxItems", path)
        if high is None and self.max_items is not None:
            high = max(low + len(prefix), self.max_items)
        if high is not None:
            high -= len(prefix)
            if high < 0:
                raise SchemaGrammarError(path, "maxItems", "is smaller than prefixItems")
        item = (
            None
            if items in (None, False)
            else self.visit(items, f"{path}.items", root, f"{hint}-item")
        )
        if item == NEVER:  # items past the depth bound: the array ends here, if it may
            if low > 0:
                return NEVER
            item = None
        if item is None or high == 0:
            if low > 0:
                raise SchemaGrammarError(path, "minItems", "needs more items than are allowed")
            return self.rule(hint, seq('"["', ' ", " '.join(prefix), '"]"'))
        next_item = self.rule(f"{hint}-next", f'", " {item}')
        if prefix:
            more = self.repeat(next_item, low, high, path, "minItems")
            return self.rule(hint, seq('"["', ' ", " '.join(prefix), more, '"]"'))
        tail = None if high is None else high - 1
        if low == 0:
            rest = self.repeat(next_item, 0, tail, path, "minItems")
            return self.rule(hint, f'"[" ( {item} {rest} )? "]"')
        rest = self.repeat(next_item, low - 1, tail, path, "minItems")
        return self.rule(hint, f'"[" {item} {rest} "]"')


def schema_to_gbnf(
    schema: Mapping[str, Any] | bool,
    *,
    checked_after: bool = False,
    max_ref_depth: int | None = None,
) -> str:
    """A GBNF grammar (root rule `root`) for the JSON values `schema` allows, for a llama.cpp
    host (the local runtime holds its grammars with the grammar engine instead).

    Args:
        schema: A JSON Schema; references into its `$defs` are followed.
        checked_after: Keywords a grammar cannot hold are left to a validator that checks
            every value afterwards, instead of raising.
        max_ref_depth: How many times a recursive `$ref` may be open inside itself; None: as
            deep as the value goes.

    Raises:
        SchemaGrammarError: a keyword the grammar cannot hold (named, with its path).
    """
    builder = GrammarBuilder(checked_after=checked_after, max_ref_depth=max_ref_depth)
    root = schema if isinstance(schema, Mapping) else {}
    expression = builder.visit(schema, "$", root, "schema")
    if expression == NEVER:
        raise never_error("$", max_ref_depth)
    return builder.text(expression)


def never_error(path: str, depth: int | None) -> SchemaGrammarError:
    """The error for a schema whose every value nests a reference deeper than `depth`."""
    return SchemaGrammarError(
        path, "$ref", f"allows no value that nests its references at most {depth} levels deep"
    )
