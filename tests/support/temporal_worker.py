"""A worker process for the durable-run tests: `python temporal_worker.py ADDRESS QUEUE DIR`.

Its tool `record` appends `label pid` to DIR/calls (the side effect the tests count); its model
calls `record` twice, with labels from the prompt, then answers. With `--hold`, the model's
second call writes DIR/holding and never returns (the test kills this process then). With
`--approval`, every call of `record` waits for approval. With `--handoff`, the worker serves
agents: `triage`, whose model hands off to `billing` at once, and `billing`, the model and
tool above. DIR/ready-PID appears once the worker polls.
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio

from agentkit import Agent, tool
from agentkit.model_api import Generation, ModelRequest
from agentkit.runtimes import FunctionRuntime, ScriptedRuntime
from agentkit.temporal import Worker, connect

parser = argparse.ArgumentParser()
parser.add_argument("address")
parser.add_argument("queue")
parser.add_argument("directory", type=Path)
parser.add_argument("--hold", action="store_true")
parser.add_argument("--tool-seconds", type=float, default=0.0)
parser.add_argument("--max-activities", type=int, default=20)
parser.add_argument("--approval", action="store_true", help="record's calls wait for approval")
parser.add_argument("--runtime-name", default="counting")
parser.add_argument("--handoff", action="store_true", help="serve agents: triage to billing")
args = parser.parse_args()


@tool(requires_approval=args.approval)
def record(label: str) -> str:
    """Record that this call ran.

    Args:
        label: What to record.
    """
    time.sleep(args.tool_seconds)
    with (args.directory / "calls").open("a") as f:
        f.write(f"{label} {os.getpid()}\n")
    return f"recorded {label}"


async def model(request: ModelRequest) -> Generation | str:
    prompt = next(m.content for m in request.messages if m.role == "user")
    done = [
        m.content
        for m in request.messages
        if m.role == "tool" and not m.content.startswith("Transferred to")
    ]
    if len(done) == 1 and args.hold:
        (args.directory / "holding").write_text(str(os.getpid()))
        await anyio.sleep_forever()
    if len(done) < 2:
        return ScriptedRuntime.call("record", label=f"{prompt}-{len(done) + 1}")
    return f"{prompt}: " + ", ".join(done)


def triage() -> Agent[str]:
    billing = Agent(FunctionRuntime(model), tools=[record], name="billing")
    transfer = ScriptedRuntime.call("transfer_to_billing")
    return Agent(FunctionRuntime(lambda request: transfer), name="triage", handoffs=[billing])


async def main() -> None:
    client = await connect(args.address)
    served: dict[str, Any] = {"agents": [triage()]}
    if not args.handoff:
        served = {"runtimes": {args.runtime_name: FunctionRuntime(model)}, "tools": [record]}
    worker = Worker(
        client,
        task_queue=args.queue,
        max_concurrent_activities=args.max_activities,
        sticky_queue_schedule_to_start_timeout=timedelta(seconds=1),
        **served,
    )
    async with worker:
        (args.directory / f"ready-{os.getpid()}").write_text("")
        await anyio.sleep_forever()


anyio.run(main)
