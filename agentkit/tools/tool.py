"""`Tool`, the `@tool` decorator and `Toolset`.

A tool's schema (in every dialect) and its one argument validator are built once, when the tool
is built; the meta-schema check runs then too, so a broken tool fails at import.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, overload

import jsonschema_rs
from pydantic import BaseModel, ValidationError

from agentkit._validation import field_errors
from agentkit.errors import FieldError, ToolArgumentsError, ToolDefinitionError
from agentkit.model_api import FunctionDefinition
from agentkit.runtimes.base import SchemaDialect
from agentkit.tools.arguments import ValidatedArguments, parse_near_json, schema_errors
from agentkit.tools.formats import (
    DefinitionProblem,
    meta_problems,
    normalize_definition,
    strict_problems,
    to_strict,
    workers_ai_ready,
)
from agentkit.tools.signature import read_signature

__all__ = ["Tool", "Toolset", "tool", "validate_tool_definitions"]


class Tool:
    """A function (or a foreign definition) the model can call.

    Build one with `@tool` or `Tool.from_definition(...)`. A decorated function stays callable
    as itself.
    """

    def __init__(
        self,
        function: Callable[..., Any] | None,
        *,
        name: str,
        description: str,
        parameters: dict[str, Any],
        model: type[BaseModel] | None = None,
        renamed: Mapping[str, str] | None = None,
        sequential: bool = False,
        timeout: float | None = None,
        max_retries: int | None = None,
        strict: bool | None = None,
        original_name: str | None = None,
        normalization_report: Sequence[str] = (),
    ) -> None:
        self.function = function
        self.name = name
        self.description = description
        self.sequential = sequential
        self.timeout = timeout
        self.max_retries = max_retries
        self.original_name = original_name or name
        """The name as the definition gave it (before a dotted name was made valid)."""
        self.normalization_report = list(normalization_report)
        """What `from_definition` changed to make the definition standard, with JSON paths."""
        self.is_async = function is not None and inspect.iscoroutinefunction(function)
        self._renamed = dict(renamed or {})
        problems = meta_problems(parameters)
        if problems:
            raise ToolDefinitionError(name, [f"parameters schema: {p}" for p in problems])
        self._schemas: dict[str, dict[str, Any]] = {"full": parameters}
        try:
            self._schemas["inline"] = workers_ai_ready(parameters)
        except ValueError as exc:
            self._schemas["inline"] = parameters
            self._inline_problem: str | None = str(exc)
        else:
            self._inline_problem = None
        self._strict_problems = strict_problems(parameters)
        if strict and self._strict_problems:
            raise ToolDefinitionError(name, ["cannot be strict", *self._strict_problems])
        self._definitions: dict[str, FunctionDefinition] = {}
        if model is not None:
            self._model_validator = model.__pydantic_validator__
            self._schema_validator = None
        else:
            self._model_validator = None
            self._schema_validator = jsonschema_rs.validator_for(parameters)
        if function is not None:
            functools.update_wrapper(self, function)  # type: ignore[arg-type]

    # -- construction -----------------------------------------------------------------------

    @classmethod
    def from_function(
        cls,
        function: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        sequential: bool = False,
        timeout: float | None = None,
        max_retries: int | None = None,
        strict: bool | None = None,
    ) -> Tool:
        """A tool from a plain function; see `@tool`."""
        tool_name = name or function.__name__
        signature = read_signature(function, tool_name)
        return cls(
            function,
            name=tool_name,
            description=description if description is not None else signature.description,
            parameters=signature.schema,
            model=signature.model,
            renamed=signature.renamed,
            sequential=sequential,
            timeout=timeout,
            max_retries=max_retries,
            strict=strict,
        )

    @classmethod
    def from_definition(
        cls,
        definition: Mapping[str, Any],
        handler: Callable[..., Any] | None = None,
        *,
        sequential: bool = False,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> Tool:
        """A tool from a definition in either shape, sloppy dialects included.

        Non-standard types (`dict`, `float`, `tuple`, `any`, ...), invalid names (`spotify.play`),
        defaults that don't match their type and `required` entries naming no property are
        fixed; `normalization_report` says what changed. `handler`, if given, is called with
        the validated arguments as keywords.

        Raises:
            ToolDefinitionError: the definition cannot be made a valid tool.
        """
        body, original, notes = normalize_definition(definition)
        fatal = [str(n) for n in notes if n.path.endswith(".parameters")]
        if fatal:
            raise ToolDefinitionError(original, fatal)
        return cls(
            handler,
            name=body["name"],
            description=body["description"],
            parameters=body["parameters"],
            sequential=sequential,
            timeout=timeout,
            max_retries=max_retries,
            original_name=original,
            normalization_report=[str(n) for n in notes],
        )

    # -- shapes -----------------------------------------------------------------------------

    def parameters_schema(self, dialect: SchemaDialect = "full") -> dict[str, Any]:
        """The parameters' JSON Schema in a dialect.

        Raises:
            ToolDefinitionError: the tool cannot be expressed in that dialect (the reasons are
                listed; see `strict_report()`).
        """
        if dialect == "inline" and self._inline_problem:
            raise ToolDefinitionError(self.name, [self._inline_problem])
        if dialect == "strict":
            if self._strict_problems:
                raise ToolDefinitionError(self.name, ["cannot be strict", *self._strict_problems])
            if "strict" not in self._schemas:
                self._schemas["strict"] = to_strict(self._schemas["full"])
        return self._schemas[dialect]

    def strict_report(self) -> list[str]:
        """Per parameter, why this tool cannot be sent in OpenAI strict mode (empty: it can)."""
        return list(self._strict_problems)

    def definition(self, dialect: SchemaDialect = "full") -> FunctionDefinition:
        """The tool as a model sees it, in a dialect (built once, then reused)."""
        found = self._definitions.get(dialect)
        if found is None:
            found = FunctionDefinition.model_construct(
                name=self.name,
                description=self.description,
                parameters=self.parameters_schema(dialect),
            )
            self._definitions[dialect] = found
        return found

    def to_legacy(self, dialect: SchemaDialect = "full") -> dict[str, Any]:
        """`{name, description, parameters}`."""
        return self.definition(dialect).to_wire("legacy")

    def to_function(self, dialect: SchemaDialect = "full") -> dict[str, Any]:
        """`{type: "function", function: {name, description, parameters}}` (with `strict: true`
        in the strict dialect)."""
        out = self.definition(dialect).to_wire("function")
        if dialect == "strict":
            out["function"]["strict"] = True
        return out

    # -- arguments --------------------------------------------------------------------------

    def validate(self, arguments: Mapping[str, Any] | str | None) -> ValidatedArguments:
        """Validate the model's arguments (a dict, or JSON text that may need repair).

        Raises:
            ToolArgumentsError: listing every failing field with its path; `raw` keeps the text.
        """
        repairs: tuple[str, ...] = ()
        raw = arguments if isinstance(arguments, str) else None
        if arguments is None:
            arguments = {}
        elif isinstance(arguments, str):
            try:
                arguments, repairs = parse_near_json(arguments)
            except ValueError as exc:
                raise ToolArgumentsError(self.name, [FieldError("", str(exc))], raw) from None
            if not isinstance(arguments, Mapping):
                error = FieldError("", f"arguments must be a JSON object (got {arguments!r:.60})")
                raise ToolArgumentsError(self.name, [error], raw)
        if self._model_validator is not None:
            try:
                values = self._model_validator.validate_python(arguments).__dict__
            except ValidationError as exc:
                raise ToolArgumentsError(self.name, field_errors(exc), raw) from None
            if self._renamed:
                values = {self._renamed.get(k, k): v for k, v in values.items()}
            else:
                values = dict(values)
            return ValidatedArguments(values, repairs)
        assert self._schema_validator is not None
        if not self._schema_validator.is_valid(arguments):
            errors = schema_errors(self._schema_validator, arguments)
            raise ToolArgumentsError(self.name, errors, raw)
        return ValidatedArguments(dict(arguments), repairs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.function is None:
            raise TypeError(f"tool {self.name!r} has no handler to call")
        return self.function(*args, **kwargs)

    def __repr__(self) -> str:
        return f"Tool({self.name!r})"


@overload
def tool(function: Callable[..., Any], /) -> Tool: ...


@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    sequential: bool = False,
    timeout: float | None = None,
    max_retries: int | None = None,
    strict: bool | None = None,
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    function: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    sequential: bool = False,
    timeout: float | None = None,
    max_retries: int | None = None,
    strict: bool | None = None,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Make a sync or async function a tool, bare (`@tool`) or with options.

    Args:
        function: the function (when used bare).
        name: the tool's name; the function's name by default.
        description: the tool's description; the docstring's by default.
        sequential: run this tool alone, never alongside other calls of the same step.
        timeout: seconds a call may take before the model is told it timed out.
        max_retries: failed calls in a row allowed before the run stops.
        strict: check now that the tool can be sent in OpenAI strict mode.
    """
    options = {
        "name": name,
        "description": description,
        "sequential": sequential,
        "timeout": timeout,
        "max_retries": max_retries,
        "strict": strict,
    }
    if function is not None:
        return Tool.from_function(function, **options)  # type: ignore[arg-type]

    def decorate(fn: Callable[..., Any]) -> Tool:
        return Tool.from_function(fn, **options)  # type: ignore[arg-type]

    return decorate


class Toolset:
    """Tools by name; plain functions are wrapped with `@tool`; duplicate names are refused."""

    def __init__(self, tools: Iterable[Tool | Callable[..., Any]] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        self._definitions: dict[str, list[FunctionDefinition]] = {}
        for item in tools:
            self.add(item)

    def add(self, item: Tool | Callable[..., Any]) -> Tool:
        """Add a tool (or a function, wrapped).

        Raises:
            ToolDefinitionError: a tool of that name is already there.
        """
        made = item if isinstance(item, Tool) else Tool.from_function(item)
        if made.name in self._tools:
            raise ToolDefinitionError(made.name, ["another tool already has this name"])
        self._tools[made.name] = made
        self._definitions.clear()
        return made

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    @property
    def names(self) -> list[str]:
        return list(self._tools)

    def definitions(self, dialect: SchemaDialect = "full") -> list[FunctionDefinition]:
        """Every tool's definition in a dialect (built once per dialect)."""
        found = self._definitions.get(dialect)
        if found is None:
            found = [t.definition(dialect) for t in self._tools.values()]
            self._definitions[dialect] = found
        return found

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self) -> Iterator[Tool]:
        return iter(self._tools.values())

    def __len__(self) -> int:
        return len(self._tools)


def validate_tool_definitions(definitions: Iterable[Mapping[str, Any]]) -> list[DefinitionProblem]:
    """Every problem in a list of tool definitions (either shape), each at its JSON path,
    without raising: non-standard types, invalid names, defaults of the wrong type, `required`
    entries naming no property, missing descriptions, meta-schema errors, duplicate names."""
    problems: list[DefinitionProblem] = []
    seen: dict[str, int] = {}
    for i, definition in enumerate(definitions):
        if not isinstance(definition, Mapping):
            problems.append(DefinitionProblem(f"$[{i}]", "a tool definition must be an object"))
            continue
        body, original, notes = normalize_definition(definition, f"$[{i}]")
        problems.extend(notes)
        params = body["parameters"]
        for key, prop in (params.get("properties") or {}).items():
            if isinstance(prop, Mapping) and not prop.get("description"):
                where = ".function" if "function" in definition else ""
                problems.append(
                    DefinitionProblem(
                        f"$[{i}]{where}.parameters.properties.{key}.description",
                        "missing (Workers AI requires a description on every property)",
                    )
                )
        if body["name"] in seen:
            problems.append(
                DefinitionProblem(f"$[{i}].name", f"{original!r} duplicates $[{seen[body['name']]}]")
            )
        seen.setdefault(body["name"], i)
    return problems
