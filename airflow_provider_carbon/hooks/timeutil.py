"""Time helpers the hooks share: the timestamp forms the carbon APIs send, ``Retry-After``, ranges and hours.

Pure functions of the standard library only, so that a service module's parsing code and the transport can use
them without importing each other.
"""

from __future__ import annotations

import email.utils
import math
import re
from datetime import datetime, timedelta, timezone

__all__ = ["HOUR", "ceil_hours", "chunks", "format_hours", "format_utc", "parse_retry_after", "parse_timestamp"]

HOUR = timedelta(hours=1)


def parse_timestamp(value: str) -> datetime:
    """Parse the ISO 8601 forms the carbon APIs send into an aware UTC datetime.

    Handles a trailing ``Z``, any number of fractional digits (.NET sends up to 7 and trims trailing zeros, while
    ``datetime.fromisoformat`` on Python 3.10 takes exactly 3 or 6), and minute-only times (``2018-01-20T12:00Z``,
    UK API).

    :raises ValueError: if it does not parse or has no offset.
    """
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    text = re.sub(r"\.(\d+)", lambda m: "." + (m.group(1) + "000000")[:6], text)  # microseconds, 6 digits
    text = re.sub(r"T(\d{2}:\d{2})(?=[+-])", r"T\1:00", text)  # HH:MM without seconds
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"timestamp {value!r} has no UTC offset")
    return moment.astimezone(timezone.utc)


def format_utc(moment: datetime) -> str:
    """ISO 8601 in UTC with a ``Z``, the strict form Electricity Maps and WattTime accept."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), or ``None``."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # str.isdigit() is also true for "²", which float() refuses
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError, IndexError):  # whatever a hostile header holds: no wait
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def chunks(start: datetime, end: datetime, size: timedelta) -> list[tuple[datetime, datetime]]:
    """Split ``[start, end)`` into consecutive ranges no longer than ``size`` (APIs cap range lengths)."""
    out = []
    while start < end:
        stop = min(start + size, end)
        out.append((start, stop))
        start = stop
    return out


def ceil_hours(delta: timedelta) -> timedelta:
    """``delta`` rounded up to whole hours.

    Callers ask for "up to my deadline", a horizon that shrinks by the second; asking for whole hours keeps the
    request and the cache key the same for an hour, so re-checks and sibling tasks share one answer.
    """
    return HOUR * math.ceil(delta / HOUR)


def format_hours(delta: timedelta) -> str:
    """``3 h`` or ``2.5 h``: a duration in hours as messages show it."""
    hours = delta.total_seconds() / 3600
    return f"{hours:.1f} h" if not math.isclose(hours, round(hours)) else f"{round(hours)} h"
