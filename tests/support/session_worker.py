"""A process that runs an agent with a SQLite session, for the crash tests in
tests/test_sessions_crash.py.

    python session_worker.py DB SESSION FOLDER start|continue [PAUSE]

The model is a `FunctionRuntime` that follows a fixed plan, one turn per step of the run,
reading the step from the transcript, so a process that continues the run gets the same turns:

1. `charge(amount=5)`                       not idempotent
2. `save(key="order", value="paid")`         idempotent
3. `notify(text="a")`, `notify(text="b")`    not idempotent, sequential: one after the other
4. the answer, quoting every tool result

Each tool appends a line to FOLDER/<tool>.log when it acts (its side effect); `notify` also
appends to FOLDER/deps.log what its `RunContext` says (the process's deps, the call id, the
run id). PAUSE names where
the process stops for the test to kill it: `model:N` (the model's Nth step, once the steps
before it are complete), or `TOOL:N` (inside the Nth call of TOOL, after its side effect). There
the process writes FOLDER/paused and sleeps. The run's result is printed as JSON.

With PLAN=parallel in the environment, steps 1 and 2 are one step whose two calls run side by
side, and `save` stops only once the journal holds the result of `charge`.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from agentkit import (
    Agent,
    FunctionRuntime,
    Generation,
    ModelRequest,
    RunContext,
    SQLiteSession,
    tool,
)
from agentkit.runtimes.scripted import ScriptedRuntime

DB, SESSION, FOLDER, MODE = sys.argv[1:5]
PAUSE = sys.argv[5] if len(sys.argv) > 5 else ""
folder = Path(FOLDER)
calls: dict[str, int] = {}


def checkpoint(where: str) -> None:
    calls[where] = calls.get(where, 0) + 1
    if f"{where}:{calls[where]}" == PAUSE:
        # Written whole, then named: the test reads it as soon as the name exists.
        (folder / "paused.part").write_text(where)
        (folder / "paused.part").replace(folder / "paused")
        time.sleep(3600)


def effect(name: str, text: str) -> None:
    with open(folder / f"{name}.log", "a") as log:
        log.write(text + "\n")
        log.flush()


@tool
def charge(amount: int) -> str:
    """Charge the customer's card.

    Args:
        amount: Euros.
    """
    effect("charge", str(amount))
    checkpoint("charge")
    return f"charged {amount}"


@tool(idempotent=True)
def save(key: str, value: str) -> str:
    """Save a value under a key (saving it again changes nothing).

    Args:
        key: The key.
        value: The value.
    """
    effect("save", f"{key}={value}")
    (folder / f"{key}.state").write_text(value)
    if PARALLEL and PAUSE.startswith("save:"):
        while not any(  # the other call of the step finished and was journaled
            e.get("message", {}).get("name") == "charge" for e in session.load_sync()
        ):
            time.sleep(0.01)
    checkpoint("save")
    return f"saved {key}"


@tool(sequential=True)
def notify(text: str, ctx: RunContext[str]) -> str:
    """Send a notification.

    Args:
        text: What to say.
    """
    effect("notify", text)
    effect("deps", f"{text} {ctx.deps} {ctx.tool_call_id} {ctx.run_id}")
    checkpoint("notify")
    return f"sent {text}"


PARALLEL = os.environ.get("PLAN") == "parallel"
PLAN = [
    ScriptedRuntime.call("charge", amount=5),
    ScriptedRuntime.call("save", key="order", value="paid"),
    ScriptedRuntime.calls(("notify", {"text": "a"}), ("notify", {"text": "b"})),
]
if PARALLEL:
    both = ScriptedRuntime.calls(
        ("charge", {"amount": 5}), ("save", {"key": "order", "value": "paid"})
    )
    PLAN = [both, PLAN[2]]


def model(request: ModelRequest) -> Generation | str:
    step = sum(1 for m in request.messages if m.role == "assistant") + 1
    checkpoint("model")
    if step <= len(PLAN):
        turn = PLAN[step - 1]
        # Fresh ids each time, as a model makes them.
        return turn.model_copy(
            update={
                "tool_calls": [
                    c.model_copy(update={"id": f"call_{step}_{n}"})
                    for n, c in enumerate(turn.tool_calls)
                ]
            }
        )
    results = [m.content for m in request.messages if m.role == "tool"]
    return "done: " + " | ".join(results)


session = SQLiteSession(DB, SESSION)
agent = Agent(FunctionRuntime(model), tools=[charge, save, notify], max_steps=6)
if MODE == "start":
    result = agent.run_sync("Process the order.", session=session, deps="first process")
else:
    result = agent.run_sync(session=session, deps="second process")
print(result.model_dump_json())
