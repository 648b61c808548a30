"""Agents as tools: `Agent.as_tool` makes an agent a tool of other agents.

A call of the tool runs the agent (the sub-agent) on what the calling run's model wrote, and
answers with its output. The sub-run:

- starts from the agent's instructions and one user message: the `input` text, or, with an
  `input_type`, the validated arguments as JSON text; it sees nothing else of the calling
  run's conversation;
- gets the calling run's `deps`, and runs inside its call, so within the calling run's
  deadline and cancelled with it;
- adds its usage by model to the calling run's (`RunResult.usage_by_model`, `cost`);
- streams its events into the calling run's stream, as they happen, each with the path
  `caller/name` (see `agentkit.agent.events`);
- is kept whole, as its `RunResult`, in the call's `ToolCallRecord.run`.

Its answer is the call's output: the text, or a typed output as JSON. A sub-run that raises
(a limit, a model error, a tool's error it re-raises) is a failure of the call: the calling
run's model is told `TypeName: message`, and the failure counts against the tool's retries, as
for any tool that raises (`raise_tool_errors=True` re-raises it); the record keeps the sub-run
as far as it got. Cancellation is not a failure: the calling run's deadline, or its own
cancellation, cancels the sub-run and goes on up. A sub-run cannot pause for a person's
approval: `as_tool` refuses an agent with tools that may ask for it, and a run that pauses
anyway (a tool source's tool) is a failure of the call that names the calls that waited.
"""

from __future__ import annotations

import re
from typing import Any

from agentkit.agent.core import RunCore, current_run
from agentkit.agent.handoffs import input_schema
from agentkit.agent.results import RunResult, ToolCallRecord
from agentkit.agent.run import Starter
from agentkit.errors import RunError, UserError
from agentkit.tools import Tool, ToolOptions
from agentkit.tools.context import RunContext

__all__ = ["agent_tool"]

_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_CONTEXT = "agentkit.context"  # the context's keyword: no field of an input type has this name

INPUT_DESCRIPTION = (
    "The request, in plain words. The agent sees nothing else of this conversation: "
    "include everything it needs."
)


def agent_tool(
    agent: Starter,
    name: str | None,
    description: str,
    input_type: Any,
    options: ToolOptions,
) -> Tool:
    """`agent` as a tool (`Agent.as_tool`; see the module's docstring).

    Raises:
        UserError: no name (neither given nor the agent's), a name a tool cannot have, an
            empty description, an `input_type` that is not an object type, or tools of the
            agent that may ask for approval.
    """
    name = name if name is not None else agent.name
    if name is None:
        raise UserError("name: required for an agent without a name (as_tool(name=...))")
    if not isinstance(name, str) or not _NAME.match(name):
        raise UserError(f"name: must be 1 to 64 letters, digits, _ or - (got {name!r})")
    if not isinstance(description, str) or not description.strip():
        raise UserError(
            f"description: must say what the agent does, for the model (got {description!r})"
        )
    asking = [t.name for t in agent.toolset if t.requires_approval is not False]
    if asking:
        raise UserError(
            f"{name}: an agent used as a tool cannot pause for approval, and its tools "
            f"{', '.join(asking)} may ask for it"
        )
    element = agent.name or name
    if input_type is None:
        parameters: dict[str, Any] = {
            "type": "object",
            "properties": {"input": {"type": "string", "description": INPUT_DESCRIPTION}},
            "required": ["input"],
            "additionalProperties": False,
        }

        async def call(**arguments: Any) -> Any:
            context = arguments.pop(_CONTEXT)
            return await run_subagent(agent, element, arguments["input"], context)

    else:
        adapter, parameters = input_schema(input_type)

        async def call(**arguments: Any) -> Any:
            context = arguments.pop(_CONTEXT)
            prompt = adapter.dump_json(adapter.validate_python(arguments)).decode()
            return await run_subagent(agent, element, prompt, context)

    made = Tool(call, name=name, description=description, parameters=parameters, **options)
    made.context_param = _CONTEXT
    return made


async def run_subagent(agent: Starter, element: str, prompt: str, context: RunContext[Any]) -> Any:
    """Run `agent` on `prompt` for a call of its tool, in the run under way (if any): its
    deps, its event stream, its usage, and the call's record, which keeps the sub-run."""
    parent = current_run.get()
    run = agent.start(prompt, deps=context.deps)
    emit = None
    record = None
    if parent is not None:
        run.path = f"{parent.path}/{element}"
        emit = parent.emit
        record = _record(parent, context.tool_call_id)
    result: RunResult[Any] | None = None
    try:
        result = await run.execute(emit=emit, stream=emit is not None)
    except RunError as exc:
        result = exc.run
        raise
    finally:
        if record is not None:
            # Cut short without a partial run of its own (cancelled, an error from its model):
            # kept as far as it got.
            record.run = result if result is not None else run.outcome("", "stopped")
    if result.stop_reason == "approval":
        waiting = ", ".join(f"{c.name} ({c.id})" for c in result.pending)
        raise UserError(
            f"{element} stopped to wait for approval of {waiting}: an agent used as a tool "
            "cannot pause"
        )
    return result.output


def _record(run: RunCore, call_id: str | None) -> ToolCallRecord | None:
    """The record of the call `call_id` of the run's step under way."""
    for record in reversed(run.records):
        if record.call.id == call_id:
            return record
    return None
