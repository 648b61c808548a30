"""The typed events of a streamed run; kept as an import path of `agentkit.agent.events`."""

from agentkit.agent.events import (
    Event,
    HandedOff,
    PartialOutput,
    RunFinished,
    StepFinished,
    StepStarted,
    TextDelta,
    ToolCallFinished,
    ToolCallStarted,
)

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
