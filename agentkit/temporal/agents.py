"""Workers of agents: the registry of agents by name, what of each agent crosses to the
workflow (`AgentSpec`), and the input filters a durable handoff may use.

`Worker(client, task_queue=..., agents=[triage])` registers every agent reachable from
`triage` through handoffs, by name. A run's DESCRIBE activity returns an `AgentSpec` of each
agent it may reach; the workflow makes an activity-backed twin of each (`agentkit.temporal.
calls`), with the same handoffs, and the loop's own handoff logic switches between them, as
deterministic as the rest of the loop.

What cannot be part of a workflow is refused when the worker is made, by agent and name: hooks
and guardrails (they would run inside the workflow), tool sources (their sessions live in one
process), a `deadline`, a `tool_timeout` or `raise_tool_errors` (a durable run's are
Temporal's), and input filters other than `drop_tool_traffic` and `keep_last(n)`: a filter
runs inside the workflow, on every replay, so only those two, sent as data, are taken.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from pydantic import TypeAdapter

from agentkit.agent import Agent
from agentkit.agent.handoffs import Handoff, InputFilter, drop_tool_traffic, keep_last, reachable
from agentkit.errors import UserError
from agentkit.runtimes.base import Runtime
from agentkit.temporal.contract import (
    MAX_TOOL_OUTPUT,
    AgentSpec,
    HandoffSpec,
    RuntimeSpec,
    ToolSpec,
)
from agentkit.tools import Tool
from agentkit.usage import model_name

__all__ = [
    "agent_spec",
    "input_filter",
    "reachable_from",
    "registry",
    "runtime_spec",
    "tool_spec",
]

_KEEP_LAST = re.compile(r"^keep_last\((\d+)\)$")


def registry(agents: Agent[Any] | Iterable[Agent[Any]]) -> dict[str, Agent[Any]]:
    """The agents reachable through handoffs from each of `agents`, by name, the first of
    `agents` first.

    Raises:
        UserError: no agent, an agent without a name, two agents of one name, or an agent
            that cannot run durably (see the module's docstring), naming it and why.
    """
    given = [agents] if isinstance(agents, Agent) else list(agents)
    if not given:
        raise UserError("agents: a worker of agents needs at least one")
    found: dict[str, Agent[Any]] = {}
    for agent in given:
        if not isinstance(agent, Agent):
            raise UserError(f"agents: expected Agents (got {agent!r})")
        if agent.name is None:
            raise UserError("agents: a worker's agent needs a name: Agent(..., name=...)")
        for name, other in reachable(agent, agent.name, agent.handoffs).items():
            known = found.setdefault(name, other)
            if known is not other:
                raise UserError(f"agents: two agents are named {name!r}; each needs its own")
    for agent in found.values():
        _check(agent)
    return found


def reachable_from(agent: Agent[Any]) -> dict[str, Agent[Any]]:
    """The agents a run of `agent` (one of a `registry`) may reach, by name, itself first."""
    assert agent.name is not None
    return reachable(agent, agent.name, agent.handoffs)


def _check(agent: Agent[Any]) -> None:
    name = agent.name
    settings = agent.settings
    problems = []
    if agent.hooks.hooks:
        problems.append("hooks and guardrails would run inside the workflow: leave them out")
    if agent.toolset.sources:
        problems.append("tool sources (MCP servers) live in one process: serve their tools")
    if settings.deadline is not None:
        problems.append(f"deadline={settings.deadline}: a durable run's is start_run(timeout=)")
    if settings.tool_timeout is not None:
        problems.append(f"tool_timeout={settings.tool_timeout}: a durable run's is the tool's")
    if settings.raise_tool_errors:
        problems.append("raise_tool_errors=True: a durable run tells the model every failure")
    if settings.max_tool_output > MAX_TOOL_OUTPUT:
        problems.append(
            f"max_tool_output: must be <= {MAX_TOOL_OUTPUT} (got {settings.max_tool_output})"
        )
    for item in agent.handoffs:
        if item.input_filter is not None and _filter_name(item.input_filter) is None:
            problems.append(
                f"handoff to {item.name!r}: input_filter={item.input_filter!r} would run inside "
                "the workflow; a durable run takes drop_tool_traffic or keep_last(n)"
            )
    if problems:
        raise UserError(f"agents: {name!r} cannot run durably: " + "; ".join(problems))


def _filter_name(made: InputFilter) -> str | None:
    """A built-in input filter's name (`drop_tool_traffic`, `keep_last(N)`), else None."""
    if made is drop_tool_traffic:
        return "drop_tool_traffic"
    name = getattr(made, "__name__", "")
    if getattr(made, "__module__", None) == keep_last.__module__ and _KEEP_LAST.match(name):
        return str(name)
    return None


def input_filter(name: str | None) -> InputFilter | None:
    """The input filter a handoff's spec names (`HandoffSpec.input_filter`).

    Raises:
        UserError: a name that is not a built-in filter's.
    """
    if name is None:
        return None
    if name == "drop_tool_traffic":
        return drop_tool_traffic
    matched = _KEEP_LAST.match(name)
    if matched is None:
        raise UserError(
            f"input_filter: drop_tool_traffic or keep_last(n) on Temporal (got {name!r})"
        )
    return keep_last(int(matched.group(1)))


def runtime_spec(name: str, runtime: Runtime) -> dict[str, Any]:
    """A runtime's fields of a `RuntimeSpec`: its name, model, capabilities and profile."""
    capabilities = dataclasses.asdict(runtime.capabilities)
    capabilities["sampling"] = sorted(capabilities["sampling"])
    return RuntimeSpec(
        runtime=name,
        model=model_name(runtime),
        capabilities=capabilities,
        tool_choice=runtime.profile.tool_choice,
        sampling=dict(runtime.profile.sampling),
    ).model_dump()


def _approval(tool: Tool) -> Literal["never", "always", "predicate"]:
    rule = tool.requires_approval
    if callable(rule):
        return "predicate"
    return "always" if rule else "never"


def tool_spec(tool: Tool) -> ToolSpec:
    """A tool as the workflow sees it."""
    return ToolSpec(
        definition=tool.definition("full"),
        sequential=tool.sequential,
        idempotent=tool.idempotent,
        timeout=tool.timeout,
        max_retries=tool.max_retries,
        approval=_approval(tool),
        takes_context=tool.context_param is not None,
    )


def _handoff_spec(item: Handoff) -> HandoffSpec:
    schema = None
    if item.input_type is not None:
        schema = item.tool.definition("full").parameters
    return HandoffSpec(
        target=item.name,
        description=item.description,
        input_schema=schema,
        input_filter=None if item.input_filter is None else _filter_name(item.input_filter),
        returns=item.returns,
    )


def _output_schema(output_type: Any) -> dict[str, Any] | None:
    if output_type is None or output_type is str:
        return None
    if isinstance(output_type, Mapping):
        return dict(output_type)
    schema: dict[str, Any] = TypeAdapter(output_type).json_schema()
    return schema


def agent_spec(agent: Agent[Any]) -> AgentSpec:
    """What the workflow needs to make `agent`'s twin (an agent of `registry`)."""
    assert agent.name is not None
    transfers = {item.tool.name for item in agent.handoffs}
    return AgentSpec(
        **runtime_spec(agent.runtime.name, agent.runtime),
        name=agent.name,
        settings=agent.settings,
        tools=[tool_spec(t) for t in agent.toolset if t.name not in transfers],
        handoffs=[_handoff_spec(item) for item in agent.handoffs],
        output_schema=_output_schema(agent.output_type),
    )
