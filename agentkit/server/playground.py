"""The playground: one page (plain HTML, JS and CSS from `static/`) and the endpoints it
uses, `GET /playground/info`, `POST /playground/agent` and `POST /playground/resume`.

The agent endpoint runs the agent loop on the server, with the tools the server was started
with, and streams its typed events as server-sent events named after each event's `kind`
(`step_started`, `text_delta`, `tool_call_started`, `tool_call_finished`, `step_finished`,
`run_finished`), or `error`. A run that stops for approval ends with `run_finished` saying
`stop_reason: "approval"`, the `pending` calls and a `run` key; the paused run stays on the
server (`agentkit.server.paused`) until the page posts `{run, approve: [ids], deny: {id:
reason}}` to the resume endpoint, which streams the rest of the run the same way.

Every event says which agent produced it (its `path`, e.g. `triage/billing` for an agent
used as a tool); `run_finished` says which agent answered (`agent`, its name) and the
handoffs of the run (`handoffs`, a list, empty without any). A server started with an agent
(`serve --agents FILE`) runs that agent as it is defined: `/playground/info` names it
(`agent`) and lists its tools, and the agent endpoint takes the conversation alone.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from functools import partial
from pathlib import Path
from typing import Any

from pydantic_core import to_jsonable_python
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from agentkit.agent import Agent, RunResult
from agentkit.agent.events import Event, RunFinished
from agentkit.model_api import Message
from agentkit.server.answers import check_answer_format
from agentkit.server.core import ServerState, endpoint
from agentkit.server.errors import BAD_INPUT, ApiError
from agentkit.server.paused import PausedRuns, caller, read_decisions
from agentkit.server.queue import as_generator
from agentkit.server.sse import EventStream, data_frame
from agentkit.tools import Toolset
from agentkit.wire.workers_ai import GenerationRequest

__all__ = ["answered_by", "playground_routes"]

STATIC = Path(__file__).parent / "static"
_PAGE_HEADERS = {
    "cache-control": "no-cache",
    # The page approves tool calls with a click: no other site may frame it under a decoy.
    "x-frame-options": "DENY",
    # Only the page's own files run and style it, and it talks to this server alone.
    "content-security-policy": "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "connect-src 'self'",
            "img-src 'self'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    ),
}


def playground_routes(state: ServerState) -> list[BaseRoute]:
    """The page, its files, and the endpoints it calls."""

    paused = PausedRuns()

    async def page(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers=_PAGE_HEADERS)

    return [
        Route("/", page, methods=["GET"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
        Route("/playground/info", endpoint(state, _info), methods=["GET"]),
        Route("/playground/agent", endpoint(state, partial(_agent, paused)), methods=["POST"]),
        Route("/playground/resume", endpoint(state, partial(_resume, paused)), methods=["POST"]),
    ]


async def _info(state: ServerState, request: Request) -> Response:
    state.authorize(request)
    caps = state.runtime.capabilities
    return JSONResponse(
        {
            "models": list(state.models),
            "runtime": state.runtime.name,
            "capabilities": to_jsonable_python(caps),
            "profile": {
                "tool_choice": state.runtime.profile.tool_choice,
                "sampling": dict(state.runtime.profile.sampling),
            },
            "tools": [t.to_function(caps.schema_dialect) for t in _toolset(state)],
            "max_steps": state.max_steps,
            "auth": state.api_token is not None,
            "agent": None if state.agent is None else _name(state.agent),
        }
    )


def _name(agent: Any) -> str:
    """An agent's name, as events' paths give it."""
    return str(agent.name or "agent")


def _toolset(state: ServerState) -> Toolset:
    return state.tools if state.agent is None else state.agent.toolset


async def _agent(paused: PausedRuns, state: ServerState, request: Request) -> Response:
    """Body: `{messages, instructions?, use_tools?, tool_choice?, response_format?, temperature?,
    top_p?, ...}`; for a server's own agent, `{messages}`."""
    state.authorize(request)
    body = await state.read_json(request)
    if state.agent is not None:
        agent, messages = _defined(state.agent, body)
    else:
        agent, messages = await _from_settings(state, body)
    events = agent.stream(messages)
    return EventStream(
        _events(agent, events, paused, caller(request, state.api_token)), state.to_error
    )


def _defined(agent: Agent[Any], body: dict[str, Any]) -> tuple[Agent[Any], list[Message]]:
    """The server's own agent, for a body that sends only the conversation."""
    others = sorted(set(body) - {"messages"})
    if others:
        raise ApiError(
            400,
            BAD_INPUT,
            f"Bad input: {', '.join(others)}: the playground's agent is defined by the server "
            "(serve --agents); send only messages",
        )
    return agent, _conversation(GenerationRequest.build(body))


def _conversation(checked: GenerationRequest) -> list[Message]:
    if not checked.messages or checked.messages[-1].role != "user":
        raise ApiError(400, BAD_INPUT, "Bad input: messages: the last message must be the user's")
    return checked.messages


async def _from_settings(
    state: ServerState, body: dict[str, Any]
) -> tuple[Agent[Any], list[Message]]:
    """An agent made from the server's runtime and tools and the page's settings."""
    instructions = body.pop("instructions", None) or None
    use_tools = body.pop("use_tools", True)
    if not isinstance(instructions, (str, type(None))) or not isinstance(use_tools, bool):
        raise ApiError(400, BAD_INPUT, "Bad input: instructions must be text, use_tools a bool")
    # The contract's own validation, so bad values are named exactly as on the API.
    checked = GenerationRequest.build(body)
    messages = _conversation(checked)
    tools = state.tools if use_tools else ()
    if checked.tool_choice not in ("auto", "required"):
        raise ApiError(400, BAD_INPUT, "Bad input: tool_choice: must be auto or required")
    agent = Agent(
        state.runtime,
        tools=tools,
        instructions=instructions,
        max_steps=state.max_steps,
        # A forced first call goes back to `auto` once the tools answered; what the body leaves
        # out, the runtime's profile decides.
        tool_choice=(checked.tool_choice if "tool_choice" in body else None) if tools else "auto",
        **{name: value for name, value in checked.sampling().items() if name in body},
        **await _answer_format(state, checked),
    )
    return agent, messages


async def _answer_format(state: ServerState, checked: GenerationRequest) -> dict[str, Any]:
    """`response_format` for the agent, when the page set a schema (checked as on the API)."""
    if checked.response_format is None:
        return {}
    if not state.runtime.capabilities.response_format:
        raise ApiError(
            400,
            BAD_INPUT,
            f"Bad input: response_format: the {state.runtime.name} runtime "
            "cannot hold its answer to a format",
        )
    await check_answer_format(state, checked.to_model(state.runtime.name))
    return {"response_format": checked.response_format}


async def _resume(paused: PausedRuns, state: ServerState, request: Request) -> Response:
    """Body: `{run, approve: [call ids], deny: {call id: reason}}`; every pending call decided."""
    state.authorize(request)
    body = await state.read_json(request)
    agent, run_state = paused.peek(body.get("run"))
    approve, deny = read_decisions(body, run_state)
    paused.take(body["run"])
    events = agent.stream_resume(run_state, approve=approve, deny=deny)
    return EventStream(
        _events(agent, events, paused, caller(request, state.api_token)), state.to_error
    )


async def _events(
    agent: Agent, stream: AsyncIterator[Event], paused: PausedRuns, who: str
) -> AsyncIterator[bytes]:
    async with aclosing(as_generator(stream)) as events:
        async for event in events:
            yield data_frame(_event_data(event, agent, paused, who), event=event.kind)


def answered_by(result: RunResult[Any], agent: Agent[Any]) -> str:
    """The name of the agent that answered: the run's agent, or after a handoff the one the
    result names (`RunResult.agent`, an agent or its name)."""
    return result.agent or _name(agent)


def _event_data(event: Event, agent: Agent, paused: PausedRuns, who: str) -> Any:
    if isinstance(event, RunFinished):
        result = event.result
        data = {
            "output": result.output,
            "steps": result.steps,
            "stop_reason": result.stop_reason,
            "usage": result.usage.to_wire(),
            "messages": [m.to_wire("function") for m in result.messages],
            "agent": answered_by(result, agent),
            "handoffs": to_jsonable_python(result.handoffs),
        }
        if result.state is not None:
            data["pending"] = [call.model_dump() for call in result.pending]
            data["run"] = paused.put(agent, result.state, who)
        return data
    return to_jsonable_python(event)
