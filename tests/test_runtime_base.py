"""The Runtime base: one method to write, one support check, `async with`, profiles, ownership."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from agentkit import (
    Agent,
    Capabilities,
    Message,
    ModelRequest,
    Profile,
    Runtime,
    ScriptedRuntime,
    StreamChunk,
    UnsupportedFeature,
    Usage,
    get_runtime,
)
from agentkit.runtimes import RUNTIMES
from agentkit.wire import GenerationRequest

from support.helpers import add


class Echo(Runtime):
    """Writes only `handle_stream`: says the last message back, word by word."""

    name = "echo"
    capabilities = Capabilities(tools=False)
    closed = 0

    @classmethod
    def from_env(cls, **options: Any) -> Echo:
        return cls()

    async def handle_stream(self, request: ModelRequest) -> AsyncIterator[StreamChunk]:
        for word in request.messages[-1].content.split(" "):
            yield StreamChunk(response=word + " ")
        yield StreamChunk(usage=Usage.of(3, 2), finish_reason="stop")

    async def aclose(self) -> None:
        type(self).closed += 1


async def test_generate_is_derived_from_the_one_method() -> None:
    runtime = Echo()
    generation = await runtime.generate(ModelRequest(messages=[Message.user("hello there")]))
    assert (generation.response, generation.usage.total_tokens) == ("hello there ", 5)
    assert generation.finish_reason == "stop"
    chunks = [c async for c in runtime.stream(GenerationRequest.build(prompt="hi you"))]
    assert "".join(c.response for c in chunks) == "hi you "


async def test_a_field_it_cannot_honour_is_refused_before_it_runs() -> None:
    runtime = Echo()
    tools = [add.definition()]
    request = ModelRequest(messages=[Message.user("2 + 3?")], tools=tools)
    with pytest.raises(UnsupportedFeature, match="tools: not supported by the echo runtime"):
        await runtime.generate(request)
    with pytest.raises(UnsupportedFeature, match="tools: not supported by the echo runtime"):
        runtime.stream(request)  # at once, not at the first chunk


async def test_async_with_closes_the_runtime() -> None:
    before = Echo.closed
    async with Echo() as runtime:
        await runtime.generate(ModelRequest(messages=[Message.user("hi")]))
    assert Echo.closed == before + 1


async def test_an_agent_closes_only_the_runtime_it_made(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(RUNTIMES, "echo", (__name__, "Echo"))
    before = Echo.closed
    handed = Echo()
    async with Agent(handed) as agent:
        assert (await agent.run("hi")).output == "hi "
    assert Echo.closed == before  # it was handed in: its owner closes it
    async with Agent("echo") as agent:
        assert (await agent.run("made by name")).output == "made by name "
    assert Echo.closed == before + 1
    assert isinstance(get_runtime("echo"), Echo)


class Small(ScriptedRuntime):
    """A scripted model that, like the embedded one, needs a forced call and greedy sampling."""

    profile = Profile(tool_choice="required", sampling={"temperature": 0.0, "top_k": 1})


async def test_the_profile_fills_in_what_the_user_left_out() -> None:
    runtime = Small([ScriptedRuntime.call("add", a=2, b=3), "5"])
    result = await Agent(runtime, tools=[add]).run("What is 2 + 3?")
    assert result.output == "5"
    first, second = runtime.requests
    assert (first.tool_choice, first.temperature, first.top_k) == ("required", 0.0, 1)
    assert second.tool_choice == "auto"  # once the tools answered, the model may answer


async def test_the_users_settings_win_over_the_profile() -> None:
    runtime = Small(["hello"])
    await Agent(runtime, tools=[add], tool_choice="auto", temperature=0.7).run("hi")
    (request,) = runtime.requests
    assert (request.tool_choice, request.temperature, request.top_k) == ("auto", 0.7, 1)


async def test_without_tools_a_forced_choice_is_not_asked_for() -> None:
    runtime = Small(["hello"])
    await Agent(runtime).run("hi")
    assert runtime.requests[0].tool_choice == "none"  # no tools to call, none forced


@pytest.mark.model
def test_the_package_docstring_example_calls_the_tool_on_the_embedded_model() -> None:
    pytest.importorskip("llama_cpp", reason="needs the local extra")
    import agentkit

    # The example as the package docstring shows it, run as written.
    assert 'Agent("local", tools=[add]).run_sync("What is 2 + 3?")' in (agentkit.__doc__ or "")
    result = Agent("local", tools=[add]).run_sync("What is 2 + 3?")
    assert [(r.call.name, r.call.arguments, r.output) for r in result.tool_calls][:1] == [
        ("add", {"a": 2, "b": 3}, "5")
    ]
    assert "5" in result.output
