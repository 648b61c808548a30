"""The layers hold: every module imports on its own, whatever was imported before it.

The layer order itself is checked by import-linter (contracts in pyproject.toml, run by
.ci/run); this test catches what an order-dependent import cycle does at run time.
"""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import pytest

import agentkit

pytestmark = pytest.mark.subprocess

OPTIONAL = {"agentkit.runtimes.llama_cpp"}


def test_every_subpackage_imports_first_in_a_fresh_interpreter() -> None:
    names = sorted(info.name for info in pkgutil.iter_modules(agentkit.__path__, "agentkit."))
    assert "agentkit.chat_formats" in names and "agentkit.wire" in names
    # One interpreter per module, run side by side: each starts with nothing imported.
    runs = {
        name: subprocess.Popen(
            [sys.executable, "-c", f"import {name}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in names
    }
    failed = {}
    for name, run in runs.items():
        _, err = run.communicate(timeout=120)
        if run.returncode != 0:
            failed[name] = err.strip().splitlines()[-1]
    assert failed == {}


def test_the_local_runtime_imports_first_when_its_extra_is_installed() -> None:
    pytest.importorskip("llama_cpp", reason="needs the local extra")
    for name in sorted(OPTIONAL):
        run = subprocess.run([sys.executable, "-c", f"import {name}"], capture_output=True)
        assert run.returncode == 0, run.stderr.decode()[-2000:]
