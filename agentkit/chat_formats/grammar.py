"""JSON Schema -> GBNF, the grammar language of llama.cpp.

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
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from agentkit.chat_formats._cycles import ref_cycles, ref_target
from agentkit.chat_formats._gbnf import class_char, gbnf_literal, int_range
from agentkit.errors import SchemaGrammarError

__all__ = ["SchemaGrammarError", "gbnf_literal", "schema_to_gbnf"]

MAX_INT_DIGITS = 16
MAX_RULES = 10_000
"""The most rules (and `enum` values) one grammar may hold. Past it the schema is refused: a
grammar that large takes seconds to build and to load into llama.cpp, and its schema does not
fit a small model's context anyway."""
MAX_REF_NESTING = 12
"""The most levels references that refer to each other unfold to, with a `max_ref_depth`."""
MAX_DEPTH = 64
"""Schemas nested deeper than this (properties in properties, items in items, ...) are refused:
no call needs it, and the builder would otherwise run into Python's recursion limit."""
_ANNOTATIONS = set(
    "title description default examples $comment deprecated readOnly writeOnly $schema $id "
    "$anchor $defs definitions format contentEncoding contentMediaType discriminator".split()
)
_UNHELD = set(
    "pattern multipleOf uniqueItems not if then else contains minContains maxContains "
    "patternProperties propertyNames minProperties maxProperties dependentRequired "
    "dependentSchemas dependencies unevaluatedProperties unevaluatedItems $dynamicRef".split()
)
_NUMERIC = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
_TYPE_HINTS = (
    ("object", ("properties", "required", "additionalProperties")),
    ("array", ("items", "prefixItems", "minItems", "maxItems")),
    ("string", ("minLength", "maxLength")),
    ("number", _NUMERIC),
)
# One JSON string character, leaving out the characters given (by their class escapes).
_CHAR = '[^{}"\\\\\\x00-\\x1F] | "\\\\" ( ["\\\\/bfnrt] | "u" [0-9a-fA-F]{{4}} )'
_BASE_RULES = {
    "value": "object | array | string | number | boolean | null",
    "object": '"{" ( string ": " value ( ", " string ": " value )* )? "}"',
    "array": '"[" ( value ( ", " value )* )? "]"',
    "string": '"\\"" char* "\\""',
    "char": _CHAR.format(""),
    "number": 'integer ( "." [0-9]{1,16} )? ( [eE] [-+]? [0-9]{1,3} )?',
    "integer": '"-"? ( [0-9] | [1-9] [0-9]{1,15} )',
    "boolean": '"true" | "false"',
    "null": '"null"',
}
_DATE = '[0-9]{4} "-" ( "0" [1-9] | "1" [0-2] ) "-" ( "0" [1-9] | [12] [0-9] | "3" [01] )'
_TIME = (
    '( [01] [0-9] | "2" [0-3] ) ":" [0-5] [0-9] ":" [0-5] [0-9] ( "." [0-9]{1,6} )? '
    '( "Z" | [+-] ( [01] [0-9] | "2" [0-3] ) ":" [0-5] [0-9] )'
)
_FORMATS = {
    "date": _DATE,
    "time": _TIME,
    "date-time": f'{_DATE} "T" {_TIME}',
    "uuid": '[0-9a-fA-F]{8} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{4} "-" '
    "[0-9a-fA-F]{12}",
}


# Literals, character classes and repetition counts hold no rule names.
_OPAQUE = re.compile(r'"(?:\\.|[^"\\])*"|\[(?:\\.|[^\]\\])*\]|\{[0-9,]*\}')
_NAME = re.compile(r"[a-zA-Z][a-zA-Z0-9-]*")


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


NEVER = "\0never"
"""What `GrammarBuilder.visit` returns for a schema no value can fit within the bounds (a
recursive reference past `max_ref_depth`); it never reaches a grammar's text."""


class GrammarBuilder:
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
        self.checked_after = checked_after
        self.max_rules = max_rules
        self._spent = 0
        self._at = ("$", "schema")
        """Where the walk is (path, keyword): the place a grammar that grows too large names."""
        self._names: dict[str, int] = {}
        self._cycles: dict[int, dict[str, tuple[int, int]]] = {}
        self._roots: dict[int, Mapping[str, Any]] = {}
        self.max_string = max_string
        self.max_items = max_items
        self.max_ref_depth = max_ref_depth
        self._rules: dict[str, str] = {}
        self._by_body: dict[str, str] = {}
        self._refs: dict[tuple[int, str, str, int], str] = {}
        self._open: list[str] = []
        """The references being unfolded, outermost first (with `max_ref_depth`)."""
        self._depth = 0

    def rule(self, hint: str, body: str) -> str:
        """A rule named after `hint` holding `body` (an existing rule if the body is known)."""
        found = self._by_body.get(body)
        if found:
            return found
        base = re.sub(r"[^a-zA-Z0-9]+", "-", hint).strip("-").lower() or "r"
        # The next number to try for each base: a schema with thousands of properties names
        # thousands of rules after one hint, and trying 2, 3, ... each time is quadratic.
        name, n = base, self._names.get(base, 1)
        if n > 1:
            name = f"{base}-{n}"
        while name in self._rules or name in _BASE_RULES or name == "root":
            n += 1
            name = f"{base}-{n}"
        self._names[base] = n + 1
        self._spend(1, *self._at)
        self._rules[name] = body
        self._by_body[body] = name
        return name

    def base(self, name: str) -> str:
        """A rule of the shared JSON base (`value`, `string`, ...)."""
        return name

    def text(self, root: str) -> str:
        """The whole grammar, `root ::= <root>` first, without rules `root` cannot reach."""
        rules = {**self._rules, **_BASE_RULES}
        reached: set[str] = set()
        pending = [root]
        while pending:
            names = set(_NAME.findall(_OPAQUE.sub(" ", pending.pop()))) - reached
            reached |= names
            pending += [rules[n] for n in names if n in rules]
        lines = [f"root ::= {root}"]
        lines += [f"{name} ::= {body}" for name, body in rules.items() if name in reached]
        return "\n".join(lines) + "\n"

    # -- schemas ----------------------------------------------------------------------------

    def visit(self, schema: Any, path: str, root: Mapping[str, Any], hint: str) -> str:
        """A GBNF expression (usually a rule name) for the values `schema` allows.

        Raises:
            SchemaGrammarError: a keyword the grammar cannot hold, or a schema nested deeper
                than `MAX_DEPTH` levels; named, with its path.
        """
        if self._depth >= MAX_DEPTH:
            raise SchemaGrammarError(path, "schema", f"nests deeper than {MAX_DEPTH} levels")
        self._at = (path, "schema")
        self._spend(0, path, "schema")
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
        schema = self._merge_all_of(schema, path)
        unheld = _UNHELD & schema.keys()
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
            self._spend(len(values), path, "enum")
            kept = [v for v in values if _fits_type(v, schema.get("type"))]
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
                return self._either(hint, branches)
        kind = schema.get("type")
        if kind is None:
            kind = next((t for t, keys in _TYPE_HINTS if any(k in schema for k in keys)), None)
            if kind is None:
                return self.base("value")
        if isinstance(kind, list):
            if not kind:
                raise SchemaGrammarError(path, "type", "an empty list allows no value")
            alts = [self._typed(t, schema, path, root, f"{hint}-{t}") for t in kind]
            return self._either(hint, alts)
        return self._typed(kind, schema, path, root, hint)

    def _spend(self, count: int, path: str, keyword: str) -> None:
        self._spent += count
        if self._spent > self.max_rules:
            raise SchemaGrammarError(
                path,
                keyword,
                f"takes the grammar past {self.max_rules:,} rules and values: the schema is "
                "too large (or its references too intertwined) to be held",
            )

    def _either(self, hint: str, alternatives: list[str]) -> str:
        kept = [a for a in alternatives if a != NEVER]
        return self.rule(hint, " | ".join(kept)) if kept else NEVER

    def _merge_all_of(self, schema: Mapping[str, Any], path: str) -> Mapping[str, Any]:
        parts = schema.get("allOf")
        if parts is None:
            return schema
        merged = {k: v for k, v in schema.items() if k != "allOf"}
        # additionalProperties is read against the properties of its own part only.
        extras_from: Any = "self" if "additionalProperties" in schema else None
        props_from: set[Any] = {"self"} if "properties" in schema else set()
        for i, part in enumerate(parts):
            if not isinstance(part, Mapping):
                raise SchemaGrammarError(f"{path}.allOf[{i}]", "allOf", "parts must be objects")
            if "properties" in part:
                props_from.add(i)
            if "additionalProperties" in part:
                extras_from = i
            part = dict(part)
            # Objects described in parts: their properties (distinct names) and required lists
            # join; the same type in both parts is one type.
            props, more = merged.get("properties"), part.get("properties")
            if (
                isinstance(props, Mapping)
                and isinstance(more, Mapping)
                and not props.keys() & more.keys()
            ):
                part["properties"] = {**props, **more}
                del merged["properties"]
            if isinstance(merged.get("required"), list) and isinstance(part.get("required"), list):
                part["required"] = list(dict.fromkeys(merged.pop("required") + part["required"]))
            if "type" in part and part["type"] == merged.get("type"):
                del merged["type"]
            clash = (part.keys() & merged.keys()) - _ANNOTATIONS
            if clash:
                raise SchemaGrammarError(
                    f"{path}.allOf[{i}]",
                    "allOf",
                    f"cannot be merged: {sorted(clash)} appear in more than one part",
                )
            merged.update(part)
        closed = extras_from is not None and merged["additionalProperties"] is not True
        if closed and props_from - {extras_from}:
            raise SchemaGrammarError(
                path,
                "allOf",
                "cannot be merged: additionalProperties applies to the properties of its "
                "own part only, and other parts declare properties",
            )
        return merged

    def _ref(self, schema: Mapping[str, Any], path: str, root: Mapping[str, Any], hint: str) -> str:
        ref = str(schema["$ref"])
        match = re.fullmatch(r"#/(\$defs|definitions)/([^/]+)", ref)
        target = ref_target(root, ref)
        if target is None:
            raise SchemaGrammarError(path, "$ref", f"{ref!r} points to no local definition")
        siblings = {k: v for k, v in schema.items() if k != "$ref" and k not in _ANNOTATIONS}
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
            del self._by_body[self._rules[name]]
            if body == NEVER:
                del self._rules[name]
                self._refs[key] = NEVER
            else:
                self._rules[name] = body
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
        if fmt in _FORMATS:
            return self.rule(f"{fmt}-string", f'"\\"" {_FORMATS[fmt]} "\\""')
        low, high = _count(schema, "minLength", path) or 0, _count(schema, "maxLength", path)
        if high is None and self.max_string is not None:
            high = max(low, self.max_string)
        if low == 0 and high is None:
            return self.base("string")
        chars = self.repeat(self.base("char"), low, high, path, "minLength")
        return self.rule(hint, f'"\\"" {chars} "\\""')

    def _number(self, kind: str, schema: Mapping[str, Any], path: str, hint: str) -> str:
        bounds = {k: schema[k] for k in _NUMERIC if k in schema}
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
        self._at = (path, "properties")
        after = first = ""  # "" is the empty sequence
        value = NEVER
        if extra_schema not in (None, False):
            value = self.visit(extra_schema, f"{path}.additionalProperties", root, f"{hint}-extra")
        low = high = None
        if not pairs:  # a dictionary: its size bounds are held
            low = _count(schema, "minProperties", path)
            high = _count(schema, "maxProperties", path)
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
                first = _seq(pair, after)
                after = self.rule(f"{hint}-rest", _seq('", "', pair, after))
            else:
                first = f"{_seq(pair, after)} | {first}" if first else f"( {_seq(pair, after)} )?"
                after = self.rule(f"{hint}-rest", _seq(f'( ", " {pair} )?', after))
            first = self.rule(f"{hint}-first", first)
        return self.rule(hint, _seq('"{"', first, '"}"'))

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
            alts.append(f"( {_CHAR.format(other)} ) char*")
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
        low = max((_count(schema, "minItems", path) or 0) - len(prefix), 0)
        high = _count(schema, "maxItems", path)
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
            return self.rule(hint, _seq('"["', ' ", " '.join(prefix), '"]"'))
        next_item = self.rule(f"{hint}-next", f'", " {item}')
        if prefix:
            more = self.repeat(next_item, low, high, path, "minItems")
            return self.rule(hint, _seq('"["', ' ", " '.join(prefix), more, '"]"'))
        tail = None if high is None else high - 1
        if low == 0:
            rest = self.repeat(next_item, 0, tail, path, "minItems")
            return self.rule(hint, f'"[" ( {item} {rest} )? "]"')
        rest = self.repeat(next_item, low - 1, tail, path, "minItems")
        return self.rule(hint, f'"[" {item} {rest} "]"')

    def repeat(self, item: str, low: int, high: int | None, path: str, keyword: str) -> str:
        """`item{low,high}` (None: no upper bound) in a form llama.cpp accepts; `item` is a
        rule's name.

        llama.cpp's parser refuses a repetition whose lower count is past 2000, and one of a
        parenthesized group when the rules the group brings in (the group itself, the helper
        rules of repetitions inside it, one per optional item, and rule names it mentions
        first) times the count (the upper one when there is one; `?` counts 1) is past 2000. So
        only a rule's name is ever repeated, and counts past `REPEAT_BLOCK` are
        written in blocks (rules of `REPEAT_BLOCK` items): `x{2500}` as `b{2} x{500}`, and
        `x{0,m}` as `b{0,c-1} x{0,999} | b{c} x{0,r}` (m = 1000c + r), which allows exactly the
        counts 0..m, each one way. An upper bound past a million (more than any context holds)
        is no bound; a lower one is refused.

        Raises:
            SchemaGrammarError: `low` is more than a million (named as `keyword` at `path`).
        """
        block = REPEAT_BLOCK
        if high is not None and high > block * block:
            high = None
        if high is not None and high <= block and low <= block:
            return f"{item}{{{low},{high}}}" if (low, high) != (0, 1) else f"{item}?"
        if high is None and low <= block:
            return f"{item}*" if low == 0 else f"{item}{{{low},}}"
        if low > block * block:
            raise SchemaGrammarError(path, keyword, f"asks for {low:,}: more than any answer holds")
        whole = self.rule(f"{item}-block", f"{item}{{{block}}}")
        groups, ones = divmod(low, block)
        parts = [f"{whole}{{{groups}}}" if groups else "", f"{item}{{{ones}}}" if ones else ""]
        if high is None:
            parts.append(f"{item}*")
        elif high > low:
            more = high - low
            if more <= block:
                parts.append(f"{item}{{0,{more}}}")
            else:
                full, rest = divmod(more, block)
                below = f"{whole}{{0,{full - 1}}} {item}{{0,{block - 1}}}"
                parts.append(f"( {below} | {whole}{{{full}}} {item}{{0,{rest}}} )")
        # A rule of its own: a group around it with `?` would count all the helper rules llama.cpp
        # writes for these repetitions as the group's, past what it accepts.
        return self.rule(f"{item}-many", _seq(*parts))


REPEAT_BLOCK = 1000
"""The most items one repetition in a grammar counts; longer ones are written in blocks."""


def _count(schema: Mapping[str, Any], key: str, path: str) -> int | None:
    value = schema.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SchemaGrammarError(f"{path}.{key}", key, f"must be a count >= 0 (got {value!r})")
    return value


def _fits_type(value: Any, kind: Any) -> bool:
    if kind is None:
        return True
    kinds = [kind] if isinstance(kind, str) else list(kind)
    python = {"string": str, "boolean": bool, "null": type(None), "object": dict, "array": list}
    for name in kinds:
        if name in ("integer", "number") and type(value) in (int, float):
            if name == "number" or float(value).is_integer():
                return True
        elif name in python and type(value) is python[name]:
            return True
    return False


def _seq(*parts: str) -> str:
    return " ".join(p for p in parts if p)


def schema_to_gbnf(schema: Mapping[str, Any] | bool, *, checked_after: bool = False) -> str:
    """A GBNF grammar (root rule `root`) for the JSON values `schema` allows.

    Args:
        schema: A JSON Schema; references into its `$defs` are followed.
        checked_after: Keywords a grammar cannot hold are left to a validator that checks
            every value afterwards, instead of raising.

    Raises:
        SchemaGrammarError: a keyword the grammar cannot hold (named, with its path).
    """
    builder = GrammarBuilder(checked_after=checked_after)
    root = schema if isinstance(schema, Mapping) else {}
    return builder.text(builder.visit(schema, "$", root, "schema"))


def never_error(path: str, depth: int | None) -> SchemaGrammarError:
    """The error for a schema whose every value nests a reference deeper than `depth`."""
    return SchemaGrammarError(
        path, "$ref", f"allows no value that nests its references at most {depth} levels deep"
    )
