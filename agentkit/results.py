"""What a run produces: the `RunResult` and a `ToolCallRecord` per tool call."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic, Literal

from pydantic import BaseModel, Field, PrivateAttr
from typing_extensions import TypeVar

from agentkit.model_api import Message, ToolCall, Usage

if TYPE_CHECKING:
    from agentkit.state import RunState

__all__ = ["OutputT", "PendingCall", "RunResult", "StopReason", "ToolCallRecord"]

OutputT = TypeVar("OutputT", default=str)
"""The type of a run's output: `str` (the answer's text) unless the Agent has an `output_type`."""

StopReason = Literal[
    "answer",
    "final_answer",
    "approval",
    "max_steps",
    "deadline",
    "tool_retries",
    "repeat",
    "truncated_call",
    "invalid_output",
]
"""Why a run stopped: the model answered; it answered in the tools-less call made after
`max_steps`; it paused for a person to approve tool calls (`approval`: `RunResult.pending`
lists them, `RunResult.state` resumes it); one of the limits stopped it; a tool call was cut
off by `max_tokens` (`truncated_call`); the answer did not fit the output type
(`invalid_output`). The limits, `truncated_call` and `invalid_output` come with an error that
carries the partial run."""


class PendingCall(BaseModel):
    """A tool call waiting for a person's decision before it runs."""

    id: str
    """The call's id: what `agent.resume(approve=[...], deny={...})` names."""
    name: str
    """The tool's name."""
    arguments: dict[str, Any]
    """The arguments, validated (defaults filled in, values coerced), as JSON data."""
    step: int
    """The step (model call) that made it."""


class ToolCallRecord(BaseModel):
    """One tool call of a run, with what came of it."""

    step: int
    """The step (model call) that asked for it, from 1."""
    call: ToolCall
    """The call as the model made it (id, name, arguments)."""
    output: str | None = None
    """The tool's whole output as text, before any cut; None if the call failed."""
    error: str | None = None
    """What went wrong, as told to the model; None if the call succeeded."""
    duration: float = 0.0
    """Seconds spent running the tool (0 when it never ran)."""
    repairs: list[str] = Field(default_factory=list)
    """How the arguments were repaired before they validated (code fences, quotes, ...)."""

    @property
    def ok(self) -> bool:
        return self.error is None


class RunResult(BaseModel, Generic[OutputT]):
    """Everything a run produced; `model_dump_json()` / `model_validate_json()` round-trip it
    (a structured run's as `RunResult[Person].model_validate_json(...)`).

    `RunResult` alone is `RunResult[str]`; an Agent with an `output_type` returns
    `RunResult[ThatType]`. The partial run an error carries is a plain `RunResult`.
    """

    output: OutputT = ""  # type: ignore[assignment]  # a str, unless OutputT says otherwise
    """The final answer: its text, or with an `output_type` the validated value."""
    text: str = ""
    """The final answer as the model wrote it (the JSON text, for a structured answer)."""
    messages: list[Message] = Field(default_factory=list)
    """The whole transcript, ready to continue the conversation (`agent.run(..., history=)`)."""
    tool_calls: list[ToolCallRecord] = Field(default_factory=list)
    """Every tool call, in the order the model made them."""
    usage: Usage = Field(default_factory=Usage)
    """Token usage summed over every step."""
    usage_by_model: dict[str, Usage] = Field(default_factory=dict)
    """Token usage per model, over every model call the run made, including those of agents
    that its tools ran (an agent used as a tool, on another runtime)."""
    cost: float | None = None
    """What the model calls cost, from the agent's `prices` (per million tokens); None without
    a price table, or when a model used has no price in it."""
    steps: int = 0
    """How many model calls were made."""
    stop_reason: StopReason = "answer"
    truncated: bool = False
    """True when the final answer was cut off by `max_tokens` (the runtime said `length`)."""
    pending: list[PendingCall] = Field(default_factory=list)
    """The tool calls waiting for approval, when `stop_reason == "approval"`; else empty."""

    _state: RunState | None = PrivateAttr(default=None)

    @property
    def state(self) -> RunState | None:
        """What a run paused for approval needs to continue (`agent.resume(result.state,
        ...)`); None for a run that ended. Not part of the result's own JSON: save
        `result.state.to_json()`."""
        return self._state
