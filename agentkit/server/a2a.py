"""A2A on the server: the agent's routes (`agentkit.protocols.a2a`) behind the server's
token, body limits and JSON-only bodies, and `a2a_app`, an application serving A2A alone.

Needs the `a2a` extra (`pip install 'agentkit[a2a]'`).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Message

from agentkit.agent import Agent
from agentkit.server.core import DEFAULT_MAX_BODY, ServerState, check_token
from agentkit.server.deadlines import DEFAULT_BODY_TIMEOUT, BodyDeadline
from agentkit.server.errors import BAD_INPUT, ApiError
from agentkit.server.queue import ModelQueue, QueuedRuntime
from agentkit.server.security import SitePolicy, check_origin
from agentkit.tools import Toolset

if TYPE_CHECKING:
    from agentkit.protocols.a2a.server import A2AService, Endpoint

__all__ = ["a2a_app", "a2a_service", "guarded"]

_JSON_TYPES = ("application/json", "application/a2a+json")


def a2a_service(agent: Agent[Any], store: str | Path, *, bearer: bool) -> A2AService:
    """The A2A service of `agent` with tasks in `store`.

    Raises:
        ImportError: the `a2a` extra is not installed (saying how to install it).
    """
    try:
        from agentkit.protocols.a2a.server import A2AService
    except ImportError as exc:
        raise ImportError("A2A needs the a2a extra: pip install 'agentkit[a2a]'") from exc
    return A2AService(agent, store, bearer=bearer)


def guarded(state: ServerState) -> Callable[[Endpoint], Endpoint]:
    """Wraps an A2A endpoint in the server's checks: the bearer token (401), a JSON body
    (415 for any other content type, sent by a browser or not), at most `max_body` bytes
    (413); the body read once here and handed on."""

    def wrap(endpoint: Endpoint) -> Endpoint:
        async def checked(request: Request) -> Response:
            try:
                state.authorize(request)
                kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
                if kind not in _JSON_TYPES:
                    shown = kind.encode("unicode_escape").decode()[:100] or "none"
                    raise ApiError(
                        415,
                        BAD_INPUT,
                        f"Bad input: Content-Type must be application/json (got {shown})",
                    )
                body = await _read_body(state, request)
            except ApiError as error:
                return JSONResponse(error.body(), status_code=error.status, headers=error.headers())
            sent = False

            async def replay() -> Message:
                nonlocal sent
                if sent:  # the body is read: what remains is waiting for the client to leave
                    return await request.receive()
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}

            return await endpoint(Request(request.scope, replay))

        return checked

    return wrap


async def _read_body(state: ServerState, request: Request) -> bytes:
    # `read_json` bounds the size and refuses what is not a JSON object; the SDK parses again.
    return json.dumps(await state.read_json(request)).encode()


def a2a_app(
    agent: Agent[Any],
    store: str | Path,
    *,
    api_token: str | None = None,
    allowed_hosts: Iterable[str] = (),
    allowed_origins: Iterable[str] = (),
    max_body: int = DEFAULT_MAX_BODY,
    body_timeout: float = DEFAULT_BODY_TIMEOUT,
) -> Starlette:
    """`agent` over A2A alone, as an ASGI application (for `uvicorn`, tests or embedding).

    It serves the agent card at `/.well-known/agent-card.json` and JSON-RPC at `/a2a`, tasks
    kept in the SQLite file `store`, with the checks of `agentkit serve` (see `create_app`):
    Host and Origin, the bearer token `api_token` when set, JSON bodies of at most
    `max_body` bytes sent within `body_timeout` seconds.

    Raises:
        ValueError: a bound below its minimum, a malformed origin or token.
        ImportError: the `a2a` extra is not installed.
    """
    if max_body < 1:
        raise ValueError(f"max_body: must be >= 1 (got {max_body})")
    if api_token is not None:
        check_token(api_token)
    origins = [check_origin(o) for o in allowed_origins]
    service = a2a_service(agent, store, bearer=api_token is not None)
    # The token and body checks are the server state's; this one serves no model API, so
    # its runtime and tools stand unused (the agent runs on its own runtime).
    state = ServerState(
        runtime=QueuedRuntime(agent.runtime, ModelQueue(0, agent.runtime.slots)),
        models=(),
        tools=Toolset(),
        max_body=max_body,
        max_steps=agent.settings.max_steps,
        api_token=api_token,
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with service.lifespan():
            yield

    return Starlette(
        routes=service.routes(guarded(state)),
        middleware=[
            Middleware(SitePolicy, allowed_hosts=list(allowed_hosts), allowed_origins=origins),
            Middleware(BodyDeadline, timeout=body_timeout),
        ],
        lifespan=lifespan,
    )
