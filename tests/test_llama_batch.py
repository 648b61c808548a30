"""Continuous batching in the local runtime, on the real embedded model: requests generated
together give what each gives alone, and share the model without waiting for one another."""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
from collections.abc import AsyncGenerator, Callable, Iterator
from contextlib import aclosing
from pathlib import Path

import anyio
import jsonschema
import llama_cpp
import pytest

from agentkit import (
    Agent,
    FunctionRuntime,
    Generation,
    MaxStepsExceeded,
    Message,
    ModelRequest,
    StreamChunk,
    tool,
)
from agentkit.runtimes.llama_cpp import LlamaCpp
from agentkit.server.background import BackgroundServer
from agentkit.wire import GenerationRequest

from support.helpers import openai_sdk, write_lora

SUBJECTS = ("cat", "ship", "robot", "river", "king", "garden")


def story(subject: str) -> list[Message]:
    return [Message.user(f"Write a long story about a {subject}.")]


@pytest.fixture(scope="module")
def lora_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_lora(tmp_path_factory.mktemp("lora") / "noise.gguf")


@pytest.fixture(scope="module")
def batched(model_path: Path, lora_file: Path) -> Iterator[LlamaCpp]:
    local = LlamaCpp(model_path, parallel=4, loras={"noise": lora_file})
    yield local
    anyio.run(local.aclose)


def widest(runtime: LlamaCpp) -> int:
    """The most sequences one decode step has served since the last call."""
    engine = runtime._engine
    assert engine is not None
    widest, engine.widest = engine.widest, 0
    return widest


def graphs_reused(runtime: LlamaCpp) -> int:
    """How many of llama.cpp's passes so far ran on the graph of the pass before: a pass over
    the same sequences in the same shape as the last one."""
    engine = runtime._engine
    assert engine is not None
    return int(llama_cpp.llama_perf_context(engine.ctx).n_reused)


def hand_out_slots(runtime: LlamaCpp, order: tuple[int, ...]) -> None:
    """Make `order` the slots' order from least to most recently used."""
    engine = runtime._engine
    assert engine is not None
    for rank, seq in enumerate(order):
        engine.slots[seq].used = float(rank)


async def streamed(runtime: LlamaCpp, request: GenerationRequest) -> Generation:
    chunks = [chunk async for chunk in runtime.stream(request)]
    return StreamChunk.join(chunks)


async def at_once(
    runtime: LlamaCpp, requests: list[GenerationRequest], *, stream: bool = False
) -> list[Generation]:
    results: list[Generation | None] = [None] * len(requests)

    async def one(i: int) -> None:
        request = requests[i]
        results[i] = await (streamed(runtime, request) if stream else runtime.generate(request))

    async with anyio.create_task_group() as tg:
        for i in range(len(requests)):
            tg.start_soon(one, i)
    assert all(result is not None for result in results)
    return [result for result in results if result is not None]


def outputs(generations: list[Generation]) -> list[tuple[str, int, str | None]]:
    return [(g.response, g.usage.completion_tokens, g.finish_reason) for g in generations]


@pytest.mark.parametrize("stream", [False, True], ids=["generate", "stream"])
async def test_greedy_requests_at_once_give_exactly_what_each_gives_alone(
    batched: LlamaCpp, stream: bool
) -> None:
    # Six requests for four slots: two wait for a slot and join the batch as others leave.
    requests = [
        GenerationRequest.build(messages=story(subject), temperature=0, max_tokens=limit)
        for subject, limit in zip(SUBJECTS, (40, 12, 48, 24, 36, 20), strict=True)
    ]
    alone = [await batched.generate(request) for request in requests]
    assert widest(batched) == 1
    together = await at_once(batched, requests, stream=stream)
    assert widest(batched) == 4
    assert outputs(together) == outputs(alone)
    assert len({g.response for g in alone}) == len(SUBJECTS)


async def test_a_seed_gives_the_same_tokens_in_a_batch_as_alone(batched: LlamaCpp) -> None:
    requests = [
        GenerationRequest.build(
            messages=story("lighthouse"), temperature=0.9, seed=seed, max_tokens=32
        )
        for seed in (7, 8, 9, 10)
    ]
    alone = [await batched.generate(request) for request in requests]
    together = await at_once(batched, requests)
    assert widest(batched) == 4
    assert outputs(together) == outputs(alone)
    # Same prompt, other seeds: the seeds, not the prompts, make the answers differ.
    assert len({g.response for g in alone}) >= 3


@pytest.mark.parametrize(
    ("order", "subjects"),
    [((3, 1, 2, 0), ("violin", "glacier", "owl", "bridge")), ((0, 2, 3, 1), ("meadow", "tower"))],
    ids=["four-in-reverse", "two-apart"],
)
async def test_requests_stepping_together_take_one_pass_a_step(
    batched: LlamaCpp, order: tuple[int, ...], subjects: tuple[str, ...]
) -> None:
    """Each step of a steady batch is one llama.cpp pass, on the same graph as the step before:
    four requests given the slots from last to first, or two given slots apart from each
    other if they went by least recent use alone (with a cache buffer per slot, llama.cpp
    computes consecutive sequence ids in one pass and splits a step wherever they are not)."""
    # Every slot holds a story, so each new prompt shares as much with one slot as another.
    await at_once(
        batched, [GenerationRequest.build(messages=story(s), max_tokens=4) for s in SUBJECTS[:4]]
    )
    widest(batched)
    hand_out_slots(batched, order)
    requests = [
        GenerationRequest.build(messages=story(subject), temperature=0, max_tokens=40)
        for subject in subjects
    ]
    before = graphs_reused(batched)
    together = await at_once(batched, requests)
    assert widest(batched) == len(subjects)
    assert all(g.usage.completion_tokens == 40 for g in together)
    # 39 steps of generation after the prompts: all but a few (requests joining, the first
    # step after the prompts) run on the graph of the step before.
    assert graphs_reused(batched) - before >= 30


async def test_sampling_options_stay_with_their_own_request(batched: LlamaCpp) -> None:
    base = {"messages": story("baker"), "max_tokens": 32}
    requests = [
        GenerationRequest.build(**base, temperature=0),
        GenerationRequest.build(**base, temperature=0, repetition_penalty=2.0),
        GenerationRequest.build(**base, temperature=1.2, top_k=50, top_p=0.9, seed=3),
        GenerationRequest.build(**base, temperature=0, presence_penalty=2.0, frequency_penalty=1),
    ]
    alone = [await batched.generate(request) for request in requests]
    together = await at_once(batched, requests)
    assert outputs(together) == outputs(alone)
    assert len({g.response for g in alone}) == len(requests)


async def test_a_client_leaving_mid_stream_frees_its_slot_and_disturbs_no_one(
    model_path: Path,
) -> None:
    two = LlamaCpp(model_path, parallel=2)
    steady = GenerationRequest.build(messages=story("fox"), temperature=0, max_tokens=160)
    endless = GenerationRequest.build(messages=story("moon"), temperature=0, max_tokens=2000)
    short = GenerationRequest.build(messages=story("owl"), temperature=0, max_tokens=8)
    expected = await two.generate(steady)
    finished: list[str] = []
    result: dict[str, Generation] = {}

    async def run_steady() -> None:
        result["steady"] = await streamed(two, steady)
        finished.append("steady")

    async def leave_early() -> None:
        stream = two.stream(endless)
        assert isinstance(stream, AsyncGenerator)  # what closing it stops
        async with aclosing(stream) as chunks:
            seen = 0
            async for _ in chunks:
                seen += 1
                if seen == 3:
                    break
        # Both slots were taken; the one just left is free for the next request.
        result["short"] = await two.generate(short)
        finished.append("short")

    with anyio.fail_after(120):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run_steady)
            tg.start_soon(leave_early)
    await two.aclose()
    # The short request did not wait for the 2000-token one, nor for the steady one to end.
    assert finished == ["short", "steady"]
    assert outputs([result["steady"]]) == outputs([expected])
    assert result["short"].usage.completion_tokens == 8


@tool
def calculate(expression: str) -> str:
    """Evaluate an arithmetic expression.

    Args:
        expression: The expression, e.g. "2 + 2".
    """
    return expression


@tool
def get_weather(city: str, unit: str = "celsius") -> str:
    """Get the current weather in a city.

    Args:
        city: The city's name.
        unit: "celsius" or "fahrenheit".
    """
    return city


TOOLS = [calculate, get_weather]
DEFINITIONS = [t.definition("inline") for t in TOOLS]
PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 40},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
    },
    "required": ["name", "age"],
    "additionalProperties": False,
}


async def test_grammar_held_calls_and_answers_stay_valid_in_a_batch(batched: LlamaCpp) -> None:
    def call(question: str, choice: str = "required") -> GenerationRequest:
        return GenerationRequest.build(
            messages=[Message.user(question)],
            tools=DEFINITIONS,
            tool_choice=choice,
            temperature=0,
            max_tokens=80,
        )

    requests = [
        call("What is 37 * 41?"),
        call("What's the weather like in Paris?"),
        call("How much is 12 divided by 4?", "calculate"),
        GenerationRequest.build(
            messages=[Message.user("Make up a person: their name and age.")],
            response_format={"type": "json_schema", "json_schema": {"schema": PERSON}},
            temperature=0,
            max_tokens=60,
        ),
        call("Tell me a joke about the weather.", "auto"),
    ]
    alone = [await batched.generate(request) for request in requests]
    together = await at_once(batched, requests)
    assert widest(batched) == 4
    assert outputs(together) == outputs(alone)

    def calls(generations: list[Generation]) -> list[list[tuple[str, object]]]:
        return [[(c.name, c.arguments) for c in g.tool_calls] for g in generations]

    assert calls(together) == calls(alone)
    for generation, expected in zip(
        together, ("calculate", "get_weather", "calculate"), strict=False
    ):
        assert [c.name for c in generation.tool_calls] == [expected]
        by_name = {t.name: t for t in TOOLS}
        for made in generation.tool_calls:
            by_name[made.name].validate(made.arguments)
    jsonschema.validate(json.loads(together[3].response), PERSON)


async def test_parallel_agent_runs_each_evaluate_only_their_new_tokens(batched: LlamaCpp) -> None:
    """Three 6-step runs at once: each step of each run reuses its own slot's cache."""
    steps = 6

    async def run_steps(run: int) -> list[Generation]:
        readings = itertools.count(100 + run, 7)
        generations: list[Generation] = []

        @tool
        def read_sensor(sensor: str) -> str:
            """Read a sensor's current value.

            Args:
                sensor: The sensor's name, e.g. "temperature".
            """
            return f"{sensor}: {next(readings)}"

        async def calls_then_answer(request: ModelRequest) -> Generation:
            choice = "required" if len(generations) < steps - 1 else "auto"
            generation = await batched.generate(request.model_copy(update={"tool_choice": choice}))
            generations.append(generation)
            return generation

        agent = Agent(
            FunctionRuntime(calls_then_answer),
            tools=[read_sensor],
            temperature=0,
            repeat_limit=20,
            reset_tool_choice=False,
            max_steps=steps,
        )
        sensor = ("temperature", "humidity", "pressure")[run]
        with contextlib.suppress(MaxStepsExceeded):
            await agent.run(f"Read the {sensor} sensor six times and tell me the readings.")
        return generations

    runs: list[list[Generation]] = [[], [], []]

    async def run(i: int) -> None:
        runs[i] = await run_steps(i)

    async with anyio.create_task_group() as tg:
        for i in range(3):
            tg.start_soon(run, i)
    assert widest(batched) >= 2
    for generations in runs:
        assert len(generations) == steps
        for before, after in itertools.pairwise(generations):
            # Each step reuses all the last one saw (its prompt and answer) from its own slot,
            # so it evaluates only the turns the agent appended: evaluated / new = 1.00.
            seen = before.usage.prompt_tokens + before.usage.completion_tokens
            assert after.usage.cached_prompt_tokens == seen
            assert after.usage.prompt_tokens > seen


async def test_requests_for_other_adapters_take_turns_and_none_waits_for_the_rest(
    batched: LlamaCpp,
) -> None:
    plain = [
        GenerationRequest.build(messages=story(s), temperature=0, max_tokens=24)
        for s in SUBJECTS[:2]
    ]
    adapted = [r.model_copy(update={"lora": "noise"}) for r in plain]
    alone = [await batched.generate(request) for request in plain + adapted]
    together = await at_once(batched, plain + adapted)
    # The plain requests are exact; the adapter's own (f32) products round by batch width, and
    # this noise adapter leaves near ties everywhere, so its answers are checked for the adapter.
    assert outputs(together[:2]) == outputs(alone[:2])
    for i in (0, 1):
        assert together[i + 2].response != together[i].response
        assert together[i + 2].usage.completion_tokens == 24
    # A long generation without the adapter does not hold back one with it.
    long = GenerationRequest.build(messages=story("dragon"), temperature=0, max_tokens=400)
    finished: list[str] = []

    async def go(name: str, request: GenerationRequest) -> None:
        await batched.generate(request)
        finished.append(name)

    async with anyio.create_task_group() as tg:
        tg.start_soon(go, "long", long)
        await anyio.sleep(0.5)
        tg.start_soon(go, "adapted", adapted[0])
    assert finished == ["adapted", "long"]


def test_the_openai_sdk_streams_four_answers_at_once_from_serve(
    batched: LlamaCpp, serve: Callable[..., BackgroundServer]
) -> None:
    server = serve(batched, api_token="batch-token")
    client = openai_sdk(server.url, "batch-token")

    def ask(subject: str) -> str:
        stream = client.chat.completions.create(
            model="@cf/meta/llama-3.1-8b-instruct",
            messages=[{"role": "user", "content": f"Write a long story about a {subject}."}],
            temperature=0,
            max_tokens=32,
            stream=True,
        )
        return "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)

    alone = [ask(subject) for subject in SUBJECTS[:4]]
    widest(batched)
    together: dict[str, str] = {}

    def put(subject: str) -> None:
        together[subject] = ask(subject)

    threads = [threading.Thread(target=put, args=(s,)) for s in SUBJECTS[:4]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert [together[s] for s in SUBJECTS[:4]] == alone
    assert widest(batched) >= 2


async def test_with_a_unified_cache_a_shared_beginning_is_copied_not_evaluated(
    model_path: Path,
) -> None:
    def ask(question: str) -> GenerationRequest:
        return GenerationRequest.build(
            messages=[Message.system("You answer with one tool call."), Message.user(question)],
            tools=DEFINITIONS,
            tool_choice="required",
            temperature=0,
            max_tokens=60,
        )

    first, second, third = ask("What is 2 + 2?"), ask("Weather in Paris?"), ask("Weather in Rome?")
    for unified in (False, True):
        local = LlamaCpp(model_path, parallel=2, kv_unified=unified)
        await local.generate(first)  # one slot now holds the system prompt and the tools
        together = await at_once(local, [second, third])
        await local.aclose()
        cached = sorted(g.usage.cached_prompt_tokens or 0 for g in together)
        prompt = together[0].usage.prompt_tokens
        # One request continues in the slot that holds the beginning; the other is in the
        # empty slot, and gets the beginning copied only when the cache is unified.
        assert cached[1] > prompt / 2
        assert (cached[0] > prompt / 2) is unified
        for generation in together:
            assert [c.name for c in generation.tool_calls] == ["get_weather"]
