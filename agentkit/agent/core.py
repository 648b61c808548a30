"""The state of one run, and the pieces of an agent a run reads while it goes.

`RunCore` is what the loop (`agentkit.agent.run`), a step's tool calls
(`agentkit.agent.tool_step`), approval and structured output work on. Its `snapshot()` and
`restore()` are the one way a run's state is saved and taken up again: a pause for approval,
a session's journal continued after a crash, a resumed durable run.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio

from agentkit.agent.events import Event
from agentkit.agent.hooks import HookSet
from agentkit.agent.results import (
    HandoffRecord,
    PendingCall,
    RunResult,
    RunState,
    StopReason,
    ToolCallRecord,
)
from agentkit.agent.settings import AgentSettings
from agentkit.model_api import Generation, Message, ModelRequest, SchemaDialect, Usage
from agentkit.runtimes.base import Runtime
from agentkit.tools import Toolset
from agentkit.tools.context import RunContext
from agentkit.usage import PriceTable, add_usage, cost, rebooked

if TYPE_CHECKING:
    from agentkit.telemetry._otel import RunSpans

__all__ = [
    "Decisions",
    "HandoffTrail",
    "Interrupted",
    "RunCore",
    "Setup",
    "current_run",
    "step_request",
]


@dataclass(frozen=True)
class Decisions:
    """A person's decisions on a paused run's pending calls, checked
    (`agentkit.agent.approval.check_decisions`)."""

    state: RunState
    approve: frozenset[str]
    deny: dict[str, str]


@dataclass
class Setup:
    """What of its agent a run reads: fixed for the run's length."""

    settings: AgentSettings
    toolset: Toolset
    runtime: Runtime
    model: str
    name: str | None
    prices: PriceTable | None
    clock: Callable[[], float]
    limiter: anyio.CapacityLimiter
    fingerprint: Callable[[], dict[str, str]]
    """What of the agent a paused run depends on (`agentkit.agent.approval.fingerprint`)."""
    dialect: SchemaDialect
    """The schema dialect the runtime takes tools in."""
    fields: dict[str, Any]
    """The request fields every step sends (validated once, by the Agent)."""
    request: Callable[[list[Message], list[Any], str | None], ModelRequest]
    """A step's request: its messages, its tools, and a tool choice other than the agent's."""
    telemetry: bool


def step_request(
    template: ModelRequest, messages: list[Message], tools: list[Any], tool_choice: str | None
) -> ModelRequest:
    """A step's request: an agent's fields (`template`), maybe with another tool choice."""
    update: dict[str, Any] = {"messages": messages, "tools": tools}
    if tool_choice is not None:
        update["tool_choice"] = tool_choice
    return template.model_copy(update=update)


@dataclass
class HandoffTrail:
    """The handoffs of a run whose agent has some (`agentkit.agent.handoffs` reads and
    changes it): the agents it may reach, and what happened so far."""

    agents: dict[str, Any]
    """The agents reachable through handoffs from the one that started the run, by name."""
    max_handoffs: int
    records: list[HandoffRecord] = field(default_factory=list)
    spent: dict[str, Usage] = field(default_factory=dict)
    """Usage of the model calls of the agents before the one in force, by model."""
    steps: int = 0
    """The run's steps when the agent in force took over."""
    returned: bool = False
    """The agent in force took over when control came back to it (its transfer answered)."""
    hooks: HookSet | None = None
    """The hooks of the agent in force (the run's other hooks stay when another takes over)."""
    view: tuple[list[Message], int] | None = None
    """What the agent in force sees: these messages, then the run's from this index on; None
    for the agent that started the run, before any handoff (it sees them all)."""
    stack: list[tuple[HandoffRecord, list[Message]]] = field(default_factory=list)
    """The open handoffs that return, innermost last, each with what its source saw."""

    def own_usage(self, usage: Usage) -> Usage:
        """The usage of the agent in force, given the run's whole usage."""
        before = sum(self.spent.values(), Usage())
        own = Usage.of(
            usage.prompt_tokens - before.prompt_tokens,
            usage.completion_tokens - before.completion_tokens,
        )
        own.cache_hits = usage.cache_hits - before.cache_hits
        return own

    def usage_by_model(self, model: str, usage: Usage, steps: int) -> dict[str, Usage]:
        """Usage by model, given the run's whole usage and the model of the agent in force."""
        own = self.own_usage(usage)
        by_model = dict(self.spent)
        if own.total_tokens or steps > self.steps:
            add_usage(by_model, {model: own})
        return by_model


@dataclass
class Interrupted:
    """What a run continued after a crash must settle before its next model call."""

    answer: str | None = None
    """The final answer, when the model had given it before the process stopped."""
    step: Message | None = None
    """The model's last tool-calling message, when some of its calls have no result."""
    started: frozenset[str] = frozenset()
    """Ids of calls that had started."""


current_run: ContextVar[RunCore | None] = ContextVar("current_run", default=None)
"""The run under way in this context: a run started by one of its tools (an agent used as a
tool, or any run a tool starts) adds its usage to that run's `nested`, and an agent used as a
tool takes that run's event stream and path (`agentkit.agent.subagent`)."""


class RunCore:
    """One run's state: transcript, tool calls, steps, usage and counters."""

    def __init__(
        self, setup: Setup, messages: list[Message], hooks: HookSet, deps: Any, run_id: str | None
    ) -> None:
        self.setup = setup
        self.settings = setup.settings
        self.runtime = setup.runtime
        self.messages = messages
        self.hooks = hooks
        self.deps = deps
        self._run_id = run_id
        self.records: list[ToolCallRecord] = []
        self.usage = Usage()
        self.nested: dict[str, Usage] = {}
        """Usage of the runs its tools started (agents used as tools), by model."""
        self.steps = 0
        self.step_runtimes: dict[int, str] = {}
        """Which runtime answered each step, where a wrapper said (`Generation.runtime`)."""
        self.rerouted: dict[str, dict[str, Usage]] = {}
        """Usage of steps another model answered than the agent's own (a `Fallback` fell
        over): under the agent's model, then the model that answered."""
        self.failures: dict[str, int] = {}
        self.last_signature: str | None = None
        self.repeats = 0
        self.nudged: set[int] = set()  # records told they repeat themselves
        self.stop_reason: StopReason | None = None
        self.cost: float | None = None
        self.output_retries = 0
        """Answers told they did not fit the output type (`agentkit.agent.output`)."""
        self.awaiting: list[PendingCall] = []
        """The calls of the last step held for a person's approval."""
        self.resuming: Decisions | None = None
        """The decisions on the held calls, when the run resumes after a pause."""
        self.interrupted: Interrupted | None = None
        """What a run continued after a crash settles first."""
        self.emit: Callable[[Event], None] | None = None
        self.path = setup.name or "agent"
        """Which agent's run this is, as its events say (`agentkit.agent.events`)."""
        self.trail: HandoffTrail | None = None
        """Its handoffs, for a run of an agent that has some."""
        self.spans: RunSpans | None = None
        """The run's telemetry hooks, when OpenTelemetry records it (`agentkit.telemetry`)."""
        self._context: RunContext[Any] | None = None

    @property
    def run_id(self) -> str:
        """The run's id: a session's run id, or a fresh one (made when first asked for)."""
        if self._run_id is None:
            self._run_id = "run_" + secrets.token_hex(8)
        return self._run_id

    @run_id.setter
    def run_id(self, value: str) -> None:
        self._run_id = value

    @property
    def context(self) -> RunContext[Any]:
        """The run as its hooks see it."""
        if self._context is None:
            self._context = RunContext(self)
        return self._context

    @property
    def handoff(self) -> HandoffRecord | None:
        """The handoff that gave the run to the agent in force, if one did."""
        trail = self.trail
        if trail is None:
            return None
        name = self.setup.name
        return next(
            (r for r in reversed(trail.records) if r.target == name and r.start is not None), None
        )

    def note_handoff(self, from_agent: Any, to_agent: Any, call_id: str | None) -> None:
        """Tell the run's trace that `from_agent` handed the conversation to `to_agent`
        (agents, or their names) with the call `call_id`: an `agentkit.handoff` event on the
        run's span. Nothing (one check) when the run is not traced."""
        if self.spans is not None:
            self.spans.handoff(from_agent, to_agent, call_id)

    def tools_answered(self) -> bool:
        """Whether tools have answered the agent in force, in its time in force: then a forced
        tool choice goes back to `auto`. An agent handed the run starts forced again; one that
        gets control back has its transfer's answer."""
        trail = self.trail
        if trail is None or trail.view is None:
            return bool(self.records)
        return trail.returned or any(r.step > trail.steps for r in self.records)

    def answered_by(self, step: int, generation: Generation) -> None:
        """Note which runtime answered `step`, where a wrapper said, and book the step's usage
        under the model that answered (`runtime` is `name:model`, or a name alone)."""
        if generation.runtime is None:
            return
        self.step_runtimes[step] = generation.runtime
        name, colon, model = generation.runtime.partition(":")
        model = model if colon else name
        if model != self.setup.model:
            add_usage(self.rerouted.setdefault(self.setup.model, {}), {model: generation.usage})

    def usage_by_model(self) -> dict[str, Usage]:
        by_model = {self.setup.model: self.usage} if self.steps else {}
        if self.trail is not None and self.trail.spent:
            by_model = self.trail.usage_by_model(self.setup.model, self.usage, self.steps)
        if self.rerouted:
            by_model = rebooked(by_model, self.rerouted)
        return add_usage(by_model, self.nested) if self.nested else by_model

    def outcome(
        self, output: str = "", stop_reason: StopReason = "answer", truncated: bool = False
    ) -> RunResult:
        by_model = self.usage_by_model()
        self.stop_reason = stop_reason
        prices = self.setup.prices
        self.cost = None if prices is None else cost(by_model, prices)
        return RunResult.built(
            output=output,
            text=output,
            messages=list(self.messages),
            tool_calls=list(self.records),
            usage=self.usage,
            usage_by_model=by_model,
            cost=self.cost,
            steps=self.steps,
            stop_reason=stop_reason,
            truncated=truncated,
            pending=[],
            agent=self.setup.name,
            handoffs=[] if self.trail is None else list(self.trail.records),
            step_runtimes=dict(self.step_runtimes),
        )

    def snapshot(self) -> RunState:
        """The run's state as data: what a paused run needs to go on, in any process."""
        state = RunState(
            messages=list(self.messages),
            tool_calls=[record.model_copy(deep=True) for record in self.records],
            pending=list(self.awaiting),
            steps=self.steps,
            usage=self.usage,
            nested_usage=dict(self.nested),
            failures=dict(self.failures),
            last_signature=self.last_signature,
            repeats=self.repeats,
            fingerprint=self.setup.fingerprint(),
            step_runtimes=dict(self.step_runtimes),
            rerouted_usage={source: dict(to) for source, to in self.rerouted.items()},
        )
        if self.trail is not None:
            state.agent = self.setup.name
            state.handoffs = [record.model_copy() for record in self.trail.records]
            state.handoff_usage = dict(self.trail.spent)
        return state

    def restore(self, state: RunState) -> None:
        """Take up the run from `state` (its transcript, calls, counters and usage)."""
        self.messages[:] = state.messages
        self.records = [record.model_copy(deep=True) for record in state.tool_calls]
        self.steps = state.steps
        self.step_runtimes = dict(state.step_runtimes)
        self.rerouted = {source: dict(to) for source, to in state.rerouted_usage.items()}
        self.usage = state.usage
        self.nested = dict(state.nested_usage)
        self.failures = dict(state.failures)
        self.last_signature = state.last_signature
        self.repeats = state.repeats
        self.awaiting = list(state.pending)
