"""Fallback: a primary in the Workers AI shape and a secondary in the OpenAI shape, each a real
loopback server counting the requests that reach it; the circuit breaker on a fake clock."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from agentkit import (
    Agent,
    AuthError,
    BadRequest,
    Fallback,
    ModelRequest,
    RateLimited,
    StreamInterrupted,
    UnsupportedFeature,
)
from agentkit.events import RunFinished
from agentkit.runtimes import OpenAICompatible, WorkersAI
from agentkit.runtimes.base import Runtime

from support.helpers import FakeClock, add
from support.loopback import LoopbackServer, Reply, Seen, sse, workers_ai_model
from support.tracing import recorded_spans

TOKEN = "cf-token-fallback-secret"
REQUEST = ModelRequest(messages=[{"role": "user", "content": "hello"}])  # type: ignore[list-item]
FAILED: dict[str, Any] = {"result": None, "success": False, "messages": []}


def failure(status: int, code: int, message: str, **headers: str) -> Reply:
    """A Workers AI error envelope."""
    body = {**FAILED, "errors": [{"code": code, "message": message}]}
    return Reply(status=status, json=body, headers=headers)


class Primary(LoopbackServer):
    """A Workers AI server whose answers `reply` decides, fine until told otherwise."""

    def __init__(self) -> None:
        self.reply = workers_ai_model
        super().__init__(lambda seen: self.reply(seen))


@pytest.fixture(scope="module")
def _primary() -> Iterator[Primary]:
    with Primary() as running:
        yield running


@pytest.fixture
def primary(_primary: Primary) -> Primary:
    _primary.requests.clear()
    _primary.reply = workers_ai_model
    return _primary


@pytest.fixture
def secondary(service: LoopbackServer) -> LoopbackServer:
    """The OpenAI-shaped loopback server (and Workers AI, by path), answering as a model."""
    return service


def runtimes(primary: LoopbackServer, secondary: LoopbackServer) -> list[Runtime]:
    return [
        WorkersAI("acc", TOKEN, base_url=primary.url + "/client/v4"),
        OpenAICompatible(secondary.url + "/v1", model="backup-model"),
    ]


async def test_a_429_asking_for_60_s_falls_over_in_under_2_s(
    primary: Primary, secondary: LoopbackServer
) -> None:
    primary.reply = lambda seen: failure(429, 3040, "out of capacity", **{"Retry-After": "60"})
    async with Fallback(runtimes(primary, secondary), owns=True) as runtime:
        started = time.monotonic()
        generation = await runtime.generate(REQUEST)
        elapsed = time.monotonic() - started
    assert elapsed < 2.0
    assert generation.response == "The result is hello."
    assert generation.runtime == "openai:backup-model"
    assert len(primary.requests) == 1  # the primary did not retry, and did not sleep 60 s
    assert len(secondary.requests) == 1
    # The runtime that answered stays out of the wire.
    assert "runtime" not in generation.to_wire()
    assert "runtime" not in generation.model_dump()


async def test_a_500_storm_opens_the_breaker_until_the_probe_succeeds(
    primary: Primary, secondary: LoopbackServer
) -> None:
    clock = FakeClock()
    primary.reply = lambda seen: failure(500, 0, "internal error")
    # A retry wait shorter than the first backoff: each failure falls over at once.
    runtime = Fallback(
        runtimes(primary, secondary),
        failures=3,
        window=60,
        cooldown=30,
        clock=clock,
        retry_wait=0.1,
        owns=True,
    )
    breaker = runtime.breakers["workers-ai:@cf/meta/llama-3.1-8b-instruct"]
    async with runtime:
        for _ in range(3):
            assert (await runtime.generate(REQUEST)).runtime == "openai:backup-model"
            clock.now += 1
        assert len(primary.requests) == 3
        assert breaker.state == "open"
        # Open: the primary is skipped; no request reaches it.
        for _ in range(5):
            assert (await runtime.generate(REQUEST)).runtime == "openai:backup-model"
        clock.now += 28  # it opened at the third failure, 1 s before the loop ended
        await runtime.generate(REQUEST)
        assert len(primary.requests) == 3
        assert len(secondary.requests) == 9

        # After the cool-down one probe goes; it fails, and the breaker opens again.
        clock.now += 1
        await runtime.generate(REQUEST)
        assert len(primary.requests) == 4
        assert breaker.state == "open"
        await runtime.generate(REQUEST)
        assert len(primary.requests) == 4

        # The service recovers: the next probe succeeds and closes the breaker.
        primary.reply = workers_ai_model
        clock.now += 30
        generation = await runtime.generate(REQUEST)
        assert generation.runtime == "workers-ai:@cf/meta/llama-3.1-8b-instruct"
        assert str(breaker.state) == "closed"  # (str: mypy holds on to the last assert)
        await runtime.generate(REQUEST)
        assert len(primary.requests) == 6
        assert len(secondary.requests) == 11


async def test_failures_outside_the_window_do_not_open_the_breaker(
    primary: Primary, secondary: LoopbackServer
) -> None:
    clock = FakeClock()
    primary.reply = lambda seen: failure(503, 0, "unavailable")
    runtime = Fallback(
        runtimes(primary, secondary), failures=2, window=10, clock=clock, retry_wait=0.1, owns=True
    )
    async with runtime:
        for _ in range(3):
            await runtime.generate(REQUEST)
            clock.now += 11
    assert runtime.breakers["workers-ai:@cf/meta/llama-3.1-8b-instruct"].state == "closed"
    assert len(primary.requests) == 3


async def test_a_stream_cut_after_its_first_chunk_is_not_replayed(
    primary: Primary, secondary: LoopbackServer
) -> None:
    primary.reply = lambda seen: Reply(sse=sse({"response": "Hel"}, done=False), cut=True)
    got: list[str] = []
    async with Fallback(runtimes(primary, secondary), owns=True) as runtime:
        with pytest.raises(StreamInterrupted):
            async for chunk in runtime.stream(REQUEST):
                got.append(chunk.response)
    assert got == ["Hel"]
    assert len(secondary.requests) == 0  # no duplicated text from another model


async def test_a_stream_failing_before_its_first_chunk_falls_over(
    primary: Primary, secondary: LoopbackServer
) -> None:
    primary.reply = lambda seen: failure(502, 0, "bad gateway")
    async with Fallback(runtimes(primary, secondary), retry_wait=0.1, owns=True) as runtime:
        chunks = [chunk async for chunk in runtime.stream(REQUEST)]
    assert chunks[0].runtime == "openai:backup-model"
    assert "".join(c.response for c in chunks) == "The result is hello."
    assert len(primary.requests) == 1
    assert secondary.requests[0].json["stream"] is True


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (failure(429, 3036, "daily free allocation used up"), RateLimited),
        (failure(400, 5006, "bad input: messages"), BadRequest),
        (failure(401, 10000, "authentication error"), AuthError),
    ],
    ids=["daily-limit-3036", "bad-request-400", "auth-401"],
)
async def test_a_refused_request_does_not_fall_over(
    primary: Primary, secondary: LoopbackServer, reply: Reply, error: type[Exception]
) -> None:
    primary.reply = lambda seen: reply
    runtime = Fallback(runtimes(primary, secondary), owns=True)
    async with runtime:
        with pytest.raises(error):
            await runtime.generate(REQUEST)
        with pytest.raises(error):
            async for _ in runtime.stream(REQUEST):
                pass
        # A refusal says nothing of the runtime's health: its breaker stays closed.
        assert all(b.state == "closed" for b in runtime.breakers.values())
    assert len(primary.requests) == 2
    assert len(secondary.requests) == 0


async def test_a_field_one_runtime_cannot_honour_is_refused_before_any_request(
    primary: Primary, secondary: LoopbackServer
) -> None:
    async with Fallback(runtimes(primary, secondary), owns=True) as runtime:
        # Workers AI applies LoRA adapters, the OpenAI-compatible server does not.
        assert runtime.capabilities.lora is False
        with pytest.raises(UnsupportedFeature, match="lora: not supported by the fallback"):
            await runtime.generate(REQUEST.model_copy(update={"lora": "adapter"}))
    assert len(primary.requests) == len(secondary.requests) == 0


async def test_configured_error_classes_fall_over_too(
    primary: Primary, secondary: LoopbackServer
) -> None:
    primary.reply = lambda seen: failure(400, 5006, "this model cannot do that")
    async with Fallback(runtimes(primary, secondary), on=[BadRequest], owns=True) as runtime:
        assert (await runtime.generate(REQUEST)).runtime == "openai:backup-model"


async def test_an_attempt_deadline_cuts_a_hanging_primary_short(
    primary: Primary, secondary: LoopbackServer
) -> None:
    def slow(seen: Seen) -> Reply:
        return Reply(json=workers_ai_model(seen).json, delay=2.0)

    primary.reply = slow
    async with Fallback(runtimes(primary, secondary), attempt_timeout=0.3, owns=True) as runtime:
        started = time.monotonic()
        generation = await runtime.generate(REQUEST)
    assert time.monotonic() - started < 1.5
    assert generation.runtime == "openai:backup-model"


async def test_an_agent_run_records_which_runtime_answered_each_step(
    primary: Primary, secondary: LoopbackServer
) -> None:
    primary.reply = lambda seen: failure(503, 0, "unavailable")
    async with Fallback(runtimes(primary, secondary), retry_wait=0.1, owns=True) as runtime:
        with recorded_spans() as spans:
            result = await Agent(runtime, tools=[add]).run("What is 2 + 3?")
    assert result.output == "The result is 5."
    assert result.step_runtimes == {1: "openai:backup-model", 2: "openai:backup-model"}
    assert type(result).model_validate_json(result.model_dump_json()) == result
    chats = [s for s in spans.get_finished_spans() if s.name.startswith("chat")]
    assert len(chats) == 2
    assert {(s.attributes or {})["agentkit.response.runtime"] for s in chats} == {
        "openai:backup-model"
    }
    # The provider is the one that answered; the primary's failure is an event on the span.
    assert {(s.attributes or {})["gen_ai.provider.name"] for s in chats} == {"openai"}
    fell = [e for s in chats for e in s.events if e.name == "agentkit.fallback"]
    assert len(fell) == 2
    assert dict(fell[0].attributes or {}) == {
        "agentkit.fallback.from": "workers-ai:@cf/meta/llama-3.1-8b-instruct",
        "error.type": "ServerError",
        "http.response.status_code": 503,
    }

    # Streamed, the first chunk says it.
    primary.reply = workers_ai_model
    async with Fallback(runtimes(primary, secondary), owns=True) as runtime:
        events = [event async for event in Agent(runtime, tools=[add]).stream("What is 2 + 3?")]
    finished = events[-1]
    assert isinstance(finished, RunFinished)
    assert finished.result.step_runtimes == {
        1: "workers-ai:@cf/meta/llama-3.1-8b-instruct",
        2: "workers-ai:@cf/meta/llama-3.1-8b-instruct",
    }


async def test_the_server_serves_a_fallback_chain(
    primary: Primary, secondary: LoopbackServer, serve: Any
) -> None:
    primary.reply = lambda seen: failure(429, 3040, "out of capacity", **{"Retry-After": "60"})
    runtime = Fallback(runtimes(primary, secondary), owns=True)
    server = serve(runtime)
    async with httpx.AsyncClient(base_url=server.url) as client:
        answer = await client.post(
            "/client/v4/accounts/local/ai/run/@cf/meta/llama-3.1-8b-instruct",
            json={"messages": [{"role": "user", "content": "hello"}]},
        )
    await runtime.aclose()
    assert answer.status_code == 200, answer.text
    assert answer.json()["result"]["response"] == "The result is hello."
    assert "runtime" not in answer.json()["result"]
    assert len(secondary.requests) == 1
