"""`ToolOptions`: how a tool's calls are run, the options every way of making a tool takes.

`@tool(...)`, `Tool.from_function(...)`, `Tool.from_definition(...)` and `Tool(...)` take the
same keyword options, typed once here (`**options: Unpack[ToolOptions]`, so a type checker
sees each one), with their defaults and their checks (`settle_options`) beside them. A function
of your own that makes tools can take and pass them on the same way (see docs/tools.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Final

from typing_extensions import TypedDict

from agentkit.errors import ToolDefinitionError

__all__ = ["Approval", "ToolOptions", "settle_options"]

Approval = bool | Callable[[dict[str, Any]], bool]
"""Whether a tool's calls wait for a person: always, never, or when a predicate of the
validated arguments says so."""


class ToolOptions(TypedDict, total=False):
    """How a tool's calls are run; an option left out takes the default its description names."""

    sequential: bool
    """A call waits for the calls of its step before it and runs alone (default False)."""
    timeout: float | None
    """Seconds a call may take before the model is told it timed out (default None: the
    Agent's `tool_timeout`)."""
    max_retries: int | None
    """Failed calls in a row allowed before the run stops (default None: the Agent's
    `max_tool_retries`)."""
    strict: bool | None
    """Check now that the tool can be sent in OpenAI strict mode; if it cannot,
    `ToolDefinitionError` says why, per parameter (default None: not checked)."""
    idempotent: bool
    """Calling it twice with the same arguments does no more than once, so a call cut off by a
    crash may run again, and a durable run may retry it (default False)."""
    requires_approval: Approval
    """Ask a person before each call (True), or before the calls whose validated arguments make
    this predicate true (default False)."""


_DEFAULTS: Final[ToolOptions] = {
    "sequential": False,
    "timeout": None,
    "max_retries": None,
    "strict": None,
    "idempotent": False,
    "requires_approval": False,
}


def settle_options(tool: str, options: ToolOptions) -> ToolOptions:
    """Every option of the tool called `tool`: the ones given, checked, over the defaults.

    Raises:
        TypeError: an option that does not exist (as Python says of an unexpected keyword).
        ToolDefinitionError: listing every option whose value cannot work.
    """
    for key in options:
        if key not in _DEFAULTS:
            known = ", ".join(sorted(_DEFAULTS))
            raise TypeError(f"tool {tool!r}: unexpected option {key!r} (options: {known})")
    settled: ToolOptions = {**_DEFAULTS, **options}
    problems = [
        f"{key}: must be True or False (got {value!r})"
        for key, value in (
            ("sequential", settled["sequential"]),
            ("idempotent", settled["idempotent"]),
        )
        if not isinstance(value, bool)
    ]
    timeout = settled["timeout"]
    if timeout is not None and not (_is_number(timeout) and 0 < timeout < math.inf):
        problems.append(f"timeout: must be a number of seconds > 0, or None (got {timeout!r})")
    retries = settled["max_retries"]
    if retries is not None and (type(retries) is not int or retries < 0):
        problems.append(f"max_retries: must be an integer >= 0, or None (got {retries!r})")
    strict = settled["strict"]
    if strict is not None and not isinstance(strict, bool):
        problems.append(f"strict: must be True, False or None (got {strict!r})")
    approval = settled["requires_approval"]
    if not (isinstance(approval, bool) or callable(approval)):
        problems.append(
            "requires_approval: must be True, False or a predicate of the arguments "
            f"(got {approval!r})"
        )
    if problems:
        raise ToolDefinitionError(tool, problems)
    return settled


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
