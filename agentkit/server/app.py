"""The server's application: the Workers AI API (native and OpenAI-compatible) and the
playground, in front of one runtime.

```
POST /client/v4/accounts/{account_id}/ai/run/{model}              Workers AI text generation
POST /client/v4/accounts/{account_id}/ai/v1/chat/completions      OpenAI chat completions
GET  /client/v4/accounts/{account_id}/ai/v1/models                OpenAI model list
GET  /                                                            the playground
POST /mcp                                                         the tools over MCP (--mcp)
POST /ag-ui                                                       the agent over AG-UI (--agents)
GET  /.well-known/agent-card.json                                 the agent's A2A card (--a2a)
POST /a2a                                                         the agent over A2A (--a2a)
```
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import AsyncExitStack, aclosing, asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agentkit import telemetry
from agentkit.agent import Agent
from agentkit.model_api import DEFAULT_MODEL, ModelRequest, Usage
from agentkit.runtimes.base import Runtime
from agentkit.server import openai_compat
from agentkit.server.ag_ui import ag_ui_routes
from agentkit.server.answers import check_answer_format
from agentkit.server.core import (
    CURRENT_REQUEST,
    DEFAULT_MAX_BODY,
    ServerState,
    check_token,
    endpoint,
    internal_error,
)
from agentkit.server.deadlines import DEFAULT_BODY_TIMEOUT, BodyDeadline
from agentkit.server.errors import BAD_INPUT, NO_ROUTE, ApiError, envelope
from agentkit.server.playground import playground_routes
from agentkit.server.queue import ModelQueue, QueuedRuntime, as_generator
from agentkit.server.security import ANY, SitePolicy, check_origin, wildcards
from agentkit.server.sse import DONE, EventStream, data_frame
from agentkit.tools import Tool, Toolset, ToolSource
from agentkit.wire import openai as openai_wire
from agentkit.wire import workers_ai

__all__ = ["DEFAULT_MAX_BODY", "DEFAULT_MAX_QUEUE", "create_app", "served_models"]

log = logging.getLogger("agentkit.server")

DEFAULT_MAX_QUEUE = 8
"""Requests that may wait for the model while it serves another; one more gets a 429."""

REQUEST_ID = "cf-ai-req-id"
API = "/client/v4/accounts/{account_id}/ai"


def served_models(runtime: Runtime, models: Sequence[str] | None = None) -> tuple[str, ...]:
    """The model names a server answers to: `models`, or by default
    `@cf/meta/llama-3.1-8b-instruct` (so clients written for Workers AI work unchanged) and
    `@agentkit/<runtime name>` (e.g. `@agentkit/local`)."""
    names = tuple(models) if models else (DEFAULT_MODEL, f"@agentkit/{runtime.name}")
    if not names or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"models: must be non-empty names (got {names!r})")
    return names


def create_app(
    runtime: Runtime,
    *,
    api_token: str | None = None,
    tools: Iterable[Tool | ToolSource | Callable[..., Any]] = (),
    models: Sequence[str] | None = None,
    max_queue: int = DEFAULT_MAX_QUEUE,
    max_body: int = DEFAULT_MAX_BODY,
    max_steps: int = 8,
    mcp: bool = False,
    allowed_hosts: Iterable[str] = (),
    allowed_origins: Iterable[str] = (),
    body_timeout: float = DEFAULT_BODY_TIMEOUT,
    approve_all: bool = False,
    insecure_allow_any_origin: bool = False,
    insecure_allow_any_host: bool = False,
    agent: Agent[Any] | None = None,
    a2a: str | Path | None = None,
) -> Starlette:
    """The server as an ASGI application, for `uvicorn`, tests or embedding.

    Args:
        runtime: the model to serve. The application does not close it.
        api_token: when set, every API call needs `Authorization: Bearer <api_token>`.
        tools: tools the playground's agent may call (the API itself runs no tools: its
            clients run their own). Tool sources (MCP servers) start and stop with the app.
        models: the model names to answer to (see `served_models`).
        max_queue: requests that may wait while the model serves another; past it, 429.
        max_body: the largest request body in bytes; past it, 413.
        max_steps: model calls the playground's agent may make per message.
        mcp: also serve the tools over MCP (Streamable HTTP) at `/mcp`, behind the same token.
        allowed_hosts: `Host` names served besides `localhost`, `127.0.0.1` and `[::1]`
            (`"*"`: any); other names get 403, which stops DNS rebinding.
        allowed_origins: origins (`scheme://host[:port]`) whose pages may call the server,
            with CORS; requests from any other origin get 403.
        body_timeout: seconds a client may take to send a request body; past it, 408.
        approve_all: `/mcp` runs the calls of tools that require approval without asking; by
            default it asks the client, with MCP elicitation, and refuses if it cannot.
        insecure_allow_any_origin: accept `allowed_origins=["*"]` without an `api_token`.
        insecure_allow_any_host: accept `allowed_hosts=["*"]` without an `api_token`.
        agent: the playground's agent, as it is defined (its runtime, tools, sub-agents,
            instructions and settings; `agentkit serve --agents FILE`): the page sends it the
            conversation alone. Without one, the playground makes an agent for each message
            from `runtime`, `tools` and the page's settings. Its tool sources start and stop
            with the app.
        a2a: also serve the agent over A2A (its card at `/.well-known/agent-card.json`,
            JSON-RPC at `/a2a`, behind the same token), its tasks kept in this SQLite file.
            The agent is `agent`, or one made of `runtime`, `tools` and `max_steps`. Needs
            the `a2a` extra.

    Raises:
        ValueError: a bound below its minimum, a malformed origin, an `api_token` with
            characters other than printable ASCII (which no browser or HTTP library sends
            unchanged), or `"*"` in `allowed_origins` or `allowed_hosts` without an
            `api_token` (or the matching `insecure_*` flag). With a token, `"*"` is logged
            as a warning.
    """
    if max_body < 1:
        raise ValueError(f"max_body: must be >= 1 (got {max_body})")
    if api_token is not None:
        check_token(api_token)
    allowed_origins = [o if o == ANY else check_origin(o) for o in allowed_origins]
    allowed_hosts = list(allowed_hosts)
    accepted = {"origin": insecure_allow_any_origin, "host": insecure_allow_any_host}
    _check_wildcards(allowed_hosts, allowed_origins, api_token, accepted)
    state = ServerState(
        runtime=QueuedRuntime(
            telemetry.traced_runtime(runtime), ModelQueue(max_queue, runtime.slots)
        ),
        models=served_models(runtime, models),
        tools=tools if isinstance(tools, Toolset) else Toolset(tools),
        max_body=max_body,
        max_steps=max_steps,
        api_token=api_token,
        agent=agent,
    )
    routes: list[BaseRoute] = [
        Route(f"{API}/run/{{model:path}}", endpoint(state, _run), methods=["POST"]),
        Route(
            f"{API}/v1/chat/completions",
            endpoint(state, _chat_completions, openai=True),
            methods=["POST"],
        ),
        Route(f"{API}/v1/models", endpoint(state, _models, openai=True), methods=["GET"]),
        *playground_routes(state),
        *ag_ui_routes(state),
    ]
    lifetimes: list[Any] = [state.tools] if agent is None else [state.tools, agent]
    if mcp:
        from agentkit.mcp.server import MCPEndpoint

        mcp_endpoint = MCPEndpoint(state.tools, partial(_refusal, state), approve_all=approve_all)
        routes.append(Route("/mcp", mcp_endpoint, methods=["GET", "POST", "DELETE"]))
        lifetimes.append(mcp_endpoint.run())
    if a2a is not None:
        from agentkit.server.a2a import a2a_service, guarded

        served = agent or Agent(state.runtime, tools=state.tools, max_steps=max_steps)
        service = a2a_service(served, a2a, bearer=api_token is not None)
        routes.extend(service.routes(guarded(state)))
        # An agent given is entered above already; one made here brings only its tools.
        lifetimes.append(service.lifespan(enter_agent=False))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            for lifetime in lifetimes:
                await stack.enter_async_context(lifetime)
            yield

    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(telemetry.ServerSpans),
            Middleware(_RequestId),
            Middleware(SitePolicy, allowed_hosts=allowed_hosts, allowed_origins=allowed_origins),
            Middleware(BodyDeadline, timeout=body_timeout),
        ],
        exception_handlers={
            HTTPException: _http_error,
            ApiError: _api_error,
            Exception: _internal_error,
        },
        lifespan=lifespan,
    )
    app.state.agentkit = state
    return app


_WILDCARD = {"origin": "any origin is allowed ('*')", "host": "any Host is answered ('*')"}


def _check_wildcards(
    hosts: list[str], origins: list[str], api_token: str | None, accepted: dict[str, bool]
) -> None:
    """Refuse a `"*"` that leaves nothing between the tools and every web page; warn of one
    that leaves only the token."""
    for kind, risk in wildcards(hosts, origins).items():
        setting = f"allowed_{kind}s"
        if api_token is None and not accepted[kind]:
            raise ValueError(
                f"{setting}: '*' without api_token: {risk}; set api_token, name the {kind}s "
                f"to trust instead of '*', or pass insecure_allow_any_{kind}=True to accept "
                "the risk"
            )
        guard = "only the API token" if api_token else "no API token"
        log.warning("%s: %s; %s stands in the way", _WILDCARD[kind], risk, guard)


async def _run(state: ServerState, request: Request) -> Response:
    state.authorize(request)
    state.check_model(request.path_params["model"])
    wire_request = workers_ai.GenerationRequest.build(await state.read_json(request))
    model_request = state.runtime.check(wire_request)
    await check_answer_format(state, model_request)
    if wire_request.stream:
        return EventStream(_workers_frames(state, model_request), state.to_error)
    generation = await state.generate(request, model_request)
    return JSONResponse(envelope(workers_ai.encode_result(generation)))


async def _workers_frames(state: ServerState, request: ModelRequest) -> AsyncIterator[bytes]:
    """Deltas as `data: {"response": ...}`, then tool calls, the usage, and `[DONE]`."""
    usage_sent = False
    async with aclosing(as_generator(state.runtime.stream(request))) as chunks:
        async for chunk in chunks:
            if not (chunk.response or chunk.tool_calls or chunk.usage):
                continue
            usage_sent = usage_sent or chunk.usage is not None
            yield data_frame(workers_ai.encode_chunk(chunk))
    if not usage_sent:
        yield data_frame({"response": "", "usage": Usage().to_wire()})
    yield DONE


async def _chat_completions(state: ServerState, request: Request) -> Response:
    state.authorize(request)
    body = await state.read_json(request)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ApiError(400, BAD_INPUT, f"Bad input: model: is required (got {model!r})")
    state.check_model(model)
    chat = openai_wire.decode_request(body)
    model_request = state.runtime.check(chat.request)
    await check_answer_format(state, model_request)
    request_id = request.scope["state"]["request_id"]
    if chat.stream:
        frames = openai_compat.completion_frames(
            state.runtime,
            model_request,
            model=model,
            request_id=request_id,
            include_usage=chat.include_usage,
        )
        return EventStream(frames, state.to_error, openai=True)
    generation = await state.generate(request, model_request)
    completion = openai_wire.encode_completion(generation, model=model, request_id=request_id)
    return JSONResponse(completion)


async def _models(state: ServerState, request: Request) -> Response:
    state.authorize(request)
    data = [
        {"id": m, "object": "model", "created": 0, "owned_by": "agentkit"} for m in state.models
    ]
    return JSONResponse({"object": "list", "data": data})


def _refusal(state: ServerState, scope: Scope) -> Response | None:
    """The 401 for a request without the server's token, or None when it may pass."""
    try:
        state.authorize(Request(scope))
    except ApiError as error:
        return JSONResponse(error.body(), status_code=error.status)
    return None


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        error = ApiError(404, NO_ROUTE, f"No route for that URI: {request.url.path}")
    else:
        error = ApiError(exc.status_code, NO_ROUTE, f"{exc.detail}: {request.method}")
    return JSONResponse(error.body(), status_code=error.status, headers=exc.headers)


async def _api_error(request: Request, exc: Exception) -> Response:
    # An error of the server's own making that escaped a route it does not wrap (/mcp, whose
    # body the MCP SDK reads: past the body deadline, a 408).
    assert isinstance(exc, ApiError)
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers())


async def _internal_error(request: Request, exc: Exception) -> Response:
    # Starlette answers these outside the middleware: add the request id here.
    request_id = request.scope.get("state", {}).get("request_id", str(uuid.uuid4()))
    log.error("request %s failed", request_id, exc_info=exc)
    error = internal_error(request_id)
    return JSONResponse(error.body(), status_code=500, headers={REQUEST_ID: request_id})


class _RequestId:
    """Gives every request an id, sent back in the `cf-ai-req-id` header."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = str(uuid.uuid4())
        scope.setdefault("state", {})["request_id"] = request_id
        CURRENT_REQUEST.set(request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).append(REQUEST_ID, request_id)
            await send(message)

        await self.app(scope, receive, send_with_id)
