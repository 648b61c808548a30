"""Sessions: conversations that outlive a run and a process, and runs that survive a crash.

```python
session = SQLiteSession("chat.db", "alice", limit=HistoryLimit(max_messages=40))
await agent.run("My name is Alice.", session=session)
result = await agent.run("What is my name?", session=session)  # sees the first exchange
await agent.run(session=session)  # after a crash: continues the interrupted run
```

See docs/sessions.md for the journal, recovery and the guarantees under concurrency.
"""

from agentkit.sessions.base import Entry, HistoryLimit, Session, estimate_tokens, limit_history
from agentkit.sessions.memory import MemorySession
from agentkit.sessions.runs import (
    INTERRUPTED,
    InterruptedRun,
    discard_interrupted,
    history,
    interrupted_run,
)
from agentkit.sessions.sqlite import SQLiteSession

__all__ = [
    "INTERRUPTED",
    "Entry",
    "HistoryLimit",
    "InterruptedRun",
    "MemorySession",
    "SQLiteSession",
    "Session",
    "discard_interrupted",
    "estimate_tokens",
    "history",
    "interrupted_run",
    "limit_history",
]
