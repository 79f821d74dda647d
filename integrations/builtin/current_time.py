"""`current_time`: the model has no clock; this is it."""

from __future__ import annotations

import datetime as dt
import zoneinfo

from integrations.tools import SideEffect, ToolError, tool

# Fixed English names: strftime("%A") follows the process locale.
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def _suggestion(name: str) -> str | None:
    # Models often get only the case wrong ("asia/tokyo", "utc"); only on the error path, since
    # listing the zones reads the whole tz database.
    wanted = name.strip().lower().replace(" ", "_")
    for key in sorted(zoneinfo.available_timezones()):
        if key.lower() == wanted:
            return key
    return None


def _zone(name: str) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(name)
    # ZoneInfoNotFoundError for unknown keys; ValueError for absolute/relative paths and NUL
    # bytes; OSError for keys that name a directory ("America") or are too long.
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        pass
    message = f"unknown time zone {name!r}; use an IANA time zone name such as 'Europe/Berlin' or 'America/New_York'"
    suggestion = _suggestion(name)
    if suggestion is not None:
        message += f" (did you mean {suggestion!r}?)"
    raise ToolError(message)


def describe(moment: dt.datetime, zone_name: str) -> str:
    return f"{moment.isoformat(timespec='seconds')} ({zone_name}, {_WEEKDAYS[moment.weekday()]})"


@tool(
    name="current_time",
    description=(
        "Get the current date and time, with UTC offset and weekday, in an IANA time zone "
        '(default UTC). Returns e.g. "2026-11-21T14:03:00+09:00 (Asia/Tokyo, Saturday)". '
        "Use it whenever the answer depends on today's date or the time of day; you have no clock of your own."
    ),
    input_schema={
        "type": "object",
        "properties": {
            "timezone": {
                "type": "string",
                "minLength": 1,
                "maxLength": 64,
                "default": "UTC",
                "description": 'IANA time zone name, e.g. "UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo".',
            }
        },
        "required": [],
        "additionalProperties": False,
    },
    side_effect=SideEffect.READ,
    timeout_seconds=5,
    io_bound=False,
)
def current_time(timezone: str = "UTC") -> str:
    zone = _zone(timezone)
    return describe(dt.datetime.now(zone), zone.key)
