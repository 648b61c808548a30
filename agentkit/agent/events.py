"""Typed events of a streamed run, in the order they happen.

```
StepStarted(1) TextDelta* (ToolCallStarted ToolCallFinished)* StepFinished(1)
StepStarted(2) ...                                            StepFinished(n)
RunFinished(result)
```

A run with handoffs yields `HandedOff` when another agent takes over, between the
`StepFinished` of the step that made the transfer and the `StepStarted` of the new agent's
first step, and again when control goes back to an agent that handed off.

An Agent with an `output_type` also yields `PartialOutput` among the text deltas of a step,
each time the answer's JSON has grown into a different value.

Tool calls of one step run concurrently, so their finished events come in completion order;
the transcript keeps the order the model emitted them in.

Every event's `path` says which agent produced it: the name of the run's agent (`agent` for
an Agent without a name), and for an agent used as a tool (`Agent.as_tool`), the path of the
agent whose tool it is, a `/`, and its own name (or, without one, the tool's): `triage/billing`.
A sub-agent's events come in the stream of the run that called it, as they happen, between the
`ToolCallStarted` and the `ToolCallFinished` of its call; its run's end is that
`ToolCallFinished` (whose record holds the sub-run's result), not a `RunFinished`. After a
handoff, the events of the run are the agent in force's: its name replaces the last part of
the path (`billing`, or `main/billing` for a run of an agent used as a tool).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Literal

from typing_extensions import TypeVar

from agentkit.model_api import ToolCall, Usage

if TYPE_CHECKING:
    from agentkit.agent.results import HandoffRecord, RunResult, ToolCallRecord

__all__ = [
    "Event",
    "HandedOff",
    "PartialOutput",
    "RunFinished",
    "StepFinished",
    "StepStarted",
    "TextDelta",
    "ToolCallFinished",
    "ToolCallStarted",
]


@dataclass(frozen=True)
class StepStarted:
    """A model call is about to be made."""

    step: int
    path: str = ""
    """The agent that produced it (see the module's docstring)."""
    kind: Literal["step_started"] = "step_started"


@dataclass(frozen=True)
class TextDelta:
    """A piece of the model's text, as it arrives."""

    step: int
    text: str
    path: str = ""
    """The agent that produced it (see the module's docstring)."""
    kind: Literal["text_delta"] = "text_delta"


@dataclass(frozen=True)
class PartialOutput:
    """The structured answer so far, parsed from its incomplete JSON: objects and arrays
    closed where the text stops, a string cut where it stops, a number once it is whole, keys
    without a value yet left out. Only for an Agent with an `output_type`; unvalidated
    (`RunFinished` has the validated value). A non-object output (an `int`, a `list`) is shown
    unwrapped."""

    step: int
    value: Any
    path: str = ""
    """The agent that produced it (see the module's docstring)."""
    kind: Literal["partial_output"] = "partial_output"


@dataclass(frozen=True)
class ToolCallStarted:
    """A tool call is about to run (its arguments are as the model gave them)."""

    step: int
    call: ToolCall
    path: str = ""
    """The agent that produced it (see the module's docstring)."""
    kind: Literal["tool_call_started"] = "tool_call_started"


@dataclass(frozen=True)
class ToolCallFinished:
    """A tool call ended, with its result or its error and how long it took."""

    step: int
    record: ToolCallRecord
    path: str = ""
    """The agent that produced it (see the module's docstring)."""
    kind: Literal["tool_call_finished"] = "tool_call_finished"


@dataclass(frozen=True)
class StepFinished:
    """A step ended: the model answered and any tool calls it asked for ran."""

    step: int
    usage: Usage
    path: str = ""
    """The agent that produced it (see the module's docstring)."""
    kind: Literal["step_finished"] = "step_finished"


@dataclass(frozen=True)
class HandedOff:
    """Another agent took over the run: `record.target` after a transfer (`back` False), or
    `record.source` again when the answer of a handoff that returns came (`back` True)."""

    step: int
    record: HandoffRecord
    back: bool = False
    path: str = ""
    """The agent that had the run until now (see the module's docstring)."""
    kind: Literal["handed_off"] = "handed_off"

    @property
    def source(self) -> str:
        """The agent that had the run until now."""
        return self.record.target if self.back else self.record.source

    @property
    def target(self) -> str:
        """The agent that has the run from now on."""
        return self.record.source if self.back else self.record.target


_ResultT = TypeVar("_ResultT", default=Any)


@dataclass(frozen=True)
class RunFinished(Generic[_ResultT]):
    """The run ended: with an answer (the validated value in `result.output`, for an Agent
    with an `output_type`), or paused for approval (`result.stop_reason == "approval"`,
    `result.pending`, `result.state`)."""

    result: RunResult[_ResultT]
    path: str = ""
    """The agent that produced it (see the module's docstring)."""
    kind: Literal["run_finished"] = "run_finished"


Event = (
    StepStarted
    | TextDelta
    | PartialOutput
    | ToolCallStarted
    | ToolCallFinished
    | StepFinished
    | HandedOff
    | RunFinished[Any]
)
