"""The public API: everything exported, sorted, importable."""

from __future__ import annotations

import types

import agentkit


def test_all_is_complete_and_sorted() -> None:
    # Submodules (imported by the re-exports, or by other tests) are not part of the API.
    public = {
        name
        for name, value in vars(agentkit).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert set(agentkit.__all__) - {"__version__"} == public
    assert agentkit.__all__ == sorted(agentkit.__all__)


def test_every_export_resolves() -> None:
    for name in agentkit.__all__:
        assert getattr(agentkit, name) is not None, name


def test_errors_form_one_tree() -> None:
    from agentkit import errors

    control_flow = (errors.ToolRetry, errors.StopRun)  # raised by user code, to steer
    for name in errors.__all__:
        obj = getattr(errors, name)
        if isinstance(obj, type) and issubclass(obj, Exception) and obj not in control_flow:
            assert issubclass(obj, agentkit.AgentKitError), name
    # ToolRetry is control flow, not an error.
    assert not issubclass(agentkit.ToolRetry, agentkit.AgentKitError)


def test_stream_events_are_exported() -> None:
    # What `agent.stream` yields is matched on by every user of it.
    from agentkit import events

    assert set(events.__all__) <= set(agentkit.__all__)
    assert agentkit.TextDelta is events.TextDelta
