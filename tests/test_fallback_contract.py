"""Fallback without a wire: shared capabilities, ownership, settings, the circuit breaker's
states, nesting, and which runtime answered, kept across a paused run."""

from __future__ import annotations

import httpx
import pytest

from agentkit import (
    Agent,
    Fallback,
    FunctionRuntime,
    Generation,
    ModelConnectionError,
    ModelPrice,
    ModelRequest,
    RunState,
    ScriptedRuntime,
    UnsupportedFeature,
    Usage,
    UserError,
    tool,
)
from agentkit.runtimes import Capabilities, CircuitBreaker, OpenAICompatible, Profile
from agentkit.runtimes.base import Runtime

from support.helpers import FakeClock

REQUEST = ModelRequest(messages=[{"role": "user", "content": "hello"}])  # type: ignore[list-item]


async def test_when_every_runtime_fails_the_last_error_is_raised() -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    def unreachable(url: str) -> Runtime:
        client = httpx.AsyncClient(transport=httpx.MockTransport(down))
        return OpenAICompatible(url, model="m", client=client, max_retries=0)

    clock = FakeClock()
    runtime = Fallback(
        [unreachable("http://a.invalid/v1"), unreachable("http://b.invalid/v1")],
        failures=1,
        cooldown=30,
        clock=clock,
    )
    with pytest.raises(ModelConnectionError, match=r"b\.invalid"):
        await runtime.generate(REQUEST)
    with pytest.raises(ModelConnectionError) as skipped:
        await runtime.generate(REQUEST)
    assert str(skipped.value) == (
        "no runtime to try: each one's circuit is open "
        "(openai:m for 30 s more, openai:m#2 for 30 s more)"
    )
    assert skipped.value.retryable


async def test_a_run_on_a_plain_runtime_records_no_runtimes() -> None:
    runtime = ScriptedRuntime([ScriptedRuntime.answer("hi")])
    result = await Agent(runtime).run("hello")
    assert result.step_runtimes == {}


class Closing(FunctionRuntime):
    def __init__(self, capabilities: Capabilities, profile: Profile | None = None) -> None:
        super().__init__(lambda request: "ok", capabilities=capabilities)
        self.profile = profile or Profile()
        self.closed = 0

    async def aclose(self) -> None:
        self.closed += 1


async def test_capabilities_are_shared_profile_and_slots_come_from_the_first() -> None:
    greedy = Profile(tool_choice="required", sampling={"temperature": 0.0})
    first = Closing(Capabilities(tool_choice=True, lora=True, schema_dialect="full"), greedy)
    first.slots = 4
    second = Closing(
        Capabilities(
            tool_choice=True,
            sampling=frozenset({"max_tokens", "temperature"}),
            schema_dialect="inline",
        )
    )
    runtime = Fallback([first, second])
    assert runtime.capabilities.tool_choice is True
    assert runtime.capabilities.lora is False
    assert runtime.capabilities.sampling == frozenset({"max_tokens", "temperature"})
    assert runtime.capabilities.schema_dialect == "inline"
    assert runtime.profile is greedy
    assert runtime.slots == 4
    with pytest.raises(UnsupportedFeature, match="top_p"):
        await runtime.generate(REQUEST.model_copy(update={"top_p": 0.5}))


async def test_it_closes_only_the_runtimes_it_owns() -> None:
    given = [Closing(Capabilities()), Closing(Capabilities())]
    async with Fallback(given):
        pass
    assert [r.closed for r in given] == [0, 0]
    async with Fallback(given, owns=True):
        pass
    assert [r.closed for r in given] == [1, 1]


def test_bad_settings_are_named() -> None:
    with pytest.raises(UserError, match=r"runtimes: Fallback needs at least one runtime"):
        Fallback([])
    one = [ScriptedRuntime([])]
    with pytest.raises(UserError, match=r"failures: must be >= 1 \(got 0\)"):
        Fallback(one, failures=0)
    with pytest.raises(UserError, match=r"attempt_timeout: must be > 0 seconds \(got 0\)"):
        Fallback(one, attempt_timeout=0)
    with pytest.raises(UserError, match=r"retry_wait: must be >= 0 seconds \(got -1\)"):
        Fallback(one, retry_wait=-1)
    with pytest.raises(UserError, match=r"dialects cannot be reconciled"):
        Fallback([Closing(Capabilities(schema_dialect="strict")), *one])


def test_a_probe_that_says_nothing_lets_the_next_request_probe() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failures=1, cooldown=10, clock=clock)
    breaker.failed(breaker.allow() or "pass")
    assert breaker.state == "open" and breaker.allow() is None
    clock.now += 10
    assert breaker.allow() == "probe"
    assert breaker.allow() is None  # one probe at a time
    breaker.released("probe")  # e.g. the caller cancelled it
    assert breaker.allow() == "probe"
    breaker.succeeded("probe")
    assert str(breaker.state) == "closed"


async def test_a_nested_fallback_keeps_the_inner_choice() -> None:
    def down(request: ModelRequest) -> str:
        raise ModelConnectionError("could not reach it", retryable=True)

    inner = Fallback([FunctionRuntime(down), ScriptedRuntime([Generation(response="ok")])])
    outer = Fallback([inner, ScriptedRuntime([])])
    generation = await outer.generate(REQUEST)
    assert generation.runtime == "scripted"


async def test_a_paused_run_keeps_which_runtime_answered() -> None:
    @tool(requires_approval=True)
    def delete(path: str) -> str:
        """Delete a file.

        Args:
            path: The file.
        """
        return f"deleted {path}"

    def down(request: ModelRequest) -> str:
        raise ModelConnectionError("could not reach it", retryable=True)

    backup = ScriptedRuntime([ScriptedRuntime.call("delete", path="a.txt"), "done"])
    agent = Agent(Fallback([FunctionRuntime(down), backup]), tools=[delete])
    paused = await agent.run("Delete a.txt")
    assert paused.stop_reason == "approval"
    assert paused.state is not None
    state = RunState.from_json(paused.state.to_json())
    result = await agent.resume(state, approve=[paused.pending[0].id])
    assert result.output == "done"
    assert result.step_runtimes == {1: "scripted", 2: "scripted"}


async def test_usage_and_cost_are_booked_under_the_model_that_answered() -> None:
    class Named(ScriptedRuntime):
        def __init__(self, model: str, turns: list[Generation | str | Exception]) -> None:
            super().__init__(turns)
            self.model = model

    def usage(prompt: int, completion: int) -> Usage:
        return Usage(
            prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
        )

    down = ModelConnectionError("could not reach it", retryable=True)
    call = ScriptedRuntime.call("clock").model_copy(update={"usage": usage(10, 2)})
    primary = Named("big", [call, down])
    backup = Named("small", [Generation(response="noon", usage=usage(100, 20))])

    def clock() -> str:
        """The time."""
        return "12:00"

    prices = {"big": ModelPrice(1.0, 1.0), "small": ModelPrice(0.5, 0.5)}
    agent = Agent(Fallback([primary, backup], failures=5), tools=[clock], prices=prices)
    result = await agent.run("What time is it?")
    assert result.output == "noon"
    assert result.step_runtimes == {1: "scripted:big", 2: "scripted:small"}
    assert result.usage_by_model == {"big": usage(10, 2), "small": usage(100, 20)}
    assert result.cost == pytest.approx((12 * 1.0 + 120 * 0.5) / 1e6)
    assert result.usage == usage(110, 22)
