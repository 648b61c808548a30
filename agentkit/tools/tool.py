"""`Tool` and the `@tool` decorator.

A tool's schema (in every dialect) and its one argument validator are built once, when the tool
is built; the meta-schema check runs then too, so a broken tool fails at import.
"""

from __future__ import annotations

import copy
import functools
import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, overload

import jsonschema_rs
from pydantic import ValidationError
from pydantic_core import SchemaValidator
from typing_extensions import Unpack

from agentkit._validation import field_errors, show
from agentkit.errors import FieldError, ToolArgumentsError, ToolDefinitionError
from agentkit.model_api import FunctionDefinition, SchemaDialect
from agentkit.tools.arguments import ValidatedArguments, parse_near_json, schema_errors
from agentkit.tools.formats import (
    DefinitionProblem,
    meta_problems,
    normalize_definition,
    strict_problems,
    to_strict,
    workers_ai_ready,
)
from agentkit.tools.options import Approval, ToolOptions, settle_options
from agentkit.tools.signature import read_signature

__all__ = ["Approval", "Tool", "tool", "validate_tool_definitions"]


class Tool:
    """A function (or a foreign definition) the model can call.

    Build one with `@tool` or `Tool.from_definition(...)`. A decorated function stays callable
    as itself. Every way of building one takes the same keyword options, `ToolOptions`.
    """

    context_param: str | None = None
    """The function's parameter that takes the run's `RunContext`, if it has one: each call
    gets one, and the parameter is in neither tool shape nor the argument validation."""

    def __init__(
        self,
        function: Callable[..., Any] | None,
        *,
        name: str,
        description: str,
        parameters: dict[str, Any],
        validator: SchemaValidator | None = None,
        defaults: Mapping[str, Any] | None = None,
        original_name: str | None = None,
        normalization_report: Sequence[str] = (),
        **options: Unpack[ToolOptions],
    ) -> None:
        settled = settle_options(name, options)
        self.function = function
        self.name = name
        self.description = description
        self.sequential = settled["sequential"]
        self.timeout = settled["timeout"]
        self.max_retries = settled["max_retries"]
        self.idempotent = settled["idempotent"]
        """Running a call twice does no more than running it once: safe to retry after a crash."""
        self.requires_approval = settled["requires_approval"]
        """A person approves each call (True), or the calls whose validated arguments this
        predicate holds for, before it runs."""
        self.original_name = original_name or name
        """The name as the definition gave it (before a dotted name was made valid)."""
        self.normalization_report = list(normalization_report)
        """What `from_definition` changed to make the definition standard, with JSON paths."""
        self.is_async = function is not None and inspect.iscoroutinefunction(function)
        problems = meta_problems(parameters)
        if problems:
            raise ToolDefinitionError(name, [f"parameters schema: {p}" for p in problems])
        # The other dialects are derived on first use: most tools are only ever sent in one.
        self._schemas: dict[str, dict[str, Any]] = {"full": parameters}
        self._inline_problem: str | None = None
        self._strict_problems: list[str] | None = None
        if settled["strict"] and self.strict_report():
            raise ToolDefinitionError(name, ["cannot be strict", *self.strict_report()])
        self._definitions: dict[str, FunctionDefinition] = {}
        # The one validator: pydantic's for a function, a compiled JSON Schema otherwise.
        self._check: Callable[[Any], dict[str, Any]] | None = None
        self._schema_validator: jsonschema_rs.Validator | None = None
        if validator is not None:
            # It keeps known keys only and fills in no default (see `validate`).
            self._check = validator.validate_python
            self._known = frozenset(parameters["properties"])
            self._size = len(self._known)
            self._defaults = [
                (key, value, _is_mutable(value)) for key, value in (defaults or {}).items()
            ]
        else:
            self._schema_validator = jsonschema_rs.validator_for(parameters)
        if function is not None:
            # What `functools.update_wrapper` does, attribute by attribute: it would update
            # `self.__dict__` wholesale, and a materialized instance dict makes every attribute
            # read of this object slower (a fifth of a validation).
            for assigned in functools.WRAPPER_ASSIGNMENTS:
                if hasattr(function, assigned):
                    setattr(self, assigned, getattr(function, assigned))
            for key, value in vars(function).items():
                setattr(self, key, value)
            self.__wrapped__ = function

    # -- construction -----------------------------------------------------------------------

    @classmethod
    def from_function(
        cls,
        function: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        **options: Unpack[ToolOptions],
    ) -> Tool:
        """A tool from a plain function; see `@tool`."""
        tool_name = name or function.__name__
        signature = read_signature(function, tool_name)
        made = cls(
            function,
            name=tool_name,
            description=description if description is not None else signature.description,
            parameters=signature.schema,
            validator=signature.validator,
            defaults=signature.defaults,
            **options,
        )
        made.context_param = signature.context
        return made

    @classmethod
    def from_definition(
        cls,
        definition: Mapping[str, Any],
        handler: Callable[..., Any] | None = None,
        **options: Unpack[ToolOptions],
    ) -> Tool:
        """A tool from a definition in either shape, sloppy dialects included.

        Non-standard types (`dict`, `float`, `tuple`, `any`, ...), invalid names (`spotify.play`),
        defaults that don't match their type, `required` entries naming no property and an
        `enum` or `const` whose values contradict the `type` (the values are converted when all
        of them convert, else the type becomes theirs) are fixed; `normalization_report` says
        what changed. `handler`, if given, is called with the validated arguments as keywords;
        `options` are those of `@tool`.

        Raises:
            ToolDefinitionError: the definition cannot be made a valid tool (not a JSON Schema,
                or nested deeper than `MAX_NESTING` levels).
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
            original_name=original,
            normalization_report=[str(n) for n in notes],
            **options,
        )

    # -- shapes -----------------------------------------------------------------------------

    def parameters_schema(self, dialect: SchemaDialect = "full") -> dict[str, Any]:
        """The parameters' JSON Schema in a dialect.

        Raises:
            ToolDefinitionError: the tool cannot be expressed in that dialect (the reasons are
                listed; see `strict_report()`).
        """
        found = self._schemas.get(dialect)
        if found is not None:
            return found
        full = self._schemas["full"]
        if dialect == "inline":
            if self._inline_problem is None:
                try:
                    found = self._schemas["inline"] = workers_ai_ready(full)
                except ValueError as exc:
                    self._inline_problem = str(exc)
            if found is None:
                raise ToolDefinitionError(self.name, [self._inline_problem or ""])
            return found
        if dialect == "strict":
            if self.strict_report():
                raise ToolDefinitionError(self.name, ["cannot be strict", *self.strict_report()])
            found = self._schemas["strict"] = to_strict(full)
            return found
        raise ToolDefinitionError(self.name, [f"unknown schema dialect {dialect!r}"])

    def strict_report(self) -> list[str]:
        """Per parameter, why this tool cannot be sent in OpenAI strict mode (empty: it can)."""
        if self._strict_problems is None:
            self._strict_problems = strict_problems(self._schemas["full"])
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

    def check(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """Validate arguments already parsed into a dict (what a parsed tool call holds).

        The hot path: one call of the tool's validator. Returns the keyword arguments,
        coerced to the Python values the function takes, defaults filled in.

        Raises:
            ToolArgumentsError: listing every failing field with its path.
        """
        check = self._check
        if check is not None:
            try:
                values: dict[str, Any] = check(arguments)
            except ValidationError as exc:
                errors = [*field_errors(exc), *self._unknown_keys(arguments)]
                raise ToolArgumentsError(self.name, errors) from None
            # Only known keys were kept: equal sizes mean no unknown key and no default to add.
            if len(values) == len(arguments) == self._size:
                return values
            if len(values) != len(arguments):
                raise ToolArgumentsError(self.name, self._unknown_keys(arguments))
            for key, default, mutable in self._defaults:
                if key not in values:
                    values[key] = copy.deepcopy(default) if mutable else default
            return values
        assert self._schema_validator is not None
        if not self._schema_validator.is_valid(arguments):
            errors = schema_errors(self._schema_validator, arguments)
            raise ToolArgumentsError(self.name, errors)
        return dict(arguments)

    def needs_approval(self, arguments: Mapping[str, Any]) -> bool:
        """Whether a call with these validated arguments waits for a person's approval."""
        rule = self.requires_approval
        return bool(rule(dict(arguments))) if callable(rule) else rule

    def validate(self, arguments: Mapping[str, Any] | str | None) -> ValidatedArguments:
        """Validate the model's arguments: a dict, or JSON text that may need repair.

        Raises:
            ToolArgumentsError: listing every failing field with its path; `raw` keeps the text.
        """
        if type(arguments) is dict:
            return ValidatedArguments(self.check(arguments))
        raw = arguments if isinstance(arguments, str) else None
        parsed, repairs = self._parse(arguments)
        try:
            return ValidatedArguments(self.check(parsed), repairs)
        except ToolArgumentsError as exc:
            exc.raw = raw
            raise

    def _parse(
        self, arguments: Mapping[str, Any] | str | None
    ) -> tuple[Mapping[str, Any], tuple[str, ...]]:
        if arguments is None:
            return {}, ()
        if not isinstance(arguments, str):
            return arguments, ()
        try:
            parsed, repairs = parse_near_json(arguments)
        except ValueError as exc:
            raise ToolArgumentsError(self.name, [FieldError("", str(exc))], arguments) from None
        if not isinstance(parsed, Mapping):
            error = FieldError("", f"arguments must be a JSON object (got {parsed!r:.60})")
            raise ToolArgumentsError(self.name, [error], arguments)
        return parsed, repairs

    def _unknown_keys(self, arguments: Any) -> list[FieldError]:
        if not isinstance(arguments, Mapping):
            return []
        return [
            FieldError(str(key), f"is not a known field (got {show(value)})")
            for key, value in arguments.items()
            if key not in self._known
        ]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.function is None:
            raise TypeError(f"tool {self.name!r} has no handler to call")
        return self.function(*args, **kwargs)

    def __repr__(self) -> str:
        return f"Tool({self.name!r})"


def _is_mutable(value: Any) -> bool:
    """Whether a default must be copied for each call, as pydantic does (unhashable ones)."""
    try:
        hash(value)
    except TypeError:
        return True
    return False


@overload
def tool(function: Callable[..., Any], /) -> Tool: ...


@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    **options: Unpack[ToolOptions],
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    function: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    **options: Unpack[ToolOptions],
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Make a sync or async function a tool, bare (`@tool`) or with options.

    Args:
        function: the function (when used bare).
        name: the tool's name; the function's name by default.
        description: the tool's description; the docstring's by default.
        **options: how its calls are run (`ToolOptions`): `sequential`, `timeout`,
            `max_retries`, `strict`, `idempotent`, `requires_approval`.

    Raises:
        TypeError: an option that does not exist.
        ToolDefinitionError: the function cannot be a tool, or an option's value cannot work.
    """
    if function is not None:
        return Tool.from_function(function, name=name, description=description, **options)

    def decorate(fn: Callable[..., Any]) -> Tool:
        return Tool.from_function(fn, name=name, description=description, **options)

    return decorate


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
                DefinitionProblem(
                    f"$[{i}].name", f"{original!r} duplicates $[{seen[body['name']]}]"
                )
            )
        seen.setdefault(body["name"], i)
    return problems
