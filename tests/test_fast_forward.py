"""Fast-forwarded tokens on the embedded model: where an answer's grammar allows one way on
only, its tokens are appended without sampling and evaluated together; the answers, the
stream, the budget and the batch behave as they do token by token."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import jsonschema
import pytest

from agentkit import (
    Generation,
    Message,
    ModelRequest,
    RequestValidationError,
    StreamChunk,
    tool,
)
from agentkit.chat_formats import engine as grammars
from agentkit.runtimes._guidance import GuidanceMatcher
from agentkit.runtimes.llama_cpp import LlamaCpp

from support.answer_schemas import ANSWER_SCHEMAS

RANK = {
    "type": "object",
    "properties": {"rank": {"enum": ["keeper", "assistant"]}},
    "required": ["rank"],
}


@pytest.fixture(scope="module")
def runtime(model_path: Path) -> Iterator[LlamaCpp]:
    local = LlamaCpp(model_path, parallel=4)
    yield local
    anyio.run(local.aclose)


def answer_request(name: str, **fields: Any) -> ModelRequest:
    prompt, schema = ANSWER_SCHEMAS[name]
    return ModelRequest(
        messages=[Message.user(prompt)],
        response_format={"type": "json_schema", "json_schema": schema},
        temperature=0.0,
        max_tokens=fields.pop("max_tokens", 200),
        **fields,
    )


def story_request(subject: str) -> ModelRequest:
    return ModelRequest(
        messages=[Message.user(f"Write a long story about a {subject}.")],
        temperature=0.0,
        max_tokens=40,
    )


def forwarded(caplog: pytest.LogCaptureFixture) -> list[tuple[int, int]]:
    """(fast-forwarded, completion tokens) of each generation logged since the last call."""
    counts = [
        (vars(record)["fast_forwarded_tokens"], vars(record)["completion_tokens"])
        for record in caplog.records
        if hasattr(record, "fast_forwarded_tokens")
    ]
    caplog.clear()
    return counts


def outcome(generation: Generation) -> tuple[str, int, str | None]:
    return generation.response, generation.usage.completion_tokens, generation.finish_reason


# -- the matcher: what is forced, and how it is tokenized ----------------------------------


def test_forced_text_is_written_in_the_usual_tokens_across_the_chosen_one(
    vocabulary: tuple[Any, Any],
) -> None:
    """The model chose `as` where the grammar allows `assistant` only: the rest is forced, and
    the chosen token (not evaluated yet) is written again with it as the tokenizer would
    write the word, not as `as` + `s` + `istant`. A complete answer ends the generation."""
    llama, tokenizer = vocabulary
    matcher = GuidanceMatcher(tokenizer, grammars.engine_grammar(RANK))
    opening = matcher.fast_forward()
    assert tokenizer.decode_bytes(opening) == b'{"rank": "'
    assert opening == llama.tokenize(b'{"rank": "', add_bos=False, special=False)
    (chosen,) = llama.tokenize(b"as", add_bos=False, special=False)
    matcher.accept(chosen)
    rest = matcher.fast_forward(chosen)
    *text, end = rest
    assert tokenizer.decode_bytes(text) == b'assistant"}'
    assert text == llama.tokenize(b'assistant"}', add_bos=False, special=False)
    assert text[0] != chosen
    assert end in tokenizer.eos_tokens
    assert matcher.matcher.is_stopped()


def test_nothing_is_forced_where_the_model_has_a_choice(vocabulary: tuple[Any, Any]) -> None:
    llama, tokenizer = vocabulary
    matcher = GuidanceMatcher(tokenizer, grammars.engine_grammar(RANK))
    matcher.fast_forward()
    # `keeper` or `assistant`: the model chooses; a chosen token with nothing after it stays.
    assert matcher.fast_forward(None) == []
    (chosen,) = llama.tokenize(b"keeper", add_bos=False, special=False)
    matcher.accept(chosen)
    assert tokenizer.decode_bytes(matcher.fast_forward(chosen)[:-1]) == b'keeper"}'


# -- on the model ----------------------------------------------------------------------------


async def test_answers_are_valid_and_partly_written_by_the_grammar(
    runtime: LlamaCpp, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="agentkit.runtimes")
    forwarded(caplog)
    for name in ("flat-object", "enum", "nested-object"):
        generation = await runtime.generate(answer_request(name))
        assert generation.finish_reason == "stop"
        jsonschema.validate(json.loads(generation.response), ANSWER_SCHEMAS[name][1])
        ((fast, completion),) = forwarded(caplog)
        # Usage counts forced tokens as completion tokens.
        assert completion == generation.usage.completion_tokens
        assert 0 < fast < completion


async def test_the_switch_turns_it_off(
    model_path: Path, runtime: LlamaCpp, caplog: pytest.LogCaptureFixture
) -> None:
    """Off, every token is sampled; on the flat object the model would have written the forced
    tokens anyway, so the answer is the same."""
    caplog.set_level(logging.DEBUG, logger="agentkit.runtimes")
    on = await runtime.generate(answer_request("flat-object"))
    assert forwarded(caplog)
    off_runtime = LlamaCpp(model_path, parallel=1, fast_forward=False)
    try:
        off = await off_runtime.generate(answer_request("flat-object"))
    finally:
        await off_runtime.aclose()
    assert forwarded(caplog) == []
    assert outcome(off) == outcome(on)


async def test_a_stream_under_fast_forward_gives_the_generated_answer(runtime: LlamaCpp) -> None:
    request = answer_request("nested-object")
    whole = await runtime.generate(request)
    chunks = [chunk async for chunk in runtime.stream(request)]
    pieces = [chunk.response for chunk in chunks if chunk.response]
    # Forced text streams as it is appended, not in one piece at the end.
    assert len(pieces) > 3
    assert "".join(pieces) == whole.response
    assert outcome(StreamChunk.join(chunks)) == outcome(whole)


async def test_max_tokens_counts_forced_tokens_too(runtime: LlamaCpp) -> None:
    whole = await runtime.generate(answer_request("flat-object"))
    n = whole.usage.completion_tokens
    schema = ANSWER_SCHEMAS["flat-object"][1]
    # Below the shortest answer (`{"name": "", "age": 0}`) the request is refused at once.
    with pytest.raises(RequestValidationError, match="max_tokens"):
        await runtime.generate(answer_request("flat-object", max_tokens=2))
    assert n > 11
    for budget in range(10, n):
        # Forced tokens count: every budget is kept, the answer ended early and complete.
        cut = await runtime.generate(answer_request("flat-object", max_tokens=budget))
        assert cut.usage.completion_tokens <= budget
        assert cut.truncated and cut.finish_reason == "length"
        assert jsonschema.Draft202012Validator(schema).is_valid(json.loads(cut.response))


async def test_sequences_forwarding_and_sampling_in_one_step_give_what_each_gives_alone(
    runtime: LlamaCpp, caplog: pytest.LogCaptureFixture
) -> None:
    """Two answers (several tokens a step where their grammar forces text) and two stories
    (one sampled token a step) decoded together, greedy, give what each gives alone."""
    requests = [
        answer_request("nested-object"),
        story_request("lighthouse"),
        answer_request("pydantic-invoice"),
        story_request("glacier"),
    ]
    alone = [outcome(await runtime.generate(request)) for request in requests]
    engine = runtime._engine
    assert engine is not None
    engine.widest = 0
    caplog.set_level(logging.DEBUG, logger="agentkit.runtimes")
    forwarded(caplog)
    together: list[tuple[str, int, str | None]] = [("", 0, None)] * len(requests)

    async def one(i: int) -> None:
        together[i] = outcome(await runtime.generate(requests[i]))

    async with anyio.create_task_group() as tg:
        for i in range(len(requests)):
            tg.start_soon(one, i)
    assert engine.widest == len(requests)
    assert len([fast for fast, _ in forwarded(caplog) if fast]) == 2
    assert together == alone


@tool
def read_sensor(sensor: str) -> str:
    """Read a sensor's current value.

    Args:
        sensor: The sensor's name, e.g. "humidity".
    """
    return f"{sensor}: 41"


async def evaluated_again(runtime: LlamaCpp, first: ModelRequest) -> int:
    """Generate `first`, then its conversation's next turn (the tool's result after a call, a
    user's message after an answer): how many of the tokens the first turn held (its prompt
    and its answer) the next one evaluated again."""
    before = await runtime.generate(first)
    turn = Message.assistant(before.response, tool_calls=before.tool_calls)
    if before.tool_calls:
        reply = Message.tool(
            "humidity: 41", tool_call_id=before.tool_calls[0].id, name="read_sensor"
        )
    else:
        reply = Message.user("Another one, please.")
    after = await runtime.generate(
        first.model_copy(update={"messages": [*first.messages, turn, reply]})
    )
    seen = before.usage.prompt_tokens + before.usage.completion_tokens
    cached = after.usage.cached_prompt_tokens
    assert cached is not None
    assert after.usage.prompt_tokens > seen
    return seen - cached


async def test_the_next_turn_reuses_all_a_forced_ending_wrote(
    runtime: LlamaCpp, caplog: pytest.LogCaptureFixture
) -> None:
    """A call and an answer end in text the grammar forces (`"}`, the call's closing) and the
    end of generation: those tokens reach the slot's cache before it is freed, so the next turn
    of the conversation evaluates only what was appended to it."""
    caplog.set_level(logging.DEBUG, logger="agentkit.runtimes")
    forwarded(caplog)
    call = ModelRequest(
        messages=[Message.user("Read the humidity sensor.")],
        tools=[read_sensor.definition("inline")],
        tool_choice="required",
        temperature=0.0,
        max_tokens=100,
    )
    again = (
        await evaluated_again(runtime, call),
        await evaluated_again(runtime, answer_request("flat-object")),
    )
    assert again == (0, 0)
    counts = forwarded(caplog)
    assert len(counts) == 4
    assert all(fast > 0 for fast, _ in counts)
