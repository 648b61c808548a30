"""Slow clients against `agentkit serve` under uvicorn on 127.0.0.1, with raw sockets: a client
that never finishes its headers or its body, or idles on a keep-alive connection, is cut off at
the deadline instead of holding a connection (and a file descriptor) for ever."""

from __future__ import annotations

import json
import select
import socket
import time
from collections.abc import Callable, Iterator

import pytest

from agentkit import ScriptedRuntime
from agentkit.server import create_app
from agentkit.server.background import BackgroundServer

from support.server import HangingRuntime, run_url

DEADLINE = 1.0
GIVE_UP = 20.0
"""A connection still open this long after the deadline is held for good (uvicorn alone
holds these for ever; nothing here depends on the machine being fast)."""
POST = "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"


@pytest.fixture(scope="module")
def server() -> Iterator[BackgroundServer]:
    app = create_app(ScriptedRuntime(["ok"] * 10), body_timeout=DEADLINE)
    with BackgroundServer(app, header_timeout=DEADLINE, keep_alive=1) as running:
        yield running


def connect(server: BackgroundServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=5)


def until_closed(sock: socket.socket, trickle: bytes = b"", every: float = 0.2) -> bytes:
    """Everything the server sends until it closes the connection, while sending `trickle` one
    byte every `every` seconds; fails if the connection is still open after `GIVE_UP` s."""
    received = b""
    started = time.monotonic()
    with sock:
        while time.monotonic() - started < GIVE_UP:
            readable, _, _ = select.select([sock], [], [], every)
            if readable:
                try:
                    part = sock.recv(65536)
                except ConnectionResetError:
                    return received
                if not part:
                    return received
                received += part
            elif trickle:
                try:
                    sock.sendall(trickle[:1])
                except (BrokenPipeError, ConnectionResetError):
                    return received
                trickle = trickle[1:]
    raise AssertionError(f"the connection was still open after {GIVE_UP} s: {received!r}")


def body_of(answer: bytes) -> dict[str, object]:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), head
    assert b"connection: close" in head.lower()
    parsed: dict[str, object] = json.loads(body)
    return parsed


def test_a_connection_that_sends_nothing_is_closed(server: BackgroundServer) -> None:
    assert until_closed(connect(server)) == b""


def test_unfinished_headers_are_cut_off(server: BackgroundServer) -> None:
    sock = connect(server)
    sock.sendall(POST.format(path=run_url()).encode())  # no blank line: the headers never end
    assert until_closed(sock) == b""


def test_headers_trickled_forever_are_cut_off(server: BackgroundServer) -> None:
    # Each byte arrives well within any per-read timeout: only a deadline for the whole
    # header stops this.
    sock = connect(server)
    assert until_closed(sock, trickle=POST.format(path=run_url()).encode() * 50) == b""


def test_a_stalled_body_gets_408_and_the_connection_closed(server: BackgroundServer) -> None:
    sock = connect(server)
    sock.sendall((POST.format(path=run_url()) + "Content-Length: 100\r\n\r\n").encode())
    sock.sendall(b'{"prompt": "')
    error = body_of(until_closed(sock))
    assert error["errors"] == [
        {"code": 3003, "message": "Request timed out: the body was not complete within 1 s"}
    ]


def test_a_trickled_body_gets_408_and_the_connection_closed(server: BackgroundServer) -> None:
    sock = connect(server)
    sock.sendall((POST.format(path=run_url()) + "Content-Length: 1000\r\n\r\n").encode())
    error = body_of(until_closed(sock, trickle=b'{"prompt": "' + b"x" * 980 + b'"}'))
    assert error["errors"] == [
        {"code": 3003, "message": "Request timed out: the body was not complete within 1 s"}
    ]


def test_a_body_trickled_to_a_route_that_never_reads_it_is_cut_off(
    server: BackgroundServer,
) -> None:
    sock = connect(server)
    sock.sendall(b"POST /nowhere HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n")
    answer = until_closed(sock, trickle=b"x" * 1000)
    assert answer.startswith(b"HTTP/1.1 404 ")


def test_an_idle_keep_alive_connection_is_closed(server: BackgroundServer) -> None:
    sock = connect(server)
    sock.sendall(b"GET /playground/info HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    answer = until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert b"connection: close" not in answer.lower()  # kept alive, then closed when idle


def test_a_client_within_the_deadlines_is_answered(server: BackgroundServer) -> None:
    # Sent in pieces, but all of it before the deadline: answered as usual.
    sock = connect(server)
    body = b'{"prompt": "hi"}'
    request = (POST.format(path=run_url()) + f"Content-Length: {len(body)}\r\n").encode()
    sock.sendall(request)
    sock.sendall(b"Connection: close\r\n\r\n" + body[:5])
    sock.sendall(body[5:])
    answer = until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["result"]["response"] == "ok"


def test_a_slow_model_is_not_cut_off_by_the_body_deadline(
    serve: Callable[..., BackgroundServer],
) -> None:
    # The deadline is for reading the request; the answer may take as long as the model does.
    runtime = HangingRuntime()
    running = serve(runtime, body_timeout=DEADLINE)
    sock = connect(running)
    body = b'{"prompt": "hi"}'
    sock.sendall(
        (POST.format(path=run_url()) + f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    )
    assert runtime.started.wait(5)
    readable, _, _ = select.select([sock], [], [], DEADLINE * 3)
    assert readable == []  # nothing sent, nothing closed while the model works
    runtime.release.set()
    sock.settimeout(10)
    assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
    sock.close()


def test_a_stalled_mcp_body_gets_408_and_the_connection_closed() -> None:
    # /mcp hands the request to the MCP SDK, which reads the body itself: the deadline must
    # still end in a 408, as on the other routes.
    app = create_app(ScriptedRuntime(), mcp=True, body_timeout=DEADLINE)
    with BackgroundServer(app, header_timeout=DEADLINE, lifespan="on") as running:
        sock = connect(running)
        sock.sendall(
            (
                POST.format(path="/mcp")
                + "Accept: application/json, text/event-stream\r\nContent-Length: 100\r\n\r\n"
            ).encode()
        )
        sock.sendall(b'{"jsonrpc": "2.0", ')
        error = body_of(until_closed(sock))
    assert error["errors"] == [
        {"code": 3003, "message": "Request timed out: the body was not complete within 1 s"}
    ]
