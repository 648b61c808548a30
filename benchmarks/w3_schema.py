"""W3: schema generation: 200 generated functions with varied signatures, µs per function, cold."""

from __future__ import annotations

import importlib.util
import inspect
import itertools
import random
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, get_type_hints

from benchmarks._common import Budget, Check, Row

FUNCTIONS = 200

# (annotation, possible default, description)
_TYPES: list[tuple[str, str | None, str]] = [
    ("int", "3", "A count."),
    ("float", "0.5", "A ratio between 0 and 1."),
    ("str", '"metric"', "A free text label."),
    ("bool", "False", "Whether to include details."),
    ("Optional[int]", "None", "An optional limit."),
    ('Literal["asc", "desc"]', '"asc"', "The sort order."),
    ("list[int]", None, "Item identifiers."),
    ("list[str]", None, "Tags to match."),
    ("dict[str, int]", None, "Counts per key."),
    ("Color", "Color.RED", "The colour to use."),
    ("Point", None, "Where it happens."),
    ("Optional[list[float]]", "None", "Optional weights."),
]

_HEADER = '''
from enum import Enum
from typing import Literal, Optional
from pydantic import BaseModel


class Color(Enum):
    RED = "red"
    GREEN = "green"


class Point(BaseModel):
    """A point on a map."""

    x: float
    y: float
    label: Optional[str] = None
'''


def source(count: int = FUNCTIONS, seed: int = 7) -> str:
    """The same module text for every peer: `count` functions, each fully documented."""
    rng = random.Random(seed)
    parts = [_HEADER]
    for i in range(count):
        chosen = rng.sample(_TYPES, rng.randint(1, 7))
        # Parameters with a default go last, as Python requires.
        chosen.sort(key=lambda t: t[1] is not None and rng.random() < 0.6)
        params, docs, defaults_started = [], [], False
        for j, (annotation, default, text) in enumerate(chosen):
            name = f"p{j}_{annotation.split('[')[0].lower()}"
            use_default = default is not None and (defaults_started or rng.random() < 0.5)
            if use_default:
                defaults_started = True
                params.append(f"{name}: {annotation} = {default}")
            elif defaults_started:
                params.append(f"{name}: Optional[{annotation}] = None")
            else:
                params.append(f"{name}: {annotation}")
            docs.append(f"        {name}: {text}")
        parts.append(
            f"def tool_{i}({', '.join(params)}) -> str:\n"
            f'    """Do task number {i} on the given inputs.\n\n'
            f"    Longer explanation of what task {i} does with its arguments.\n\n"
            f"    Args:\n" + "\n".join(docs) + '\n    """\n    return "ok"\n\n'
        )
    return "\n".join(parts)


_loaded = itertools.count()
_FILES = tempfile.TemporaryDirectory(prefix="agentkit-w3-")  # removed at exit


def fresh_functions(text: str) -> list[Callable[..., Any]]:
    """The functions of a newly imported copy of the module (a real file: some peers read the
    source), so no peer finds anything cached on them."""
    name = f"_w3_generated_{next(_loaded)}"
    path = Path(_FILES.name) / f"{name}.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return [getattr(module, f"tool_{i}") for i in range(FUNCTIONS)]


# -- each builder makes the definition it would send a model, from one function -------------


def agentkit_build(fn: Callable[..., Any]) -> Any:
    from agentkit import tool

    made = tool(fn)
    return made.to_legacy(), made.to_function()


def pydantic_ai_build(fn: Callable[..., Any]) -> Any:
    from pydantic_ai import Tool

    return Tool(fn).tool_def


def openai_agents_build(fn: Callable[..., Any]) -> Any:
    from agents import function_tool

    return function_tool(fn).params_json_schema


def smolagents_build(fn: Callable[..., Any]) -> Any:
    from smolagents import tool
    from smolagents.models import get_tool_json_schema

    return get_tool_json_schema(tool(fn))


def langchain_build(fn: Callable[..., Any]) -> Any:
    from langchain_core.utils.function_calling import convert_to_openai_tool

    return convert_to_openai_tool(fn)


def pydantic_floor_build(fn: Callable[..., Any]) -> Any:
    """pydantic alone: a model of the parameters and its JSON Schema, nothing else."""
    from pydantic import create_model

    hints = get_type_hints(fn)
    fields: dict[str, Any] = {}
    for p in inspect.signature(fn).parameters.values():
        fields[p.name] = (hints[p.name], ... if p.default is p.empty else p.default)
    return create_model(fn.__name__, **fields).model_json_schema()


BUILDERS: dict[str, Callable[[Callable[..., Any]], Any]] = {
    "agentkit": agentkit_build,
    "pydantic-ai": pydantic_ai_build,
    "openai-agents": openai_agents_build,
    "smolagents": smolagents_build,
    "langchain-core": langchain_build,
    "pydantic create_model + model_json_schema (floor)": pydantic_floor_build,
}
FLOOR = "pydantic create_model + model_json_schema (floor)"


def _build_all(build: Callable[[Callable[..., Any]], Any], text: str) -> tuple[float, int]:
    functions = fresh_functions(text)
    refused = 0
    start = time.perf_counter()
    for fn in functions:
        try:
            build(fn)
        except Exception:
            refused += 1
    return time.perf_counter() - start, refused


def run(budget: Budget) -> list[Row]:
    text = source()
    repeats = budget.n(5, 1)
    times: dict[str, list[float]] = {name: [] for name in BUILDERS}
    refused: dict[str, int] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, build in BUILDERS.items():  # warm-up: imports, first-use caches
            _, refused[name] = _build_all(build, text)
        for _ in range(repeats):
            for name, build in BUILDERS.items():
                times[name].append(_build_all(build, text)[0])
    per_fn = {name: statistics.median(t) / FUNCTIONS * 1e6 for name, t in times.items()}
    if refused["agentkit"]:
        raise AssertionError(f"agentkit refused {refused['agentkit']} of the W3 functions")
    notes = [f"{FUNCTIONS} functions, fresh function objects per repeat, median of {repeats}"]
    notes += [f"{n} refused {r} of {FUNCTIONS} functions" for n, r in refused.items() if r]
    row = Row(
        "W3",
        "schema generation per function (cold)",
        "µs/function",
        per_fn["agentkit"],
        {name: per_fn[name] for name in BUILDERS if name != "agentkit"},
        notes=notes,
    )
    row.checks.append(
        Check(
            "faster than pydantic-ai (keeps the whole schema)",
            per_fn["agentkit"] < per_fn["pydantic-ai"],
            f"{row.ratio('pydantic-ai'):.2f}x",
        )
    )
    floor_ratio = per_fn["agentkit"] / per_fn[FLOOR]
    row.checks.append(
        Check(
            "within 1.2x of pydantic's create_model + model_json_schema",
            floor_ratio <= 1.2,
            f"agentkit / floor = {floor_ratio:.2f}",
        )
    )
    return [row]
