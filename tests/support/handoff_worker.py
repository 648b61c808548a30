"""A process that runs a triage agent handing off to a billing agent, for the handoff tests
in tests/test_handoffs.py that cross processes.

    python handoff_worker.py FOLDER start|resume            (approval: the state as JSON)
    python handoff_worker.py FOLDER run|continue DB [PAUSE]  (a SQLite session, killed)

Both agents' models are `FunctionRuntime`s that follow a fixed plan, reading where they are
from what they see, so a process that takes the run up gets the same turns:

- triage: `transfer_to_billing(order=7)` (a handoff that returns), then, once it sees
  billing's answer as the transfer's result, the answer `triage: <that answer>`;
- billing: `charge(amount=5)`, then `receipt(order=7)`, then `billing: <their results>`.

`charge` (not idempotent) needs approval in `start`/`resume`; each tool appends a line to
FOLDER/<tool>.log when it acts, and each model call a line to FOLDER/requests.log: the agent,
its system message and its tools' names. PAUSE names where the process stops for the test to
kill it: `AGENT:N`, the Nth model call of AGENT (`triage` or `billing`) in this process, or
`charge:1`, inside `charge` after its effect. There the process writes FOLDER/paused and
sleeps. `start` writes the paused run's state to FOLDER/state.json; the others print the
run's result as JSON.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from agentkit import (
    Agent,
    FunctionRuntime,
    Generation,
    ModelRequest,
    RunState,
    ScriptedRuntime,
    SQLiteSession,
    Usage,
    handoff,
    tool,
)

FOLDER, MODE = Path(sys.argv[1]), sys.argv[2]
DB = sys.argv[3] if len(sys.argv) > 3 else ""
PAUSE = sys.argv[4] if len(sys.argv) > 4 else ""
APPROVAL = MODE in ("start", "resume")
counts: dict[str, int] = {}


def checkpoint(where: str) -> None:
    counts[where] = counts.get(where, 0) + 1
    if f"{where}:{counts[where]}" == PAUSE:
        # Written whole, then named: the test reads it as soon as the name exists.
        (FOLDER / "paused.part").write_text(where)
        (FOLDER / "paused.part").replace(FOLDER / "paused")
        time.sleep(3600)


def effect(name: str, text: str) -> None:
    with open(FOLDER / f"{name}.log", "a") as log:
        log.write(text + "\n")


@tool(requires_approval=APPROVAL)
def charge(amount: int) -> str:
    """Charge the customer's card.

    Args:
        amount: Euros.
    """
    effect("charge", str(amount))
    checkpoint("charge")
    return f"charged {amount}"


@tool
def receipt(order: int) -> str:
    """Send a receipt.

    Args:
        order: The order number.
    """
    effect("receipt", str(order))
    return f"receipt for {order}"


class Order(BaseModel):
    order: int


def seen(agent: str, request: ModelRequest) -> None:
    system = request.messages[0].content if request.messages[0].role == "system" else ""
    tools = ",".join(t.name for t in request.tools)
    effect("requests", f"{agent} | {system} | {tools}")
    checkpoint(agent)


def call(name: str, step: int, **arguments: object) -> Generation:
    turn = ScriptedRuntime.call(name, **arguments)
    return turn.model_copy(
        update={"tool_calls": [turn.tool_calls[0].model_copy(update={"id": f"{name}_{step}"})]}
    )


def counted(turn: Generation | str, tokens: int) -> Generation:
    """The turn, with usage: `tokens` prompt tokens and one completion token."""
    made = ScriptedRuntime.answer(turn) if isinstance(turn, str) else turn
    return made.model_copy(update={"usage": Usage(prompt_tokens=tokens, completion_tokens=1)})


def billing_model(request: ModelRequest) -> Generation:
    seen("billing", request)
    results = {m.name: m.content for m in request.messages if m.role == "tool"}
    if "charge" not in results:
        return counted(call("charge", 1, amount=5), 100)
    if "receipt" not in results:
        return counted(call("receipt", 2, order=7), 100)
    return counted(f"billing: {results['charge']}, {results['receipt']}", 100)


def triage_model(request: ModelRequest) -> Generation:
    seen("triage", request)
    last = request.messages[-1]
    if last.role == "tool" and last.name == "transfer_to_billing":
        return counted(f"triage: {last.content}", 10)
    return counted(call("transfer_to_billing", 1, order=7), 10)


class Model(FunctionRuntime):
    """A function as a model of a name of its own (each agent's usage counts under it)."""

    def __init__(self, decide: Any, model: str) -> None:
        super().__init__(decide)
        self.model = model


billing = Agent(
    Model(billing_model, "billing-model"),
    tools=[charge, receipt],
    name="billing",
    instructions="You answer billing questions.",
)
triage = Agent(
    Model(triage_model, "triage-model"),
    name="triage",
    instructions="You route questions.",
    handoffs=[handoff(billing, input_type=Order, returns=True)],
)

if MODE == "start":
    result = triage.run_sync("Charge order 7.")
    assert result.state is not None, result.stop_reason
    (FOLDER / "state.json").write_text(result.state.to_json())
elif MODE == "resume":
    state = RunState.from_json((FOLDER / "state.json").read_text())
    result = triage.resume_sync(state, approve=[c.id for c in state.pending])
    print(result.model_dump_json())
elif MODE == "run":
    result = triage.run_sync("Charge order 7.", session=SQLiteSession(DB, "orders"))
    print(result.model_dump_json())
else:
    print(json.dumps(triage.run_sync(session=SQLiteSession(DB, "orders")).model_dump(mode="json")))
