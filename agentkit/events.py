"""The typed events of a streamed run; kept as an import path of `agentkit.agent.events`."""

from agentkit.agent.events import (
    Event,
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
    "PartialOutput",
    "RunFinished",
    "StepFinished",
    "StepStarted",
    "TextDelta",
    "ToolCallFinished",
    "ToolCallStarted",
]
