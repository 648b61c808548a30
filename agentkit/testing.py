"""Test aids: runtimes that answer from a script or a function, and a transport that records
real model traffic once and replays it offline, so tests need no network and no model.

```python
from agentkit import Agent
from agentkit.testing import ScriptedRuntime

runtime = ScriptedRuntime([ScriptedRuntime.call("add", a=2, b=3), "5"])
result = Agent(runtime, tools=[add]).run_sync("What is 2 + 3?")
runtime.assert_complete()
```

- `ScriptedRuntime`: the next canned turn (`Turn`) for each request; records every request.
- `FunctionRuntime`: a function of the request decides each turn.
- `RecordingTransport`: an httpx transport that records to a JSON file and replays from it;
  a replayed request with no recording raises `NoRecording`.

`ScriptedRuntime` and `FunctionRuntime` are importable from `agentkit` as well.
"""

from agentkit.runtimes.recording import NoRecording, RecordingTransport
from agentkit.runtimes.scripted import FunctionRuntime, ScriptedRuntime, Turn

__all__ = ["FunctionRuntime", "NoRecording", "RecordingTransport", "ScriptedRuntime", "Turn"]
