"""The rules of one GBNF grammar: naming, sharing, a size budget, repetitions, the final text.

`RuleSet` knows GBNF and the shared rules of JSON values (`value`, `string`, the string
formats, ...), nothing of JSON Schema: `GrammarBuilder` (`agentkit.chat_formats.grammar`)
walks a schema and adds its rules here.
"""

from __future__ import annotations

import re

from agentkit.errors import SchemaGrammarError

__all__ = ["FORMATS", "JSON_CHAR", "MAX_RULES", "NEVER", "REPEAT_BLOCK", "RuleSet", "seq"]

MAX_RULES = 10_000
"""The most rules (and `enum` values) one grammar may hold. Past it the schema is refused: a
grammar that large takes seconds to build and to load into llama.cpp, and its schema does not
fit a small model's context anyway."""
REPEAT_BLOCK = 1000
"""The most items one repetition in a grammar counts; longer ones are written in blocks."""
NEVER = "\0never"
"""What `GrammarBuilder.visit` returns for a schema no value can fit within the bounds (a
recursive reference past `max_ref_depth`); it never reaches a grammar's text."""

JSON_CHAR = '[^{}"\\\\\\x00-\\x1F] | "\\\\" ( ["\\\\/bfnrt] | "u" [0-9a-fA-F]{{4}} )'
"""One JSON string character, leaving out the characters given (by their class escapes), as a
`str.format` template: `JSON_CHAR.format("")` is any character."""
_BASE_RULES = {
    "value": "object | array | string | number | boolean | null",
    "object": '"{" ( string ": " value ( ", " string ": " value )* )? "}"',
    "array": '"[" ( value ( ", " value )* )? "]"',
    "string": '"\\"" char* "\\""',
    "char": JSON_CHAR.format(""),
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
FORMATS = {
    "date": _DATE,
    "time": _TIME,
    "date-time": f'{_DATE} "T" {_TIME}',
    "uuid": '[0-9a-fA-F]{8} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{4} "-" '
    "[0-9a-fA-F]{12}",
}
"""The string formats a grammar holds: the GBNF of a string's characters, without its quotes."""

# Literals, character classes and repetition counts hold no rule names.
_OPAQUE = re.compile(r'"(?:\\.|[^"\\])*"|\[(?:\\.|[^\]\\])*\]|\{[0-9,]*\}')
_NAME = re.compile(r"[a-zA-Z][a-zA-Z0-9-]*")


class RuleSet:
    """The rules of one grammar: one rule per body, named after a hint, within a budget.

    Args:
        max_rules: past this many rules (and values spent with `spend`), `SchemaGrammarError`.
    """

    def __init__(self, *, max_rules: int = MAX_RULES) -> None:
        self.max_rules = max_rules
        self.at = ("$", "schema")
        """Where the walk is (path, keyword): the place a grammar that grows too large names."""
        self._spent = 0
        self._names: dict[str, int] = {}
        self._rules: dict[str, str] = {}
        self._by_body: dict[str, str] = {}

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
        self.spend(1, *self.at)
        self._rules[name] = body
        self._by_body[body] = name
        return name

    def settle(self, name: str, body: str) -> None:
        """Give `name`, made by `rule` with a placeholder body, its real body (`NEVER`: drop it).

        A rule that may refer to itself is named before its body is known; its body is not
        shared with later rules of the same body, which get rules of their own.
        """
        del self._by_body[self._rules[name]]
        if body == NEVER:
            del self._rules[name]
        else:
            self._rules[name] = body

    def base(self, name: str) -> str:
        """A rule of the shared JSON base (`value`, `string`, ...)."""
        return name

    def either(self, hint: str, alternatives: list[str]) -> str:
        """A rule for any one of `alternatives`, leaving out `NEVER` (`NEVER` if none is left)."""
        kept = [a for a in alternatives if a != NEVER]
        return self.rule(hint, " | ".join(kept)) if kept else NEVER

    def spend(self, count: int, path: str, keyword: str) -> None:
        """Count `count` more rules or values against `max_rules`.

        Raises:
            SchemaGrammarError: past the budget, naming `keyword` at `path`.
        """
        self._spent += count
        if self._spent > self.max_rules:
            raise SchemaGrammarError(
                path,
                keyword,
                f"takes the grammar past {self.max_rules:,} rules and values: the schema is "
                "too large (or its references too intertwined) to be held",
            )

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
        return self.rule(f"{item}-many", seq(*parts))


def seq(*parts: str) -> str:
    """The GBNF sequence of the non-empty `parts` ("" is the empty sequence)."""
    return " ".join(p for p in parts if p)
