"""W8: structured answers on the local model: decode speed under an answer grammar; compile time."""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any

import anyio

from benchmarks._common import Budget, Check, Row, Unavailable, seconds_per_token

PROMPT = "Write a long story about a lighthouse keeper and the sea."
# Answers that cannot end before max_tokens, so both sides decode the same number of tokens.
LONG_STRING = {
    "type": "object",
    "properties": {"story": {"type": "string", "minLength": 5000}},
    "required": ["story"],
}
RECORDS = {
    "type": "object",
    "properties": {
        "keepers": {
            "type": "array",
            "minItems": 1000,
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "maxLength": 30},
                    "age": {"type": "integer", "minimum": 18, "maximum": 99},
                    "since": {"type": "string", "format": "date"},
                    "rank": {"enum": ["keeper", "assistant", "trainee"]},
                    "note": {"anyOf": [{"type": "string", "maxLength": 40}, {"type": "null"}]},
                },
                "required": ["name", "age", "since", "rank", "note"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["keepers"],
}


def run(budget: Budget) -> list[Row]:
    try:
        import llama_cpp

        from agentkit.runtimes.llama_cpp import LlamaCpp
    except ImportError as exc:
        raise Unavailable(f"needs the local extra ({exc.name})") from None
    local = LlamaCpp()
    try:
        rows = [
            _decode(budget, local, "one long string", LONG_STRING),
            _decode(budget, local, "array of records", RECORDS),
        ]
        rows.append(_fast_forward(budget, local))
        rows += _compile(budget, llama_cpp, local)
    finally:
        anyio.run(local.aclose)
    return rows


async def _per_token(local: Any, schema: dict[str, Any], tokens: int, held: bool) -> float:
    """Seconds a token of the greedy answer, under the answer grammar (`held`) or free. Both
    get the same prompt: the runtime's statement of the schema in the system message (a
    longer prompt costs each token more, and that is not the grammar's cost)."""
    from agentkit import Message, ModelRequest
    from agentkit.chat_formats import answer as answers

    response_format = {"type": "json_schema", "json_schema": schema}
    question = [Message.user(PROMPT)]
    if held:
        request = ModelRequest(
            messages=question,
            response_format=response_format,
            temperature=0.0,
            max_tokens=tokens,
        )
    else:
        told = answers.with_instructions(local.chat_format, question, response_format)
        request = ModelRequest(messages=told, temperature=0.0, max_tokens=tokens)
    return await seconds_per_token(local, request, tokens)


def _decode(budget: Budget, local: Any, label: str, schema: dict[str, Any]) -> Row:
    """Milliseconds per token, greedy, with and without the answer grammar, rounds alternated
    so that load from elsewhere falls on both."""
    tokens = budget.n(256, 48)
    held: list[float] = []
    free: list[float] = []
    for _ in range(budget.n(5, 2)):
        held.append(anyio.run(_per_token, local, schema, tokens, True) * 1e3)
        free.append(anyio.run(_per_token, local, schema, tokens, False) * 1e3)
    mine, unconstrained = statistics.median(held), statistics.median(free)
    speed = unconstrained / mine
    return Row(
        workload="W8",
        case=f"decode under an answer grammar ({label}), greedy, {tokens} tokens",
        unit="ms/token",
        agentkit=mine,
        peers={"unconstrained": unconstrained},
        notes=[f"{1e3 / mine:.0f} tokens/s under the grammar, {1e3 / unconstrained:.0f} free"],
        checks=[Check("speed >= 0.9x unconstrained", speed >= 0.9, f"{speed:.2f}x")],
    )


def _fast_forward(budget: Budget, local: Any) -> Row:
    """Time to a complete greedy answer with fast-forwarding and token by token (per schema:
    `python -m benchmarks.fast_forward`)."""
    from benchmarks import fast_forward

    schemas = fast_forward.answer_schemas()
    names = ("nested-object", "pydantic-invoice", "date-time")
    results = fast_forward.compare(local, {n: schemas[n] for n in names}, budget.n(3, 1))
    on = sum(r.seconds_on for r in results)
    off = sum(r.seconds_off for r in results)
    tokens = sum(r.tokens for r in results)
    share = sum(r.forced for r in results) / tokens
    return Row(
        workload="W8",
        case=f"time to a complete answer, fast-forwarded, {len(names)} schemas, greedy",
        unit="s",
        agentkit=on,
        peers={"token by token": off},
        notes=[
            f"{share:.0%} of {tokens} tokens forced; {tokens / on:.0f} tokens/s fast-forwarded,"
            f" {sum(r.tokens_off for r in results) / off:.0f} token by token"
        ],
        checks=[Check("faster than token by token", on < off, f"{off / on:.2f}x")],
    )


def _schemas() -> dict[str, dict[str, Any]]:
    tests = Path(__file__).resolve().parents[1] / "tests"
    sys.path.insert(0, str(tests))
    try:
        from support.answer_schemas import ANSWER_SCHEMAS
    finally:
        sys.path.remove(str(tests))
    return {name: schema for name, (_, schema) in ANSWER_SCHEMAS.items()}


def _compile(budget: Budget, llama_cpp: Any, local: Any) -> list[Row]:
    """Per schema of tests/support/answer_schemas.py: building the GBNF cold and from the cache, and
    llama.cpp parsing it (which it does for every generation: its grammar object holds only the
    text)."""
    from agentkit.chat_formats import answer, get_format, schema_to_gbnf

    fmt = get_format("chatml")
    formats = [{"type": "json_schema", "json_schema": s} for s in _schemas().values()]
    repeat = budget.n(20, 2)
    cold: list[float] = []
    cached: list[float] = []
    for _ in range(repeat):
        answer.clear_grammar_cache()
        for response_format in formats:
            started = time.perf_counter()
            answer.answer_grammar(fmt, response_format)
            cold.append(time.perf_counter() - started)
        for response_format in formats:
            started = time.perf_counter()
            answer.answer_grammar(fmt, response_format)
            cached.append(time.perf_counter() - started)
    words = llama_cpp.Llama(model_path=str(local.model_path), vocab_only=True, verbose=False)
    vocab = llama_cpp.llama_model_get_vocab(words.model)
    # llama.cpp's own parse of the GBNF the builder writes, for comparison with the engine.
    texts = [
        schema_to_gbnf(
            answer.answer_schema(f), checked_after=True, max_ref_depth=answer.MAX_REF_DEPTH
        ).encode()
        for f in formats
    ]
    parse: list[float] = []
    for _ in range(repeat):
        for text in texts:
            started = time.perf_counter()
            sampler = llama_cpp.llama_sampler_init_grammar(vocab, text, b"root")
            parse.append(time.perf_counter() - started)
            assert sampler, "llama.cpp refused a grammar"
            llama_cpp.llama_sampler_free(sampler)
    words.close()
    n = len(formats)
    return [
        Row(
            workload="W8",
            case=f"answer grammar compile, {n} schemas, cold",
            unit="µs/schema",
            agentkit=statistics.median(cold) * 1e6,
            notes=[f"slowest {max(cold) * 1e6:,.0f} µs"],
        ),
        Row(
            workload="W8",
            case=f"answer grammar compile, {n} schemas, cached",
            unit="µs/schema",
            agentkit=statistics.median(cached) * 1e6,
            checks=[
                Check(
                    "cached <= 1/5 cold",
                    statistics.median(cached) * 5 <= statistics.median(cold),
                    f"{statistics.median(cold) / statistics.median(cached):.0f}x faster",
                )
            ],
        ),
        Row(
            workload="W8",
            case=f"llama.cpp grammar parse per generation, {n} schemas",
            unit="µs/schema",
            agentkit=statistics.median(parse) * 1e6,
            notes=[f"slowest {max(parse) * 1e6:,.0f} µs"],
        ),
    ]
