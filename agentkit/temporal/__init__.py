"""Durable agent runs on Temporal: the loop as a workflow, model and tool calls as activities.

Needs `pip install 'agentkit[temporal]'`. See docs/durable.md.

```python
from agentkit.temporal import Worker, connect, run

client = await connect("127.0.0.1:7233")
async with Worker(client, task_queue="agents", runtimes={"local": runtime}, tools=[add]):
    result = await run(client, "What is 2 + 3?", task_queue="agents")
```
"""

from agentkit.temporal.activities import Activities
from agentkit.temporal.contract import ActivityOptions, Progress, RunInput
from agentkit.temporal.worker import (
    DurableRunFailed,
    Worker,
    connect,
    progress,
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
    "DurableRunFailed",
    "Progress",
    "RunInput",
    "Worker",
    "connect",
    "progress",
    "result",
    "run",
    "start_run",
]
