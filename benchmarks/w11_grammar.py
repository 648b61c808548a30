"""W11: grammar-held calls and answers on the embedded model, against llama-server.

For the tool-call grammar (three tools, one offered and all three, `tool_choice` required, one
call) and for a fixed sample of JSONSchemaBench schemas (answers with `response_format`), each
greedy:

- agentkit's local runtime with fast-forwarded tokens (the default) and token by token;
- free decoding of the same prompt (no grammar, as many tokens): the cost of a token;
- `llama-server` (llama.cpp's own server, same GGUF, same threads, one slot) given the same
  prompt text, rendered by agentkit, on its `/completion` endpoint with the same schema as
  `json_schema`: for a call, the call object's schema (`{"name": <tool>, "arguments": ...}`),
  the prompt ending with the call's opening tag, which agentkit's grammar forces anyway.

Time to complete is from the request to the complete call or answer, the median of rounds in
which the contenders take turns, so load from elsewhere falls on all. Both keep the prompt's
tokens from the round before (agentkit's slot, llama-server's `cache_prompt`), so the figures
are decoding. Without llama-server (`AGENTKIT_LLAMA_SERVER`, built as docs/benchmarks.md W7
says) its column is reported unavailable.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx

from benchmarks._common import Budget, Check, Row, Unavailable
from benchmarks._streaming import ServerProcess, free_port

N_CTX = 4096
THREADS = 2
MODES = ("fast-forwarded", "token by token", "free", "llama-server")

TOOLS: list[dict[str, Any]] = [
    {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "The city's name."},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "unit"],
        },
    },
    {
        "name": "book_flight",
        "description": "Book a flight for some passengers.",
        "parameters": {
            "type": "object",
            "properties": {
                "origin": {"type": "string", "description": "IATA code of the departure airport"},
                "destination": {"type": "string", "description": "IATA code of the arrival"},
                "date": {"type": "string", "format": "date"},
                "passengers": {"type": "integer", "minimum": 1, "maximum": 9},
                "cabin": {"type": "string", "enum": ["economy", "premium", "business", "first"]},
            },
            "required": ["origin", "destination", "date", "passengers", "cabin"],
        },
    },
    {
        "name": "create_event",
        "description": "Put an event in the calendar and invite people.",
        "parameters": {
            "type": "object",
            "properties": {
                "title": {"type": "string"},
                "start": {"type": "string", "format": "date-time"},
                "attendees": {"type": "array", "items": {"type": "string", "format": "email"}},
                "reminder_minutes": {"type": "integer", "minimum": 0},
            },
            "required": ["title", "start", "attendees", "reminder_minutes"],
        },
    },
]
PROMPTS = {
    "get_weather": "What is the weather in Lisbon right now, in celsius?",
    "book_flight": "Book two business seats from Paris CDG to New York JFK on 2027-03-14.",
    "create_event": "Set up a design review on 2027-01-12 at 14:00 with ana@example.com and "
    "li@example.com, reminding us 15 minutes before.",
}


@dataclass
class Task:
    """One prompt under one grammar, as both sides get it."""

    name: str
    request: Any
    """agentkit's `ModelRequest`."""
    prompt: str
    """The prompt text llama-server gets (agentkit's rendering)."""
    schema: dict[str, Any]
    """The schema llama-server gets."""
    timings: dict[str, list[float]] = field(default_factory=dict)
    tokens: dict[str, int] = field(default_factory=dict)
    forced: int = 0
    cut: int = 0
    """llama-server's results that were not complete JSON (cut at the token budget)."""


def run(budget: Budget) -> list[Row]:
    try:
        from agentkit.runtimes.llama_cpp import LlamaCpp
    except ImportError as exc:
        raise Unavailable(f"needs the local extra ({exc.name})") from None
    from benchmarks import fast_forward
    from benchmarks._local_servers import llama_server_binary

    local = LlamaCpp(parallel=1, n_ctx=N_CTX, n_threads=THREADS)
    server: ServerProcess | None = None
    why = ""
    try:
        binary = llama_server_binary()
    except Unavailable as exc:
        binary, why = None, str(exc)
    try:
        fmt = local.chat_format
        calls = _call_tasks(fmt, budget)
        answers = _answer_tasks(local, fmt, budget, fast_forward)
        if binary is not None:
            port = free_port()
            argv = [binary, "-m", str(local.model_path), "-c", str(N_CTX), "--parallel", "1"]
            argv += ["-t", str(THREADS), "--host", "127.0.0.1", "--port", str(port)]
            server = ServerProcess("llama-server", argv, port, "/health")
            server.start()
        for task in calls + answers:
            _measure(local, server, task, budget.n(3, 1), fast_forward)
    finally:
        if server is not None:
            server.stop()
        anyio.run(local.aclose)
    for task in calls + answers:  # each prompt's figures, for the docs
        figures = ", ".join(
            f"{mode} {statistics.median(times):.2f} s / {task.tokens[mode]} tokens"
            for mode, times in task.timings.items()
        )
        print(f"  {task.name}: {figures}; {task.forced} forced", file=sys.stderr)
    return [
        _row("a complete tool call", calls, why, target=True),
        _row(f"a complete answer, {len(answers)} JSONSchemaBench schemas", answers, why),
    ]


def _call_tasks(fmt: Any, budget: Budget) -> list[Task]:
    from agentkit import Message, ModelRequest

    tasks = []
    names = list(PROMPTS)[: budget.n(3, 1)]
    for offered in ("one", "all"):
        for name in names:
            tools = [t for t in TOOLS if offered == "all" or t["name"] == name]
            messages = [Message.user(PROMPTS[name])]
            request = ModelRequest(
                messages=messages,
                tools=tools,
                tool_choice="required",
                parallel_tool_calls=False,
                temperature=0.0,
                max_tokens=256,
            )
            prompt = fmt.render(request.messages, request.tools, tool_choice="required")
            before = fmt.wrapping.before
            schema = _call_schema(tools, fmt.arguments_key)
            label = f"{name} ({'its tool' if offered == 'one' else 'three tools'})"
            tasks.append(Task(label, request, prompt + before, schema))
    return tasks


def _call_schema(tools: list[dict[str, Any]], arguments_key: str) -> dict[str, Any]:
    """The JSON of one call of any of `tools`, as a schema."""
    branches = [
        {
            "type": "object",
            "properties": {"name": {"const": t["name"]}, arguments_key: t["parameters"]},
            "required": ["name", arguments_key],
            "additionalProperties": False,
        }
        for t in tools
    ]
    return branches[0] if len(branches) == 1 else {"anyOf": branches}


def _answer_tasks(local: Any, fmt: Any, budget: Budget, fast_forward: Any) -> list[Task]:
    from agentkit import Message, ModelRequest
    from agentkit.chat_formats import answer as answers

    if not fast_forward.DATA.is_dir():
        return []
    tasks = []
    for name, (prompt, schema) in fast_forward.bench_schemas(local, budget.n(8, 1)).items():
        response_format = {"type": "json_schema", "json_schema": schema}
        request = ModelRequest(
            messages=[Message.user(prompt)],
            response_format=response_format,
            temperature=0.0,
            max_tokens=fast_forward.MAX_TOKENS,
        )
        told = answers.with_instructions(fmt, request.messages, response_format)
        tasks.append(Task(name, request, fmt.render(told), schema))
    return tasks


def _measure(
    local: Any, server: ServerProcess | None, task: Task, rounds: int, fast_forward: Any
) -> None:
    """`rounds` of: fast-forwarded, token by token, free decoding, llama-server."""
    import logging

    from agentkit import ModelRequest

    logger = logging.getLogger("agentkit.runtimes")
    forced = fast_forward.Forced()
    level = logger.level
    logger.addHandler(forced)
    logger.setLevel(logging.DEBUG)
    try:
        for _ in range(rounds):
            for mode in ("fast-forwarded", "token by token"):
                local.fast_forward = mode == "fast-forwarded"
                seconds, generation = anyio.run(_timed, local, task.request)
                task.timings.setdefault(mode, []).append(seconds)
                task.tokens[mode] = generation.usage.completion_tokens
                if mode == "fast-forwarded":
                    task.forced = forced.last
            free = ModelRequest(
                raw_prompt=task.prompt, temperature=0.0, max_tokens=task.tokens["token by token"]
            )
            seconds, generation = anyio.run(_timed, local, free)
            task.timings.setdefault("free", []).append(seconds)
            task.tokens["free"] = generation.usage.completion_tokens
            if server is not None:
                seconds, tokens = _llama_server(server, task)
                task.timings.setdefault("llama-server", []).append(seconds)
                task.tokens["llama-server"] = tokens
    finally:
        local.fast_forward = True
        logger.removeHandler(forced)
        logger.setLevel(level)


async def _timed(local: Any, request: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    generation = await local.generate(request)
    return time.perf_counter() - started, generation


def _llama_server(server: ServerProcess, task: Task) -> tuple[float, int]:
    body = {
        "prompt": task.prompt,
        "json_schema": task.schema,
        "n_predict": task.request.max_tokens,
        "temperature": 0.0,
        "cache_prompt": True,
    }
    started = time.perf_counter()
    reply = httpx.post(f"{server.base_url}/completion", json=body, timeout=600.0)
    seconds = time.perf_counter() - started
    reply.raise_for_status()
    data = reply.json()
    try:
        json.loads(data["content"])
    except ValueError:  # cut at `n_predict`: llama-server returns the fragment
        task.cut += 1
    return seconds, int(data["tokens_predicted"])


def _row(what: str, tasks: list[Task], why: str, *, target: bool = False) -> Row:
    def total(mode: str) -> float | None:
        if not tasks or any(mode not in t.timings for t in tasks):
            return None
        return sum(statistics.median(t.timings[mode]) for t in tasks)

    def tokens(mode: str) -> int:
        return sum(t.tokens.get(mode, 0) for t in tasks)

    on, off, free, server = (total(m) for m in MODES)
    notes = [f"{len(tasks)} prompts, greedy, {THREADS} threads, one slot each"]
    if on and off and free:
        made = tokens("fast-forwarded")
        notes.append(
            f"{made} tokens ({tokens('token by token')} token by token), "
            f"{sum(t.forced for t in tasks) / made:.0%} forced; tokens/s: {made / on:.0f} "
            f"fast-forwarded, {tokens('token by token') / off:.0f} token by token, "
            f"{tokens('free') / free:.0f} free decoding (no grammar, same prompts)"
        )
    if server:
        cut = [t.name for t in tasks if t.cut]
        notes.append(
            f"llama-server: {tokens('llama-server')} tokens, "
            f"{tokens('llama-server') / server:.0f} tokens/s; cut at max_tokens, not JSON: "
            + (", ".join(cut) or "none")
        )
    elif why:
        notes.append(f"llama-server: {why}")
    checks = []
    if target and on and off:
        speed = off / on
        checks.append(
            Check("fast-forwarded >= 1.15x token by token", speed >= 1.15, f"{speed:.2f}x")
        )
    if target and on and server:
        speed = server / on
        checks.append(Check("faster than llama-server", speed > 1.0, f"{speed:.2f}x"))
    return Row(
        workload="W11",
        case=f"time to {what}",
        unit="s",
        agentkit=on,
        peers={"token by token": off, "llama-server": server},
        notes=notes,
        checks=checks,
    )
