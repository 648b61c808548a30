"""`POST /ag-ui`: the server's own agent (`serve --agents FILE`) over the AG-UI protocol, for
front ends built on it (see `agentkit.protocols.ag_ui` and docs/protocols.md).

The route is the playground's kin and has its guards: the Host allowlist, the Origin check, a
JSON-only body (`agentkit.server.security`), the token, the body limit and the read deadline.
A body that is not a `RunAgentInput` gets a 400 naming each failing field; once the run has
started, its failure is the stream's last event, `RUN_ERROR`.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from agentkit.errors import ConfigurationError
from agentkit.server.core import ServerState, endpoint
from agentkit.server.errors import NO_ROUTE, ApiError
from agentkit.server.sse import EventStream

__all__ = ["PATH", "ag_ui_routes"]

PATH = "/ag-ui"
"""Where the server's agent answers AG-UI requests."""


def ag_ui_routes(state: ServerState) -> list[BaseRoute]:
    """The AG-UI route, when the server has an agent of its own; without the `agui` extra, a
    route that says how to install it."""
    agent = state.agent
    if agent is None:
        return []
    try:
        from agentkit.protocols.ag_ui import AGUIAdapter
    except ConfigurationError as missing:
        hint = str(missing)

        async def absent(request: Request) -> Response:
            error = ApiError(501, NO_ROUTE, hint)
            return JSONResponse(error.body(), status_code=error.status)

        return [Route(PATH, absent, methods=["POST"])]
    adapter = AGUIAdapter(agent)

    async def run(state: ServerState, request: Request) -> Response:
        state.authorize(request)
        run_input = adapter.parse(await state.read_json(request))
        return EventStream(adapter.frames(run_input), state.to_error)

    return [Route(PATH, endpoint(state, run), methods=["POST"])]
