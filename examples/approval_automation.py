"""An automation that stops for a person before it acts, and goes on in another process.

The agent handles a refund request on the embedded model. Issuing a refund needs approval, so
the first process stops there and saves the paused run as JSON; a second process, started
whenever the person has decided (after a restart, on another machine), resumes it.

python examples/approval_automation.py start  run.json      # pauses, writes run.json
python examples/approval_automation.py approve run.json     # issues the refund, answers
python examples/approval_automation.py deny run.json "needs a receipt"
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from agentkit import Agent, RunResult, RunState, tool

LEDGER = Path("refunds.log")  # in the current directory: what the refunds did


@tool(requires_approval=True)
def issue_refund(order_id: str, amount: float) -> str:
    """Refund an order: the money goes back to the customer.

    Args:
        order_id: The order's id, e.g. "A-1042".
        amount: The amount to refund, in euros.
    """
    with LEDGER.open("a") as ledger:
        ledger.write(f"{order_id} {amount:.2f}\n")
    return f"refunded {amount:.2f} EUR on order {order_id}"


def make_agent() -> Agent:
    """The same agent in every process: a state is refused by an agent with other tools."""
    return Agent(
        "local",
        tools=[issue_refund],
        instructions="You handle refund requests with the issue_refund tool.",
        max_tokens=48,
    )


def report(result: RunResult) -> None:
    if result.stop_reason == "approval":
        for call in result.pending:
            print(f"waiting for approval: {call.name}({json.dumps(call.arguments)}) [{call.id}]")
    else:
        for record in result.tool_calls:
            print(f"{record.call.name}: {record.output or record.error}")
        print("answer:", " ".join(result.output.split()))  # on one line


def main(argv: list[str]) -> int:
    command, state_file = argv[0], Path(argv[1])
    agent = make_agent()
    if command == "start":
        result = agent.run_sync("Order A-1042 was charged twice: please refund 120 euros.")
        if result.state is not None:
            state_file.write_text(result.state.to_json(indent=2))
            print(f"paused; state saved to {state_file}")
        report(result)
        return 0
    state = RunState.from_json(state_file.read_text())
    state_file.unlink()  # taken: nobody else resumes it
    ids = [call.id for call in state.pending]
    if command == "approve":
        result = agent.resume_sync(state, approve=ids)
    else:
        reason = argv[2] if len(argv) > 2 else ""
        result = agent.resume_sync(state, deny={call_id: reason for call_id in ids})
    report(result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
