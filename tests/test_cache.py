"""`Cached`: repeated greedy or seeded requests are answered from a store, over real loopback
servers in the Workers AI and OpenAI shapes; streams replay chunk by chunk; hits are marked
and cost nothing; secrets never reach a key or the store."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from pathlib import Path
from typing import Any, cast

import pytest

from agentkit import (
    Agent,
    Cached,
    Capabilities,
    FunctionRuntime,
    Generation,
    MemoryCacheStore,
    ModelPrice,
    ModelRequest,
    OpenAICompatible,
    Profile,
    Runtime,
    ScriptedRuntime,
    SQLiteCacheStore,
    StreamChunk,
    StreamInterrupted,
    UnsupportedFeature,
    Usage,
    UserError,
    WorkersAI,
)
from agentkit.events import RunFinished, TextDelta
from agentkit.runtimes import request_key
from agentkit.wire import GenerationRequest

from support.helpers import add
from support.loopback import LoopbackServer, Reply, sse
from support.tracing import recorded_spans

TOKEN = "cf-token-5ecret-value-9d1e"
KEY = "sk-openai-5ecret-value-77aa"
MODEL = "@cf/meta/llama-3.1-8b-instruct"
ADD = add.definition()


def workers_ai(service: LoopbackServer, token: str = TOKEN) -> WorkersAI:
    return WorkersAI("acc", token, base_url=service.url + "/client/v4")


def openai(service: LoopbackServer) -> OpenAICompatible:
    return OpenAICompatible(service.url + "/v1", KEY, model="qwen2.5")


SHAPES: dict[str, Callable[[LoopbackServer], Runtime]] = {
    "workers-ai": workers_ai,
    "openai": openai,
}


def greedy(text: str = "What is 2 + 3?", **fields: Any) -> ModelRequest:
    return ModelRequest.model_validate(
        {"messages": [{"role": "user", "content": text}], "temperature": 0, **fields}
    )


def texts(chunks: list[StreamChunk]) -> list[tuple[str, list[tuple[str, str, Any]], Any]]:
    """What a reader of a stream sees of each chunk: text, calls, finish reason."""
    return [
        (c.response, [(t.id, t.name, t.arguments) for t in c.tool_calls], c.finish_reason)
        for c in chunks
    ]


# -- whole agent runs over real HTTP ----------------------------------------------------------


@pytest.mark.parametrize("shape", sorted(SHAPES))
async def test_a_second_identical_greedy_run_never_reaches_the_server(
    service: LoopbackServer, shape: str, tmp_path: Path
) -> None:
    inner = SHAPES[shape](service)
    async with Cached(inner, tmp_path / "cache.db", owns=True) as runtime:
        agent = Agent(runtime, tools=[add], temperature=0)
        first = await agent.run("What is 2 + 3?")
        assert len(service.requests) == 2  # a call, then the answer
        second = await agent.run("What is 2 + 3?")
    assert len(service.requests) == 2  # counted at the server: nothing more came
    assert second.output == first.output == "The result is 5."
    assert [(r.call.id, r.output) for r in second.tool_calls] == [
        (r.call.id, r.output) for r in first.tool_calls
    ]
    # The first run paid for its tokens; the second was answered twice from the cache.
    assert (first.usage.total_tokens, first.usage.cache_hits) == (52, 0)
    assert (second.usage.total_tokens, second.usage.cache_hits) == (0, 2)


@pytest.mark.parametrize("shape", sorted(SHAPES))
async def test_a_cached_stream_replays_the_same_chunks_in_order(
    service: LoopbackServer, shape: str
) -> None:
    async with Cached(SHAPES[shape](service), owns=True) as runtime:
        request = greedy()  # answered in words, a chunk each
        first = [c async for c in runtime.stream(request)]
        again = [c async for c in runtime.stream(request)]
        whole = await runtime.generate(request)
    assert len(service.requests) == 1
    assert len(first) > 1
    assert texts(again) == texts(first)
    assert not any(c.cached for c in first) and all(c.cached for c in again)
    # A later `generate` is the stream's chunks joined.
    joined = StreamChunk.join(first)
    assert (whole.response, whole.tool_calls, whole.finish_reason) == (
        joined.response,
        joined.tool_calls,
        joined.finish_reason,
    )
    assert whole.cached and whole.usage == Usage(cache_hits=1)


async def test_a_streamed_agent_run_replays_its_text_deltas(service: LoopbackServer) -> None:
    async with Cached(workers_ai(service), owns=True) as runtime:
        agent = Agent(runtime, tools=[add], temperature=0)

        async def deltas() -> tuple[list[str], Any]:
            seen: list[str] = []
            async with aclosing(agent.stream("What is 2 + 3?")) as events:
                async for event in events:
                    if isinstance(event, TextDelta):
                        seen.append(event.text)
                    elif isinstance(event, RunFinished):
                        result = event.result
            return seen, result

        first, _ = await deltas()
        again, result = await deltas()
    assert len(service.requests) == 2
    assert again == first == ["The", " result", " is", " 5."]
    assert result.usage.cache_hits == 2


async def test_a_stream_cut_midway_is_not_stored(server: LoopbackServer) -> None:
    server.script(
        Reply(sse=sse({"response": "The capital"}, done=False)),
        Reply(sse=sse({"response": "Paris"}, {"response": "", "usage": {"prompt_tokens": 1}})),
    )
    async with Cached(workers_ai(server), owns=True) as runtime:
        request = greedy("capital?")
        with pytest.raises(StreamInterrupted):
            async for _ in runtime.stream(request):
                pass
        answer = [c.response async for c in runtime.stream(request)]
        replayed = [c.response async for c in runtime.stream(request)]
    assert len(server.requests) == 2  # the cut one was asked again, the whole one was kept
    assert answer == replayed
    assert answer[0] == "Paris"


async def test_a_stream_left_early_is_not_stored() -> None:
    inner = ScriptedRuntime(["one two three", "one two three"])
    runtime = Cached(inner)
    stream = cast("AsyncGenerator[StreamChunk, None]", runtime.stream(greedy()))
    async with aclosing(stream):
        async for _ in stream:
            break
    assert [c.response async for c in runtime.stream(greedy())] == ["one", " two", " three", ""]
    assert inner.streamed == [True, True]


async def test_a_generation_answers_a_later_stream_as_one_chunk() -> None:
    inner = ScriptedRuntime([ScriptedRuntime.call("add", a=2, b=3)])
    runtime = Cached(inner)
    made = await runtime.generate(greedy())
    chunks = [c async for c in runtime.stream(greedy())]
    assert len(chunks) == 1 and chunks[0].cached
    assert chunks[0].tool_calls == made.tool_calls
    assert chunks[0].finish_reason == "tool_calls"


# -- what is cached -----------------------------------------------------------------------------


async def test_sampled_requests_are_not_cached_unless_told_seeded_ones_are() -> None:
    inner = FunctionRuntime(lambda request: f"answer {len(inner.requests)}")
    runtime = Cached(inner)
    sampled = greedy(temperature=0.7)
    seeded = greedy(temperature=0.7, seed=7)
    assert [(await runtime.generate(sampled)).response for _ in range(2)] == [
        "answer 1",
        "answer 2",
    ]
    assert [(await runtime.generate(seeded)).response for _ in range(2)] == [
        "answer 3",
        "answer 3",
    ]
    told = Cached(inner, sampled=True)
    assert [(await told.generate(sampled)).response for _ in range(2)] == ["answer 4", "answer 4"]


@pytest.mark.parametrize(
    "change",
    [
        {"messages": [{"role": "user", "content": "What is 2 + 4?"}]},
        {"tools": [ADD]},
        {"tools": [ADD], "tool_choice": "required"},
        {"response_format": {"type": "json_object"}},
        {"max_tokens": 64},
        {"top_p": 0.5},
        {"seed": 3},
        {"lora": "adapter"},
        {"parallel_tool_calls": False},
        {"messages": [], "raw_prompt": "What is 2 + 3?"},
    ],
)
def test_every_field_of_the_request_is_part_of_the_key(change: dict[str, Any]) -> None:
    runtime = ScriptedRuntime()
    base = greedy()
    changed = ModelRequest.model_validate({**base.model_dump(), **change})
    assert request_key(changed, runtime) != request_key(base, runtime)
    assert request_key(base.model_copy(), runtime) == request_key(base, runtime)


def test_the_runtime_name_model_and_namespace_are_part_of_the_key() -> None:
    request = greedy()
    keys = {
        request_key(request, WorkersAI("acc", TOKEN)),
        request_key(request, WorkersAI("acc", TOKEN, model="@cf/meta/llama-3.2-3b-instruct")),
        request_key(request, OpenAICompatible("http://x/v1", model=MODEL)),
        request_key(request, WorkersAI("acc", TOKEN), namespace="v2"),
    }
    assert len(keys) == 4
    # The token is not: another token is the same model answering the same request.
    assert request_key(request, WorkersAI("acc", "another-token")) in keys


async def test_a_failed_call_is_not_stored() -> None:
    inner = ScriptedRuntime([UserError("bad"), "fine"])
    runtime = Cached(inner)
    with pytest.raises(UserError):
        await runtime.generate(greedy())
    assert (await runtime.generate(greedy())).response == "fine"
    assert (await runtime.generate(greedy())).response == "fine"
    inner.assert_complete()


async def test_an_entry_that_cannot_be_read_is_a_miss_and_is_stored_again() -> None:
    store = MemoryCacheStore()
    inner = ScriptedRuntime(["fresh"])
    runtime = Cached(inner, store)
    await store.set(runtime.key(greedy()), b"{not json")
    assert (await runtime.generate(greedy())).response == "fresh"
    assert (await runtime.generate(greedy())).cached


# -- hits are marked: on the generation, in the run's usage and cost, on the trace --------------


async def test_hits_cost_nothing_and_show_in_the_run_result() -> None:
    usage = Usage.of(100, 20)
    inner = ScriptedRuntime(
        [ScriptedRuntime.call("add", a=2, b=3), ScriptedRuntime.answer("5", usage)]
    )
    agent = Agent(Cached(inner), tools=[add], temperature=0, prices={"scripted": ModelPrice(1, 2)})
    first = await agent.run("What is 2 + 3?")
    second = await agent.run("What is 2 + 3?")
    assert first.cost == pytest.approx(140 / 1e6)
    assert second.cost == 0
    assert second.usage_by_model == {"scripted": Usage(cache_hits=2)}
    assert first.usage_by_model["scripted"].cache_hits == 0
    # The hit count stays off the wire.
    assert "cache_hits" not in second.usage.to_wire()


async def test_a_hit_is_marked_on_the_chat_span() -> None:
    inner = ScriptedRuntime(["5"])
    agent = Agent(Cached(inner), temperature=0)
    with recorded_spans() as spans:
        await agent.run("What is 2 + 3?")
        await agent.run("What is 2 + 3?")
        async with aclosing(agent.stream("What is 2 + 3?")) as events:
            async for _ in events:
                pass
    chats = [s for s in spans.get_finished_spans() if s.name.startswith("chat")]
    assert [(s.attributes or {}).get("agentkit.cache.hit") for s in chats] == [None, True, True]
    assert chats[0].name == chats[1].name == "chat scripted"


# -- the Runtime contract -----------------------------------------------------------------------


class Owned(ScriptedRuntime):
    name = "owned"
    profile = Profile(tool_choice="required", sampling={"temperature": 0})
    slots = 3
    model = "tiny-1"

    def __init__(self, *turns: str) -> None:
        super().__init__(turns or ["ok"] * 3, capabilities=Capabilities(tools=False))
        self.closed = 0

    async def aclose(self) -> None:
        self.closed += 1


async def test_capabilities_profile_slots_and_model_pass_through() -> None:
    inner = Owned("ok", "wire")
    runtime = Cached(inner)
    assert runtime.capabilities is inner.capabilities
    assert (runtime.profile, runtime.slots, runtime.name, runtime.model) == (
        inner.profile,
        3,
        "owned",
        "tiny-1",
    )
    with pytest.raises(UnsupportedFeature, match="owned"):
        await runtime.generate(greedy(tools=[ADD]))
    agent = Agent(runtime)  # takes the wrapped runtime's profile: greedy, so cached
    assert (await agent.run("hi")).output == (await agent.run("hi")).output == "ok"
    wire = GenerationRequest.build(prompt="hi", temperature=0)
    assert [(await runtime.generate(wire)).response for _ in range(2)] == ["wire", "wire"]
    inner.assert_complete()


async def test_it_closes_only_what_it_owns(tmp_path: Path) -> None:
    inner = Owned()
    store = MemoryCacheStore()
    async with Cached(inner, store) as runtime:
        await runtime.generate(greedy())
    assert inner.closed == 0 and len(store) == 1  # neither was made here
    made = Cached(inner)
    await made.generate(greedy())
    assert isinstance(made.store, MemoryCacheStore) and len(made.store) == 1
    await made.aclose()
    assert len(made.store) == 0 and inner.closed == 0  # its own store closed, not the runtime
    async with Cached(inner, tmp_path / "c.db", owns=True) as owning:
        assert isinstance(owning.store, SQLiteCacheStore)
    assert inner.closed == 1


def test_bad_arguments_are_named() -> None:
    with pytest.raises(UserError, match=r"Cached: runtime must be a Runtime \(got str\)"):
        Cached("workers-ai")  # type: ignore[arg-type]
    with pytest.raises(UserError, match=r"store must be a CacheStore, a path or None \(got int\)"):
        Cached(ScriptedRuntime(), 3)  # type: ignore[arg-type]


# -- secrets ------------------------------------------------------------------------------------


def _files(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file())


@pytest.mark.parametrize("shape", sorted(SHAPES))
async def test_the_token_never_reaches_the_store(
    service: LoopbackServer, shape: str, tmp_path: Path
) -> None:
    folder = tmp_path / "cache"
    store = SQLiteCacheStore(folder / "responses.db")
    inner = SHAPES[shape](service)
    secret = (TOKEN if shape == "workers-ai" else KEY).encode()
    async with Cached(inner, store, owns=True) as runtime:
        agent = Agent(runtime, tools=[add], temperature=0)
        await agent.run("What is 2 + 3?")
        streamed = [c async for c in runtime.stream(greedy("again", tools=[ADD]))]
        assert streamed
        assert service.requests[-1].headers["authorization"] == "Bearer " + secret.decode()
        written = _files(folder)  # the database and its write-ahead log, as they are now
        assert store.count()[0] == 3
        assert secret not in written and b"5ecret" not in written
        assert b"The result is 5." in written  # the answers are there, in the clear
    await store.aclose()
    assert b"5ecret" not in _files(folder)


async def test_a_generation_is_stored_whole() -> None:
    call = ScriptedRuntime.call("add", a=2, b=3)
    call.tool_calls[0].raw_arguments = '{"a": 2, "b":'  # not JSON: the text must come back
    inner = ScriptedRuntime([Generation(response="x", tool_calls=call.tool_calls)])
    runtime = Cached(inner)
    await runtime.generate(greedy())
    hit = await runtime.generate(greedy())
    assert hit.tool_calls[0].raw_arguments == '{"a": 2, "b":'
    assert hit.tool_calls[0].id == call.tool_calls[0].id
