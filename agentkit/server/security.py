"""Who may talk to the server: one ASGI middleware in front of every route.

A server on loopback is reachable by every web page the user opens: a page cannot read the
answers of another origin, but it can send requests, and with DNS rebinding it can even make
them same-origin under its own name. Three checks stop that, in this order:

1. **Host**: only the loopback names (`localhost`, `127.0.0.1`, `[::1]`) and the names given in
   `allowed_hosts` are served, so a rebound name (`evil.example`) gets 403.
2. **Origin**: a request whose `Origin` is not the server's own (`null` included) gets 403,
   unless `allowed_origins` lists it; those get CORS headers, and their preflights an answer.
   `Sec-Fetch-Site: cross-site` without an allowed `Origin` is refused the same way (except
   for a page opened from a link on another site).
3. **Content type**: a body sent by a browser (it carries `Origin` or a `Sec-Fetch-*` header),
   and every body sent to the playground's endpoints and to `/ag-ui`, must be
   `application/json` (415):
   browsers send other types without a preflight. API clients that are not browsers keep
   working with any type, as Workers AI's own `curl -d '{...}'` examples do.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agentkit.server.errors import AUTHENTICATION, BAD_INPUT, ApiError

__all__ = ["ANY", "LOOPBACK_HOSTS", "SitePolicy", "check_origin", "wildcards"]

ANY = "*"
"""In `allowed_hosts`: serve any `Host` (turns the Host check off)."""
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")
"""The names a loopback server always answers to."""
_JSON_ONLY = ("/playground/", "/ag-ui")
"""Paths whose bodies must be JSON whoever sends them: only the server's own pages and
front ends call them."""
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_CORS_HEADERS = "authorization, content-type"


def check_origin(origin: str) -> str:
    """`origin` as the `Origin` header spells it (`scheme://host[:port]`, lower case).

    Raises:
        ValueError: it has a path, a query, no scheme or no host.
    """
    parts = urlsplit(origin.strip().lower())
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
        raise ValueError(f"allowed origin: must be scheme://host[:port] (got {origin!r})")
    if parts.query or parts.fragment or "@" in parts.netloc:
        raise ValueError(f"allowed origin: must be scheme://host[:port] (got {origin!r})")
    return f"{parts.scheme}://{parts.netloc}"


def wildcards(allowed_hosts: Iterable[str], allowed_origins: Iterable[str]) -> dict[str, str]:
    """The checks that `"*"` turns off, `host` and `origin`, each with what it lets in.

    Without a token nothing else stands between such a server and every page the user opens,
    so `agentkit serve` and `create_app` refuse them unless told the risk is accepted.
    """
    found: dict[str, str] = {}
    if ANY in {o.strip() for o in allowed_origins}:
        found["origin"] = (
            "every web page the browser opens may call this server, use the model and run the tools"
        )
    if ANY in {h.strip() for h in allowed_hosts}:
        found["host"] = (
            "any web page may reach this server under a name of its own (DNS rebinding), use "
            "the model and run the tools"
        )
    return found


def _hostname(host: str) -> str:
    """The name part of a `Host` header value, lower case: `[::1]:80` -> `[::1]`."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    return host.rpartition(":")[0] if host.count(":") == 1 else host


class SitePolicy:
    """The ASGI middleware applying the Host, Origin and content-type checks to `app`.

    Args:
        app: the application behind it.
        allowed_hosts: names served besides the loopback ones (without port); `"*"` serves any.
        allowed_origins: origins (`scheme://host[:port]`) allowed to call from a browser, with
            CORS; `"*"` allows every origin (never for a server that runs tools unprotected).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        allowed_hosts: Iterable[str] = (),
        allowed_origins: Iterable[str] = (),
    ) -> None:
        self.app = app
        hosts = {h.strip().lower() for h in allowed_hosts}
        self.any_host = ANY in hosts
        self.hosts = frozenset(LOOPBACK_HOSTS) | {_hostname(h) for h in hosts - {ANY}}
        origins = set(allowed_origins)
        self.any_origin = ANY in origins
        self.origins = frozenset(check_origin(o) for o in origins - {ANY})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        try:
            self._check_host(headers.get("host", ""))
            cors = self._check_origin(scope, headers, origin)
            if cors and scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
                await self._preflight(origin or "")(scope, receive, send)
                return
            self._check_content_type(scope, headers, browser=_from_browser(headers))
        except ApiError as refused:
            # OpenAI clients read the `error` object; Workers AI clients the `errors` list.
            body = refused.body(openai="/ai/v1/" in scope["path"])
            answer = JSONResponse(body, status_code=refused.status)
            await answer(scope, receive, send)
            return
        if not cors:
            await self.app(scope, receive, send)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                out = MutableHeaders(scope=message)
                out["access-control-allow-origin"] = origin or ""
                out["access-control-expose-headers"] = "cf-ai-req-id"
                out.append("vary", "Origin")
            await send(message)

        await self.app(scope, receive, send_with_cors)

    def _check_host(self, host: str) -> None:
        if self.any_host or _hostname(host) in self.hosts:
            return
        shown = host.encode("unicode_escape").decode()[:200]
        raise ApiError(
            403,
            AUTHENTICATION,
            f"Forbidden: this server does not answer to the host {shown!r} "
            "(start it with --allowed-host NAME to add one)",
        )

    def _check_origin(self, scope: Scope, headers: Headers, origin: str | None) -> bool:
        """Whether the request comes from an allowed foreign origin (and needs CORS)."""
        if origin is None:
            # A link from another site to the playground is fine; anything else is not.
            opened = scope["method"] in ("GET", "HEAD") and headers.get("sec-fetch-mode") in (
                "navigate",
                None,
            )
            if headers.get("sec-fetch-site") == "cross-site" and not opened:
                raise _foreign("a cross-site page (Sec-Fetch-Site: cross-site)")
            return False
        own = f"{scope.get('scheme', 'http')}://{headers.get('host', '').strip().lower()}"
        if origin.strip().lower() == own:
            return False
        if self.any_origin or origin.strip().lower() in self.origins:
            return True
        shown = origin.encode("unicode_escape").decode()[:200]
        raise _foreign(f"the origin {shown!r}")

    def _check_content_type(self, scope: Scope, headers: Headers, *, browser: bool) -> None:
        if scope["method"] not in _BODY_METHODS:
            return
        if not (browser or scope["path"].startswith(_JSON_ONLY)):
            return
        kind = headers.get("content-type", "").partition(";")[0].strip().lower()
        if kind != "application/json":
            shown = kind.encode("unicode_escape").decode()[:100] or "none"
            raise ApiError(
                415, BAD_INPUT, f"Bad input: Content-Type must be application/json (got {shown})"
            )

    def _preflight(self, origin: str) -> Response:
        return Response(
            status_code=204,
            headers={
                "access-control-allow-origin": origin,
                "access-control-allow-methods": "GET, POST, OPTIONS",
                "access-control-allow-headers": _CORS_HEADERS,
                "access-control-max-age": "600",
                "vary": "Origin",
            },
        )


def _from_browser(headers: Headers) -> bool:
    return "origin" in headers or any(k.startswith("sec-fetch-") for k in headers)


def _foreign(who: str) -> ApiError:
    return ApiError(
        403,
        AUTHENTICATION,
        f"Forbidden: requests from {who} are not allowed "
        "(start the server with --allow-origin ORIGIN to allow one)",
    )
