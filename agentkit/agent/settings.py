"""`AgentSettings`: how an agent runs, as data. The Agent's keyword arguments and a durable
run's input (`agentkit.temporal.RunInput`) are the same fields, with one set of defaults and
bounds."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agentkit.errors import UserError
from agentkit.tools import Toolset

__all__ = ["AgentSettings", "settings_error", "settled_tool_choice"]


class AgentSettings(BaseModel):
    """The settings of an agent (see `Agent` for what each does)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    instructions: str | None = None
    """The system message."""
    max_steps: int = Field(default=10, ge=1)
    """Model calls allowed before the run stops with `MaxStepsExceeded`."""
    final_answer_on_max_steps: bool = False
    """Instead of raising at `max_steps`, make one last call without tools."""
    deadline: float | None = Field(default=None, gt=0)
    """Seconds the whole run may take."""
    max_concurrency: int = Field(default=8, ge=1)
    """Tool calls running at once."""
    tool_timeout: float | None = Field(default=None, gt=0)
    """Seconds a tool call may take, unless the tool sets its own `timeout`."""
    max_tool_retries: int = Field(default=2, ge=0)
    """Failed calls a tool may have in a row, unless it sets its own `max_retries`."""
    raise_tool_errors: bool = False
    """Re-raise an exception from a tool instead of telling the model."""
    max_tool_output: int = Field(default=20_000, ge=1)
    """Characters of a tool's output sent to the model."""
    repeat_limit: int = Field(default=3, ge=1)
    """Identical consecutive calls that earn a nudge; one more stops the run."""
    tool_choice: str | None = None
    """`auto`, `required`, `none` or a tool's name; None takes the runtime's profile."""
    reset_tool_choice: bool = True
    """Once the tools have answered, go back to `auto` for the rest of the run."""
    name: str | None = None
    """The agent's name, in traces."""
    max_output_retries: int = Field(default=1, ge=0)
    """Answers that do not fit `output_type` the model is told about and may fix."""
    max_handoffs: int = Field(default=5, ge=0)
    """Handoffs a run may make (`handoffs=`); past it a transfer is refused as a failed call."""
    sampling: dict[str, Any] = Field(default_factory=dict)
    """Request fields sent with every call (`temperature`, `max_tokens`, ...)."""


def settings_error(exc: ValidationError) -> UserError:
    """A settings' validation error in the library's words: each field, its bound, the value."""
    problems = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"]) or "settings"
        bound = error.get("ctx", {})
        message = {
            "extra_forbidden": "unknown setting",
            "greater_than_equal": f"must be >= {bound.get('ge')}",
            "greater_than": f"must be > {bound.get('gt')}",
            "less_than_equal": f"must be <= {bound.get('le')}",
        }.get(error["type"], error["msg"])
        problems.append(f"{field}: {message} (got {error.get('input')!r})")
    return UserError("; ".join(problems))


def settled_tool_choice(tool_choice: str | None, toolset: Toolset, profile_choice: str) -> str:
    """The tool choice an agent sends: the one set, or else its runtime profile's (`auto`
    for an agent without tools).

    Raises:
        UserError: a choice that is neither a mode nor one of the toolset's tools.
    """
    if tool_choice is None:
        has_tools = len(toolset) or toolset.sources
        tool_choice = profile_choice if has_tools else "auto"
    # A source's tools are known once it runs: a name among them is checked by the model.
    if (
        tool_choice not in ("auto", "required", "none")
        and tool_choice not in toolset
        and not toolset.sources
    ):
        raise UserError(
            f"tool_choice: must be auto, required, none or a tool's name (got {tool_choice!r})"
        )
    return tool_choice
