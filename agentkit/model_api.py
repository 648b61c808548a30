"""The internal types every layer shares: the model request, messages, tool calls, generations,
stream chunks and usage. They carry no wire quirks; `agentkit.wire` maps them to each API.

Messages and tool calls read both tool-call shapes, as every wire uses one of them:

- legacy: `{"name": "f", "arguments": {...}}` (no id; one is made up and kept);
- OpenAI: `{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{...}"}}`.
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
    field_validator,
    model_validator,
)

__all__ = [
    "DEFAULT_MODEL",
    "MAX_JSON_DEPTH",
    "SAMPLING_FIELDS",
    "FunctionDefinition",
    "Generation",
    "JSONTooDeep",
    "Message",
    "ModelRequest",
    "Role",
    "SchemaDialect",
    "StreamChunk",
    "ToolCall",
    "ToolChoice",
    "ToolShape",
    "Usage",
    "json_depth",
    "parse_arguments",
]

DEFAULT_MODEL = "@cf/meta/llama-3.1-8b-instruct"
MAX_TEXT = 131_072

Role = Literal["system", "user", "assistant", "tool"]
ToolShape = Literal["legacy", "function"]
"""`legacy`: `{name, description, parameters}`;
`function`: `{type: "function", function: {...}}`."""

FinishReason = Literal["stop", "length", "tool_calls"]

SchemaDialect = Literal["full", "inline", "strict"]
"""How tool parameter schemas are sent: as built (`$defs` and `$ref` kept), with references
inlined (Llama, Workers AI), or in OpenAI strict form."""


def _new_call_id() -> str:
    return "call_" + secrets.token_hex(12)


MAX_JSON_DEPTH = 64
"""The deepest nesting of arrays and objects taken from outside, in a request body or in the
arguments string of a call: no call needs more, and deeper JSON exhausts Python's recursion."""


class JSONTooDeep(ValueError):
    """JSON nested deeper than `MAX_JSON_DEPTH`."""

    def __init__(self) -> None:
        super().__init__(f"nests deeper than {MAX_JSON_DEPTH} levels")


def json_depth(data: Any) -> int:
    """How deep `data` nests (a scalar is 0), counted without recursion and only as far as
    one level past `MAX_JSON_DEPTH`."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            if depth <= MAX_JSON_DEPTH:
                children = item.values() if isinstance(item, dict) else item
                stack.extend((child, depth + 1) for child in children)
    return deepest


def parse_arguments(arguments: Any) -> dict[str, Any]:
    """Tool-call arguments as a dict, from an object or a JSON string (empty means none).

    Every arguments string read from a client or a model goes through here.

    Raises:
        JSONTooDeep: the string nests deeper than `MAX_JSON_DEPTH`.
        ValueError: the string is not JSON, or the JSON is not an object.
    """
    if arguments is None or arguments == "":
        return {}
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except RecursionError:
            raise JSONTooDeep() from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"arguments are not valid JSON: {exc.msg} at {exc.pos}") from None
        if json_depth(arguments) > MAX_JSON_DEPTH:
            raise JSONTooDeep()
        if isinstance(arguments, str):  # encoded twice: a JSON string holding the JSON object
            return parse_arguments(arguments)
    if not isinstance(arguments, Mapping):
        raise ValueError(f"arguments must be a JSON object (got {type(arguments).__name__})")
    return dict(arguments)


class _TooDeep(str):
    """An arguments string nested past the limit, kept until the field's validator refuses it,
    so that the error's path ends in `arguments`."""

    __slots__ = ()


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
            except JSONTooDeep:
                data["arguments"] = _TooDeep(raw)  # refused by `_arguments`, which names it
            except ValueError:
                data["arguments"] = {}
                data["raw_arguments"] = raw if isinstance(raw, str) else json.dumps(raw)
        return data

    @field_validator("arguments", mode="before")
    @classmethod
    def _arguments(cls, value: Any) -> Any:
        if isinstance(value, _TooDeep):
            raise JSONTooDeep()
        return value

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


ToolChoice = Literal["auto", "required", "none"] | str
"""`auto`, `required`, `none`, or the name of one tool."""

SAMPLING_FIELDS = (
    "max_tokens",
    "temperature",
    "top_p",
    "top_k",
    "seed",
    "repetition_penalty",
    "frequency_penalty",
    "presence_penalty",
)
"""The sampling settings of a request, by name: the one list every wire and runtime reads."""


class ModelRequest(_Model):
    """One request to a model, as the Agent builds it and every runtime takes it.

    It has no wire quirks: `messages` is always a list (the Workers AI prompt form arrives as one
    user message), `tools` is always a list, and `raw_prompt` replaces the messages when the
    text must reach the model with no chat template. Runtimes refuse, by name, any field they
    cannot honour (see `agentkit.runtimes.Runtime`).
    """

    messages: list[Message] = Field(default_factory=list)
    """The conversation; empty only when `raw_prompt` is set."""
    tools: list[FunctionDefinition] = Field(default_factory=list)
    """Tools the model may call."""
    tool_choice: ToolChoice = "auto"
    """`auto`, `required`, `none`, or the name of one tool."""
    parallel_tool_calls: bool | None = None
    """May one answer hold several tool calls (None: the runtime's default)."""
    response_format: dict[str, Any] | None = None
    """`{type: "json_object"}` or `{type: "json_schema", json_schema: {...}}`."""
    lora: str | None = None
    """Name of a LoRA adapter to apply to the base model."""
    raw_prompt: str | None = None
    """Text sent to the model as is, with no chat template (instead of `messages`)."""
    max_tokens: int = 256
    """The most tokens to generate."""
    temperature: float = 0.6
    """Sampling temperature; 0 is greedy."""
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None
    repetition_penalty: float | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None

    @model_validator(mode="after")
    def _one_input(self) -> ModelRequest:
        if self.raw_prompt is not None and self.messages:
            raise ValueError("raw_prompt: a raw prompt replaces the messages (got both)")
        return self

    def sampling(self) -> dict[str, Any]:
        """The sampling fields that are set, by name."""
        return {n: getattr(self, n) for n in SAMPLING_FIELDS if getattr(self, n) is not None}

    def used(self) -> list[str]:
        """The optional fields this request uses: what a runtime must honour or refuse.

        `tool_choice` counts only when tools are offered (without tools there is no choice).
        """
        out = [n for n in ("tools", "response_format", "lora", "raw_prompt") if getattr(self, n)]
        if self.tools and self.tool_choice != "auto":
            out.append("tool_choice")
        if self.parallel_tool_calls is not None:
            out.append("parallel_tool_calls")
        out.extend(n for n in SAMPLING_FIELDS[2:] if getattr(self, n) is not None)
        return out


class Usage(_Model):
    """Token counts of one generation (or summed over a run)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cached_prompt_tokens: int | None = None
    """Prompt tokens served from a cache instead of evaluated (local runtime, some servers)."""
    cache_hits: int = 0
    """Generations answered from a response cache (`agentkit.runtimes.Cached`) rather than by
    the model; their tokens count as zero, so they cost nothing. Never sent on a wire."""

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
            cache_hits=self.cache_hits + other.cache_hits,
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
        return self.model_dump(exclude_none=True, exclude={"cache_hits"})


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
        if value is None:
            return []
        return [_deep_as_text(call) for call in value] if isinstance(value, list) else value

    def to_wire(self, shape: ToolShape = "legacy") -> dict[str, Any]:
        out: dict[str, Any] = {"response": self.response}
        if self.tool_calls:
            out["tool_calls"] = [c.to_wire(shape) for c in self.tool_calls]
        usage: Usage | None = getattr(self, "usage", None)  # a chunk may have none
        if usage is not None:
            out["usage"] = usage.to_wire()
        return out


def _deep_as_text(call: Any) -> Any:
    """A model's call whose arguments nest past the limit keeps them as text, as it keeps
    arguments that are not JSON: the Agent tells the model, where a client's call in a
    request's messages is refused (`ToolCall`)."""
    if not isinstance(call, Mapping):
        return call
    function = call.get("function")
    raw = function.get("arguments") if isinstance(function, Mapping) else call.get("arguments")
    # Nesting past the limit takes that many brackets: a plain count spares nearly every call
    # a second parse (ToolCall parses it once more).
    if not isinstance(raw, str) or raw.count("[") + raw.count("{") <= MAX_JSON_DEPTH:
        return call
    try:
        parse_arguments(raw)
    except JSONTooDeep:
        name = function.get("name") if isinstance(function, Mapping) else call.get("name")
        kept = {k: v for k, v in call.items() if k not in ("function", "type")}
        return {**kept, "name": name, "arguments": {}, "raw_arguments": raw}
    except ValueError:
        pass
    return call


class Generation(_Output):
    """The output of one generation: `{response, tool_calls, usage}`."""

    usage: Usage = Field(default_factory=Usage)
    finish_reason: FinishReason | None = Field(default=None, exclude=True)
    """Why generation stopped, where the runtime knows: `stop`, `length` or `tool_calls`."""
    runtime: str | None = Field(default=None, exclude=True)
    """Which runtime answered, where a wrapper chose one of several (`Fallback`): `name:model`
    (or a name alone); the run books the usage under that model. Not on the wire."""
    cached: bool = Field(default=False, exclude=True)
    """Answered from a response cache (`agentkit.runtimes.Cached`), not by the model."""
    truncated: bool = Field(default=False, exclude=True)
    """The budget (`max_tokens`) ran out and the runtime ended the call or answer early under
    its grammar: complete and valid, but cut short of what the model would have written."""

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Generation:
        """A `result` object of the Workers AI envelope (either tool-call shape)."""
        return cls.model_validate(data)


class StreamChunk(_Output):
    """One piece of a streamed generation; joined, the pieces make the `Generation`."""

    usage: Usage | None = None
    finish_reason: FinishReason | None = Field(default=None, exclude=True)
    runtime: str | None = Field(default=None, exclude=True)
    """Which runtime answered, on a stream's first chunk (see `Generation.runtime`)."""
    cached: bool = Field(default=False, exclude=True)
    """Replayed from a response cache, as every chunk of a cached stream is."""
    truncated: bool = Field(default=False, exclude=True)
    """On the last chunk: see `Generation.truncated`."""

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
            runtime=chunks[0].runtime if chunks else None,
            cached=any(c.cached for c in chunks),
            truncated=any(c.truncated for c in chunks),
        )
