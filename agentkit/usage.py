"""Usage per model, and what it costs: an optional price table per million tokens.

```python
agent = Agent(runtime, prices={"@cf/meta/llama-3.1-8b-instruct": ModelPrice(0.28, 0.83)})
result = await agent.run("...")
result.usage_by_model   # {"@cf/meta/llama-3.1-8b-instruct": Usage(...)}
result.cost             # in the table's currency; None when a model used has no price
```
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentkit.errors import UserError
from agentkit.model_api import Usage

__all__ = ["ModelPrice", "PriceTable", "cost", "model_name"]


@dataclass(frozen=True)
class ModelPrice:
    """What a model's tokens cost, per million.

    Attributes:
        input: the price of a million prompt (input) tokens.
        output: the price of a million completion (output) tokens.
    """

    input: float
    output: float

    def __post_init__(self) -> None:
        for name in ("input", "output"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise UserError(f"ModelPrice.{name}: must be a number >= 0 (got {value!r})")

    def of(self, usage: Usage) -> float:
        """The cost of `usage`."""
        return (usage.prompt_tokens * self.input + usage.completion_tokens * self.output) / 1e6


PriceTable = Mapping[str, ModelPrice]
"""Prices by model name, as `model_name` reports it (e.g. `@cf/meta/llama-3.1-8b-instruct`)."""


def model_name(runtime: Any) -> str:
    """The model a runtime serves: its `model`, the stem of its `model_path` (local GGUF
    files), or else the runtime's name."""
    model = getattr(runtime, "model", None)
    if isinstance(model, str) and model:
        return model
    path = getattr(runtime, "model_path", None)
    if isinstance(path, (str, Path)) and str(path):
        return Path(path).stem
    return str(getattr(runtime, "name", "unknown"))


def cost(usage_by_model: Mapping[str, Usage], prices: PriceTable) -> float | None:
    """The cost of the usage, or None when a model that was used has no price."""
    total = 0.0
    for model, usage in usage_by_model.items():
        price = prices.get(model)
        if price is None:
            return None
        total += price.of(usage)
    return total


def check_prices(prices: PriceTable | None) -> PriceTable | None:
    """`prices`, checked: model names to `ModelPrice`s."""
    if prices is None:
        return None
    if not isinstance(prices, Mapping):
        raise UserError(f"prices: must map model names to ModelPrice (got {type(prices).__name__})")
    for model, price in prices.items():
        if not isinstance(price, ModelPrice):
            raise UserError(
                f"prices[{model!r}]: must be a ModelPrice(input, output) "
                f"(got {type(price).__name__})"
            )
    return dict(prices)


def rebooked(
    by_model: Mapping[str, Usage], moves: Mapping[str, Mapping[str, Usage]]
) -> dict[str, Usage]:
    """`by_model` with usage moved between models: `moves[source][target]` is usage booked
    under `source` that belongs to `target` (a step another model answered, through a
    `Fallback`). A source left with no tokens goes."""
    out = dict(by_model)
    for source, targets in moves.items():
        taken = sum(targets.values(), Usage())
        left = out.get(source, Usage())
        rest = Usage.of(
            left.prompt_tokens - taken.prompt_tokens,
            left.completion_tokens - taken.completion_tokens,
        )
        rest.cache_hits = left.cache_hits - taken.cache_hits
        if rest.total_tokens or rest.cache_hits or not taken.total_tokens:
            out[source] = rest
        else:
            out.pop(source, None)
        add_usage(out, targets)
    return out


def add_usage(by_model: dict[str, Usage], more: Mapping[str, Usage]) -> dict[str, Usage]:
    """Add `more` into `by_model`, model by model; returns `by_model`."""
    for model, usage in more.items():
        known = by_model.get(model)
        by_model[model] = usage if known is None else known + usage
    return by_model
