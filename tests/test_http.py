"""The HTTP layer shared by the hosted runtimes: SSE reading, retries, backoff, error mapping.

Retries, streams and cut streams run against a real HTTP server on 127.0.0.1 (`LoopbackServer`,
also used by the runtime tests); delays are asserted on what the code chose to wait.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import httpx
import pytest

from agentkit.errors import (
    AuthError,
    BadRequest,
    ModelConnectionError,
    ModelHTTPError,
    ModelTimeout,
    NotFound,
    RateLimited,
    ServerError,
    StreamInterrupted,
    TransportError,
    UserError,
)
from agentkit.runtimes._http import (
    DEFAULT_TIMEOUT,
    HTTPClient,
    RetryPolicy,
    SSEDecoder,
    SSEEvent,
    error_from_response,
    parse_retry_after,
)

from support.loopback import LoopbackServer, Reply, Sleeps, sse

# -- server-sent events ----------------------------------------------------------------------


def test_sse_joins_multi_line_data_and_skips_comments_and_unknown_fields() -> None:
    decoder = SSEDecoder()
    events = decoder.feed(': keep-alive\nretry: 100\nid: 7\nfoo: bar\ndata: {"a":\ndata: 1}\n\n')
    assert events == [SSEEvent('{"a":\n1}')]
    assert json.loads(events[0].data) == {"a": 1}


def test_sse_handles_crlf_and_cr_even_split_between_reads() -> None:
    decoder = SSEDecoder()
    assert decoder.feed("data: one\r") == []  # could be the first half of CRLF
    assert decoder.feed("\n\r\ndata: two\r\rdata:three\n\n") == [
        SSEEvent("one"),
        SSEEvent("two"),
        SSEEvent("three"),
    ]


def test_sse_keeps_the_event_name_and_strips_one_space_only() -> None:
    decoder = SSEDecoder()
    assert decoder.feed("event: error\ndata:  x\n\n") == [SSEEvent(" x", "error")]


def test_sse_yields_an_event_left_open_at_the_end() -> None:
    decoder = SSEDecoder()
    assert decoder.feed("data: [DONE]") == []
    assert decoder.close() == SSEEvent("[DONE]")
    assert decoder.close() is None


def test_sse_blank_lines_without_data_make_no_event() -> None:
    assert SSEDecoder().feed("\n\n: ping\n\n") == []


# -- Retry-After and backoff ------------------------------------------------------------------


def test_retry_after_reads_milliseconds_first_then_seconds_then_an_http_date() -> None:
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    date = {"retry-after": "Wed, 21 Oct 2015 07:28:30 GMT"}
    assert parse_retry_after(date, now=lambda: 1445412500.0) == 10.0
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None


def test_backoff_doubles_from_half_a_second_up_to_eight_with_jitter() -> None:
    policy = RetryPolicy()
    for retry in range(7):
        nominal = min(0.5 * 2**retry, 8)
        for _ in range(50):
            assert 0.75 * nominal <= policy.backoff(retry) <= nominal


def test_retry_policy_refuses_long_waits_and_spent_budgets() -> None:
    policy = RetryPolicy(max_retries=2, max_retry_after=30)
    limited = RateLimited("slow down", retry_after=31.0)
    assert policy.delay(0, limited) is None  # longer than the ceiling: raise at once
    assert policy.delay(0, RateLimited("slow down", retry_after=2.0)) == 2.0
    assert policy.delay(2, ServerError("boom", status=500, retryable=True)) is None
    assert policy.delay(0, BadRequest("no", status=400)) is None
    with pytest.raises(UserError, match=r"max_retries: must be >= 0 \(got -1\)"):
        RetryPolicy(max_retries=-1)


# -- error mapping ----------------------------------------------------------------------------


def _envelope(code: int, message: str) -> dict[str, Any]:
    return {"result": None, "success": False, "errors": [{"code": code, "message": message}]}


@pytest.mark.parametrize(
    ("status", "body", "kind", "retryable"),
    [
        (400, _envelope(5006, "Bad input: Type mismatch"), BadRequest, False),
        (401, _envelope(10000, "Authentication error"), AuthError, False),
        (403, _envelope(10000, "Authentication error"), AuthError, False),
        (404, {"error": {"message": "no such model", "code": "model_not_found"}}, NotFound, False),
        (408, _envelope(3007, "timeout"), ModelTimeout, True),
        (409, {"error": "conflict"}, ModelHTTPError, True),
        (429, _envelope(3036, "daily free allocation used up"), RateLimited, False),
        (429, _envelope(3040, "out of capacity"), RateLimited, True),
        (200, _envelope(3040, "out of capacity"), RateLimited, True),
        (200, _envelope(5007, "No such model"), BadRequest, False),
        (500, {"detail": "engine crashed"}, ServerError, True),
        (503, None, ServerError, True),
    ],
)
def test_errors_are_typed_and_carry_status_code_and_message(
    status: int, body: Any, kind: type[Exception], retryable: bool
) -> None:
    error = error_from_response(status, body, "upstream said no")
    assert type(error) is kind
    assert error.status == status
    assert error.retryable is retryable
    if isinstance(body, dict) and body.get("errors"):
        assert error.code == body["errors"][0]["code"]
        assert body["errors"][0]["message"] in str(error)
    if body is None:
        assert "upstream said no" in str(error)


def test_openai_error_bodies_keep_their_string_code_in_the_message() -> None:
    body = {"error": {"message": "Incorrect API key", "type": "auth", "code": "invalid_api_key"}}
    error = error_from_response(401, body)
    assert str(error) == "[HTTP 401] Incorrect API key (invalid_api_key)"


def test_a_secret_echoed_by_the_service_is_scrubbed() -> None:
    error = error_from_response(401, {"error": "bad token sk-123"}, secret="sk-123")
    assert "sk-123" not in str(error)
    assert "[redacted]" in str(error)


def test_rate_limits_carry_the_wait_the_service_asked_for() -> None:
    error = error_from_response(429, None, "", {"retry-after": "7"})
    assert isinstance(error, RateLimited)
    assert error.retry_after == 7.0


# -- retries over real HTTP -------------------------------------------------------------------


def _client(sleeps: Sleeps, **policy: Any) -> HTTPClient:
    return HTTPClient(headers={}, retry=RetryPolicy(**policy), sleep=sleeps)


async def test_server_errors_are_retried_with_growing_backoff(server: LoopbackServer) -> None:
    server.script(Reply(503, {"error": "busy"}), Reply(502), Reply(200, {"ok": True}))
    sleeps = Sleeps()
    http = _client(sleeps)
    assert await http.post_json(server.url + "/v1", {"x": 1}) == {"ok": True}
    await http.aclose()
    assert len(server.requests) == 3
    assert [s.json for s in server.requests] == [{"x": 1}] * 3
    assert 0.375 <= sleeps.delays[0] <= 0.5
    assert 0.75 <= sleeps.delays[1] <= 1.0


async def test_retries_stop_after_max_retries(server: LoopbackServer) -> None:
    server.script(*[Reply(500, {"error": "down"})] * 4)
    sleeps = Sleeps()
    http = _client(sleeps, max_retries=3)
    with pytest.raises(ServerError, match="down") as caught:
        await http.post_json(server.url + "/v1", {})
    await http.aclose()
    assert caught.value.status == 500
    assert len(server.requests) == 4
    assert len(sleeps.delays) == 3


async def test_retry_after_headers_set_the_wait(server: LoopbackServer) -> None:
    server.script(
        Reply(429, _envelope(3040, "capacity"), {"retry-after-ms": "250"}),
        Reply(429, _envelope(3040, "capacity"), {"retry-after": "2"}),
        Reply(503, {"error": "restarting"}, {"retry-after": "1.5"}),
        Reply(200, {"ok": 1}),
    )
    sleeps = Sleeps()
    http = _client(sleeps, max_retries=3)
    assert await http.post_json(server.url + "/run", {}) == {"ok": 1}
    await http.aclose()
    assert sleeps.delays == [0.25, 2.0, 1.5]


async def test_a_wait_beyond_the_ceiling_is_not_waited_for(server: LoopbackServer) -> None:
    server.script(Reply(429, {"error": "later"}, {"retry-after": "3600"}))
    sleeps = Sleeps()
    http = _client(sleeps)
    with pytest.raises(RateLimited) as caught:
        await http.post_json(server.url + "/run", {})
    await http.aclose()
    assert caught.value.retry_after == 3600.0
    assert sleeps.delays == []
    assert len(server.requests) == 1


async def test_the_daily_limit_is_not_retried_but_capacity_is(server: LoopbackServer) -> None:
    server.script(
        Reply(429, _envelope(3040, "out of capacity")),
        Reply(429, _envelope(3036, "daily free allocation used up")),
    )
    sleeps = Sleeps()
    http = _client(sleeps)
    with pytest.raises(RateLimited, match="daily free allocation") as caught:
        await http.post_json(server.url + "/run", {})
    await http.aclose()
    assert caught.value.code == 3036
    assert len(server.requests) == 2
    assert len(sleeps.delays) == 1


async def test_client_errors_are_not_retried(server: LoopbackServer) -> None:
    server.script(Reply(400, _envelope(5006, "Bad input: '/messages/0/content'")))
    sleeps = Sleeps()
    http = _client(sleeps)
    with pytest.raises(BadRequest, match="/messages/0/content") as caught:
        await http.post_json(server.url + "/run", {})
    await http.aclose()
    assert (caught.value.status, caught.value.code) == (400, 5006)
    assert sleeps.delays == []


async def test_success_false_with_http_200_is_an_error(server: LoopbackServer) -> None:
    server.script(Reply(200, _envelope(5007, "No such model")))
    http = _client(Sleeps())
    with pytest.raises(BadRequest, match="No such model"):
        await http.post_json(server.url + "/run", {})
    await http.aclose()


async def test_connection_errors_are_retried_then_raised() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sleeps = Sleeps()
    http = _client(sleeps, max_retries=2)
    with pytest.raises(ModelConnectionError, match=f"could not reach http://127.0.0.1:{port}"):
        await http.post_json(f"http://127.0.0.1:{port}/run", {})
    await http.aclose()
    assert len(sleeps.delays) == 2


async def test_timeouts_are_typed_and_retried(server: LoopbackServer) -> None:
    # The timeout leaves the retry's prompt answer room on a busy machine; the late answer
    # comes well past it.
    server.script(Reply(200, {"late": True}, delay=2.0), Reply(200, {"ok": True}))
    sleeps = Sleeps()
    http = HTTPClient(headers={}, timeout=0.5, sleep=sleeps, retry=RetryPolicy(max_retries=1))
    assert await http.post_json(server.url + "/run", {}) == {"ok": True}
    assert len(sleeps.delays) == 1
    server.script(Reply(200, {"late": True}, delay=2.0))
    http.retry = RetryPolicy(max_retries=0)
    with pytest.raises(ModelTimeout, match="timed out"):
        await http.post_json(server.url + "/run", {})
    await http.aclose()


async def test_the_real_wait_is_roughly_what_was_asked(server: LoopbackServer) -> None:
    server.script(Reply(503, {}, {"retry-after-ms": "200"}), Reply(200, {"ok": True}))
    http = HTTPClient(headers={})
    started = time.monotonic()
    await http.post_json(server.url + "/run", {})
    await http.aclose()
    assert 0.2 <= time.monotonic() - started < 3


async def test_the_default_timeout_suits_model_calls() -> None:
    http = HTTPClient(headers={})
    assert http._timeout.read is not None and http._timeout.read >= 120


# -- streams over real HTTP -------------------------------------------------------------------


async def _collect(http: HTTPClient, url: str) -> list[str]:
    return [event.data async for event in http.stream_sse(url, {"stream": True})]


async def test_a_stream_in_odd_pieces_is_read_whole(server: LoopbackServer) -> None:
    body = ': hello\r\ndata: {"response":"New",\r\ndata: "p":"abcd"}\r\n\r\nda'
    rest = 'ta: {"response":" York","x":1}\n\ndata: [DONE]\n\n'
    server.script(Reply(sse=[body, rest], pause=0.01))
    http = _client(Sleeps())
    data = await _collect(http, server.url + "/run")
    await http.aclose()
    assert [json.loads(d)["response"] for d in data] == ["New", " York"]


async def test_a_stream_is_retried_before_its_first_event(server: LoopbackServer) -> None:
    server.script(Reply(503, {"error": "busy"}), Reply(sse=sse({"response": "hi"})))
    sleeps = Sleeps()
    http = _client(sleeps)
    assert await _collect(http, server.url + "/run") == ['{"response": "hi"}']
    await http.aclose()
    assert len(sleeps.delays) == 1


async def test_a_stream_without_done_is_interrupted_not_short(server: LoopbackServer) -> None:
    server.script(Reply(sse=sse({"response": "Half an"}, done=False)))
    sleeps = Sleeps()
    http = _client(sleeps)
    seen: list[str] = []
    with pytest.raises(StreamInterrupted, match=r"ended before \[DONE\]"):
        async for event in http.stream_sse(server.url + "/run", {}):
            seen.append(event.data)
    await http.aclose()
    assert seen == ['{"response": "Half an"}']
    assert sleeps.delays == []  # data reached the caller: never retried
    assert len(server.requests) == 1


async def test_a_broken_connection_mid_stream_is_interrupted(server: LoopbackServer) -> None:
    server.script(Reply(sse=sse({"response": "Half"}, done=False), cut=True))
    sleeps = Sleeps()
    http = _client(sleeps)
    with pytest.raises(StreamInterrupted, match="broke off"):
        await _collect(http, server.url + "/run")
    await http.aclose()
    assert sleeps.delays == []
    assert len(server.requests) == 1


async def test_a_stream_that_fails_before_any_event_is_retried(server: LoopbackServer) -> None:
    server.script(Reply(sse=[": just a comment\n\n"], cut=True), Reply(sse=sse({"ok": 1})))
    sleeps = Sleeps()
    http = _client(sleeps)
    assert await _collect(http, server.url + "/run") == ['{"ok": 1}']
    await http.aclose()
    assert len(sleeps.delays) == 1


async def test_a_stream_answered_with_an_error_envelope_raises_it(server: LoopbackServer) -> None:
    server.script(Reply(200, _envelope(5006, "Bad input")))
    http = _client(Sleeps())
    with pytest.raises(BadRequest, match="Bad input"):
        await _collect(http, server.url + "/run")
    await http.aclose()


async def test_an_injected_client_is_left_open(server: LoopbackServer) -> None:
    server.script(Reply(200, {"ok": 1}))
    async with httpx.AsyncClient() as client:
        http = HTTPClient(headers={}, client=client)
        await http.post_json(server.url + "/run", {})
        await http.aclose()
        assert not client.is_closed


def test_every_error_scrubs_registered_secrets_and_pieces_of_them() -> None:
    secret = "tok-7f3a9c1e5b2d8a4f"
    HTTPClient(headers={"Authorization": f"Bearer {secret}"}, secret=secret)  # registers it
    errors = [
        TransportError(f"echo: Bearer {secret}"),
        BadRequest(f"cut: {secret[:11]}", status=400),
        StreamInterrupted(f"{secret[-9:]} and on"),
    ]
    for error in errors:
        for text in (str(error), repr(error), *map(str, error.args), error.message):
            assert secret[:8] not in text and secret[-8:] not in text, text
            assert "[redacted]" in text
    assert str(ModelHTTPError("tok-7f3 is too short a piece")) == "tok-7f3 is too short a piece"


def test_short_values_are_not_taken_for_secrets() -> None:
    HTTPClient(headers={}, secret="abc")
    assert str(TransportError("abc abc")) == "abc abc"


def test_the_deadline_comes_from_the_timeout_and_must_be_positive() -> None:
    assert HTTPClient(headers={}, timeout=1.5).deadline == 1.5
    assert HTTPClient(headers={}).deadline == DEFAULT_TIMEOUT.read
    assert HTTPClient(headers={}, timeout=2, deadline=30).deadline == 30
    with pytest.raises(UserError, match=r"deadline: must be > 0 seconds \(got 0\)"):
        HTTPClient(headers={}, deadline=0)
