"""`RunContext`: what a tool, or a hook, may know of the run under way.

A tool asks for it with a parameter annotated `RunContext` (or `RunContext[Deps]`): that
parameter is left out of both tool shapes and of argument validation, and each call gets a
context of its own. Dependencies (`agent.run(..., deps=...)`) are the caller's objects, passed
through and never serialised: a run continued elsewhere (resumed after a pause, continued after
a crash, run by a Temporal worker) gets the dependencies of the process that continues it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Generic, Protocol, get_args, get_origin

from typing_extensions import TypeVar

from agentkit.model_api import Message, Usage

__all__ = ["Decision", "DepsT", "RunContext", "RunView", "is_context_annotation"]

DepsT = TypeVar("DepsT", default=None)
"""The type of a run's dependencies (`agent.run(..., deps=...)`)."""


@dataclass(frozen=True)
class Decision:
    """A person's answer to a tool that asked while it ran (it raised `ApprovalRequired`):
    what the tool reads, called again on resume, as `context.decision`."""

    approved: bool
    """Whether the person approved."""
    reason: str | None
    """The reason given with a denial (may be empty); None for an approval."""
    question: str
    """What the tool asked."""
    data: Any = None
    """What the tool saved when it asked (`ApprovalRequired(..., data=...)`), as JSON data."""


class RunView(Protocol):
    """What a context reads from the run it belongs to."""

    @property
    def run_id(self) -> str: ...
    @property
    def deps(self) -> Any: ...
    @property
    def steps(self) -> int: ...
    @property
    def usage(self) -> Usage: ...
    @property
    def messages(self) -> Sequence[Message]: ...


class RunContext(Generic[DepsT]):
    """A run, as a tool call or a hook sees it: read when asked, so always current."""

    __slots__ = ("_run", "decision", "tool_call_id", "tool_name")

    def __init__(
        self, run: RunView, tool_call_id: str | None = None, tool_name: str | None = None
    ) -> None:
        self._run = run
        self.tool_call_id = tool_call_id
        """The id of the call being made, for a tool; None for a hook."""
        self.tool_name = tool_name
        """The name of the tool being called, for a tool; None for a hook."""
        self.decision: Decision | None = None
        """For a call of a tool that asked a person (it raised `ApprovalRequired`), called
        again on resume: the answer. None otherwise."""

    @property
    def deps(self) -> DepsT:
        """The dependencies the run was given (`agent.run(..., deps=...)`); None if none."""
        deps: DepsT = self._run.deps
        return deps

    @property
    def run_id(self) -> str:
        """The run's id (with a session, the id its journal uses)."""
        return self._run.run_id

    @property
    def step(self) -> int:
        """The step (model call) under way or just made, from 1; 0 before the first."""
        return self._run.steps

    @property
    def usage(self) -> Usage:
        """Token usage of the run's model calls so far."""
        return self._run.usage

    @property
    def messages(self) -> Sequence[Message]:
        """The transcript so far (read-only: the run owns it)."""
        return tuple(self._run.messages)

    @property
    def handoff(self) -> Any:
        """The handoff that gave the run to the agent in force (`agentkit.HandoffRecord`: its
        `input` is the transfer's validated input, as JSON data); None when it started the run
        or took it back from an agent it handed off to."""
        # Not a member of `RunView`: a view of a run without handoffs need not have it.
        return getattr(self._run, "handoff", None)

    def __repr__(self) -> str:
        call = f", tool_call_id={self.tool_call_id!r}" if self.tool_call_id else ""
        return f"RunContext(run_id={self.run_id!r}, step={self.step}{call})"


def is_context_annotation(annotation: Any) -> bool:
    """Whether a parameter annotated so takes the `RunContext` rather than an argument."""
    if get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation is RunContext or get_origin(annotation) is RunContext
