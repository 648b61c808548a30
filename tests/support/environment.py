"""What some tests need from the machine, and what happens when it is missing.

On a developer's machine a missing browser or data set skips the tests that need it, with a
reason that says how to get it. CI sets `AGENTKIT_REQUIRE_ALL=1`, which turns each such skip
into a failure, so CI always runs every test.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from support import ROOT

CHROMIUM = Path(os.environ.get("AGENTKIT_CHROMIUM", "/usr/bin/chromium"))
BFCL_DATA = Path(
    os.environ.get("AGENTKIT_BFCL_DATA", ROOT.parent / "shared" / "data" / "bfcl")
).resolve()

JSONSCHEMABENCH = Path(
    os.environ.get("AGENTKIT_JSONSCHEMABENCH", ROOT.parent / "shared" / "data" / "jsonschemabench")
).resolve()


def require(available: bool, missing: str) -> None:
    """Skip the calling test (fail it under AGENTKIT_REQUIRE_ALL=1) unless `available`."""
    if available:
        return
    if os.environ.get("AGENTKIT_REQUIRE_ALL") == "1":
        pytest.fail(f"{missing} (AGENTKIT_REQUIRE_ALL=1: nothing may be skipped)")
    pytest.skip(missing)


def require_chromium() -> None:
    require(
        CHROMIUM.exists(),
        f"the browser tests need Chromium at {CHROMIUM}: "
        "apt-get install chromium (or set AGENTKIT_CHROMIUM)",
    )


def require_bfcl() -> None:
    require(
        BFCL_DATA.is_dir(),
        f"the BFCL tests need the data set at {BFCL_DATA}: it sits in ../shared/data/bfcl "
        "beside the project (or set AGENTKIT_BFCL_DATA)",
    )


def require_jsonschemabench() -> None:
    require(
        JSONSCHEMABENCH.is_dir(),
        f"the JSONSchemaBench tests need its schemas at {JSONSCHEMABENCH}: they sit in "
        "../shared/data/jsonschemabench beside the project (or set AGENTKIT_JSONSCHEMABENCH)",
    )
