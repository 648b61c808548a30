"""W6: local model: decode speed through agentkit vs raw llama-cpp-python; prompt reuse."""

from __future__ import annotations

import contextlib
import itertools
import statistics
import time
from typing import Any

import anyio

from benchmarks._common import Budget, Check, Row, Unavailable, seconds_per_token
from benchmarks._plain_cpu import plain_cpu_weights

PROMPT = "Write a long story about a lighthouse keeper and the sea."


def run(budget: Budget) -> list[Row]:
    try:
        import llama_cpp

        from agentkit.runtimes.llama_cpp import LlamaCpp
    except ImportError as exc:
        raise Unavailable(f"needs the local extra ({exc.name})") from None
    return [_decode(budget, llama_cpp, LlamaCpp), _prompt_reuse(LlamaCpp)]


def _decode(budget: Budget, llama_cpp: Any, local_class: Any) -> Row:
    """Milliseconds per decoded token, greedy, the same model, prompt and thread count."""
    from agentkit.wire import GenerationRequest

    local = local_class()
    with plain_cpu_weights():
        raw = llama_cpp.Llama(model_path=str(local.model_path), n_ctx=local.n_ctx, verbose=False)
    text = f"<|im_start|>user\n{PROMPT}<|im_end|>\n<|im_start|>assistant\n"
    tokens = budget.n(256, 64)

    async def through_agentkit(tokens: int) -> float:
        request = GenerationRequest.build(
            prompt=text, raw=True, temperature=0, max_tokens=tokens, stream=True
        )
        return await seconds_per_token(local, request, tokens)

    def through_raw(tokens: int) -> float:
        first = last = 0.0
        count = 0
        for _ in raw.create_completion(
            text, max_tokens=tokens, temperature=0, top_k=0, top_p=1.0, min_p=0.0, stream=True
        ):
            last = time.perf_counter()
            first = first or last
            count += 1
        assert count >= tokens - 2, count  # a chunk may hold two tokens of one character
        return (last - first) / (tokens - 1)

    # Per token, from the first token to the last: the prompt's evaluation falls out. Rounds
    # alternate the two sides, so that noise from other work on the machine falls on both.
    ours: list[float] = []
    theirs: list[float] = []
    for _ in range(budget.n(5, 2)):
        ours.append(anyio.run(through_agentkit, tokens) * 1e3)
        theirs.append(through_raw(tokens) * 1e3)
    anyio.run(local.aclose)
    raw.close()
    mine, peer = statistics.median(ours), statistics.median(theirs)
    speed = peer / mine
    return Row(
        workload="W6",
        case=f"decode, greedy, {tokens} tokens (SmolLM2-135M Q4_1)",
        unit="ms/token",
        agentkit=mine,
        peers={"llama-cpp-python": peer},
        notes=[f"{1e3 / mine:.0f} tokens/s through agentkit, {1e3 / peer:.0f} raw"],
        checks=[
            Check(
                "decode speed >= 0.95x raw llama-cpp-python",
                speed >= 0.95,
                f"{speed:.2f}x",
            )
        ],
    )


def _prompt_reuse(local_class: Any) -> Row:
    """A 10-step agent run: prompt tokens evaluated against the tokens each step added."""
    from agentkit import (
        Agent,
        FunctionRuntime,
        Generation,
        GenerationRequest,
        MaxStepsExceeded,
        tool,
    )

    readings = iter(range(100, 1000, 7))

    @tool
    def read_sensor(sensor: str) -> str:
        """Read a sensor's current value.

        Args:
            sensor: The sensor's name, e.g. "temperature".
        """
        return f"{sensor}: {next(readings)}"

    local = local_class()
    generations: list[Generation] = []

    async def nine_calls_then_answer(request: GenerationRequest) -> Generation:
        choice = "required" if len(generations) < 9 else "auto"
        generation = await local.generate(request.model_copy(update={"tool_choice": choice}))
        generations.append(generation)
        return generation

    agent = Agent(
        FunctionRuntime(nine_calls_then_answer),
        tools=[read_sensor],
        temperature=0,
        repeat_limit=20,
        reset_tool_choice=False,
    )
    # The model may call once more at step 10: the ten steps are what is measured.
    with contextlib.suppress(MaxStepsExceeded):
        agent.run_sync("Read the temperature sensor ten times and tell me the readings.")
    anyio.run(local.aclose)
    assert len(generations) == 10, len(generations)
    evaluated = sum(
        g.usage.prompt_tokens - (g.usage.cached_prompt_tokens or 0) for g in generations
    )
    new = generations[0].usage.prompt_tokens
    for before, after in itertools.pairwise(generations):
        seen = before.usage.prompt_tokens + before.usage.completion_tokens
        new += max(after.usage.prompt_tokens - seen, 0)
    ratio = evaluated / new
    total = sum(g.usage.prompt_tokens for g in generations)
    return Row(
        workload="W6",
        case="10-step agent run: prompt tokens evaluated / tokens new",
        unit="ratio",
        agentkit=ratio,
        notes=[
            f"{total} prompt tokens sent over 10 steps, {evaluated} evaluated, {new} new; "
            f"without reuse all {total} would be evaluated ({total / evaluated:.1f}x more)"
        ],
        checks=[Check("evaluated <= 1.1x new", ratio <= 1.1, f"{ratio:.2f}x")],
    )
