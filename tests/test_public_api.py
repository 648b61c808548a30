"""The public API: everything exported, sorted, importable."""

from __future__ import annotations

import importlib
import types

import pytest

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

    # raised by user code, to steer
    control_flow = (errors.ToolRetry, errors.StopRun, errors.ApprovalRequired)
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


def test_test_aids_and_wire_request_types_have_their_own_modules() -> None:
    from agentkit import testing, wire

    for module in (testing, wire):
        public = {
            name
            for name, value in vars(module).items()
            if not name.startswith("_") and not isinstance(value, types.ModuleType)
        }
        assert set(module.__all__) == public, module.__name__
        assert module.__all__ == sorted(module.__all__), module.__name__
    assert {"FunctionRuntime", "NoRecording", "RecordingTransport", "ScriptedRuntime"} <= set(
        testing.__all__
    )
    assert {"ChatRequest", "GenerationRequest"} <= set(wire.__all__)
    # The runtimes a test scripts stay at the top level too.
    assert agentkit.ScriptedRuntime is testing.ScriptedRuntime
    assert agentkit.FunctionRuntime is testing.FunctionRuntime


@pytest.mark.parametrize(
    ("name", "new_home"),
    [
        ("GenerationRequest", "agentkit.wire"),
        ("NoRecording", "agentkit.testing"),
        ("RecordingTransport", "agentkit.testing"),
    ],
)
def test_a_moved_name_still_imports_from_agentkit_with_a_warning(name: str, new_home: str) -> None:
    assert name not in agentkit.__all__
    with pytest.warns(DeprecationWarning, match="has moved") as caught:
        value = getattr(agentkit, name)
    assert value is getattr(importlib.import_module(new_home), name)
    assert [str(w.message) for w in caught] == [
        f"agentkit.{name} has moved: import it from {new_home}"
    ]
    assert caught[0].filename == __file__  # pointed at the line that used it
    with pytest.warns(DeprecationWarning, match=f"import it from {new_home}"):
        exec(f"from agentkit import {name}", {})


def test_a_name_agentkit_never_had_is_still_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'GenerationRequests'"):
        agentkit.GenerationRequests  # type: ignore[attr-defined]  # noqa: B018
