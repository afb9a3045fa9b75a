"""What to do when there is no usable forecast: run at a fixed local time (02:00 by default), run now, or fail.

The fixed time is a *wall-clock* time in the user's timezone ("02:00 in Berlin"), so it has to survive daylight
saving time. Two nights a year need a deliberate answer:

* **Spring forward** (the local time does not exist, e.g. 02:30 in Europe/Berlin on the last Sunday of March,
  when clocks jump from 02:00 to 03:00): the time is shifted forward by the length of the gap, so 02:30 becomes
  03:30 local and 02:00 becomes 03:00 local (the instant the clocks jump). This is PEP 495's rule for ``fold=0``
  and what pendulum does; it keeps the fallback at the same elapsed time after local midnight.
* **Fall back** (the local time happens twice, e.g. 02:30 in Europe/Berlin on the last Sunday of October): the
  first occurrence is used, and each local calendar day has exactly one fallback instant. A job started after the
  first 02:30 of that night falls back to 02:30 of the next day, not to the repeated 02:30 an hour later; so a
  nightly DAG never runs its fallback twice in one night.

Everything here returns UTC datetimes; the local timezone matters only in the arithmetic.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "DEFAULT_FALLBACK",
    "FallbackPolicy",
    "local_time_on",
    "next_local_time",
    "parse_clock",
    "resolve_timezone",
]

DEFAULT_FALLBACK = "02:00"
_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2}))?$")


def resolve_timezone(tz: str | tzinfo) -> tzinfo:
    """Return a tzinfo for an IANA name (``"Europe/Berlin"``), a fixed offset (``"+02:00"``, the name pendulum
    gives a DAG timezone made from an offset), or pass a tzinfo through.

    :raises ValueError: for an unknown name.
    """
    if isinstance(tz, tzinfo):
        return tz
    offset = re.fullmatch(r"([+-])(\d{2}):(\d{2})", tz.strip())
    if offset:
        sign = -1 if offset.group(1) == "-" else 1
        return timezone(sign * timedelta(hours=int(offset.group(2)), minutes=int(offset.group(3))))
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown timezone {tz!r}: use an IANA name such as 'Europe/Berlin'") from None


def parse_clock(value: str | time) -> time:
    """Parse ``"HH:MM"`` or ``"HH:MM:SS"`` (24-hour clock) into a naive :class:`datetime.time`.

    :raises ValueError: for anything else.
    """
    if isinstance(value, time):
        if value.tzinfo is not None:
            raise ValueError("give the fallback time without a timezone; set the timezone separately")
        return value
    match = _CLOCK.match(value.strip())
    if not match:
        raise ValueError(f"{value!r} is not a wall-clock time like '02:00'")
    hour, minute, second = int(match[1]), int(match[2]), int(match[3] or 0)
    if hour > 23 or minute > 59 or second > 59:
        raise ValueError(f"{value!r} is not a valid time of day")
    return time(hour, minute, second)


def local_time_on(day: date, at: time, tz: str | tzinfo) -> datetime:
    """The UTC instant at which the wall clock in ``tz`` shows ``at`` on ``day``.

    A nonexistent local time is shifted forward by the DST gap; a repeated one resolves to its first occurrence
    (see the module docstring).
    """
    zone = resolve_timezone(tz)
    # fold=0 is exactly the documented rule: for a time in a gap it applies the offset from before the
    # transition (landing after the gap by the same amount), and for a repeated time it picks the first.
    return datetime.combine(day, at).replace(tzinfo=zone, fold=0).astimezone(timezone.utc)


def next_local_time(after: datetime, at: str | time = DEFAULT_FALLBACK, tz: str | tzinfo = "UTC") -> datetime:
    """Return the first instant at or after ``after`` at which the local clock in ``tz`` shows ``at``.

    :param after: a tz-aware instant (e.g. the DAG run's start).
    :param at: wall-clock time, ``"02:00"`` by default.
    :param tz: IANA timezone name or tzinfo; the DAG's timezone is the usual choice.
    :return: a UTC datetime.
    :raises ValueError: if ``after`` is naive, or ``at`` / ``tz`` do not parse.

    .. code-block:: python

        next_local_time(datetime(2025, 3, 29, 23, 0, tzinfo=timezone.utc), "02:00", "Europe/Berlin")
        # -> 2025-03-30 01:00 UTC: 02:00 does not exist that night in Berlin, 03:00 CEST is used
    """
    if after.tzinfo is None or after.utcoffset() is None:
        raise ValueError(f"naive datetime {after.isoformat()} is ambiguous: give a timezone-aware datetime")
    clock = parse_clock(at)
    zone = resolve_timezone(tz)
    local_day = after.astimezone(zone).date()
    # The answer is on the local day of `after` or the next one; the day before can still be right when a
    # fold-0 resolution lands before local midnight, which cannot happen for real zones but costs nothing to try.
    for offset in (-1, 0, 1, 2):
        candidate = local_time_on(local_day + timedelta(days=offset), clock, zone)
        if candidate >= after:
            return candidate
    raise AssertionError("unreachable: a wall-clock time recurs within two days")  # pragma: no cover


@dataclass(frozen=True)
class FallbackPolicy:
    """How to start when the carbon data is unusable: at a local wall-clock time, now, or not at all.

    Build it with :meth:`parse` from what users write: ``"02:00"``, ``"now"`` or ``"fail"``.
    """

    kind: str  # "at" | "now" | "fail"
    at: time | None = None

    @classmethod
    def parse(cls, value: str | time | FallbackPolicy) -> FallbackPolicy:
        """Parse ``"HH:MM"``, ``"now"`` or ``"fail"``.

        :raises ValueError: for anything else.
        """
        if isinstance(value, FallbackPolicy):
            return value
        if isinstance(value, str) and value.strip().lower() in ("now", "fail"):
            return cls(kind=value.strip().lower())
        try:
            return cls(kind="at", at=parse_clock(value))
        except ValueError:
            raise ValueError(f"fallback must be a local time like '02:00', 'now' or 'fail', got {value!r}") from None

    def start(self, after: datetime, tz: str | tzinfo, latest_start: datetime | None = None) -> datetime | None:
        """When to start under this policy, or ``None`` for ``fail``.

        :param after: the earliest start (the run's start).
        :param tz: timezone of the wall-clock time.
        :param latest_start: the deadline; a fallback time beyond it is clamped to it, because the deadline is a
            guarantee and the fallback only a preference.
        """
        if self.kind == "fail":
            return None
        if self.kind == "now":
            moment = after
        else:
            assert self.at is not None
            moment = next_local_time(after, self.at, tz)
        if latest_start is not None and moment > latest_start:
            moment = max(latest_start, after)
        return moment.astimezone(timezone.utc)

    def __str__(self) -> str:
        return self.at.strftime("%H:%M" if self.at.second == 0 else "%H:%M:%S") if self.at else self.kind
