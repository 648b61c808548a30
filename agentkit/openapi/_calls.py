"""One operation called: the model's arguments made a request, the answer made text.

Path parameters are percent-encoded whole (a `/` in a value cannot reach another path, and a
value of `.` or `..` cannot climb one); query, header and cookie values follow the parameter's
`style` and `explode` (form, spaceDelimited, pipeDelimited, deepObject, simple); the body is
JSON, or a URL-encoded form. Redirects are followed only to the allowed origins, five at most.
The answer is read up to a byte cap and cut there, with a marker saying so.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

import httpx

from agentkit.openapi.auth import Placement
from agentkit.openapi.network import RequestRefused
from agentkit.openapi.spec import Operation, Parameter

__all__ = ["MAX_ERROR_EXCERPT", "MAX_REDIRECTS", "build_request", "read_answer", "send"]

MAX_REDIRECTS = 5
MAX_ERROR_EXCERPT = 500
"""Characters of a failed call's body the model is shown."""


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _joined(value: Any, separator: str = ",") -> str:
    """`simple` style: arrays as `a,b`, objects as `k,v,k,v`."""
    if isinstance(value, list):
        return separator.join(_text(v) for v in value)
    if isinstance(value, dict):
        return separator.join(f"{_text(k)}{separator}{_text(v)}" for k, v in value.items())
    return _text(value)


def _path_value(param: Parameter, value: Any) -> str:
    text = _text(value) if param.json_encoded else _joined(value)
    encoded = quote(text, safe="")
    if encoded in (".", ".."):
        encoded = encoded.replace(".", "%2E")
    return encoded


def _query_pairs(param: Parameter, value: Any) -> list[tuple[str, str]]:
    name = param.wire_name
    if param.json_encoded:
        return [(name, _text(value))]
    if isinstance(value, list):
        if param.style == "form" and param.explode:
            return [(name, _text(v)) for v in value]
        separator = {"spaceDelimited": " ", "pipeDelimited": "|"}.get(param.style, ",")
        return [(name, separator.join(_text(v) for v in value))]
    if isinstance(value, dict):
        if param.style == "deepObject":
            return [(f"{name}[{k}]", _text(v)) for k, v in value.items()]
        if param.explode:
            return [(str(k), _text(v)) for k, v in value.items()]
        return [(name, _joined(value))]
    return [(name, _text(value))]


def build_request(
    client: httpx.AsyncClient,
    base_url: str,
    operation: Operation,
    arguments: Mapping[str, Any],
    placements: list[Placement],
) -> httpx.Request:
    """The request for a call with validated arguments, credentials placed.

    Raises:
        ValueError: an argument cannot be sent where it goes (a header value with a line
            break); the message names it.
    """
    path = operation.path
    query: list[tuple[str, str]] = []
    headers: dict[str, str] = {}
    cookies: list[str] = []
    body: dict[str, Any] = {}
    whole: Any = None
    for param in operation.parameters:
        if param.name not in arguments or arguments[param.name] is None:
            continue
        value = arguments[param.name]
        if param.location == "path":
            path = path.replace("{" + param.wire_name + "}", _path_value(param, value))
        elif param.location == "query":
            query.extend(_query_pairs(param, value))
        elif param.location == "header":
            text = _text(value) if param.json_encoded else _joined(value)
            if not text.isprintable() or not text.isascii():
                # A line break would start another header; httpx sends only ASCII anyway.
                raise ValueError(
                    f"{param.name}: a header value must be printable ASCII (got {text!r:.80})"
                )
            headers[param.wire_name] = text
        elif param.location == "cookie":
            cookies.append(f"{param.wire_name}={quote(_joined(value), safe='')}")
        elif operation.body is not None and operation.body.whole == param.name:
            whole = value
        else:
            body[param.wire_name] = value
    # A credential's place cannot be taken by an argument of the same name.
    query = [q for q in query if all(q[0] != p.name for p in placements)]
    cookies = [c for c in cookies if all(c.split("=")[0] != p.name for p in placements)]
    for placed in placements:
        if placed.location == "header":
            headers[placed.name] = placed.value
        elif placed.location == "query":
            query.append((placed.name, placed.value))
        else:
            cookies.append(f"{placed.name}={quote(placed.value, safe='')}")
    if cookies:
        headers["Cookie"] = "; ".join(cookies)
    content: dict[str, Any] = {}
    plan = operation.body
    if plan is not None:
        payload = whole if plan.whole is not None else body
        if payload is not None and (payload != {} or plan.required):
            if plan.content_type == "application/x-www-form-urlencoded":
                content["data"] = {k: _text(v) for k, v in payload.items()}
            else:
                content["content"] = json.dumps(payload).encode()
                headers["Content-Type"] = plan.content_type.split(";")[0].strip()
                if headers["Content-Type"] == "*/*":
                    headers["Content-Type"] = "application/json"
    url = base_url.rstrip("/") + path
    params = httpx.QueryParams(tuple(query))
    return client.build_request(
        operation.method.upper(), url, params=params, headers=headers, **content
    )


async def send(client: httpx.AsyncClient, request: httpx.Request) -> httpx.Response:
    """Send, following redirects within the allowed origins; the answer is left unread.

    Raises:
        RequestRefused: the request, or a redirect, goes where it may not (says which).
        httpx.HTTPError: the service could not be reached, or did not answer in time.
    """
    response = await client.send(request, stream=True, follow_redirects=False)
    for _ in range(MAX_REDIRECTS):
        following = response.next_request
        if following is None:
            return response
        await response.aclose()
        try:
            response = await client.send(following, stream=True, follow_redirects=False)
        except RequestRefused as exc:
            source = str(request.url.copy_with(query=None))
            raise RequestRefused(exc.url, f"a redirect from {source}: {exc.reason}") from None
    if response.next_request is not None:
        await response.aclose()
        raise RequestRefused(str(request.url.copy_with(query=None)), "too many redirects")
    return response


async def read_answer(
    response: httpx.Response, max_bytes: int, scrub: Callable[[str], str]
) -> tuple[str, bool]:
    """The answer's text, at most `max_bytes` of it, and whether it was cut."""
    chunks: list[bytes] = []
    size = 0
    cut = False
    try:
        async for chunk in response.aiter_bytes():
            chunks.append(chunk)
            size += len(chunk)
            if size > max_bytes:
                cut = True  # the rest is never downloaded
                break
    finally:
        await response.aclose()
    data = b"".join(chunks)[:max_bytes]
    return scrub(data.decode(response.charset_encoding or "utf-8", errors="replace")), cut
