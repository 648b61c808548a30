"""A clock tool: the current date and time in a named time zone.

Load it with `agentkit run "What time is it in Tokyo?" --tools tools/clock.py`.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from agentkit import ToolRetry, tool


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError):
        pass
    # Accept a city alone ("Tokyo", "new york") when it names exactly one zone.
    wanted = name.strip().replace(" ", "_").lower()
    matches = sorted(z for z in available_timezones() if z.lower().rsplit("/", 1)[-1] == wanted)
    if len(matches) == 1:
        return ZoneInfo(matches[0])
    raise ToolRetry(
        f"unknown time zone {name!r}; use an IANA name such as 'Europe/Paris', "
        "'America/New_York' or 'UTC'"
    )


@tool
def current_time(timezone: str = "UTC") -> str:
    """Get the current date and time in a time zone.

    Args:
        timezone: An IANA time zone name such as "Europe/Paris" or "UTC", or a city name.
    """
    zone = _zone(timezone)
    now = datetime.now(zone)
    return f"{now:%Y-%m-%d %H:%M:%S} {now.tzname()} ({zone.key})"
