"""RateLimit: many agents through one limiter against a loopback Workers AI server that stamps
each request's arrival; token estimates and their correction; a service's Retry-After."""

from __future__ import annotations

import time
from collections.abc import Iterator

import anyio
import pytest

from agentkit import (
    Agent,
    Fallback,
    FunctionRuntime,
    Generation,
    ModelRequest,
    RateLimit,
    RateLimited,
    Usage,
    UserError,
)
from agentkit.runtimes import WorkersAI
from agentkit.runtimes.rate_limit import estimate_tokens

from support.helpers import add
from support.loopback import LoopbackServer, Reply, Seen, workers_ai_model

TOKEN = "cf-token-rate-limit-secret"


class Stamping(LoopbackServer):
    """A Workers AI model server that notes when each request arrived (its own clock)."""

    def __init__(self) -> None:
        self.arrivals: list[float] = []
        self.replies: list[Reply] = []
        super().__init__(self._answer)

    def _answer(self, seen: Seen) -> Reply:
        self.arrivals.append(time.monotonic())
        return self.replies.pop(0) if self.replies else workers_ai_model(seen)


@pytest.fixture
def stamping() -> Iterator[Stamping]:
    with Stamping() as running:
        yield running


def most_in_any_window(times: list[float], window: float) -> int:
    """The most of `times` that fall within one window of `window` seconds, wherever it starts."""
    times = sorted(times)
    most, start = 0, 0
    for end, at in enumerate(times):
        while at - times[start] >= window:
            start += 1
        most = max(most, end - start + 1)
    return most


def request(text: str = "hi", max_tokens: int = 100) -> ModelRequest:
    return ModelRequest(messages=[{"role": "user", "content": text}], max_tokens=max_tokens)  # type: ignore[list-item]


async def test_fifty_concurrent_runs_keep_to_the_limit_in_every_window(
    stamping: Stamping,
) -> None:
    # 1200 a minute over a 1 s window: at most 20 requests start in any second.
    inner = WorkersAI("acc", TOKEN, base_url=stamping.url + "/client/v4")
    limited = RateLimit(inner, requests_per_minute=1200, window=1.0, owns=True)
    results = []

    async def one_run(n: int) -> None:
        agent = Agent(limited, tools=[add])  # every agent shares the one limiter
        results.append(await agent.run(f"What is 2 + 3? ({n})"))

    async with limited, anyio.create_task_group() as group:
        for n in range(50):
            group.start_soon(one_run, n)
    assert len(results) == 50
    assert all(r.output == "The result is 5." for r in results)
    assert len(stamping.arrivals) == 100  # a tool call and an answer per run
    # The limiter lets at most 20 go in any second. Stamped on arrival, after the server's own
    # lag (a few hundred ms on a loaded machine), two requests let go a second apart may land
    # closer: so no half second may hold more than 20. Unlimited, the fifty first requests land
    # within one; a bucket with a second's burst on top of its refill lets 30 through in it.
    arrivals = stamping.arrivals
    assert most_in_any_window(arrivals, 0.5) <= 20
    # 100 requests, 20 a second, the first 20 at once: 4 s between the first and the last.
    assert max(arrivals) - min(arrivals) >= 3.5


async def test_reported_usage_gives_unused_tokens_back() -> None:
    answered = FunctionRuntime(lambda r: Generation(response="ok", usage=Usage.of(6, 4)))
    # 12000 tokens a minute over a 1 s window: 200 tokens a second; each request is estimated
    # at more than 100 (its max_tokens), so two would not fit without the correction.
    limited = RateLimit(answered, tokens_per_minute=12000, window=1.0, max_wait=0.2)
    assert estimate_tokens(request()) > 100
    await limited.generate(request())
    await limited.generate(request())  # room, since the first one used 10 tokens only
    big = FunctionRuntime(lambda r: Generation(response="ok", usage=Usage.of(80, 100)))
    limited = RateLimit(big, tokens_per_minute=12000, window=1.0, max_wait=0.2)
    await limited.generate(request())
    with pytest.raises(RateLimited) as refused:
        await limited.generate(request())
    assert str(refused.value).startswith(
        "rate limit of the function runtime: no room within 0.2 s under tokens_per_minute=12000 "
        "(room in "
    )
    assert refused.value.status is None
    assert refused.value.retry_after is not None and 0 < refused.value.retry_after <= 1.0


async def test_a_request_larger_than_the_token_limit_is_refused_by_name() -> None:
    limited = RateLimit(FunctionRuntime(lambda r: "ok"), tokens_per_minute=6000, window=1.0)
    with pytest.raises(UserError, match=r"tokens_per_minute: the request may use \d+ tokens"):
        await limited.generate(request(max_tokens=200))


async def test_past_its_wait_a_request_fails_naming_the_limit() -> None:
    limited = RateLimit(FunctionRuntime(lambda r: "ok"), requests_per_minute=1, max_wait=0.1)
    await limited.generate(request())
    with pytest.raises(
        RateLimited, match=r"no room within 0.1 s under requests_per_minute=1 \(room in 60 s\)$"
    ):
        await limited.generate(request())


async def test_a_retry_after_from_the_service_pauses_every_caller(stamping: Stamping) -> None:
    # The service asks for a second's pause; the runtime's own policy would sleep it out for
    # that one request while the others kept sending.
    stamping.replies.append(Reply(status=429, json={"errors": []}, headers={"Retry-After": "1"}))
    inner = WorkersAI("acc", TOKEN, base_url=stamping.url + "/client/v4")
    limited = RateLimit(inner, requests_per_minute=1000, owns=True)
    answers: list[str] = []

    async def ask(text: str) -> None:
        answers.append((await limited.generate(request(text))).response)

    async with limited, anyio.create_task_group() as group:
        group.start_soon(ask, "first")
        await anyio.sleep(0.3)  # the first has met the 429: the limiter is paused
        group.start_soon(ask, "second")
        group.start_soon(ask, "third")
    assert sorted(answers) == [f"The result is {t}." for t in ("first", "second", "third")]
    first, *after = stamping.arrivals
    assert len(after) == 3  # the first again, and the other two: each once
    assert min(after) - first >= 0.9  # nobody sent during the pause


async def test_a_retry_after_past_the_wait_is_raised(stamping: Stamping) -> None:
    stamping.replies.append(Reply(status=429, json={"errors": []}, headers={"Retry-After": "30"}))
    inner = WorkersAI("acc", TOKEN, base_url=stamping.url + "/client/v4")
    async with RateLimit(inner, requests_per_minute=1000, max_wait=5, owns=True) as limited:
        with pytest.raises(RateLimited) as raised:
            await limited.generate(request())
        assert (raised.value.status, raised.value.retry_after) == (429, 30)
        with pytest.raises(RateLimited, match="under the service's Retry-After"):
            await limited.generate(request())  # paused: refused at once, nothing sent
    assert len(stamping.arrivals) == 1


async def test_at_most_max_concurrency_requests_run_at_once() -> None:
    running = most = 0

    async def slow(r: ModelRequest) -> str:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await anyio.sleep(0.05)
        running -= 1
        return "ok"

    limited = RateLimit(FunctionRuntime(slow), max_concurrency=2)
    async with anyio.create_task_group() as group:
        for _ in range(6):
            group.start_soon(limited.generate, request())
    assert most == 2


async def test_a_stream_is_limited_and_its_usage_counted() -> None:
    answered = FunctionRuntime(lambda r: Generation(response="a b c", usage=Usage.of(6, 4)))
    limited = RateLimit(answered, tokens_per_minute=12000, window=1.0, max_wait=0.2)
    for _ in range(3):
        chunks = [chunk async for chunk in limited.stream(request())]
        assert "".join(c.response for c in chunks) == "a b c"


async def test_behind_a_fallback_a_full_limit_falls_over_at_once() -> None:
    first = RateLimit(FunctionRuntime(lambda r: "first"), requests_per_minute=1)
    runtime = Fallback([first, FunctionRuntime(lambda r: "second")])
    assert (await runtime.generate(request())).response == "first"
    started = time.monotonic()
    assert (await runtime.generate(request())).response == "second"
    assert time.monotonic() - started < 5  # not the minute the limit would make it wait


def test_it_passes_the_runtime_through_and_names_bad_settings() -> None:
    inner = FunctionRuntime(lambda r: "ok")
    limited = RateLimit(inner, requests_per_minute=60, max_concurrency=3)
    assert limited.name == "function"
    assert limited.capabilities is inner.capabilities
    assert repr(limited).endswith("requests_per_minute=60, max_concurrency=3)")
    with pytest.raises(UserError, match=r"requests_per_minute: must be > 0 \(got 0\)"):
        RateLimit(inner, requests_per_minute=0)
    with pytest.raises(UserError, match=r"max_concurrency: must be >= 1 \(got 0\)"):
        RateLimit(inner, max_concurrency=0)
    with pytest.raises(UserError, match=r"requests_per_minute: 30 a minute allows no request"):
        RateLimit(inner, requests_per_minute=30, window=1.0)
