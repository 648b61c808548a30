"""Agents files (`--agents FILE`: a module whose `agent` is the agent to run) for the command
line's tests, on scripted runtimes."""

from __future__ import annotations

TRIAGE_TO_BILLING = '''
from agentkit import Agent, ScriptedRuntime, tool


@tool
def invoice(order: int) -> str:
    """An order's invoice.

    Args:
        order: The order number.
    """
    return f"order {order}: 12.50 EUR, paid"


billing = Agent(
    # Two runs' turns: one handed over by triage, one that billing starts.
    ScriptedRuntime([ScriptedRuntime.call("invoice", order=7), "Order 7 is paid."] * 2),
    tools=[invoice],
    name="billing",
)
agent = Agent(
    ScriptedRuntime([ScriptedRuntime.call("transfer_to_billing")]),
    name="triage",
    handoffs=[billing],
)
'''
"""A triage agent that hands over to billing, which answers through its `invoice` tool;
billing has the turns of two runs (one handed over, one it starts)."""
