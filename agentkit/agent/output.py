"""Structured answers: the schema an `output_type` makes, its wire shape, the validation of the
answer, the message that asks for a fix, and the partial value of a streamed answer.

The answer is always a JSON object on the wire, because every runtime's answer format wants one
(OpenAI's strict mode requires an object at the root). An output type whose schema is an object
(a pydantic model, a dataclass, a TypedDict, a `dict[...]`, an object JSON Schema) is sent as
is; any other (`int`, `list[str]`, a union, a scalar JSON Schema) is wrapped as
`{"result": <value>}`, and unwrapped again before validation. A model that answers the bare
value anyway is accepted.

Runtimes whose capabilities include `response_format` get the schema as
`{"type": "json_schema", "json_schema": <schema>}` and hold the model to it; others are told the
schema in the system message. Either way the answer is validated: an invalid one is told back to
the model with its field errors, `max_output_retries` times, before `OutputValidationError`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Mapping
from typing import Any, Generic, TypeVar

import jsonschema_rs
from pydantic import TypeAdapter, ValidationError

from agentkit._partial_json import PartialJSON
from agentkit._validation import field_errors, path_of, show
from agentkit.agent.core import RunCore
from agentkit.agent.events import Event, PartialOutput
from agentkit.agent.results import RunResult
from agentkit.errors import FieldError, OutputValidationError, UserError
from agentkit.model_api import Message
from agentkit.runtimes.base import Runtime
from agentkit.tools.arguments import parse_near_json
from agentkit.tools.formats import meta_problems

__all__ = ["WRAPPER_KEY", "OutputErrors", "OutputSpec", "output_spec"]

T = TypeVar("T")

_FIRST_KEY = re.compile(r'\s*(?:```[\w-]*\s*)?\{\s*"([^"\\]*)"')
_NAME = re.compile(r'"name"\s*:\s*"([^"\\]*)"')

WRAPPER_KEY = "result"
"""The key a non-object output is wrapped under on the wire: `{"result": 42}`."""


def _root(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The schema with a root `$ref` (pydantic's form for a recursive model) replaced by its
    target, the definitions kept for the references inside it."""
    ref = schema.get("$ref")
    defs = schema.get("$defs")
    if isinstance(ref, str) and ref.startswith("#/$defs/") and isinstance(defs, Mapping):
        target = defs.get(ref.removeprefix("#/$defs/"))
        if isinstance(target, Mapping) and set(schema) <= {"$ref", "$defs"}:
            return {**target, "$defs": dict(defs)}
    return dict(schema)


def _is_object(schema: Mapping[str, Any]) -> bool:
    """Whether the schema describes a JSON object (`properties` with no `type` counts)."""
    kind = schema.get("type")
    return kind == "object" or (kind is None and "properties" in schema)


def _wrap(schema: Mapping[str, Any]) -> dict[str, Any]:
    """`{"result": schema}` as an object schema, the definitions kept at the root."""
    inner = {k: v for k, v in schema.items() if k not in ("$defs", "$schema")}
    out: dict[str, Any] = {
        "type": "object",
        "properties": {WRAPPER_KEY: inner},
        "required": [WRAPPER_KEY],
        "additionalProperties": False,
    }
    if "$defs" in schema:
        out["$defs"] = schema["$defs"]
    return out


class OutputSpec(Generic[T]):
    """What an Agent needs to ask for, check and return one output type.

    Build it with `output_spec`; the Agent keeps one and uses it on every run.
    """

    def __init__(
        self,
        schema: dict[str, Any],
        check: Callable[[Any], T],
        result_type: type[RunResult[T]],
        *,
        enforced: bool,
        max_retries: int,
    ) -> None:
        schema = _root(schema)
        self.wrapped = not _is_object(schema)
        self.schema = _wrap(schema) if self.wrapped else schema
        """The JSON Schema of the answer on the wire: always an object."""
        self.response_format = {"type": "json_schema", "json_schema": self.schema}
        """The request's `response_format`, in agentkit's shape."""
        self.enforced = enforced
        """Whether the runtime holds the model to the schema (else the schema is told)."""
        self.max_retries = max_retries
        self._check = check
        self._result_type = result_type

    # -- asking ----------------------------------------------------------------------------

    def instructions(self, instructions: str | None) -> str | None:
        """The system message: as given when the runtime enforces the format, else with the
        schema told after it."""
        if self.enforced:
            return instructions
        told = (
            "When you answer (after any tool calls you need), answer with only a JSON object, "
            "no other text, that matches this JSON Schema:\n"
            + json.dumps(self.schema, ensure_ascii=False, separators=(",", ":"))
        )
        return f"{instructions}\n\n{told}" if instructions else told

    def fix_message(self, errors: list[FieldError]) -> str:
        """What the model is told when its answer does not fit."""
        listed = "\n".join(f"- {e}" for e in errors)
        return (
            "Your answer does not match the required JSON Schema:\n"
            f"{listed}\n"
            "Answer again with only the corrected JSON object."
        )

    def begins_answer(self, text: str, tools: Collection[str]) -> bool:
        """Whether text cut off by `max_tokens` is more likely this answer than a tool call:
        its first key is a property of the answer, and no `"name"` in it names a tool."""
        first = _FIRST_KEY.match(text)
        if first is None or first[1] not in self.schema.get("properties", {}):
            return False
        named = _NAME.search(text)
        return named is None or named[1] not in tools

    # -- checking --------------------------------------------------------------------------

    def validate(self, text: str) -> T:
        """The answer's value.

        Raises:
            OutputErrors: it does not fit; `errors` says why, field by field.
        """
        if not text.strip():
            raise OutputErrors([FieldError("", "is empty; answer with the JSON object")])
        try:
            value = json.loads(text)
        except ValueError:
            try:  # near-JSON: in a code fence, with text around it, trailing commas, ...
                value, _ = parse_near_json(text)
            except ValueError:
                message = f"is not valid JSON (got {show(text)})"
                raise OutputErrors([FieldError("", message)]) from None
        prefix: tuple[str, ...] = ()
        if self.wrapped and isinstance(value, dict) and WRAPPER_KEY in value:
            value, prefix = value[WRAPPER_KEY], (WRAPPER_KEY,)
        try:
            return self._check(value)
        except OutputErrors as exc:
            raise OutputErrors(
                [FieldError(_join_path(prefix, e.path), e.message) for e in exc.errors]
            ) from None
        except ValidationError as exc:
            raise OutputErrors(field_errors(exc, prefix)) from None

    def settle(self, run: RunCore, text: str, result: RunResult) -> RunResult[T] | None:
        """The typed result of an answer; None when it did not fit and the model was asked
        to fix it (its next answer is settled again).

        Raises:
            OutputValidationError: it did not fit and the retries are spent.
        """
        try:
            value = self.validate(text)
        except OutputErrors as exc:
            errors = exc.errors
            if result.truncated:
                cut = FieldError("", "was cut off by max_tokens before it was complete")
                errors = [cut, *errors]
            if run.output_retries >= self.max_retries:
                partial = run.outcome(text, "invalid_output", result.truncated)
                raise OutputValidationError(errors, text, run.output_retries, partial) from None
            run.output_retries += 1
            run.messages.append(Message.user(self.fix_message(errors)))
            return None
        fields = {name: getattr(result, name) for name in type(result).model_fields}
        return self._result_type.model_construct(**{**fields, "output": value})

    # -- streaming -------------------------------------------------------------------------

    def watcher(self, step: int, emit: Callable[[Event], None], path: str) -> Callable[[str], None]:
        """A function to feed a step's text deltas; it emits `PartialOutput` (from the agent
        at `path`) whenever the value parsed so far changes."""
        parser = PartialJSON()
        last: list[Any] = []

        def feed(delta: str) -> None:
            if not parser.feed(delta):
                return
            value = parser.value()
            if self.wrapped and isinstance(value, dict):
                if WRAPPER_KEY not in value:
                    return
                value = value[WRAPPER_KEY]
            if last and last[0] == value:
                return
            last[:] = [value]
            emit(PartialOutput(step, value, path))

        return feed


def _join_path(prefix: tuple[str, ...], path: str) -> str:
    if not prefix:
        return path
    if not path:
        return prefix[0]
    return prefix[0] + (path if path.startswith("[") else "." + path)


def _schema_errors(validator: jsonschema_rs.Validator, value: Any) -> list[FieldError]:
    """A JSON Schema's errors; a missing property is named as the field, as pydantic does."""
    out = []
    for error in validator.iter_errors(value):
        path = list(error.instance_path)
        if isinstance(error.kind, jsonschema_rs.ValidationErrorKind.Required):
            out.append(FieldError(path_of([*path, error.kind.property]), "is required"))
        else:
            out.append(FieldError(path_of(path), error.message))
    return out


class OutputErrors(ValueError):
    """An answer does not fit the output type; `errors` names each failing field."""

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = errors
        super().__init__("; ".join(str(e) for e in errors))


def output_spec(output_type: Any, runtime: Runtime, *, max_retries: int) -> OutputSpec[Any] | None:
    """The spec of an Agent's `output_type` on `runtime` (None for plain text: no type, or
    `str`).

    Raises:
        UserError: the type has no JSON Schema, or a schema dict is not a valid JSON Schema.
        AgentKitError: the runtime cannot hold its model to the schema (from
            `runtime.check_response_format`), naming the keyword and its path.
    """
    if output_type is None or output_type is str:
        return None
    if max_retries < 0:
        raise UserError(f"max_output_retries: must be >= 0 (got {max_retries})")
    check: Callable[[Any], Any]
    if isinstance(output_type, Mapping):
        schema = dict(output_type)
        problems = meta_problems(schema)
        if problems:
            raise UserError("output_type: not a valid JSON Schema: " + "; ".join(problems))
        validator = jsonschema_rs.validator_for(schema)

        def check(value: Any) -> Any:
            errors = _schema_errors(validator, value)
            if errors:
                raise OutputErrors(errors)
            return value

        result_type: type[RunResult[Any]] = RunResult[Any]
    else:
        try:
            adapter: TypeAdapter[Any] = TypeAdapter(output_type)
            schema = adapter.json_schema()
        except Exception as exc:  # pydantic's several errors for types it cannot handle
            raise UserError(
                f"output_type: {output_type!r} has no JSON Schema: {exc}".split("\n")[0]
            ) from None
        check = adapter.validate_python
        result_type = RunResult[output_type]
    enforced = runtime.capabilities.response_format
    spec = OutputSpec(schema, check, result_type, enforced=enforced, max_retries=max_retries)
    if enforced:
        runtime.check_response_format(spec.response_format)
    return spec
