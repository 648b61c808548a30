"""Evaluation cases and the files they come from: agentkit's JSON Lines format, and BFCL's.

One case a line:

```json
{"id": "weather-1", "category": "weather", "prompt": "Weather in Paris?",
 "expected": {"calls": [{"get_weather": {"city": ["Paris", "Paris, France"], "unit": ["", "C"]}}]}}
```

A line `{"dataset": {"tools": "tools.py"}}` names the tools of every case that brings none (a
tool file, relative to the dataset). BFCL's files (`{"id", "question", "function"}`, with
`possible_answer/<file>` beside them) load as they are, their category the part of the file
name after `BFCL_v4_`; the cases of its parallel categories may make several calls in one
generation (`"parallel_tool_calls": true`), as a case of any dataset may say.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from agentkit.errors import UserError
from agentkit.model_api import Message
from agentkit.tools import Tool
from agentkit.tools.loader import load_tools

__all__ = [
    "AnswerCheck",
    "Case",
    "Dataset",
    "Expected",
    "ExpectedCall",
    "TrajectoryOrder",
]

TrajectoryOrder = Literal["set", "exact", "in_order", "any_order"]
"""How expected calls meet the calls made: `set` (BFCL's rule: these calls and no others, in any
order), `exact` (these, in this order, nothing else), `in_order` (these in this order, other
calls allowed between them), `any_order` (each of these, in any order, others allowed)."""

_ORDERS = ("set", "exact", "in_order", "any_order")
_ANSWER_KINDS = ("exact", "contains", "schema", "predicate")
_BFCL_FILE = re.compile(r"BFCL_v\d+_(?P<category>\w+)\.json")


@dataclass(frozen=True)
class ExpectedCall:
    """One expected call: the function's name as the definition gives it (`spotify.play`) and,
    per argument, the acceptable values (`""` among them: the argument may be left out)."""

    name: str
    """The function's name as its definition spells it."""
    arguments: Mapping[str, Sequence[Any]] = field(default_factory=dict)
    """Argument name -> acceptable values."""

    def to_json(self) -> dict[str, Any]:
        """BFCL's form: `{name: {argument: [acceptable, ...]}}`."""
        return {self.name: {k: list(v) for k, v in self.arguments.items()}}


@dataclass(frozen=True)
class AnswerCheck:
    """How the final answer is judged: `exact` text, text it `contains`, a JSON `schema` the
    answer (parsed as JSON) satisfies, or a `predicate` (`module:function`, called with the
    answer text, true when right)."""

    kind: Literal["exact", "contains", "schema", "predicate"]
    """Which check."""
    value: Any
    """The text, the schema, or the predicate's `module:function` reference."""


@dataclass(frozen=True)
class Expected:
    """What a case expects: calls (matched by `order`), no call at all, a final answer, or
    calls and an answer together."""

    calls: tuple[ExpectedCall, ...] | None = None
    """The expected calls; None when calls are not judged (an answer-only case)."""
    order: TrajectoryOrder = "set"
    """How `calls` meet the calls made."""
    no_call: bool = False
    """The model must not call any tool (BFCL's irrelevance)."""
    answer: AnswerCheck | None = None
    """The final answer's check, if any."""


@dataclass(frozen=True)
class Case:
    """One evaluation case."""

    id: str
    """Unique within its dataset; results are keyed by it."""
    messages: tuple[Message, ...]
    """The conversation the model continues (a prompt is one user message)."""
    tools: tuple[Tool, ...]
    """The tools offered."""
    expected: Expected
    """What is right."""
    category: str = "default"
    """Reports group cases by it."""
    parallel_tool_calls: bool | None = None
    """Whether one generation may make several calls (the request's `parallel_tool_calls`);
    None: the evaluation's setting, or the runtime's default."""
    source: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    """The case as read (its line), which its fingerprint hashes."""

    def fingerprint(self) -> str:
        """A hash of the case as written: a result is reused only for the same case."""
        text = json.dumps(self.source, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class Dataset:
    """Cases in order; ids are unique.

    Args:
        cases: the cases.
        name: shown in reports.
    """

    cases: list[Case]
    name: str = "dataset"

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for case in self.cases:
            if case.id in seen:
                raise UserError(f"dataset {self.name}: case id {case.id!r} appears twice")
            seen.add(case.id)

    def __iter__(self) -> Iterator[Case]:
        return iter(self.cases)

    def __len__(self) -> int:
        return len(self.cases)

    @property
    def categories(self) -> list[str]:
        """The categories, in order of first appearance."""
        return list(dict.fromkeys(case.category for case in self.cases))

    def select(self, *, categories: Iterable[str] = (), limit: int | None = None) -> Dataset:
        """The cases of these categories (all when empty), at most `limit` of each."""
        wanted = set(categories)
        taken: dict[str, int] = {}
        kept = []
        for case in self.cases:
            if wanted and case.category not in wanted:
                continue
            if limit is not None and taken.get(case.category, 0) >= limit:
                continue
            taken[case.category] = taken.get(case.category, 0) + 1
            kept.append(case)
        return Dataset(kept, self.name)

    def with_tools(self, tools: Sequence[Tool]) -> Dataset:
        """The same cases, those that bring no tools given `tools` (an MCP server's, say)."""
        shared = tuple(tools)
        cases = [
            case if case.tools else dataclasses.replace(case, tools=shared) for case in self.cases
        ]
        return Dataset(cases, self.name)

    @classmethod
    def load(cls, *paths: str | Path, tools: Sequence[Tool] | str | Path | None = None) -> Dataset:
        """Cases from files: agentkit's JSON Lines, BFCL's files, or a folder of BFCL's files.

        Args:
            *paths: dataset files or folders.
            tools: the tools of cases that bring none: Tools, or a tool file.

        Raises:
            UserError: a file is missing or a line is not a valid case (the message names the
                file, the line and the field).
        """
        shared = tuple(load_tools(tools) if isinstance(tools, (str, Path)) else tools or ())
        cases: list[Case] = []
        for item in paths:
            path = Path(item)
            if path.is_dir():
                files = sorted(path.glob("BFCL_v*_*.json"))
                if not files:
                    raise UserError(f"dataset {item}: a folder holds no BFCL_v*_*.json file")
                for file in files:
                    cases.extend(_bfcl_cases(file))
            elif not path.is_file():
                raise UserError(f"dataset: no such file: {item}")
            elif _BFCL_FILE.fullmatch(path.name):
                cases.extend(_bfcl_cases(path))
            else:
                cases.extend(_cases(path, shared))
        name = ", ".join(Path(p).name for p in paths)
        return cls(cases, name)


def _lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}:{number}: not JSON: {exc.msg} at column {exc.colno}") from None
        if not isinstance(value, dict):
            raise UserError(
                f"{path}:{number}: a case is a JSON object (got {type(value).__name__})"
            )
        yield number, value


def _cases(path: Path, shared: tuple[Tool, ...]) -> Iterator[Case]:
    tools = shared
    for number, line in _lines(path):
        where = f"{path}:{number}"
        if "dataset" in line:
            header = line["dataset"]
            if not isinstance(header, dict):
                raise UserError(f"{where}: dataset: must be an object")
            if "tools" in header:
                tools = tuple(load_tools(path.parent / str(header["tools"])))
            continue
        yield parse_case(line, tools, where)


def parse_case(line: Mapping[str, Any], tools: Sequence[Tool] = (), where: str = "case") -> Case:
    """One case from its JSON object.

    Raises:
        UserError: naming the field that is missing or wrong, and where.
    """
    case_id = line.get("id")
    if not isinstance(case_id, (str, int)) or case_id == "":
        raise UserError(f"{where}: id: every case needs an id (a string)")
    if "messages" in line:
        try:
            messages = tuple(Message.model_validate(m) for m in line["messages"])
        except Exception as exc:
            raise UserError(f"{where}: messages: {exc}") from None
    elif isinstance(line.get("prompt"), str):
        messages = (Message(role="user", content=line["prompt"]),)
    else:
        raise UserError(f"{where}: give `messages` (a list) or `prompt` (a string)")
    if "tools" in line:
        if not isinstance(line["tools"], list):
            raise UserError(f"{where}: tools: a list of tool definitions")
        made = tuple(Tool.from_definition(d) for d in line["tools"])
    else:
        made = tuple(tools)
    expected = _expected(line.get("expected"), f"{where}: expected")
    category = str(line.get("category", "default"))
    parallel = line.get("parallel_tool_calls")
    if parallel is not None and not isinstance(parallel, bool):
        raise UserError(f"{where}: parallel_tool_calls: true or false (got {parallel!r})")
    return Case(str(case_id), messages, made, expected, category, parallel, dict(line))


def _expected(value: Any, where: str) -> Expected:
    if not isinstance(value, dict) or not value:
        raise UserError(
            f"{where}: an object with `calls`, `trajectory`, `no_call` or `answer` (got {value!r})"
        )
    unknown = set(value) - {"calls", "trajectory", "order", "no_call", "answer"}
    if unknown:
        raise UserError(f"{where}: unknown field {sorted(unknown)[0]!r}")
    if "calls" in value and "trajectory" in value:
        raise UserError(f"{where}: give `calls` or `trajectory`, not both")
    key = "calls" if "calls" in value else "trajectory"
    calls = None
    if key in value:
        if not isinstance(value[key], list):
            raise UserError(f"{where}.{key}: a list of calls")
        calls = tuple(expected_call(c, f"{where}.{key}[{i}]") for i, c in enumerate(value[key]))
    order = value.get("order", "set" if key == "calls" else "exact")
    if order not in _ORDERS:
        raise UserError(f"{where}.order: one of {', '.join(_ORDERS)} (got {order!r})")
    no_call = value.get("no_call", False) is True
    if no_call and calls:
        raise UserError(f"{where}: no_call with expected calls")
    answer = None
    if "answer" in value:
        answer = _answer(value["answer"], f"{where}.answer")
    return Expected(calls, order, no_call, answer)


def expected_call(value: Any, where: str) -> ExpectedCall:
    """An expected call from `{name: {arg: [values]}}` (BFCL) or `{name, arguments}`.

    Raises:
        UserError: the shape is neither, or an argument's values are not a list.
    """
    if isinstance(value, dict) and isinstance(value.get("name"), str):
        name, arguments = value["name"], value.get("arguments", {})
    elif isinstance(value, dict) and len(value) == 1:
        ((name, arguments),) = value.items()
    else:
        raise UserError(f"{where}: a call is {{name: {{argument: [acceptable values]}}}}")
    if not isinstance(arguments, dict):
        raise UserError(f"{where}.arguments: an object of argument -> acceptable values")
    for argument, acceptable in arguments.items():
        if not isinstance(acceptable, list):
            raise UserError(
                f"{where}.arguments.{argument}: a list of acceptable values "
                f"(got {type(acceptable).__name__})"
            )
    return ExpectedCall(name, {k: tuple(v) for k, v in arguments.items()})


def _answer(value: Any, where: str) -> AnswerCheck:
    if not isinstance(value, dict) or len(value) != 1 or next(iter(value)) not in _ANSWER_KINDS:
        raise UserError(f"{where}: one of {', '.join(_ANSWER_KINDS)} (got {value!r})")
    ((kind, check),) = value.items()
    if kind == "schema" and not isinstance(check, dict):
        raise UserError(f"{where}.schema: a JSON Schema object")
    if kind == "predicate" and (not isinstance(check, str) or ":" not in check):
        raise UserError(f"{where}.predicate: `module:function` (got {check!r})")
    if kind in ("exact", "contains") and not isinstance(check, str):
        raise UserError(f"{where}.{kind}: a string")
    return AnswerCheck(kind, check)


def _bfcl_cases(path: Path) -> Iterator[Case]:
    match = _BFCL_FILE.fullmatch(path.name)
    category = match["category"] if match else path.stem
    truth_file = path.parent / "possible_answer" / path.name
    truths: dict[str, Any] = {}
    if truth_file.is_file():
        truths = {line["id"]: line["ground_truth"] for _, line in _lines(truth_file)}
    elif "irrelevance" not in category:
        raise UserError(f"{path}: no ground truth beside it ({truth_file})")
    for number, line in _lines(path):
        where = f"{path}:{number}"
        turns = line.get("question")
        if not isinstance(turns, list) or not turns:
            raise UserError(f"{where}: question: a list of turns")
        if "irrelevance" in category:
            expected = {"no_call": True}
        elif line.get("id") in truths:
            expected = {"calls": truths[line["id"]]}
        else:
            raise UserError(f"{where}: no ground truth for {line.get('id')!r} in {truth_file}")
        case = {
            "id": line.get("id"),
            "category": category,
            "messages": turns[0],
            "tools": line.get("function", []),
            "expected": expected,
        }
        if category.startswith("parallel"):
            # The question asks for several things at once: one generation may make each call.
            case["parallel_tool_calls"] = True
        yield parse_case(case, (), where)
