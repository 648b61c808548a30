"""Outbound HTTP that cannot be turned against the machine it runs on (SSRF).

An OpenAPI document names the servers its tools call, and a model fills in the arguments: a
spec from an untrusted place, or a redirect from the service, could point those calls at
`127.0.0.1`, a cloud metadata service (`169.254.169.254`) or a private network. So every
request goes through `GuardedTransport`, which:

- calls only the allowed origins (scheme, host and port: the spec's servers, or the base URLs
  the user allows), whatever URL a request or a redirect names;
- resolves the host itself (with a resolver that can be swapped, so tests never touch DNS),
  checks *every* address it gets, and refuses the request if any is loopback, private,
  link-local, multicast, reserved or otherwise not on the public internet, unless private
  addresses are allowed;
- then connects to the address it checked, not to the name: a DNS answer that changes between
  the check and the connection (DNS rebinding) cannot swap it. The request keeps its `Host`
  header, and for HTTPS the name is still the one sent for SNI and checked in the certificate.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from typing import Any

import anyio
import httpx

from agentkit.errors import AgentKitError, UserError

__all__ = [
    "GuardedTransport",
    "Origin",
    "RequestRefused",
    "Resolver",
    "address_problem",
    "origin_of",
    "system_resolver",
]

Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
"""`resolve(host, port)`: the addresses (as text) a host name stands for."""

Origin = tuple[str, str, int]
"""(scheme, host, port), the host in lower case."""

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class RequestRefused(AgentKitError):
    """A request was not sent: its origin is not allowed, or its host resolves to an address
    that is not (the message names the host and the address, and how to allow it)."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"refused to call {url}: {reason}")


async def system_resolver(host: str, port: int) -> list[str]:
    """The system's answer for `host` (every address, IPv4 and IPv6), without duplicates."""
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    found: dict[str, None] = {}
    for info in infos:
        found[str(info[4][0])] = None
    return list(found)


def origin_of(url: httpx.URL | str) -> Origin:
    """The origin of an absolute http(s) URL.

    Raises:
        UserError: the URL is not absolute http or https.
    """
    parsed = httpx.URL(url) if isinstance(url, str) else url
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise UserError(f"not an absolute http(s) URL: {str(url)!r}")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    return (parsed.scheme, parsed.host.lower(), port)


def _show(origin: Origin) -> str:
    scheme, host, port = origin
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}:{port}"


def address_problem(address: IPAddress) -> str | None:
    """Why an address must not be called without `allow_private`, or None if it is public."""
    if isinstance(address, ipaddress.IPv6Address):
        # An IPv4 address wrapped in IPv6 reaches the IPv4 host: judge that one.
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is None and address.teredo is not None:
            embedded = address.teredo[1]
        if embedded is not None:
            return address_problem(embedded)
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address (where cloud metadata services answer)"
    if address.is_multicast:
        return "a multicast address"
    if address.is_unspecified:
        return "the unspecified address"
    if address.is_private:
        return "a private address"
    if address.is_reserved:
        return "a reserved address"
    if not address.is_global:
        return "an address not on the public internet"
    return None


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


class GuardedTransport(httpx.AsyncBaseTransport):
    """An httpx transport that calls only allowed origins, at checked addresses.

    Args:
        origins: the origins requests may go to.
        allow_private: also call loopback, private, link-local and other non-public addresses.
        resolver: how host names become addresses (`system_resolver` by default).
        transport_options: passed to each `httpx.AsyncHTTPTransport` it opens (one per
            origin, so a connection is never shared between two host names on one address).
    """

    def __init__(
        self,
        origins: Iterable[Origin],
        *,
        allow_private: bool = False,
        resolver: Resolver | None = None,
        **transport_options: Any,
    ) -> None:
        self.origins: frozenset[Origin] = frozenset(origins)
        self.allow_private = allow_private
        self.resolver: Resolver = resolver or system_resolver
        self._options = transport_options
        self._inner: dict[Origin, httpx.AsyncHTTPTransport] = {}

    def allow(self, origins: Collection[Origin]) -> None:
        """Allow more origins (a spec fetched from a URL adds its servers)."""
        self.origins = self.origins | frozenset(origins)

    async def check(self, url: httpx.URL) -> str:
        """The address to connect to for `url`, once the origin and every address of its host
        are found allowed.

        Raises:
            RequestRefused: naming the host, the address and why.
        """
        shown = str(url.copy_with(query=None, fragment=None))
        try:
            origin = origin_of(url)
        except UserError as exc:
            raise RequestRefused(shown, str(exc)) from None
        if origin not in self.origins:
            allowed = ", ".join(sorted(_show(o) for o in self.origins)) or "none"
            raise RequestRefused(
                shown,
                f"{_show(origin)} is not one of the allowed servers ({allowed})",
            )
        host = origin[1]
        literal = _literal(host)
        if literal is not None:
            addresses = [str(literal)]
        else:
            try:
                addresses = [str(a) for a in await self.resolver(host, origin[2])]
            except OSError as exc:
                raise RequestRefused(shown, f"cannot resolve {host!r}: {exc}") from None
            if not addresses:
                raise RequestRefused(shown, f"{host!r} resolves to no address")
        for text in addresses:
            address = _literal(text)
            if address is None:
                raise RequestRefused(shown, f"{host!r} resolved to {text!r}, not an IP address")
            problem = address_problem(address)
            if problem is not None and not self.allow_private:
                named = host if literal is not None else f"{host!r} resolves to {address}, which"
                raise RequestRefused(
                    shown,
                    f"{named} is {problem}; private addresses are refused unless allowed "
                    "(allow_private=True, --openapi-allow-private)",
                )
        return addresses[0]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        address = await self.check(request.url)
        url = request.url
        extensions = dict(request.extensions)
        if url.scheme == "https" and _literal(url.host) is None:
            # The certificate is checked against the name, though the socket goes to `address`.
            extensions["sni_hostname"] = url.host
        # The headers keep `Host: <name>`: httpx adds one only when none is there.
        forwarded = httpx.Request(
            request.method,
            url.copy_with(host=address),
            headers=request.headers,
            stream=request.stream,
            extensions=extensions,
        )
        origin = origin_of(url)
        inner = self._inner.get(origin)
        if inner is None:
            inner = self._inner[origin] = httpx.AsyncHTTPTransport(**self._options)
        return await inner.handle_async_request(forwarded)

    async def aclose(self) -> None:
        inner, self._inner = self._inner, {}
        for transport in inner.values():
            await transport.aclose()
