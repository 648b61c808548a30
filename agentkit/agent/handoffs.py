"""Handoffs: an agent hands the conversation over to another for the rest of the run.

`Agent(..., name="triage", handoffs=[billing, handoff(refunds, returns=True)])` offers each
target as a tool, `transfer_to_<name>`. When the model calls one, the call's result is
`Transferred to <name>.`, the step's other calls run as usual, and before the next model call
the target takes over: its instructions (as the system message), tools, runtime, output type,
sampling, limits and hooks. Of a step's transfers, the first in the model's order is made; the
others fail, and the model is told why.

What the target sees is the conversation as the agent that handed off saw it, without its
system message, through the handoff's `input_filter` if it has one (`drop_tool_traffic`,
`keep_last(n)`, or any function of the messages), then all that follows. The run's own
transcript (`RunResult.messages`) keeps everything.

A handoff with `returns=True` gives control back: when the target, or an agent it handed off
to in turn, answers, the agent that handed off takes over again and sees the answer as the
transfer call's result, in place of `Transferred to ...` (not the target's steps). Its own
answer, or a later one, is the run's. A run makes at most `max_handoffs` handoffs (a setting
of the agent that starts it); past that a transfer is a failed call the model is told about.

A run's handoffs are data (`HandoffRecord`s, in `RunState.handoffs`): where each target took
over, and where control went back. A paused or interrupted run is taken up again by replaying
them against the agents reachable from the one that started it, by name (`reachable`); the
taking over itself is `agentkit.agent.takeover`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from pydantic import PydanticSchemaGenerationError, PydanticUserError, TypeAdapter
from pydantic.json_schema import GenerateJsonSchema
from pydantic_core import to_jsonable_python

from agentkit.agent.core import HandoffTrail, RunCore, Setup, current_run
from agentkit.agent.hooks import HookSet
from agentkit.agent.output import OutputSpec
from agentkit.agent.results import HandoffRecord
from agentkit.agent.settings import AgentSettings
from agentkit.errors import ToolRetry, UserError
from agentkit.model_api import Message
from agentkit.tools import Tool, Toolset
from agentkit.tools.formats import meta_problems

__all__ = [
    "Fresh",
    "Handoff",
    "InputFilter",
    "Target",
    "drop_tool_traffic",
    "handoff",
    "input_schema",
    "keep_last",
    "new_trail",
    "offer",
    "reachable",
]

PREFIX = "transfer_to_"
_MAX_NAME = 64 - len(PREFIX)  # a tool's name has at most 64 characters
_NAME = re.compile(r"^[a-zA-Z0-9_-]+$")
_CONTEXT = "agentkit.context"  # the context's keyword: no field of an input type has this name

InputFilter = Callable[[list[Message]], Sequence[Message]]
"""What a receiving agent sees of the conversation: a function of its messages."""


class Fresh(Protocol):
    """A run of an agent, made to take its pieces (setup, output, system message) from."""

    setup: Setup
    messages: list[Message]
    output: OutputSpec[Any] | None


class Target(Protocol):
    """What of an Agent a handoff uses."""

    @property
    def name(self) -> str | None: ...
    @property
    def instructions(self) -> str | None: ...
    @property
    def toolset(self) -> Toolset: ...
    @property
    def hooks(self) -> HookSet: ...
    @property
    def settings(self) -> AgentSettings: ...
    @property
    def handoffs(self) -> tuple[Handoff, ...]: ...

    def start(
        self,
        prompt: str | Sequence[Message],
        history: Sequence[Message] = (),
        transcript: list[Message] | None = None,
        deps: Any = None,
        run_id: str | None = None,
    ) -> Fresh: ...


class _Untitled(GenerateJsonSchema):
    """pydantic's generator without the fields' titles: tokens for every call, saying nothing
    the names do not."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


def input_schema(input_type: Any) -> tuple[TypeAdapter[Any], dict[str, Any]]:
    """The adapter of an input type and a tool's parameters schema: the type's fields (for
    handoffs and agents used as tools).

    Raises:
        UserError: a type pydantic cannot validate, or one that is not an object type.
    """
    shown = getattr(input_type, "__name__", repr(input_type))
    try:
        adapter: TypeAdapter[Any] = TypeAdapter(input_type)
        schema = adapter.json_schema(schema_generator=_Untitled)
    except (PydanticSchemaGenerationError, PydanticUserError, TypeError) as exc:
        first = str(exc).splitlines()[0]
        raise UserError(f"input_type: cannot be validated ({shown}): {first}") from None
    if schema.get("type") != "object" or "properties" not in schema:
        raise UserError(
            f"input_type: must be a pydantic model, a dataclass or a TypedDict, whose fields "
            f"are the tool's parameters (got {shown})"
        )
    schema.pop("title", None)
    schema.pop("description", None)  # the tool's description says what it is for
    return adapter, schema


# -- the public API ---------------------------------------------------------------------------


class Handoff:
    """A handoff to `agent`, as `Agent(handoffs=[...])` takes it (see `handoff`)."""

    def __init__(
        self,
        agent: Target,
        *,
        description: str | None = None,
        input_type: Any = None,
        input_filter: InputFilter | None = None,
        returns: bool = False,
    ) -> None:
        if not (hasattr(agent, "toolset") and hasattr(agent, "start")):
            raise UserError(f"handoffs: expected an Agent or a Handoff (got {agent!r})")
        name = agent.name
        if name is None:
            raise UserError(
                "handoffs: an agent handed off to needs a name: Agent(..., name=...) "
                "(got an agent without one)"
            )
        if not _NAME.match(name) or len(name) > _MAX_NAME:
            raise UserError(
                f"handoffs: an agent handed off to needs a name of 1 to {_MAX_NAME} "
                f"letters, digits, _ or - (got {name!r})"
            )
        if description is not None and (not isinstance(description, str) or not description):
            raise UserError(f"description: must be text, or None (got {description!r})")
        if input_filter is not None and not callable(input_filter):
            raise UserError(
                f"input_filter: must be a function of the messages (got {input_filter!r})"
            )
        if not isinstance(returns, bool):
            raise UserError(f"returns: must be True or False (got {returns!r})")
        self.agent = agent
        self.name = name
        self.description = (
            description or agent.instructions or f"Transfer the conversation to {name}."
        )
        """What the transfer tool's description says: the one given, or the agent's
        instructions."""
        self.input_type = input_type
        self.input_filter = input_filter
        self.returns = returns
        self.tool = _transfer_tool(self)
        """The tool the model calls: `transfer_to_<name>`."""

    def __repr__(self) -> str:
        return f"Handoff({self.name!r}, returns={self.returns})"


def handoff(
    agent: Target,
    *,
    description: str | None = None,
    input_type: Any = None,
    input_filter: InputFilter | None = None,
    returns: bool = False,
) -> Handoff:
    """A handoff to `agent`, for `Agent(handoffs=[...])` (a bare Agent there takes the
    defaults).

    Args:
        agent: the agent that takes over; it needs a name (its tool is `transfer_to_<name>`).
        description: the transfer tool's description; the agent's instructions if None.
        input_type: a pydantic model, dataclass or TypedDict whose fields are the transfer
            tool's parameters; the validated value is in the transfer call's result, which the
            receiving agent reads, and in `HandoffRecord.input`. An object JSON Schema (a dict)
            does the same with the arguments as JSON, checked against it.
        input_filter: what the receiving agent sees of the conversation so far:
            `drop_tool_traffic`, `keep_last(n)`, or a function of the messages (without the
            system message) that returns those to keep. It should be deterministic: a run taken
            up again applies it again.
        returns: give control back to the agent that handed off once the receiving agent
            answers; its answer is then the transfer call's result.

    Raises:
        UserError: an agent without a name, or a setting that does not fit, by name.
    """
    return Handoff(
        agent,
        description=description,
        input_type=input_type,
        input_filter=input_filter,
        returns=returns,
    )


def drop_tool_traffic(messages: list[Message]) -> list[Message]:
    """An input filter: the conversation without tool calls and their results, but for the
    transfer itself (the last step's `transfer_to_*` calls and results), which the receiving
    agent reads as its input. An assistant message left with neither text nor calls goes."""
    kept: set[str] = set()
    for message in reversed(messages):
        if message.role == "assistant" and message.tool_calls:
            kept = {c.id for c in message.tool_calls if c.name.startswith(PREFIX)}
            break
    out = []
    for message in messages:
        if message.role == "tool":
            if message.tool_call_id in kept:
                out.append(message)
        elif message.tool_calls:
            calls = [c for c in message.tool_calls if c.id in kept]
            if calls or message.content:
                out.append(message.model_copy(update={"tool_calls": calls}))
        else:
            out.append(message)
    return out


def keep_last(n: int) -> InputFilter:
    """An input filter: the last `n` messages, reaching back to the message that made the
    tool calls when the cut would fall among their results (a result needs its call).

    Raises:
        UserError: `n` is not an int of at least 1.
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise UserError(f"keep_last: n must be an int >= 1 (got {n!r})")

    def last(messages: list[Message]) -> list[Message]:
        start = max(0, len(messages) - n)
        while start > 0 and messages[start].role == "tool":
            start -= 1
        return messages[start:]

    last.__qualname__ = last.__name__ = f"keep_last({n})"
    return last


# -- the agent's side -------------------------------------------------------------------------


def offer(
    agent: Any, name: str | None, toolset: Toolset, given: Iterable[Any]
) -> tuple[tuple[Handoff, ...], dict[str, Any]]:
    """The handoffs of `agent` (named `name`), their transfer tools added to `toolset`, and
    the agents reachable through them by name (`reachable`; empty without handoffs). Both
    are fixed from here on: each run's trail takes the same agents.

    Raises:
        UserError: an agent with handoffs but no name, a target twice or the agent itself,
            two agents of one name reachable through handoffs.
        ToolDefinitionError: a tool of the agent has a transfer tool's name.
    """
    made = tuple(h if isinstance(h, Handoff) else Handoff(h) for h in given)
    if not made:
        return made, {}
    if name is None:
        raise UserError("name: an agent with handoffs needs a name (Agent(..., name=...))")
    seen: set[str] = set()
    for item in made:
        if item.agent is agent or item.name == name:
            raise UserError(f"handoffs: {name!r} cannot hand off to itself")
        if item.name in seen:
            raise UserError(f"handoffs: {item.name!r} is there twice")
        seen.add(item.name)
        toolset.add(item.tool)
    return made, reachable(agent, name, made)


def reachable(agent: Any, name: str, handoffs: Sequence[Handoff]) -> dict[str, Any]:
    """The agents reachable through handoffs from `agent` (named `name`), itself included,
    by name: where a run taken up again finds the agent in force.

    Raises:
        UserError: two different agents of one name.
    """
    agents: dict[str, Any] = {name: agent}
    todo = list(handoffs)
    while todo:
        item = todo.pop(0)
        known = agents.get(item.name)
        if known is item.agent:
            continue
        if known is not None:
            raise UserError(
                f"handoffs: two agents named {item.name!r} are reachable from {name!r}; "
                "each needs a name of its own"
            )
        agents[item.name] = item.agent
        todo.extend(item.agent.handoffs)
    return agents


def new_trail(agent: Target, agents: dict[str, Any]) -> HandoffTrail:
    """The handoff trail of a new run of `agent` (which has handoffs), among `agents` (what
    `offer` found reachable from it)."""
    return HandoffTrail(
        agents=agents,
        max_handoffs=agent.settings.max_handoffs,
        hooks=agent.hooks,
    )


# -- a transfer call --------------------------------------------------------------------------


def _schema_input(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The transfer tool's parameters from an input type given as a JSON Schema."""
    problems = meta_problems(dict(schema))
    if schema.get("type") != "object" or problems:
        said = "; ".join(problems) or f"type {schema.get('type')!r}"
        raise UserError(f"input_type: a JSON Schema must describe an object ({said})")
    return dict(schema)


def _transfer_tool(made: Handoff) -> Tool:
    adapter: TypeAdapter[Any] | None = None
    if made.input_type is None:
        # Closed, as a function without parameters is: a model held by a grammar writes `{}`.
        parameters: dict[str, Any] = {
            "type": "object",
            "properties": {},
            "additionalProperties": False,
        }
    elif isinstance(made.input_type, Mapping):
        parameters = _schema_input(made.input_type)
    else:
        adapter, parameters = input_schema(made.input_type)
    checked = made.input_type is not None  # the tool's JSON Schema checked the arguments

    async def transfer(**arguments: Any) -> str:
        context = arguments.pop(_CONTEXT)
        run = current_run.get()
        if run is None or run.trail is None or made.name not in run.trail.agents:
            raise UserError(
                f"{made.tool.name}: a transfer works only in a run of an agent that hands off "
                f"to {made.name}"
            )
        if adapter is not None:
            data = to_jsonable_python(adapter.validate_python(arguments), fallback=repr)
        else:
            data = arguments if checked else None
        return await _transfer(run, made, str(context.tool_call_id), data)

    tool = Tool(
        transfer,
        name=PREFIX + made.name,
        description=made.description,
        parameters=parameters,
        idempotent=True,  # a call run again finds its record (see `_transfer`)
    )
    tool.context_param = _CONTEXT
    return tool


async def _transfer(run: RunCore, made: Handoff, call_id: str, data: Any) -> str:
    trail = run.trail
    assert trail is not None
    for record in trail.records:
        if record.call_id == call_id:  # a call run again after a crash
            return _said(record)
    last = trail.records[-1] if trail.records else None
    if last is not None and last.start is None:
        raise ToolRetry(
            f"not transferred: this step already hands the conversation to {last.target}"
        )
    if len(trail.records) >= trail.max_handoffs:
        raise ToolRetry(
            f"not transferred: the run made max_handoffs={trail.max_handoffs} handoffs; "
            f"go on without {made.name}"
        )
    record = HandoffRecord(
        source=run.setup.name or "",
        target=made.name,
        step=run.steps,
        call_id=call_id,
        input=data,
        returns=made.returns,
    )
    trail.records.append(record)
    for hook in run.hooks.on_handoff:
        await hook(run.context, record)
    return _said(record)


def _said(record: HandoffRecord) -> str:
    """The transfer call's result: what the receiving agent reads of the handoff."""
    text = f"Transferred to {record.target}."
    if record.input is not None:
        text += " Input: " + json.dumps(record.input, ensure_ascii=False)
    return text
