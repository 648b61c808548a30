"""The Workers AI text-generation contract of `@cf/meta/llama-3.1-8b-instruct`, both ways.

The request schema with every bound of the reference (a broken request raises
`RequestValidationError` naming the field, the bound and the value: `temperature: must be <= 5
(got 6)`), the `result` of a generation, the server-sent chunks of a stream, the envelope and the
error codes. `agentkit.runtimes.workers_ai` speaks it as a client, `agentkit serve` as a server.

Types are as strict as the contract's JSON Schema: `raw: "yes"`, `max_tokens: "10"` or
`seed: true` are refused, never coerced.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from agentkit._validation import field_errors
from agentkit.errors import FieldError, RequestValidationError, UnsupportedFeature
from agentkit.model_api import (
    MAX_TEXT,
    SAMPLING_FIELDS,
    FunctionDefinition,
    Generation,
    Message,
    ModelRequest,
    StreamChunk,
    ToolShape,
)
from agentkit.wire._ids import with_stable_ids

__all__ = [
    "CODE_STATUS",
    "FunctionCode",
    "GenerationRequest",
    "decode_chunk",
    "decode_error",
    "decode_request",
    "decode_result",
    "encode_chunk",
    "encode_request",
    "encode_result",
    "envelope",
    "error_envelope",
    "generation_json_schema",
    "is_failure",
    "loads",
    "request_json_schema",
]

# The contract's error codes (Workers AI's own where it has one).
INTERNAL = 5000
LORA_UNSUPPORTED = 5005
BAD_INPUT = 5006
NO_SUCH_MODEL = 5007
INCOMPLETE_REQUEST = 3003
TOO_LARGE = 3006
TIMED_OUT = 3007
ABORTED = 3008
DAILY_LIMIT = 3036
OUT_OF_CAPACITY = 3040
NO_ROUTE = 7000
AUTHENTICATION = 10000

CODE_STATUS: dict[int, int] = {
    INCOMPLETE_REQUEST: 400,
    TOO_LARGE: 413,
    TIMED_OUT: 408,
    ABORTED: 408,
    DAILY_LIMIT: 429,
    OUT_OF_CAPACITY: 429,
    LORA_UNSUPPORTED: 405,
    BAD_INPUT: 400,
    NO_SUCH_MODEL: 400,
    AUTHENTICATION: 401,
}
"""The HTTP status each code stands for (an envelope may carry a code with a 200)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FunctionCode(_Model):
    """An item of the contract's `functions` field: a name and a code string."""

    name: str
    code: str


_Text = Annotated[str, Field(min_length=1, max_length=MAX_TEXT, strict=True)]


class GenerationRequest(_Model):
    """A request on the Workers AI wire: exactly one of `prompt` or `messages`.

    Fields and bounds follow the Workers AI schema of `@cf/meta/llama-3.1-8b-instruct`.
    `tool_choice` and `parallel_tool_calls` are agentkit extensions that `agentkit serve` reads;
    they are sent only when set. Runtimes take a `ModelRequest`; they also accept this type and
    read it as `to_model()` does.
    """

    prompt: _Text | None = None
    """The prompt form's input text."""
    messages: list[Message] | None = None
    """The messages form's conversation."""
    raw: bool = Field(default=False, strict=True)
    """Send `prompt` to the model as is, with no chat template."""
    stream: bool = Field(default=False, strict=True)
    """Answer as a stream of chunks (server-sent events on the wire)."""
    max_tokens: int = Field(default=256, ge=1, strict=True)
    """The most tokens to generate."""
    temperature: float = Field(default=0.6, ge=0, le=5, strict=True)
    """Sampling temperature; 0 is greedy."""
    top_p: float | None = Field(default=None, ge=0, le=2, strict=True)
    top_k: int | None = Field(default=None, ge=1, le=50, strict=True)
    seed: int | None = Field(default=None, ge=1, le=9_999_999_999, strict=True)
    repetition_penalty: float | None = Field(default=None, ge=0, le=2, strict=True)
    frequency_penalty: float | None = Field(default=None, ge=0, le=2, strict=True)
    presence_penalty: float | None = Field(default=None, ge=0, le=2, strict=True)
    lora: str | None = Field(default=None, strict=True)
    """Name of a LoRA adapter to apply to the base model."""
    image: list[Annotated[int, Field(ge=0, le=255, strict=True)]] | str | None = None
    """Image bytes; text-only models refuse it."""
    functions: list[FunctionCode] | None = None
    """Accepted by the contract; agentkit never executes code strings."""
    tools: list[FunctionDefinition] | None = None
    """Tools the model may call, given in either shape."""
    response_format: dict[str, Any] | None = None
    """`{type: "json_object"}` or `{type: "json_schema", json_schema: {...}}`."""
    tool_choice: str = Field(default="auto", strict=True)
    """agentkit extension: `auto`, `required`, `none`, or the name of one tool."""
    parallel_tool_calls: bool | None = Field(default=None, strict=True)
    """agentkit extension: may one answer hold several tool calls (None: the runtime's
    default; the local runtime allows one unless this is True)."""

    @model_validator(mode="after")
    def _one_form(self) -> GenerationRequest:
        if (self.prompt is None) == (self.messages is None):
            given = "both" if self.prompt is not None else "neither"
            raise ValueError(f"exactly one of prompt or messages is required (got {given})")
        if self.raw and self.prompt is None:
            raise ValueError("raw: only the prompt form can be sent raw (got messages)")
        return self

    @classmethod
    def build(cls, data: Mapping[str, Any] | None = None, /, **fields: Any) -> GenerationRequest:
        """Validate a request; errors name the field, the bound and the value.

        Raises:
            RequestValidationError: listing every failing field.
        """
        try:
            return cls.model_validate({**(data or {}), **fields})
        except ValidationError as exc:
            raise RequestValidationError(field_errors(exc)) from None

    def to_model(self, runtime: str = "agentkit") -> ModelRequest:
        """The internal request: the prompt form becomes one user message (or the raw prompt).

        Args:
            runtime: the name of the runtime it is for, named in a refusal.

        Raises:
            UnsupportedFeature: `image` or `functions` is set; no agentkit runtime reads them.
        """
        if self.image is not None:
            raise UnsupportedFeature("image", runtime, "this model reads text only")
        if self.functions:
            raise UnsupportedFeature("functions", runtime, "agentkit does not execute code strings")
        messages = list(self.messages or [])
        if self.prompt is not None and not self.raw:
            messages = [Message.user(self.prompt)]
        return ModelRequest.model_construct(
            messages=messages,
            tools=list(self.tools or []),
            tool_choice=self.tool_choice,
            parallel_tool_calls=self.parallel_tool_calls,
            response_format=self.response_format,
            lora=self.lora,
            raw_prompt=self.prompt if self.raw else None,
            **{name: getattr(self, name) for name in SAMPLING_FIELDS},
        )

    def to_wire(self, tool_shape: ToolShape = "legacy") -> dict[str, Any]:
        """The request body: only fields that are set, extensions only when not the default."""
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is None or (name in _DEFAULT_OFF and value == _DEFAULT_OFF[name]):
                continue
            out[name] = value
        if self.messages is not None:
            out["messages"] = [m.to_wire(tool_shape) for m in self.messages]
        if self.tools:
            out["tools"] = [t.to_wire(tool_shape) for t in self.tools]
        if self.functions:
            out["functions"] = [f.model_dump() for f in self.functions]
        return out

    def sampling(self) -> dict[str, Any]:
        """The sampling fields that are set, by name."""
        return {n: getattr(self, n) for n in SAMPLING_FIELDS if getattr(self, n) is not None}


_DEFAULT_OFF: dict[str, Any] = {"raw": False, "stream": False, "tool_choice": "auto"}


def decode_request(body: Mapping[str, Any], runtime: str = "agentkit") -> ModelRequest:
    """The internal request for a request body.

    Raises:
        RequestValidationError: naming each field, its bound and the value.
        UnsupportedFeature: the body sets `image` or `functions`.
    """
    return GenerationRequest.build(body).to_model(runtime)


def encode_request(
    request: ModelRequest, *, tool_shape: ToolShape = "legacy", stream: bool = False
) -> dict[str, Any]:
    """The request body for a model request (messages form, or the raw prompt form)."""
    out: dict[str, Any] = {}
    if request.raw_prompt is not None:
        out.update(prompt=request.raw_prompt, raw=True)
    else:
        out["messages"] = [m.to_wire(tool_shape) for m in request.messages]
    out.update(request.sampling())
    if request.tools:
        out["tools"] = [t.to_wire(tool_shape) for t in request.tools]
    if request.tool_choice != "auto":
        out["tool_choice"] = request.tool_choice
    for name in ("parallel_tool_calls", "response_format", "lora"):
        if getattr(request, name) is not None:
            out[name] = getattr(request, name)
    if stream:
        out["stream"] = True
    return out


def request_json_schema() -> dict[str, Any]:
    """JSON Schema of the request (input) model."""
    return GenerationRequest.model_json_schema()


def generation_json_schema() -> dict[str, Any]:
    """JSON Schema of the generation (output) model."""
    return Generation.model_json_schema(mode="serialization")


def decode_result(result: Mapping[str, Any], seed: str = "") -> Generation:
    """A generation from the `result` object of an answer (either tool-call shape); calls that
    come without an id get one made from `seed`."""
    calls = with_stable_ids(result.get("tool_calls"), seed)
    return Generation.model_validate({**result, "tool_calls": calls})


def encode_result(generation: Generation, tool_shape: ToolShape = "legacy") -> dict[str, Any]:
    """The `result` object of an answer."""
    return generation.to_wire(tool_shape)


def decode_chunk(data: Mapping[str, Any], seed: str = "") -> StreamChunk:
    """One stream event's data as a chunk (an object `response` in JSON mode becomes text)."""
    value = data.get("response")
    text = (
        value if isinstance(value, str) or value is None else json.dumps(value, ensure_ascii=False)
    )
    return StreamChunk.model_validate(
        {
            "response": text or "",
            "tool_calls": with_stable_ids(data.get("tool_calls"), seed),
            "usage": data.get("usage"),
        }
    )


def encode_chunk(chunk: StreamChunk, tool_shape: ToolShape = "legacy") -> dict[str, Any]:
    """One stream event's data."""
    return chunk.to_wire(tool_shape)


def envelope(result: Any) -> dict[str, Any]:
    """The success envelope around `result`."""
    return {"result": result, "success": True, "errors": [], "messages": []}


def error_envelope(code: int, *messages: str) -> dict[str, Any]:
    """The failure envelope: one `{code, message}` per problem."""
    return {
        "result": None,
        "success": False,
        "errors": [{"code": code, "message": m} for m in messages],
        "messages": [],
    }


def decode_error(body: Any, text: str = "") -> tuple[str, int | None]:
    """The message and code of an error answer: the Cloudflare envelope, OpenAI's `error`
    object, or another service's `detail` / `message`; the raw text when none of them."""
    if isinstance(body, Mapping):
        errors = body.get("errors")
        if isinstance(errors, list) and errors:
            first = errors[0] if isinstance(errors[0], Mapping) else {"message": str(errors[0])}
            code = first.get("code")
            messages = [
                str(e.get("message", e)) if isinstance(e, Mapping) else str(e) for e in errors
            ]
            return "; ".join(messages), code if isinstance(code, int) else None
        error = body.get("error")
        if isinstance(error, Mapping):
            message = str(error.get("message") or error.get("type") or "")
            code = error.get("code")
            if isinstance(code, str) and code:
                message = f"{message} ({code})"
            return message, code if isinstance(code, int) else None
        if isinstance(error, str):
            return error, None
        for key in ("detail", "message"):
            if body.get(key):
                return str(body[key]), None
    return text.strip()[:1000] or "no error message in the response", None


def is_failure(body: Any) -> bool:
    """True when an envelope says the call failed (even with HTTP 200)."""
    return isinstance(body, Mapping) and body.get("success") is False


class _LongNumber:
    """Stands in for an integer too long for Python to read, so its place can be named."""

    def __init__(self, text: str) -> None:
        self.digits = len(text.lstrip("-"))


def _find_long(value: Any, path: str = "") -> tuple[str, _LongNumber] | None:
    if isinstance(value, _LongNumber):
        return path or "body", value
    items: Any = ()
    if isinstance(value, dict):
        items = ((f"{path}.{k}" if path else str(k), v) for k, v in value.items())
    elif isinstance(value, list):
        items = ((f"{path}[{n}]", v) for n, v in enumerate(value))
    for where, item in items:
        found = _find_long(item, where)
        if found is not None:
            return found
    return None


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def loads(body: bytes | bytearray | str) -> Any:
    """A JSON body as the wire reads it; an integer too long to read is refused by its place.

    Raises:
        RequestValidationError: `max_tokens: must have at most 4300 digits (got 5000 digits)`.
        ValueError: the body is not JSON (`json.JSONDecodeError`, `UnicodeDecodeError`).
    """
    try:
        return json.loads(body, parse_constant=_not_json)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise
    except ValueError:
        limit = sys.get_int_max_str_digits()
        found = _find_long(
            json.loads(
                body,
                parse_constant=_not_json,
                parse_int=lambda t: _LongNumber(t) if len(t) > limit else int(t),
            )
        )
        if found is None:
            raise
        path, number = found
        message = f"must have at most {limit} digits (got {number.digits} digits)"
        raise RequestValidationError([FieldError(path, message)]) from None
