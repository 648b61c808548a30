"""What the test modules share: helpers, loopback servers, the machine's optional parts, and the
scripts that some tests run as processes of their own (`session_worker.py`, `temporal_worker.py`,
the MCP servers in `mcp_servers/`)."""

from __future__ import annotations

from pathlib import Path

SUPPORT = Path(__file__).resolve().parent
"""This folder: where the scripts the tests start as processes live."""

ROOT = SUPPORT.parents[1]
"""The repository."""
