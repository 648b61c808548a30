"""Call ids for calls a wire delivers without one."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

__all__ = ["stable_call_id", "with_stable_ids"]


def stable_call_id(*parts: str) -> str:
    """A call id derived from what the call came from: the same exchange, the same id, so a
    recorded conversation replays with the ids it was recorded with."""
    return "call_" + hashlib.sha256("\0".join(parts).encode()).hexdigest()[:24]


def with_stable_ids(calls: Any, seed: str) -> list[Any]:
    """Wire calls, each given an id made from `seed` and the call when it came without one."""
    out: list[Any] = []
    for n, call in enumerate(calls if isinstance(calls, list) else []):
        if isinstance(call, Mapping) and not call.get("id"):
            text = json.dumps(call, sort_keys=True, default=str)
            call = {**call, "id": stable_call_id(seed, str(n), text)}
        out.append(call)
    return out
