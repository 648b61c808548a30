"""`OpenAPITools`: a service's OpenAPI document as tools, one per operation."""

from __future__ import annotations

import logging
import re
import ssl
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from agentkit.errors import AgentKitError, ToolDefinitionError, ToolRetry, UserError, redact
from agentkit.openapi._calls import MAX_ERROR_EXCERPT, build_request, read_answer, send
from agentkit.openapi.auth import OpenAPIAuth
from agentkit.openapi.network import GuardedTransport, RequestRefused, Resolver, origin_of
from agentkit.openapi.spec import METHODS, Operation, SpecError, parse_document, read_operations
from agentkit.tools import Tool, ToolOptions, ToolSource

__all__ = ["OpenAPIError", "OpenAPITools", "OperationFilter"]

log = logging.getLogger("agentkit.openapi")

OperationFilter = Callable[[Operation], bool] | Collection[str]
"""Which operations to offer: their `operationId`s or tool names, or a function of each."""

DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_RESPONSE_BYTES = 100_000
MAX_SPEC_BYTES = 10_000_000
_SAFE = frozenset({"get", "head", "options"})


class OpenAPIError(AgentKitError):
    """An OpenAPI document cannot be loaded or used; the message names it and says why."""

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(f"OpenAPI document {source}: {reason}")


class OpenAPITools(ToolSource):
    """The operations of an OpenAPI 3.0 or 3.1 document as tools that call the service.

    Build one from a parsed document (`OpenAPITools(document)`), `from_file(path)` (JSON or
    YAML) or `from_url(url)` (fetched when the source starts, under the same address rules as
    the calls). Put it in an agent's tools; it opens its HTTP client when the agent starts.

    Args:
        document: the OpenAPI document, parsed.
        name: what the source is called in errors (default: the document's `info.title`).
        base_url: where the calls go; by default the document's first server (its variables at
            their defaults; a relative one is taken relative to the document's URL).
        allowed_base_urls: other origins the calls may reach (by a redirect).
        allow_private: call loopback, private and link-local addresses too (refused by
            default, the host's every address checked).
        auth: credentials, placed as the document's security schemes say; never shown to the
            model.
        operations: which operations to offer (ids or tool names, or a predicate).
        tags: offer only operations with one of these tags.
        methods: offer only operations with one of these HTTP methods.
        timeout: seconds a call (connect, each read) may take.
        max_response_bytes: the most of an answer the model is shown; the rest is cut with a
            marker saying so, and never downloaded.
        resolver: how host names become addresses (for tests; the system's by default).
        verify: how HTTPS certificates are checked: True (the system's CAs, through httpx),
            a CA bundle's path, or an `ssl.SSLContext`. Always against the host's name.
        tool_options: `ToolOptions` for every tool (`requires_approval`, `max_retries`,
            ...); `idempotent` defaults to True for GET, HEAD and OPTIONS operations.
    """

    def __init__(
        self,
        document: Mapping[str, Any] | None = None,
        *,
        name: str | None = None,
        base_url: str | None = None,
        allowed_base_urls: Sequence[str] = (),
        allow_private: bool = False,
        auth: OpenAPIAuth | None = None,
        operations: OperationFilter | None = None,
        tags: Collection[str] | None = None,
        methods: Collection[str] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        resolver: Resolver | None = None,
        verify: ssl.SSLContext | str | bool = True,
        tool_options: ToolOptions | None = None,
    ) -> None:
        if timeout <= 0:
            raise UserError(f"timeout: must be > 0 seconds (got {timeout})")
        if max_response_bytes < 1:
            raise UserError(f"max_response_bytes: must be >= 1 (got {max_response_bytes})")
        unknown = sorted({m.lower() for m in methods or ()} - set(METHODS))
        if unknown:
            raise UserError(f"methods: {unknown} are not HTTP methods of OpenAPI ({METHODS})")
        self.url: str | None = None
        """Where the document is fetched from (`from_url`)."""
        self.name = name or "openapi"
        self.base_url = _checked_base(base_url, "base_url") if base_url else None
        self.allowed = [origin_of(_checked_base(u, "allowed_base_urls")) for u in allowed_base_urls]
        self.allow_private = allow_private
        self.auth = auth or OpenAPIAuth()
        self.operation_filter = operations
        self.tags = set(tags) if tags is not None else None
        self.methods = {m.lower() for m in methods} if methods is not None else None
        self.timeout = timeout
        self.max_response_bytes = max_response_bytes
        self.resolver = resolver
        self.verify = verify
        self.problems: list[str] = []
        """Operations left out, with why (an unsupported body, a reference to another file)."""
        self.operations: dict[str, Operation] = {}
        """The operations offered, by tool name."""
        self._options: ToolOptions = tool_options or {}
        self._schemes: Mapping[str, Any] = {}
        self._tools: dict[str, Tool] = {}
        self._version = 0
        self._client: httpx.AsyncClient | None = None
        self._document: Mapping[str, Any] | None = None
        if document is not None:
            self._load(document)

    @classmethod
    def from_file(cls, path: str | Path, **settings: Any) -> OpenAPITools:
        """A document in a JSON or YAML file (YAML needs the `openapi` extra).

        Raises:
            OpenAPIError: the file cannot be read or is not an OpenAPI 3 document.
        """
        where = str(path)
        try:
            text = Path(path).read_bytes()
        except OSError as exc:
            raise OpenAPIError(where, f"cannot read it: {exc.strerror}") from None
        try:
            document = parse_document(text, where)
        except SpecError as exc:
            raise OpenAPIError(where, str(exc).removeprefix(f"{where}: ")) from None
        settings.setdefault("name", where)
        return cls(document, **settings)

    @classmethod
    def from_url(cls, url: str, **settings: Any) -> OpenAPITools:
        """A document at a URL, fetched when the source starts, from that origin only and
        under the address rules of the calls (`allow_private`, `resolver`).

        Raises:
            UserError: `url` is not an absolute http(s) URL.
        """
        _checked_base(url, "url")
        made = cls(None, **settings)
        made.url = url
        made.name = settings.get("name") or url
        return made

    # -- the document -----------------------------------------------------------------------

    def _load(self, document: Mapping[str, Any]) -> None:
        try:
            found, problems = read_operations(document, self.name)
        except SpecError as exc:
            raise OpenAPIError(self.name, str(exc).removeprefix(f"{self.name}: ")) from None
        self._document = document
        info = document.get("info")
        if self.name in ("openapi", self.url) and isinstance(info, Mapping) and info.get("title"):
            self.name = str(info["title"])
        components = document.get("components")
        schemes = components.get("securitySchemes") if isinstance(components, Mapping) else None
        self._schemes = schemes if isinstance(schemes, Mapping) else {}
        chosen = self.operation_filter
        if chosen is not None and not callable(chosen):
            known = {o.name for o in found} | {o.operation_id for o in found}
            missing = sorted(set(chosen) - known)
            if missing:
                names = ", ".join(o.name for o in found)
                raise OpenAPIError(
                    self.name, f"operations: {missing} name no operation of it (it has {names})"
                )
        tools: dict[str, Tool] = {}
        operations: dict[str, Operation] = {}
        for operation in found:
            if not self._wanted(operation):
                continue
            if operation.notes:
                log.info("%s %s: %s", self.name, operation.name, "; ".join(operation.notes))
            options = ToolOptions(idempotent=operation.method in _SAFE)
            options.update(self._options)
            definition = {
                "name": operation.name,
                "description": operation.description,
                "parameters": operation.schema,
            }
            try:
                made = Tool.from_definition(definition, self._handler(operation), **options)
            except ToolDefinitionError as exc:
                problems.append(str(exc))
                continue
            tools[made.name] = made
            operations[made.name] = operation
        for problem in problems:
            log.warning("%s: operation left out: %s", self.name, problem)
        self._tools, self.operations, self.problems = tools, operations, problems
        self._version += 1

    def _wanted(self, operation: Operation) -> bool:
        if self.methods is not None and operation.method not in self.methods:
            return False
        if self.tags is not None and not self.tags.intersection(operation.tags):
            return False
        chosen = self.operation_filter
        if chosen is None:
            return True
        if callable(chosen):
            return bool(chosen(operation))
        return operation.name in chosen or operation.operation_id in chosen

    def _server(self) -> str:
        """The base URL of the calls."""
        if self.base_url is not None:
            return self.base_url
        servers = (self._document or {}).get("servers") or [{"url": "/"}]
        first = servers[0] if isinstance(servers, list) and servers else {}
        url = str(first.get("url", "/")) if isinstance(first, Mapping) else "/"
        variables = first.get("variables") if isinstance(first, Mapping) else None
        for key, spec in (variables or {}).items():
            if isinstance(spec, Mapping) and "default" in spec:
                url = url.replace("{" + key + "}", str(spec["default"]))
        if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", url) is None:
            if self.url is None:
                raise OpenAPIError(
                    self.name,
                    f"its server {url!r} is not an absolute URL: give base_url= "
                    "(--openapi-base-url), the service's address",
                )
            url = str(httpx.URL(self.url).join(url))
        return _checked_base(url, "the server URL")

    # -- ToolSource -------------------------------------------------------------------------

    @property
    def tools(self) -> Mapping[str, Tool]:
        if self._document is None:
            raise UserError(f"OpenAPI source {self.name!r} is not started: enter the agent first")
        return self._tools

    @property
    def version(self) -> int:
        return self._version

    async def start(self) -> None:
        """Fetch the document (`from_url`), check the server's addresses, open the client.

        Raises:
            OpenAPIError: the document cannot be fetched or read.
            RequestRefused: the document's URL or the server is not allowed (names the host
                and the address).
        """
        if self._client is not None:
            raise UserError(f"OpenAPI source {self.name!r} is already started")
        if self._document is None:
            assert self.url is not None
            self._load(await self._fetch(self.url))
        base = self._server()
        transport = GuardedTransport(
            [origin_of(base), *self.allowed],
            allow_private=self.allow_private,
            resolver=self.resolver,
            verify=self.verify,
        )
        await transport.check(httpx.URL(base))
        self.base_url = base
        self._client = _client(transport, self.timeout)

    async def stop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def _fetch(self, url: str) -> Mapping[str, Any]:
        transport = GuardedTransport(
            [origin_of(url)],
            allow_private=self.allow_private,
            resolver=self.resolver,
            verify=self.verify,
        )
        async with _client(transport, self.timeout) as client:
            try:
                response = await send(client, client.build_request("GET", url))
                text, cut = await read_answer(response, MAX_SPEC_BYTES, self.auth.scrub)
            except httpx.HTTPError as exc:
                raise OpenAPIError(url, f"cannot fetch it: {type(exc).__name__}: {exc}") from None
        if cut:
            raise OpenAPIError(url, f"it is larger than {MAX_SPEC_BYTES} bytes")
        if not response.is_success:
            raise OpenAPIError(url, f"fetching it answered HTTP {response.status_code}")
        try:
            return parse_document(text, url)
        except SpecError as exc:
            raise OpenAPIError(url, str(exc).removeprefix(f"{url}: ")) from None

    # -- calls ------------------------------------------------------------------------------

    def _handler(self, operation: Operation) -> Callable[..., Any]:
        async def call(**arguments: Any) -> str:
            return await self.call(operation.name, arguments)

        call.__name__ = operation.name
        return call

    async def call(self, name: str, arguments: Mapping[str, Any]) -> str:
        """Call an operation by its tool name with validated arguments; the answer as text.

        Raises:
            ToolRetry: the service answered with an error status, could not be reached, or
                the call was refused (an address or a redirect); the message, which holds no
                credential, is what the model is told.
        """
        client = self._client
        if client is None or self.base_url is None:
            raise UserError(f"OpenAPI source {self.name!r} is not started: enter the agent first")
        operation = self.operations.get(name)
        if operation is None:
            raise UserError(f"OpenAPI source {self.name!r} has no operation {name!r}")
        placements = self.auth.placements(operation.security, self._schemes)
        try:
            request = build_request(client, self.base_url, operation, arguments, placements)
        except ValueError as exc:
            raise ToolRetry(self._clean(f"{operation.name}: {exc}")) from None
        shown = f"{operation.method.upper()} {request.url.copy_with(query=None)}"
        try:
            response = await send(client, request)
            text, cut = await read_answer(response, self.max_response_bytes, self.auth.scrub)
        except RequestRefused as exc:
            raise ToolRetry(self._clean(str(exc))) from None
        except httpx.TimeoutException:
            raise ToolRetry(self._clean(f"{shown}: no answer within {self.timeout:g} s")) from None
        except httpx.HTTPError as exc:
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            message = f"{shown}: the service cannot be reached: {reason}"
            raise ToolRetry(self._clean(message)) from None
        status = f"HTTP {response.status_code} {response.reason_phrase}".rstrip()
        if not response.is_success:
            excerpt = text[:MAX_ERROR_EXCERPT] + ("…" if len(text) > MAX_ERROR_EXCERPT else "")
            raise ToolRetry(self._clean(f"{shown} failed: {status}: {excerpt}".rstrip(": ")))
        if not text:
            return f"{status} (no content)"
        if cut:
            text += (
                f"\n[truncated: the answer is longer than {self.max_response_bytes} bytes; "
                "only the first ones are shown]"
            )
        return text

    def _clean(self, text: str) -> str:
        return redact(self.auth.scrub(text))

    def __repr__(self) -> str:
        where = self.base_url or self.url
        return f"OpenAPITools({self.name!r}, {len(self._tools)} tools, at {where!r})"


def _client(transport: GuardedTransport, timeout: float) -> httpx.AsyncClient:
    # Nothing from the environment: no proxy in front of the guarded transport (httpx mounts
    # none beside a given transport today; this keeps it so), no .netrc credentials.
    return httpx.AsyncClient(transport=transport, timeout=timeout, trust_env=False)


def _checked_base(url: str, what: str) -> str:
    """An absolute http(s) URL with no credentials in it."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        raise UserError(f"{what}: not a URL (got {url!r})") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise UserError(f"{what}: must be an absolute http or https URL (got {url!r})")
    if parsed.userinfo:
        raise UserError(f"{what}: must hold no credentials; give them as auth=OpenAPIAuth(...)")
    return url
