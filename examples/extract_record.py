"""Extract a typed record from free text on the embedded model (SmolLM2-135M-Instruct), offline.

The answer's type is a pydantic model: the local runtime holds the model to its JSON Schema
with a grammar, so even a 135M model returns a valid `Order`, and `result.output` is one.

python examples/extract_record.py
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from agentkit import Agent


class Order(BaseModel):
    """One customer order."""

    customer: str
    item: str
    quantity: int = Field(ge=1, le=1000)
    city: str


TEXT = "Maria Lopez ordered 3 boxes of green tea, to be shipped to Lisbon."


def main() -> None:
    agent = Agent(
        "local",
        output_type=Order,
        instructions="Extract the order from the user's text.",
        temperature=0,
        max_tokens=120,
    )
    result = agent.run_sync(TEXT)
    order = result.output  # an Order, validated
    print(f"text> {TEXT}")
    print(f"customer: {order.customer}")
    print(f"item: {order.item}")
    print(f"quantity: {order.quantity}")
    print(f"city: {order.city}")
    print(f"json: {order.model_dump_json()}")


if __name__ == "__main__":
    main()
