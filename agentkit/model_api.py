"""The Workers AI text-generation contract of `@cf/meta/llama-3.1-8b-instruct`.

Requests (prompt form or messages form), messages, tool calls, generations, stream chunks and
usage, with wire (de)serialisation for both tool-call shapes:

- legacy: `{"name": "f", "arguments": {...}}` (no id; one is made up and kept);
- OpenAI: `{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{...}"}}`.

Every bound of the reference is enforced, and a broken request raises `RequestValidationError`
naming the field, the bound and the value: `temperature: must be <= 5 (got 6)`.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from agentkit._validation import field_errors
from agentkit.errors import RequestValidationError

__all__ = [
    "DEFAULT_MODEL",
    "FunctionCode",
    "FunctionDefinition",
    "Generation",
    "GenerationRequest",
    "Message",
    "Role",
    "StreamChunk",
    "ToolCall",
    "ToolShape",
    "Usage",
    "generation_json_schema",
    "parse_arguments",
    "request_json_schema",
]

DEFAULT_MODEL = "@cf/meta/llama-3.1-8b-instruct"
MAX_TEXT = 131_072

Role = Literal["system", "user", "assistant", "tool"]
ToolShape = Literal["legacy", "function"]
"""`legacy`: `{name, description, parameters}`;
`function`: `{type: "function", function: {...}}`."""

FinishReason = Literal["stop", "length", "tool_calls"]


def _new_call_id() -> str:
    return "call_" + secrets.token_hex(12)


def parse_arguments(arguments: Any) -> dict[str, Any]:
    """Tool-call arguments as a dict, from an object or a JSON string (empty means none).

    Raises:
        ValueError: the string is not JSON, or the JSON is not an object.
    """
    if arguments is None or arguments == "":
        return {}
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError as exc:
            raise ValueError(f"arguments are not valid JSON: {exc.msg} at {exc.pos}") from None
        if isinstance(arguments, str):  # encoded twice: a JSON string holding the JSON object
            return parse_arguments(arguments)
    if not isinstance(arguments, Mapping):
        raise ValueError(f"arguments must be a JSON object (got {type(arguments).__name__})")
    return dict(arguments)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=False)


class ToolCall(_Model):
    """One call of one tool, as the model asked for it."""

    id: str = Field(default_factory=_new_call_id)
    """The call id; made up (and then kept) when the wire gives none."""
    name: str
    """The tool's name."""
    arguments: dict[str, Any] = Field(default_factory=dict)
    """The arguments as a dict, whatever form they came in."""
    raw_arguments: str | None = Field(default=None, exclude=True, repr=False)
    """The arguments as the model wrote them, when they were not valid JSON."""

    @model_validator(mode="before")
    @classmethod
    def _from_wire(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        data = dict(data)
        function = data.pop("function", None)
        data.pop("type", None)
        if isinstance(function, Mapping):
            data.setdefault("name", function.get("name"))
            data.setdefault("arguments", function.get("arguments"))
        if "parameters" in data and "arguments" not in data:
            data["arguments"] = data.pop("parameters")
        if not data.get("id"):
            data.pop("id", None)
        raw = data.get("arguments")
        if not isinstance(raw, Mapping):
            try:
                data["arguments"] = parse_arguments(raw)
            except ValueError:
                data["arguments"] = {}
                data["raw_arguments"] = raw if isinstance(raw, str) else json.dumps(raw)
        return data

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> ToolCall:
        """A call in either wire shape, arguments as an object or a JSON string."""
        return cls.model_validate(data)

    def arguments_json(self) -> str:
        """The arguments as compact JSON (the raw text if they were not valid JSON)."""
        if self.raw_arguments is not None:
            return self.raw_arguments
        return json.dumps(self.arguments, ensure_ascii=False, separators=(",", ":"))

    def to_wire(self, shape: ToolShape = "function") -> dict[str, Any]:
        """`legacy`: `{name, arguments: {...}}`; `function`: the OpenAI shape with an id."""
        if shape == "legacy":
            return {"name": self.name, "arguments": self.arguments}
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments_json()},
        }


class Message(_Model):
    """One message of a conversation.

    Assistant messages may carry `tool_calls`; tool messages answer one call and carry its
    `tool_call_id` and the tool's `name`.
    """

    model_config = ConfigDict(extra="ignore")

    role: Role
    content: Annotated[str, Field(max_length=MAX_TEXT)] = ""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    tool_call_id: str | None = None
    name: str | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _content(cls, value: Any) -> Any:
        # OpenAI-style clients send null for a tool-calling assistant turn, and content parts.
        if value is None:
            return ""
        if isinstance(value, list):
            return "".join(p.get("text", "") if isinstance(p, Mapping) else str(p) for p in value)
        return value

    @model_validator(mode="after")
    def _roles(self) -> Message:
        if self.tool_calls and self.role != "assistant":
            raise ValueError(f"only assistant messages carry tool_calls (got role {self.role!r})")
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a tool message needs the tool_call_id of the call it answers")
        return self

    @classmethod
    def system(cls, content: str) -> Message:
        return cls(role="system", content=content)

    @classmethod
    def user(cls, content: str) -> Message:
        return cls(role="user", content=content)

    @classmethod
    def assistant(cls, content: str = "", tool_calls: list[ToolCall] | None = None) -> Message:
        return cls(role="assistant", content=content, tool_calls=tool_calls or [])

    @classmethod
    def tool(cls, content: str, *, tool_call_id: str, name: str) -> Message:
        return cls(role="tool", content=content, tool_call_id=tool_call_id, name=name)

    def to_wire(self, shape: ToolShape = "function") -> dict[str, Any]:
        """The message as Workers AI takes it: content always a string, never null."""
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            out["tool_calls"] = [c.to_wire(shape) for c in self.tool_calls]
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        if self.name is not None:
            out["name"] = self.name
        return out


class FunctionDefinition(_Model):
    """A tool as a model sees it; accepts the legacy and the function shape."""

    model_config = ConfigDict(extra="ignore")

    name: str = Field(min_length=1)
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})

    @model_validator(mode="before")
    @classmethod
    def _unwrap(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and isinstance(data.get("function"), Mapping):
            return data["function"]
        return data

    def to_wire(self, shape: ToolShape = "legacy") -> dict[str, Any]:
        body = {"name": self.name, "description": self.description, "parameters": self.parameters}
        return body if shape == "legacy" else {"type": "function", "function": body}


class FunctionCode(_Model):
    """An item of the contract's `functions` field: a name and a code string."""

    name: str
    code: str


ToolChoice = Literal["auto", "required", "none"] | str


_NOT_ON_THE_WIRE = {"tool_choice", "parallel_tool_calls", "messages", "tools", "functions"}


class GenerationRequest(_Model):
    """The input of one generation: exactly one of `prompt` or `messages`.

    Fields and bounds follow the Workers AI schema of `@cf/meta/llama-3.1-8b-instruct`.
    `tool_choice` is an agentkit extension (`auto`, `required`, `none` or a tool's name); it is
    not sent on the Workers AI wire.
    """

    prompt: Annotated[str, Field(min_length=1, max_length=MAX_TEXT)] | None = None
    """The prompt form's input text."""
    messages: list[Message] | None = None
    """The messages form's conversation."""
    raw: bool = False
    """Send `prompt` to the model as is, with no chat template."""
    stream: bool = False
    """Answer as a stream of chunks (server-sent events on the wire)."""
    max_tokens: int = Field(default=256, ge=1)
    """The most tokens to generate."""
    temperature: float = Field(default=0.6, ge=0, le=5)
    """Sampling temperature; 0 is greedy."""
    top_p: float | None = Field(default=None, ge=0, le=2)
    top_k: int | None = Field(default=None, ge=1, le=50)
    seed: int | None = Field(default=None, ge=1, le=9_999_999_999)
    repetition_penalty: float | None = Field(default=None, ge=0, le=2)
    frequency_penalty: float | None = Field(default=None, ge=0, le=2)
    presence_penalty: float | None = Field(default=None, ge=0, le=2)
    lora: str | None = None
    """Name of a LoRA adapter to apply to the base model."""
    image: list[Annotated[int, Field(ge=0, le=255)]] | str | None = None
    """Image bytes; text-only models refuse it."""
    functions: list[FunctionCode] | None = None
    """Accepted by the contract; agentkit never executes code strings."""
    tools: list[FunctionDefinition] | None = None
    """Tools the model may call, given in either shape."""
    response_format: dict[str, Any] | None = None
    """`{type: "json_object"}` or `{type: "json_schema", json_schema: {...}}`."""
    tool_choice: ToolChoice = Field(default="auto", exclude=True)
    """agentkit extension: `auto`, `required`, `none`, or the name of one tool."""
    parallel_tool_calls: bool | None = Field(default=None, exclude=True)
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

    def to_wire(self, tool_shape: ToolShape = "legacy") -> dict[str, Any]:
        """The request body for Workers AI: only the contract's fields, nothing unset."""
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if name in _NOT_ON_THE_WIRE or value is None:
                continue
            if name in {"raw", "stream"} and not value:
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
        names = (
            "max_tokens temperature top_p top_k seed repetition_penalty "
            "frequency_penalty presence_penalty"
        ).split()
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}


class Usage(_Model):
    """Token counts of one generation (or summed over a run)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cached_prompt_tokens: int | None = None
    """Prompt tokens served from a cache instead of evaluated (local runtime, some servers)."""

    def __add__(self, other: Usage) -> Usage:
        cached = (
            None
            if self.cached_prompt_tokens is None and other.cached_prompt_tokens is None
            else (self.cached_prompt_tokens or 0) + (other.cached_prompt_tokens or 0)
        )
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            total_tokens=self.total_tokens + other.total_tokens,
            cached_prompt_tokens=cached,
        )

    @classmethod
    def of(cls, prompt_tokens: int, completion_tokens: int, cached: int | None = None) -> Usage:
        return cls(
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            total_tokens=prompt_tokens + completion_tokens,
            cached_prompt_tokens=cached,
        )

    def to_wire(self) -> dict[str, int]:
        return self.model_dump(exclude_none=True)


def _response_text(value: Any) -> Any:
    # In JSON mode the service may answer an object instead of a string.
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return value


class _Output(_Model):
    """What generations and stream chunks share: text and tool calls, leniently read."""

    model_config = ConfigDict(extra="ignore")

    response: str = ""
    tool_calls: list[ToolCall] = Field(default_factory=list)

    @field_validator("response", mode="before")
    @classmethod
    def _response(cls, value: Any) -> Any:
        return _response_text(value)

    @field_validator("tool_calls", mode="before")
    @classmethod
    def _calls(cls, value: Any) -> Any:
        return [] if value is None else value


class Generation(_Output):
    """The output of one generation: `{response, tool_calls, usage}`."""

    usage: Usage = Field(default_factory=Usage)
    finish_reason: FinishReason | None = Field(default=None, exclude=True)
    """Why generation stopped, where the runtime knows: `stop`, `length` or `tool_calls`."""

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Generation:
        """A `result` object of the Workers AI envelope (either tool-call shape)."""
        return cls.model_validate(data)

    def to_wire(self, shape: ToolShape = "legacy") -> dict[str, Any]:
        out: dict[str, Any] = {"response": self.response}
        if self.tool_calls:
            out["tool_calls"] = [c.to_wire(shape) for c in self.tool_calls]
        out["usage"] = self.usage.to_wire()
        return out


class StreamChunk(_Output):
    """One piece of a streamed generation; joined, the pieces make the `Generation`."""

    usage: Usage | None = None
    finish_reason: FinishReason | None = Field(default=None, exclude=True)

    def to_wire(self, shape: ToolShape = "legacy") -> dict[str, Any]:
        out: dict[str, Any] = {"response": self.response}
        if self.tool_calls:
            out["tool_calls"] = [c.to_wire(shape) for c in self.tool_calls]
        if self.usage is not None:
            out["usage"] = self.usage.to_wire()
        return out

    @staticmethod
    def join(chunks: list[StreamChunk]) -> Generation:
        """The generation a stream adds up to."""
        usage = next((c.usage for c in reversed(chunks) if c.usage is not None), Usage())
        finish = next((c.finish_reason for c in reversed(chunks) if c.finish_reason), None)
        return Generation(
            response="".join(c.response for c in chunks),
            tool_calls=[call for c in chunks for call in c.tool_calls],
            usage=usage,
            finish_reason=finish,
        )


def request_json_schema() -> dict[str, Any]:
    """JSON Schema of the request (input) model."""
    return GenerationRequest.model_json_schema()


def generation_json_schema() -> dict[str, Any]:
    """JSON Schema of the generation (output) model."""
    return Generation.model_json_schema(mode="serialization")
