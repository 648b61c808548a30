"""The local runtime on the real embedded model (SmolLM2-135M-Instruct): no mocks."""

from __future__ import annotations

import sys
from collections.abc import AsyncGenerator, Iterator
from contextlib import aclosing
from pathlib import Path
from typing import Any, Literal

import anyio
import pytest

from agentkit import (
    Agent,
    ConfigurationError,
    FunctionRuntime,
    Generation,
    Message,
    ModelRequest,
    RequestValidationError,
    ToolCall,
    UnsupportedFeature,
    tool,
)
from agentkit.runtimes.llama_cpp import LlamaCpp
from agentkit.wire import GenerationRequest

from support.helpers import write_lora

POEM = [{"role": "user", "content": "Write a short poem about the sea."}]


@pytest.fixture(scope="module")
def lora_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_lora(tmp_path_factory.mktemp("lora") / "noise.gguf")


@pytest.fixture(scope="module")
def runtime(model_path: Path, lora_file: Path) -> Iterator[LlamaCpp]:
    # One model for the module: it holds no event loop, so every test's loop can use it.
    local = LlamaCpp(model_path, loras={"noise": lora_file})
    yield local
    anyio.run(local.aclose)


async def answer(runtime: LlamaCpp, **fields: Any) -> str:
    fields.setdefault("messages", POEM)
    fields.setdefault("max_tokens", 24)
    generation = await runtime.generate(GenerationRequest.build(**fields))
    return generation.response


async def test_greedy_answer_is_text_with_real_token_counts(runtime: LlamaCpp) -> None:
    request = GenerationRequest.build(messages=POEM, temperature=0, max_tokens=16)
    generation = await runtime.generate(request)
    assert generation.response.strip()
    usage = generation.usage
    assert usage.completion_tokens == 16
    assert generation.finish_reason == "length"
    # The rendered ChatML prompt: default system prompt, the user turn, the assistant header.
    assert 25 < usage.prompt_tokens < 60
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


async def test_same_seed_same_output_other_seed_other_output(runtime: LlamaCpp) -> None:
    first = await answer(runtime, temperature=1.0, seed=11)
    again = await answer(runtime, temperature=1.0, seed=11)
    other = await answer(runtime, temperature=1.0, seed=12)
    assert first == again
    assert other != first


async def test_stream_joined_equals_the_whole_answer(runtime: LlamaCpp) -> None:
    request = GenerationRequest.build(messages=POEM, temperature=0.8, seed=5, max_tokens=40)
    chunks = [chunk async for chunk in runtime.stream(request)]
    whole = await runtime.generate(request)
    texts = [c.response for c in chunks if c.response]
    assert len(texts) > 5  # streamed as it was generated, not in one piece at the end
    assert "".join(texts) == whole.response
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


async def test_raw_prompt_goes_to_the_model_as_is(runtime: LlamaCpp) -> None:
    templated = await answer(runtime, temperature=0)
    by_hand = (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
        "Face<|im_end|>\n<|im_start|>user\nWrite a short poem about the sea.<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    raw = await answer(runtime, messages=None, prompt=by_hand, raw=True, temperature=0)
    assert raw == templated
    # Without the template the same words are continued as plain text, not answered.
    plain = await answer(
        runtime, messages=None, prompt="Write a short poem about the sea.", raw=True, temperature=0
    )
    assert plain != templated


async def test_lora_changes_the_output_and_unloading_restores_it(runtime: LlamaCpp) -> None:
    base = await answer(runtime, temperature=0)
    adapted = await answer(runtime, temperature=0, lora="noise")
    assert adapted != base
    assert await answer(runtime, temperature=0) == base


async def test_unknown_lora_names_the_known_ones(runtime: LlamaCpp) -> None:
    with pytest.raises(RequestValidationError, match=r"lora: unknown adapter 'pirate'.*noise"):
        await answer(runtime, lora="pirate")


def test_missing_lora_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"loras\['x'\]: no such file"):
        LlamaCpp(loras={"x": tmp_path / "missing.gguf"})


async def test_penalties_and_top_k_change_the_output(runtime: LlamaCpp) -> None:
    base = await answer(runtime, temperature=0, max_tokens=40)
    for field in ("repetition_penalty", "frequency_penalty", "presence_penalty"):
        assert await answer(runtime, temperature=0, max_tokens=40, **{field: 2.0}) != base, field
    sampled = dict(temperature=1.5, seed=3, max_tokens=40)
    assert await answer(runtime, top_k=1, **sampled) == base  # top_k=1 is greedy
    assert await answer(runtime, top_k=50, **sampled) != base
    assert await answer(runtime, top_p=0.01, **sampled) == base  # only the likeliest token left


async def test_max_tokens_is_respected(runtime: LlamaCpp) -> None:
    for limit in (1, 7):
        request = GenerationRequest.build(messages=POEM, temperature=0, max_tokens=limit)
        generation = await runtime.generate(request)
        assert generation.usage.completion_tokens == limit
        assert generation.finish_reason == "length"


async def test_images_and_code_strings_are_refused_clearly(runtime: LlamaCpp) -> None:
    with pytest.raises(UnsupportedFeature, match=r"image: .*reads text only"):
        await answer(runtime, image=[1, 2, 3])
    with pytest.raises(UnsupportedFeature, match=r"functions: .*does not execute code"):
        await answer(runtime, functions=[{"name": "f", "code": "print(1)"}])


async def test_concurrent_requests_queue_and_get_their_own_answers(runtime: LlamaCpp) -> None:
    conversations = [
        [{"role": "user", "content": f"Name a {kind}."}] for kind in ("color", "fruit")
    ]
    alone = [await answer(runtime, messages=m, temperature=0) for m in conversations]
    together = [""] * len(conversations)

    async def one(i: int) -> None:
        together[i] = await answer(runtime, messages=conversations[i], temperature=0)

    async with anyio.create_task_group() as tg:
        for i in range(len(conversations)):
            tg.start_soon(one, i)
    assert together == alone
    assert alone[0] != alone[1]


async def test_leaving_a_stream_early_stops_the_generation(runtime: LlamaCpp) -> None:
    request = GenerationRequest.build(messages=POEM, temperature=0, max_tokens=2000)
    with anyio.fail_after(30):
        stream = runtime.stream(request)
        assert isinstance(stream, AsyncGenerator)  # what closing it stops
        async with aclosing(stream) as chunks:
            async for _ in chunks:
                break
        # The model is free again at once: a 2000-token generation did not run to its end.
        with anyio.fail_after(10):
            assert await answer(runtime, max_tokens=4, temperature=0)


async def test_cancelling_a_generation_frees_the_model(runtime: LlamaCpp) -> None:
    request = GenerationRequest.build(messages=POEM, temperature=0, max_tokens=2000)
    with anyio.move_on_after(0.3):
        await runtime.generate(request)
    with anyio.fail_after(10):
        assert await answer(runtime, max_tokens=4, temperature=0)


async def test_a_closed_runtime_loads_again_with_nothing_carried_over(
    model_path: Path, lora_file: Path
) -> None:
    local = LlamaCpp(model_path, loras={"noise": lora_file})
    base = await answer(local, temperature=0)
    adapted = await answer(local, temperature=0, lora="noise")
    assert adapted != base
    await local.aclose()
    await local.aclose()  # idempotent
    # Loaded afresh, the adapter is applied again when asked for, and only then.
    assert await answer(local, temperature=0, lora="noise") == adapted
    assert await answer(local, temperature=0) == base
    await local.aclose()


async def test_a_prompt_longer_than_the_context_is_a_clear_error(model_path: Path) -> None:
    small = LlamaCpp(model_path, n_ctx=64)
    request = GenerationRequest.build(messages=[{"role": "user", "content": "word " * 100}])
    with pytest.raises(
        RequestValidationError,
        match=r"messages: the prompt is \d+ tokens, more "
        r"than the context of 64 tokens holds",
    ):
        await small.generate(request)
    await small.aclose()


def test_embedded_model_is_found_through_package_metadata(model_path: Path) -> None:
    assert model_path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert model_path.stat().st_size > 50 * 2**20
    assert LlamaCpp().model_path == model_path


def test_a_missing_model_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="model_path: no such file"):
        LlamaCpp(tmp_path / "nope.gguf")


def test_chat_format_comes_from_the_model_metadata(runtime: LlamaCpp) -> None:
    assert runtime.chat_format.name == "chatml"
    assert LlamaCpp(chat_format="llama3")._format_name == "llama3"


@tool
def unused(x: int) -> int:
    """Return x.

    Args:
        x: A number.
    """
    return x


def test_agent_accepts_the_local_runtime_by_name() -> None:
    agent = Agent("local", tools=[unused])
    assert isinstance(agent.runtime, LlamaCpp)


# -- tool calls ---------------------------------------------------------------------------


@tool
def calculate(expression: str) -> str:
    """Evaluate an arithmetic expression.

    Args:
        expression: The expression, e.g. "2 * (3 + 4)".
    """
    return expression


@tool
def get_weather(city: str, unit: Literal["celsius", "fahrenheit"] = "celsius") -> str:
    """Get the current weather in a city.

    Args:
        city: The city's name.
        unit: The temperature unit.
    """
    return f"22 degrees {unit} in {city}"


@tool
def book_table(restaurant: str, people: int, times: list[str], outdoor: bool | None = None) -> str:
    """Book a table at a restaurant.

    Args:
        restaurant: The restaurant's name.
        people: How many people.
        times: Acceptable times, like "19:30".
        outdoor: Whether to sit outside.
    """
    return "booked"


TOOLS = [calculate, get_weather, book_table]
DEFINITIONS = [t.definition("inline") for t in TOOLS]
PROMPTS = [
    "What is 37 * 41?",
    "What's the weather like in Paris, in fahrenheit?",
    "Book a table for 4 at Chez Panisse at 19:30 or 20:00, outside please.",
    "How much is 2 to the power of 10?",
    "Is it raining in Tokyo?",
]


@pytest.mark.parametrize("prompt", PROMPTS)
async def test_a_required_call_is_always_valid_against_its_tool(
    runtime: LlamaCpp, prompt: str
) -> None:
    for seed, temperature in ((1, 0.0), (2, 1.0)):
        request = GenerationRequest.build(
            messages=[{"role": "user", "content": prompt}],
            tools=DEFINITIONS,
            tool_choice="required",
            temperature=temperature,
            seed=seed,
            max_tokens=200,
        )
        generation = await runtime.generate(request)
        assert generation.finish_reason == "tool_calls", generation.response
        (call,) = generation.tool_calls
        chosen = {t.name: t for t in TOOLS}[call.name]
        chosen.validate(call.arguments)  # raises ToolArgumentsError if not valid


async def test_a_named_tool_choice_calls_that_tool(runtime: LlamaCpp) -> None:
    request = GenerationRequest.build(
        messages=[{"role": "user", "content": "What is 37 * 41?"}],
        tools=DEFINITIONS,
        tool_choice="get_weather",
        temperature=0,
    )
    generation = await runtime.generate(request)
    assert [c.name for c in generation.tool_calls] == ["get_weather"]
    get_weather.validate(generation.tool_calls[0].arguments)


def few_shot(question: str) -> list[Message]:
    """Earlier turns in which the assistant used the calculator, then a new question."""
    history: list[Message] = []
    for n, (asked, expression, value) in enumerate(
        # Three turns, not two: with two, whether greedy decoding begins a call for the new
        # question came down to rounding that differs from one CPU to another.
        [
            ("What is 2 + 2?", "2 + 2", "4"),
            ("What is 9 * 7?", "9 * 7", "63"),
            ("What is 15 * 3?", "15 * 3", "45"),
        ]
    ):
        call = ToolCall(id=f"call_{n}", name="calculate", arguments={"expression": expression})
        history += [
            Message.user(asked),
            Message.assistant("", [call]),
            Message.tool(value, tool_call_id=call.id, name="calculate"),
            Message.assistant(f"{expression} = {value}."),
        ]
    return [*history, Message.user(question)]


async def test_auto_writes_freely_until_a_call_starts_then_the_grammar_holds(
    runtime: LlamaCpp,
) -> None:
    request = GenerationRequest.build(
        messages=few_shot("What is 37 * 41?"), tools=DEFINITIONS, temperature=0, stream=True
    )
    chunks = [chunk async for chunk in runtime.stream(request)]
    calls = [call for chunk in chunks for call in chunk.tool_calls]
    assert [c.name for c in calls] == ["calculate"]
    calculate.validate(calls[0].arguments)
    # The call's text is never streamed as answer text.
    assert "<tool_call>" not in "".join(c.response for c in chunks)
    assert chunks[-1].finish_reason == "tool_calls"

    chat = GenerationRequest.build(
        messages=few_shot("Tell me about Paris."), tools=DEFINITIONS, temperature=0
    )
    answer_only = await runtime.generate(chat)
    assert answer_only.tool_calls == []
    assert "Paris" in answer_only.response


async def test_a_conversation_reuses_the_kv_cache_for_its_prefix(runtime: LlamaCpp) -> None:
    """Over a 3-step agent run, each step evaluates only what the last one did not see."""
    generations: list[Generation] = []

    async def forced_then_auto(request: ModelRequest) -> Generation:
        choice = "required" if len(generations) < 2 else "auto"
        generation = await runtime.generate(request.model_copy(update={"tool_choice": choice}))
        generations.append(generation)
        return generation

    agent = Agent(FunctionRuntime(forced_then_auto), tools=[calculate], temperature=0)
    result = await agent.run("What is 37 * 41? Then add 3 to it.")
    assert result.steps == 3
    first, second, third = (g.usage for g in generations)
    assert first.cached_prompt_tokens is not None
    for before, after in ((first, second), (second, third)):
        assert after.cached_prompt_tokens is not None
        # Everything the previous step saw is reused (its prompt and its answer), save the
        # last token of the answer: only the turns the agent appended are evaluated.
        seen = before.prompt_tokens + before.completion_tokens
        assert after.cached_prompt_tokens >= seen - 2
        evaluated = after.prompt_tokens - after.cached_prompt_tokens
        assert evaluated <= after.prompt_tokens - seen + 2
        assert evaluated < after.prompt_tokens / 2
    assert result.usage.cached_prompt_tokens == sum(
        g.usage.cached_prompt_tokens or 0 for g in generations
    )


def test_without_the_local_extra_the_error_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from agentkit.runtimes import get_runtime

    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # as if it were not installed
    monkeypatch.delitem(sys.modules, "agentkit.runtimes.llama_cpp")
    with pytest.raises(ConfigurationError, match=r"pip install 'agentkit\[local\]'"):
        get_runtime("local")


@tool
def record(items: list[str]) -> str:
    """Record a list of items.

    Args:
        items: The items to record.
    """
    return f"recorded {len(items)}"


async def test_a_call_that_would_be_cut_off_by_max_tokens_ends_early_and_valid(
    runtime: LlamaCpp,
) -> None:
    prompt = "Record every colour of the rainbow, each with a long description."
    definition = record.definition()
    generation = await runtime.generate(
        ModelRequest(
            messages=[Message.user(prompt)],
            tools=[definition],
            tool_choice="required",
            temperature=0,
            max_tokens=40,
        )
    )
    assert generation.truncated
    assert generation.usage.completion_tokens <= 40
    [call] = generation.tool_calls  # complete: a list the model would have gone on filling
    assert call.name == "record" and isinstance(call.arguments["items"], list)


async def test_a_budget_too_small_for_any_call_is_refused_before_a_token(
    runtime: LlamaCpp,
) -> None:
    agent = Agent(runtime, tools=[record], tool_choice="required", temperature=0, max_tokens=24)
    with pytest.raises(RequestValidationError, match=r"max_tokens: the shortest value") as info:
        await agent.run("Record every colour of the rainbow, each with a long description.")
    assert "more than the 24 this request may generate" in str(info.value)
