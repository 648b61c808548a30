"""Durable agent runs on Temporal: the loop as a workflow, model and tool calls as activities.

Needs `pip install 'agentkit[temporal]'`. See docs/durable.md.

```python
from agentkit.temporal import Worker, connect, run

client = await connect("127.0.0.1:7233")
async with Worker(client, task_queue="agents", runtimes={"local": runtime}, tools=[add]):
    result = await run(client, "What is 2 + 3?", task_queue="agents")
```

A worker may serve agents instead, which hand off to each other as in process:
`Worker(client, task_queue="agents", agents=[triage])`.

The names load the Temporal SDK when first used, so that importing this package costs nothing
without it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentkit.temporal.activities import Activities
    from agentkit.temporal.contract import ActivityOptions, Decisions, Progress, RunInput
    from agentkit.temporal.worker import (
        DurableRunFailed,
        Worker,
        connect,
        decide,
        progress,
        replayer,
        result,
        run,
        start_run,
    )
    from agentkit.temporal.workflow import WORKFLOW, AgentWorkflow

__all__ = [
    "WORKFLOW",
    "Activities",
    "ActivityOptions",
    "AgentWorkflow",
    "Decisions",
    "DurableRunFailed",
    "Progress",
    "RunInput",
    "Worker",
    "connect",
    "decide",
    "progress",
    "replayer",
    "result",
    "run",
    "start_run",
]

_WHERE = {
    "Activities": "activities",
    "ActivityOptions": "contract",
    "Decisions": "contract",
    "Progress": "contract",
    "RunInput": "contract",
    "WORKFLOW": "workflow",
    "AgentWorkflow": "workflow",
}


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'agentkit.temporal' has no attribute {name!r}")
    module = importlib.import_module(f"agentkit.temporal.{_WHERE.get(name, 'worker')}")
    return getattr(module, name)
