"""W7: the local model served to 1-8 streaming clients: agentkit, llama-server, llama-cpp-python.

The three servers are up at once, each on a free 127.0.0.1 port, and take turns batch by batch;
one httpx client for all; aggregate completion tokens/s and time to first token per client
count. docs/benchmarks.md (W7) says how to get llama-server, and what the figures mean.
"""

from __future__ import annotations

import asyncio
import os
import statistics
from collections.abc import Callable
from dataclasses import dataclass

from benchmarks import _local_servers as servers
from benchmarks._common import Budget, Check, Row, Unavailable
from benchmarks._local_servers import AGENTKIT, LLAMA_CPP_PYTHON, LLAMA_SERVER, Contender
from benchmarks._streaming import Batch, ServerProcess, free_port, stream_batch

CLIENTS = (1, 2, 4, 8)
SLOTS = 4
"""Continuous-batching slots of agentkit and llama-server at every client count (at 8 clients,
four wait)."""
MAX_TOKENS = 128
QUICK_TOKENS = 32
"""max_tokens of a --quick run: on 2 busy cores a smoke run must stay short."""
N_CTX = 8192
THREADS = 2
"""llama-server's `-t` and llama-cpp-python's `--n_threads`/`--n_threads_batch`; agentkit's
`--threads` if it has one (its local runtime uses every core otherwise)."""
MAX_QUEUE = 64
"""agentkit's `--max-queue`: far above the clients, so that none is ever answered 429."""
ENOUGH = 0.9
"""A request that generated fewer than this share of MAX_TOKENS stopped early."""
# Stories the model tells at length: greedy, each runs to max_tokens rather than to EOS. Every
# request a server gets has a prompt of its own, so no prompt cache turns a later request's first
# token into a lookup; every server gets the same prompts in the same order.
SUBJECTS = (
    "a lighthouse keeper and the sea",
    "a dragon who learns to bake bread",
    "two friends who build a boat",
    "a robot exploring an old library",
    "a girl who finds a map in the attic",
    "a village that loses its river",
    "an astronaut stranded on the moon",
    "a fox who opens a small shop",
)
SETTINGS = (
    "in winter",
    "long ago",
    "in a distant city",
    "in the mountains",
    "by a quiet lake",
    "in a busy market",
    "at the end of summer",
    "on a small island",
    "in a forest of tall pines",
    "during a great storm",
    "under a red sky",
    "in a forgotten valley",
)
PROMPTS = [f"Write a long story about {s}, {t}." for t in SETTINGS for s in SUBJECTS]
WARMUP = "Write a long story about a cat who sails around the world."


@dataclass
class Figures:
    """One server at one client count, over every repeat and round."""

    batches: list[Batch]
    tokens: list[int]
    ttft: list[float]
    errors: list[str]
    early: int

    @property
    def throughput(self) -> float | None:
        """Completion tokens per second of wall time, all clients together."""
        wall = sum(b.wall for b in self.batches)
        return sum(self.tokens) / wall if wall and not self.errors else None


def _percentile(samples: list[float], q: float) -> float | None:
    """The q-th percentile (0-100), linear between the closest ranks."""
    if not samples:
        return None
    ordered = sorted(samples)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


Measured = list[tuple[Batch, list[int]]]
"""Batches at one client count, each with its requests' completion tokens."""


def _batch(server: ServerProcess, contender: Contender, prompts: list[str], tokens: int) -> Batch:
    return asyncio.run(
        stream_batch(
            server.base_url,
            contender.path,
            contender.model,
            prompts,
            max_tokens=tokens,
            include_usage=True,
        )
    )


def _start(contender: Contender) -> ServerProcess:
    """The contender's server, started and warmed up."""
    server = contender.start(free_port())
    server.start()
    warm = _batch(server, contender, [WARMUP], 16)
    if any(r.error for r in warm.replies):
        server.stop()
        raise RuntimeError(f"{contender.name}: warm-up failed: {warm.replies[0].error}")
    return server


def run(budget: Budget) -> list[Row]:
    try:
        import httpx  # noqa: F401
        import llama_cpp  # noqa: F401

        from agentkit.runtimes.llama_cpp import embedded_model_path
        from agentkit.server.app import create_app  # noqa: F401
    except ImportError as exc:
        raise Unavailable(f"needs the local and server extras ({exc.name})") from None
    from benchmarks._streaming import token_counter

    model = embedded_model_path()
    ours = servers.agentkit(model, slots=SLOTS, threads=THREADS, max_queue=MAX_QUEUE)
    contenders = [ours]
    missing: dict[str, str] = {}
    makers: list[tuple[str, Callable[[], Contender]]] = [
        (
            LLAMA_SERVER,
            lambda: servers.llama_server(model, slots=SLOTS, threads=THREADS, n_ctx=N_CTX),
        ),
        (
            LLAMA_CPP_PYTHON,
            lambda: servers.llama_cpp_python(model, threads=THREADS, n_ctx=N_CTX),
        ),
    ]
    for key, make in makers:
        try:
            contenders.append(make())
        except Unavailable as exc:
            missing[key] = str(exc)
    count = token_counter(model)
    max_tokens = QUICK_TOKENS if budget.quick else MAX_TOKENS

    def repeats(n: int) -> int:
        """Batches per client count and round: at least four requests each, two at 4 and 8
        clients, where the targets are tightest. A --quick run sends one."""
        return 1 if budget.quick else max(2, 4 // n)

    rounds = budget.n(3, 1)
    assert rounds * sum(n * repeats(n) for n in CLIENTS) <= len(PROMPTS)
    runs: dict[str, dict[int, Measured]] = {c.key: {n: [] for n in CLIENTS} for c in contenders}
    # Every server stays up for the whole run, idle while another is measured, and the servers
    # take turns batch by batch: a slower or faster spell of the machine falls on all of them
    # alike, instead of on whichever server it happened to be running.
    up: list[tuple[Contender, ServerProcess]] = []
    try:
        for contender in contenders:
            try:
                up.append((contender, _start(contender)))
            except RuntimeError as exc:
                if contender is ours:
                    raise
                missing[contender.key] = str(exc)
        prompts = iter(PROMPTS)
        turn = 0
        for _ in range(rounds):
            for n in CLIENTS:
                for _ in range(repeats(n)):
                    batch_prompts = [next(prompts) for _ in range(n)]
                    turn += 1
                    for contender, server in up[turn % len(up) :] + up[: turn % len(up)]:
                        done = _batch(server, contender, batch_prompts, max_tokens)
                        tokens = [
                            r.usage_tokens if r.usage_tokens is not None else count(r.text)
                            for r in done.replies
                        ]
                        runs[contender.key][n].append((done, tokens))
    finally:
        for _, server in up:
            server.stop()
    figures = {
        key: {n: _figures(batches, max_tokens) for n, batches in per_n.items()}
        for key, per_n in runs.items()
        if key not in missing
    }
    names = {c.key: c.name for c in contenders}
    rows = _rows(names, figures)
    rows[0].notes += _notes(contenders, figures, missing, count, runs, max_tokens)
    rows[0].checks.append(_sanity(names, figures, max_tokens))
    return rows + _ratios(figures)


def _figures(batches: Measured, max_tokens: int) -> Figures:
    replies = [r for b, _ in batches for r in b.replies]
    tokens = [t for _, ts in batches for t in ts]
    errors = [r.error for r in replies if r.error]
    early = sum(1 for t in tokens if t < ENOUGH * max_tokens)
    ttft = [r.ttft for r in replies if r.ttft is not None]
    return Figures([b for b, _ in batches], tokens, ttft, errors, early)


def _ms(q: float) -> Callable[[Figures], float | None]:
    def at(f: Figures) -> float | None:
        value = _percentile(f.ttft, q)
        return None if value is None else value * 1e3

    return at


def _rows(names: dict[str, str], figures: dict[str, dict[int, Figures]]) -> list[Row]:
    """Per client count: throughput, p50 and p95 TTFT, agentkit's and each peer's."""

    def value(key: str, n: int, what: Callable[[Figures], float | None]) -> float | None:
        per_n = figures.get(key)
        return what(per_n[n]) if per_n else None

    def row(case: str, unit: str, n: int, what: Callable[[Figures], float | None]) -> Row:
        peers = {names.get(k, k): value(k, n, what) for k in (LLAMA_SERVER, LLAMA_CPP_PYTHON)}
        return Row("W7", case, unit, value(AGENTKIT, n, what), peers)

    rows: list[Row] = []
    for n in CLIENTS:
        waiting = f", {n - SLOTS} waiting" if n > SLOTS else ""
        label = f"{_clients(n)}, {SLOTS} slots{waiting}"
        speed = row(f"{label}: aggregate throughput", "tokens/s", n, lambda f: f.throughput)
        speed.lower_is_better = False
        rows.append(speed)
        rows += [row(f"{label}: p{q} time to first token", "ms", n, _ms(q)) for q in (50, 95)]
    return rows


def _clients(n: int) -> str:
    return "1 client" if n == 1 else f"{n} clients"


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _check(target: str, ratio: float | None, met: Callable[[float], bool]) -> Check:
    detail = f"{ratio:.2f}x" if ratio is not None else "no figure"
    return Check(target, ratio is not None and met(ratio), detail)


def _ratios(figures: dict[str, dict[int, Figures]]) -> list[Row]:
    """agentkit against llama-server at every client count, and against llama-cpp-python's
    server at four; with the targets. A missing peer leaves its rows empty and unchecked."""
    mine = figures.get(AGENTKIT)
    anchor = figures.get(LLAMA_SERVER)
    rows: list[Row] = []
    for n in CLIENTS:
        speed = first = None
        if mine and anchor:
            speed = _ratio(mine[n].throughput, anchor[n].throughput)
            first = _ratio(_percentile(mine[n].ttft, 95), _percentile(anchor[n].ttft, 95))
        speed_row = Row(
            "W7",
            f"{_clients(n)}: agentkit / llama-server throughput",
            "x",
            speed,
            lower_is_better=False,
        )
        first_row = Row("W7", f"{_clients(n)}: agentkit p95 TTFT / llama-server's", "x", first)
        if anchor:
            speed_row.checks.append(
                _check(
                    f">= 0.9x llama-server throughput at {_clients(n)}", speed, lambda r: r >= 0.9
                )
            )
            first_row.checks.append(
                _check(
                    f"p95 TTFT within 1.5x of llama-server's at {_clients(n)}",
                    first,
                    lambda r: r <= 1.5,
                )
            )
        rows += [speed_row, first_row]
    other = figures.get(LLAMA_CPP_PYTHON)
    speed = _ratio(mine[4].throughput, other[4].throughput) if mine and other else None
    row = Row(
        "W7",
        "4 clients: agentkit / llama-cpp-python server throughput",
        "x",
        speed,
        lower_is_better=False,
    )
    if other:
        row.checks.append(
            _check(">= 1.7x llama-cpp-python's server at 4 clients", speed, lambda r: r >= 1.7)
        )
    return [*rows, row]


def _sanity(
    names: dict[str, str], figures: dict[str, dict[int, Figures]], max_tokens: int
) -> Check:
    """Every server streamed every request to (nearly) max_tokens, without an error."""
    bad = []
    for key, per_n in figures.items():
        errors = sum(len(f.errors) for f in per_n.values())
        early = sum(f.early for f in per_n.values())
        if errors or early:
            bad.append(f"{names[key]}: {errors} errors, {early} stopped early")
    return Check(
        f"every request streams >= {ENOUGH:.0%} of {max_tokens} tokens, no errors",
        not bad,
        "; ".join(bad) or "all did",
    )


def _notes(
    contenders: list[Contender],
    figures: dict[str, dict[int, Figures]],
    missing: dict[str, str],
    count_tokens: Callable[[str], int],
    runs: dict[str, dict[int, Measured]],
    max_tokens: int,
) -> list[str]:
    notes = [
        f"greedy, max_tokens {max_tokens}, n_ctx {N_CTX}; throughput = completion tokens of all "
        "clients / wall time from the first request sent to the last stream's end; TTFT to the "
        "first content-bearing chunk; threads: "
        + "; ".join(
            f"{c.name}: {c.threads}"
            if c.threads
            else f"{c.name}: its runtime's default, every core ({os.cpu_count()})"
            for c in contenders
        )
    ]
    if "--parallel" not in contenders[0].name:
        notes.append(f"{AGENTKIT} has no --parallel here: one request at a time")
    for c in contenders:
        if c.key not in figures:
            continue
        tokens = [t for f in figures[c.key].values() for t in f.tokens]
        replies = [r for n in CLIENTS for b, _ in runs[c.key][n] for r in b.replies]
        with_usage = [r for r in replies if r.usage_tokens is not None]
        source = "server's usage" if len(with_usage) == len(replies) else "tokenizer on the text"
        drift = [abs(count_tokens(r.text) - (r.usage_tokens or 0)) for r in with_usage]
        notes.append(
            f"{c.name}: {len(tokens)} requests, completion tokens each min {min(tokens)} mean "
            f"{statistics.mean(tokens):.1f} ({source}"
            + (f"; the text re-tokenized differs by <= {max(drift)}" if drift else "")
            + ")"
        )
        for n, f in figures[c.key].items():
            if f.errors:
                notes.append(
                    f"{c.name} at {_clients(n)}: {len(f.errors)} errors, first {f.errors[0]}"
                )
    notes += [f"{key}: unavailable: {reason}" for key, reason in missing.items()]
    return notes
