"""What a run produces: the `RunResult`, a `ToolCallRecord` per tool call, and the `RunState`
of a run paused for approval.

`RunState` is a paused run as data, to resume later, in this process or another one. A run
pauses when the model calls a tool that needs a person's approval (see
`agentkit.agent.approval` and docs/approval.md). What it needs to continue is all there: the
transcript, the tool calls so far, the step count, the retry and repeat counters, the usage,
the pending calls, and a fingerprint of the agent that paused it. It is plain JSON:

```python
text = result.state.to_json()          # write it anywhere
state = RunState.from_json(text)       # tomorrow, in another process
result = await agent.resume(state, approve=["call_1"], deny={"call_2": "too expensive"})
```

The JSON carries a `version`; a state from a newer agentkit (an unknown version) is refused by
name rather than misread. Dependencies (`deps`) are never part of it.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any, Generic, Literal

from pydantic import BaseModel, Field, PrivateAttr, ValidationError
from typing_extensions import TypeVar

from agentkit.errors import RunStateError
from agentkit.model_api import Message, ToolCall, Usage

__all__ = [
    "STATE_VERSION",
    "HandoffRecord",
    "OutputT",
    "PendingCall",
    "RunResult",
    "RunState",
    "StopReason",
    "ToolCallRecord",
    "digest",
]

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
    "stopped",
    "guardrail",
]
"""Why a run stopped: the model answered; it answered in the tools-less call made after
`max_steps`; it paused for a person to approve tool calls (`approval`: `RunResult.pending`
lists them, `RunResult.state` resumes it); one of the limits stopped it; a tool call was cut
off by `max_tokens` (`truncated_call`); the answer did not fit the output type
(`invalid_output`); a hook stopped it (`stopped`, with `RunStopped`), or the code stepping
it with `agent.iter` did, or, for an agent used as a tool, an error without a partial run of
its own or a cancellation cut it short; a guardrail tripped (`guardrail`, with
`GuardrailTripped`). The limits, `truncated_call`, `invalid_output` and `guardrail` come with an
error that carries the partial run."""


class PendingCall(BaseModel):
    """A tool call waiting for a person's decision: held back before it runs (its tool
    requires approval), or one whose tool asked while it ran (`ApprovalRequired`)."""

    id: str
    """The call's id: what `agent.resume(approve=[...], deny={...})` names."""
    name: str
    """The tool's name."""
    arguments: dict[str, Any]
    """The arguments, validated (defaults filled in, values coerced), as JSON data."""
    step: int
    """The step (model call) that made it."""
    question: str | None = None
    """What the tool asked, for a call whose tool asked while it ran; None for a call held
    back by `requires_approval`."""
    data: Any = None
    """What the tool that asked saved to go on (JSON data), handed back with the decision."""


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
    run: RunResult[Any] | None = None
    """For a call of an agent used as a tool (`Agent.as_tool`), that agent's whole run: its
    result, or as far as it got when it failed; None for other tools. After a JSON round trip a
    typed output in it is plain JSON data."""

    @property
    def ok(self) -> bool:
        return self.error is None


class HandoffRecord(BaseModel):
    """One handoff of a run: the model of one agent handed the conversation to another
    (`agentkit.agent.handoffs`)."""

    source: str
    """The agent that handed off (its name)."""
    target: str
    """The agent that took over."""
    step: int
    """The step (model call) that made the transfer call."""
    call_id: str
    """The id of the transfer call (`transfer_to_<target>`)."""
    input: Any = None
    """The transfer's validated input, as JSON data, for a handoff with an `input_type`."""
    returns: bool = False
    """Whether control goes back to `source` once `target` (or an agent it hands off to)
    answers."""
    start: int | None = None
    """Where the target took over: the index in the run's messages of the first message it
    made; None while the step that made the transfer is not over (a run paused there)."""
    end: int | None = None
    """For a handoff that returns, where control went back: the index of the first message
    after the answer that returned; None until then."""

    @property
    def returned(self) -> bool:
        """Whether control went back to `source`."""
        return self.end is not None


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
    agent: str | None = None
    """The name of the agent in force when the run ended: the one that gave the final answer,
    after handoffs (see docs/multi-agent.md)."""
    handoffs: list[HandoffRecord] = Field(default_factory=list)
    """The run's handoffs, in the order they were made."""
    step_runtimes: dict[int, str] = Field(default_factory=dict)
    """Which runtime answered each step (model call, from 1), for the steps whose runtime
    said so: those answered through a wrapper that chooses between runtimes (`Fallback`).
    Empty for a run on one plain runtime."""

    _state: RunState | None = PrivateAttr(default=None)

    @classmethod
    def built(cls, **fields: Any) -> RunResult[Any]:
        """A result from the run's own values (every field given, none validated): what
        `model_construct` makes, without its search for defaults, which costs more than the
        rest of a short run's result."""
        result = cls.__new__(cls)
        object.__setattr__(result, "__dict__", fields)
        object.__setattr__(result, "__pydantic_fields_set__", set(fields))
        object.__setattr__(result, "__pydantic_extra__", None)
        object.__setattr__(result, "__pydantic_private__", {"_state": None})
        return result

    @property
    def state(self) -> RunState | None:
        """What a run paused for approval needs to continue (`agent.resume(result.state,
        ...)`); None for a run that ended. Not part of the result's own JSON: save
        `result.state.to_json()`."""
        return self._state


ToolCallRecord.model_rebuild()  # a record may hold a run: a RunResult, defined after it

STATE_VERSION = 1
"""The `RunState.version` this agentkit writes and reads."""


def digest(value: Any) -> str:
    """A short, stable digest of JSON-like data (sorted keys), for fingerprints."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class RunState(BaseModel):
    """Everything a paused run needs to continue; `to_json()` / `RunState.from_json()`.

    A RunState is single-use: resuming it (or any copy of it, by `id`) a second time in the
    same process raises `RunStateError`. Two processes that each load the same JSON cannot
    see each other without shared storage: keep the file where one consumer takes it (move
    or delete it once resumed) when that matters.
    """

    version: int = STATE_VERSION
    """The format's version; `from_json` refuses one it does not know."""
    id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    """This pause's identity: what single use is checked against."""
    messages: list[Message]
    """The transcript: it ends with the assistant message that made the pending calls,
    followed by the results of that step's calls that did not wait (in the model's order)."""
    tool_calls: list[ToolCallRecord]
    """Every tool call so far; the pending ones have neither output nor error yet."""
    pending: list[PendingCall]
    """The calls waiting for a decision, in the order the model made them."""
    steps: int
    """Model calls made so far."""
    usage: Usage = Field(default_factory=Usage)
    """Token usage of this agent's model calls so far."""
    nested_usage: dict[str, Usage] = Field(default_factory=dict)
    """Usage of runs started by its tools (agents used as tools), by model."""
    failures: dict[str, int] = Field(default_factory=dict)
    """Failed calls in a row, per tool (`max_tool_retries`)."""
    last_signature: str | None = None
    repeats: int = 0
    """Identical consecutive calls so far (`repeat_limit`), and the last call's signature."""
    fingerprint: dict[str, str] = Field(default_factory=dict)
    """What of the agent must be the same to resume: one entry per tool (`tool:NAME`, a
    digest of its schema) and per setting that shapes the run (`setting:NAME`), of the agent
    in force."""
    agent: str | None = None
    """The agent in force, the one that made the last step, for a run with handoffs (None
    for one without: the agent that started it)."""
    handoffs: list[HandoffRecord] = Field(default_factory=list)
    """The handoffs so far: the agent in force, the agents to return to and what each agent
    sees of the conversation follow from them (`agentkit.agent.handoffs`). The last one has
    no `start` when its step paused before the target took over."""
    handoff_usage: dict[str, Usage] = Field(default_factory=dict)
    """Usage of the model calls made by agents before the one in force, by model."""
    step_runtimes: dict[int, str] = Field(default_factory=dict)
    """Which runtime answered each step so far, where it was said (`RunResult.step_runtimes`)."""
    rerouted_usage: dict[str, dict[str, Usage]] = Field(default_factory=dict)
    """Usage of steps another model answered than the agent's own (a `Fallback` fell over),
    by the agent's model, then by the model that answered."""

    def to_json(self, *, indent: int | None = None) -> str:
        """The state as JSON text."""
        return self.model_dump_json(indent=indent)

    @classmethod
    def from_json(cls, text: str | bytes) -> RunState:
        """Read a state written by `to_json`.

        Raises:
            RunStateError: the text is not a state, or one of a version this agentkit does not
                know (written by a newer one).
        """
        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise RunStateError([f"not JSON: {exc}"]) from None
        if not isinstance(raw, dict):
            raise RunStateError([f"expected a JSON object (got {type(raw).__name__})"])
        version = raw.get("version")
        if version != STATE_VERSION:
            raise RunStateError(
                [f"version: this agentkit reads version {STATE_VERSION} (got {version!r})"]
            )
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            problems = [
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5]
            ]
            raise RunStateError(problems) from None

    def differences(self, fingerprint: dict[str, str]) -> list[str]:
        """What differs between the agent that paused this run and one with `fingerprint`."""
        problems = []
        for key in sorted(self.fingerprint.keys() | fingerprint.keys()):
            kind, _, name = key.partition(":")
            was, now = self.fingerprint.get(key), fingerprint.get(key)
            if was == now:
                continue
            if now is None:
                problems.append(f"{kind} {name!r}: used by the paused run, missing in this agent")
            elif was is None:
                if kind == "tool":
                    continue  # a tool added since: the run can go on without it
                problems.append(f"{kind} {name!r}: set in this agent, not in the paused run's")
            else:
                changed = "schema" if kind == "tool" else "value"
                problems.append(f"{kind} {name!r}: its {changed} changed since the run paused")
        return problems
