"""What crosses Temporal's wire: a run's input, the activities' inputs and outputs, the progress
a query returns. Every type is a pydantic model, carried by `temporalio.contrib.pydantic`'s
data converter; each is recorded in the workflow's history, so a field may be added (with a
default) but not removed or renamed while runs that used it may still be replayed.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agentkit.agent.results import PendingCall
from agentkit.agent.settings import AgentSettings
from agentkit.model_api import FunctionDefinition, Generation, Message, ModelRequest, Usage

__all__ = [
    "MAX_TOOL_OUTPUT",
    "ActivityOptions",
    "AgentSpec",
    "ApprovalCheck",
    "Decisions",
    "DescribeInput",
    "Description",
    "HandoffSpec",
    "ModelCall",
    "ModelOutcome",
    "Progress",
    "RunInput",
    "RuntimeSpec",
    "ToolInput",
    "ToolSpec",
]

MAX_TOOL_OUTPUT = 250_000
"""The largest `max_tool_output` a durable run takes, in characters: at 4 bytes a character at
most, one tool's output stays under Temporal's 2 MB limit on a payload."""


class ActivityOptions(BaseModel):
    """Timeouts and retries of a run's activities (seconds; attempts include the first)."""

    model_timeout: float = Field(default=300.0, gt=0)
    """How long one model call may take (start to close)."""
    model_attempts: int = Field(default=3, ge=1)
    """Attempts at a model call that failed for a reason worth retrying (a connection, a
    timeout, a worker lost); a refused request is not retried."""
    tool_timeout: float = Field(default=300.0, gt=0)
    """How long a tool call may take unless the tool sets its own `timeout`."""
    tool_attempts: int = Field(default=3, ge=1)
    """Attempts at a call of a tool marked `idempotent`; any other tool runs at most once."""
    heartbeat_timeout: float | None = Field(default=30.0, gt=0)
    """A worker running a call says it is alive this often (a third of it, in fact); past it
    the call is taken as lost and retried on another worker (if it may be). None: the call
    is lost only at its own timeout."""
    retry_interval: float = Field(default=1.0, gt=0)
    """The first wait before a retry; each later one doubles, up to 30 times it."""


class RunInput(AgentSettings):
    """One durable run: the prompt and the agent's settings (`AgentSettings`, the Agent's own
    fields and defaults). The tools and the model are the workers' (registered by name), so
    this says only which of them to use.

    On workers of agents (`Worker(..., agents=...)`) the run is one of those agents, with its
    own settings, runtime and tools: `agent` names it, and the settings, `runtime` and `tools`
    stay unset."""

    model_config = ConfigDict(extra="forbid", frozen=False)

    prompt: str | list[Message]
    """The user's message, or messages to append after `history`."""
    history: list[Message] = Field(default_factory=list)
    """An earlier transcript to continue."""
    runtime: str | None = None
    """The registered runtime to use; None: the one the workers register first."""
    tools: list[str] | None = None
    """The registered tools to offer by name; None: all of them."""
    max_tool_output: int = Field(default=20_000, ge=1, le=MAX_TOOL_OUTPUT)
    activities: ActivityOptions = Field(default_factory=ActivityOptions)
    agent: str | None = None
    """The workers' agent that starts the run, by name; None: their first agent, on workers
    of agents."""

    def overrides(self) -> list[str]:
        """The fields a run of the workers' agents leaves unset (the agent's own settings,
        `runtime`, `tools`) that this one sets, by name."""
        fields = [*AgentSettings.model_fields, "runtime", "tools"]
        return [
            f
            for f in fields
            if getattr(self, f) != RunInput.model_fields[f].get_default(call_default_factory=True)
        ]

    @model_validator(mode="after")
    def _durable(self) -> RunInput:
        # What bounds a durable run's time is Temporal's: the run's execution timeout
        # (`start_run(timeout=...)`) and the activities' timeouts.
        if self.deadline is not None:
            raise ValueError("deadline: a durable run's is start_run(timeout=...)")
        if self.tool_timeout is not None:
            raise ValueError("tool_timeout: a durable run's is activities.tool_timeout")
        if self.raise_tool_errors:
            raise ValueError("raise_tool_errors: a durable run tells the model every failure")
        if self.agent is not None and self.overrides():
            raise ValueError(
                f"agent: a run of the workers' agent {self.agent!r} takes its settings, runtime "
                f"and tools; leave unset: {', '.join(self.overrides())}"
            )
        return self

    def settings(self) -> AgentSettings:
        """The Agent's settings of this run."""
        return AgentSettings(**self.model_dump(include=set(AgentSettings.model_fields)))


class DescribeInput(BaseModel):
    runtime: str | None = None
    tools: list[str] | None = None
    agent: str | None = None


class ToolSpec(BaseModel):
    """A registered tool, as the workflow sees it: its definition and how to call it."""

    definition: FunctionDefinition
    sequential: bool = False
    idempotent: bool = False
    timeout: float | None = None
    max_retries: int | None = None
    approval: Literal["never", "always", "predicate"] = "never"
    """Whether its calls wait for a person: never, always, or when its predicate (which stays
    on the workers, asked by an activity) says so."""
    takes_context: bool = False
    """Whether the tool takes a `RunContext` (given by the worker that runs the call)."""


class RuntimeSpec(BaseModel):
    """A worker's runtime, as the workflow sees it: its name, model and profile."""

    runtime: str
    model: str
    capabilities: dict[str, Any]
    tool_choice: str = "auto"
    """The runtime profile's tool choice."""
    sampling: dict[str, Any] = Field(default_factory=dict)
    """The runtime profile's sampling fields."""


class HandoffSpec(BaseModel):
    """A handoff of a workers' agent, as the workflow makes it again."""

    target: str
    description: str
    input_schema: dict[str, Any] | None = None
    """The transfer tool's parameters, for a handoff with an `input_type`."""
    input_filter: str | None = None
    """`drop_tool_traffic`, `keep_last(N)`, or None (see `agentkit.temporal.agents`)."""
    returns: bool = False


class AgentSpec(RuntimeSpec):
    """A workers' agent, as the workflow makes its twin: its runtime (the fields above), its
    settings, tools, handoffs and output type."""

    name: str
    settings: AgentSettings
    tools: list[ToolSpec] = Field(default_factory=list)
    """Its tools, but for its transfer tools (the twin's handoffs make them)."""
    handoffs: list[HandoffSpec] = Field(default_factory=list)
    output_schema: dict[str, Any] | None = None
    """The JSON Schema of its `output_type`, if it has one."""


class Description(RuntimeSpec):
    """What the workers offer a run, read once at its start (and kept in its history, so a
    run in flight keeps the definitions it began with).

    On workers of agents, `agents` holds every agent the run may reach, the one that starts
    it first; the fields above are that agent's."""

    tools: list[ToolSpec] = Field(default_factory=list)
    agents: list[AgentSpec] = Field(default_factory=list)


class ModelCall(BaseModel):
    runtime: str
    request: ModelRequest
    agent: str | None = None
    """On workers of agents: the agent whose runtime makes the call."""


class ModelOutcome(BaseModel):
    generation: Generation
    raw_arguments: dict[str, str] = Field(default_factory=dict)
    """Arguments the model wrote that were not JSON, by call id (the wire form of a call
    leaves them out)."""


class ToolInput(BaseModel):
    name: str
    arguments: dict[str, Any]
    max_output: int
    """The output is cut to this many characters before it is recorded (see `MAX_TOOL_OUTPUT`)."""
    call_id: str | None = None
    step: int = 0
    usage: Usage = Field(default_factory=Usage)
    """The call's id, its step and the run's usage so far: the `RunContext` of a tool that
    takes one."""
    agent: str | None = None
    """On workers of agents: the agent whose tool it is."""
    decision: dict[str, Any] | None = None
    """For a call whose tool asked a person (`ApprovalRequired`), called again: the answer
    (the fields of `agentkit.Decision`)."""


class ApprovalCheck(BaseModel):
    name: str
    arguments: dict[str, Any]
    agent: str | None = None


class Decisions(BaseModel):
    """A person's decisions on calls waiting for approval: the `decide` signal's argument.
    Decisions may come in several signals; the run goes on once every waiting call has one."""

    approve: list[str] = Field(default_factory=list)
    """Ids of the calls to run."""
    deny: dict[str, str] = Field(default_factory=dict)
    """Ids of the calls not to run, with the reason the model is told."""


class Progress(BaseModel):
    """A run's progress, as the `progress` query returns it."""

    steps: int = 0
    """Model calls made so far."""
    tool_calls: int = 0
    """Tool calls made so far (finished or not)."""
    usage: Usage = Field(default_factory=Usage)
    pending_approvals: list[PendingCall] = Field(default_factory=list)
    """The tool calls waiting for a person's decision (id, tool, arguments), while the run
    is paused for approval."""
    done: bool = False
