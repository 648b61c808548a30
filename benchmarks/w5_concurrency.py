"""W5: concurrency: 1,000 agent runs at once against a Workers-AI-shaped server on 127.0.0.1."""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks._agents import counter
from benchmarks._common import Budget, Check, Row, Unavailable

RUNS = 1000
LATENCY = 0.02
ACCOUNT = "0123456789abcdef"
TOKEN = "bench-token"
ROOT = Path(__file__).resolve().parent.parent
# smolagents is synchronous: 1,000 concurrent runs would mean 1,000 threads, so it sits out.
FRAMEWORKS = ["agentkit", "pydantic-ai", "openai-agents"]


def _rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _http_client() -> Any:
    import httpx

    # The same pool for everyone: the OpenAI SDK's own default limits.
    return httpx.AsyncClient(
        limits=httpx.Limits(max_connections=1000, max_keepalive_connections=100),
        timeout=httpx.Timeout(60.0),
    )


async def _child(name: str, runs: int, port: int) -> dict[str, Any]:
    import anyio

    base = f"http://127.0.0.1:{port}"
    add, executions = counter()
    client = _http_client()
    if name == "agentkit":
        from agentkit import Agent
        from agentkit.runtimes.workers_ai import WorkersAI

        runtime = WorkersAI(ACCOUNT, TOKEN, base_url=base, client=client, max_retries=0)
        agent = Agent(runtime, tools=[add])

        async def one() -> str:
            return (await agent.run("What is 2 + 3? Use the add tool.")).output

    elif name == "pydantic-ai":
        from openai import AsyncOpenAI
        from pydantic_ai import Agent as PAgent
        from pydantic_ai.models.openai import OpenAIChatModel
        from pydantic_ai.providers.openai import OpenAIProvider

        openai_client = AsyncOpenAI(
            base_url=f"{base}/accounts/{ACCOUNT}/ai/v1",
            api_key=TOKEN,
            http_client=client,
            max_retries=0,
        )
        model = OpenAIChatModel(
            "@cf/meta/llama-3.1-8b-instruct", provider=OpenAIProvider(openai_client=openai_client)
        )
        pagent = PAgent(model, tools=[add])

        async def one() -> str:
            return str((await pagent.run("What is 2 + 3? Use the add tool.")).output)

    elif name == "openai-agents":
        from agents import Agent as OAgent
        from agents import OpenAIChatCompletionsModel, Runner, function_tool, set_tracing_disabled
        from openai import AsyncOpenAI

        set_tracing_disabled(True)
        openai_client = AsyncOpenAI(
            base_url=f"{base}/accounts/{ACCOUNT}/ai/v1",
            api_key=TOKEN,
            http_client=client,
            max_retries=0,
        )
        oagent = OAgent(
            name="bench",
            model=OpenAIChatCompletionsModel("@cf/meta/llama-3.1-8b-instruct", openai_client),
            tools=[function_tool(add)],
        )

        async def one() -> str:
            return str((await Runner.run(oagent, "What is 2 + 3? Use the add tool.")).final_output)

    else:
        raise SystemExit(f"unknown framework {name}")

    errors: list[str] = []
    answers = {"ok": 0}

    async def guarded() -> None:
        try:
            output = await one()
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}"[:200])
            return
        if output.strip() == "5":
            answers["ok"] += 1
        else:
            errors.append(f"wrong answer {output!r}")

    await guarded()  # warm-up: imports, first connection
    base_rss = _rss_kb()
    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(runs):
            tg.start_soon(guarded)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    await client.aclose()
    return {
        "seconds": seconds,
        "base_rss_kb": base_rss,
        "peak_rss_kb": peak,
        "errors": len(errors),
        "first_errors": errors[:3],
        "ok": answers["ok"] - 1,
        "executions": executions() - 1,
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for(port: int, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError("the fake Workers AI server exited")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("the fake Workers AI server did not start")


def _measure(name: str, runs: int, port: int) -> dict[str, Any]:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.w5_concurrency",
            "--child",
            name,
            "--runs",
            str(runs),
            "--port",
            str(port),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    if out.returncode != 0:
        raise RuntimeError(f"W5 {name} failed: {out.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def run(budget: Budget) -> list[Row]:
    try:
        import agentkit.runtimes.workers_ai  # noqa: F401
    except ImportError as exc:
        raise Unavailable(f"agentkit.runtimes.workers_ai is not importable ({exc})") from None
    runs = budget.n(RUNS, 100)
    small = max(1, runs // 4)
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "benchmarks._fake_workers_ai", str(port), str(LATENCY)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        _wait_for(port, server)
        results = {name: _measure(name, runs, port) for name in FRAMEWORKS}
        small_agentkit = _measure("agentkit", small, port)
    finally:
        server.terminate()
        server.wait(timeout=10)
    for name, r in results.items():
        if r["executions"] != r["ok"] and not r["errors"]:
            raise AssertionError(f"W5 {name}: {r['ok']} answers but {r['executions']} tool runs")
    per_run = {n: (r["peak_rss_kb"] - r["base_rss_kb"]) / runs for n, r in results.items()}
    ak = results["agentkit"]
    peers = [n for n in FRAMEWORKS if n != "agentkit"]
    time_row = Row(
        "W5",
        f"{runs:,} concurrent runs: total time",
        "s",
        ak["seconds"],
        {p: results[p]["seconds"] for p in peers},
        notes=[
            f"2 model calls per run, {LATENCY * 1000:.0f} ms server latency each; peers use the "
            "server's OpenAI-compatible endpoint through the OpenAI SDK; smolagents sits out "
            "(synchronous)",
            *(
                f"{n}: {r['errors']} errors, first: {r['first_errors']}"
                for n, r in results.items()
                if r["errors"]
            ),
        ],
    )
    memory_row = Row(
        "W5",
        f"{runs:,} concurrent runs: peak memory per run",
        "KiB/run",
        per_run["agentkit"],
        {p: per_run[p] for p in peers},
        notes=[f"peak RSS {n}: {r['peak_rss_kb'] / 1024:.0f} MiB" for n, r in results.items()],
    )
    small_per_run = (small_agentkit["peak_rss_kb"] - small_agentkit["base_rss_kb"]) / small
    flat = per_run["agentkit"] <= max(small_per_run, 1.0) * 1.5
    time_row.checks.append(
        Check(
            f"{runs:,} concurrent runs finish with no errors",
            ak["errors"] == 0 and ak["ok"] == runs and ak["executions"] == runs,
            f"{ak['ok']} answers, {ak['executions']} tool runs, {ak['errors']} errors",
        )
    )
    memory_row.checks.append(
        Check(
            "flat memory per run",
            flat,
            f"{small_per_run:.1f} KiB/run at {small:,} runs, {per_run['agentkit']:.1f} at {runs:,}",
        )
    )
    return [time_row, memory_row]


def child_main() -> None:
    import asyncio

    parser = argparse.ArgumentParser()
    parser.add_argument("--child", required=True)
    parser.add_argument("--runs", type=int, required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(_child(args.child, args.runs, args.port))))


if __name__ == "__main__":
    child_main()
