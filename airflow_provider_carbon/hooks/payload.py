"""Checks for decoded response bodies: every field's JSON type and a plausible range, before anything uses it.

A hook must not trust what a service (or whatever answers on its address) sends. Without these checks a body with a
timestamp given as a number, a list given as a string or a value of ``10**400`` broke a parser with an
``AttributeError``, ``TypeError`` or ``OverflowError``, and ``true`` read as an intensity of 1 g/kWh: a broken body
looked like a perfectly clean grid. Every check here raises
:class:`~airflow_provider_carbon.exceptions.BadPayloadError` naming the field (``forecast[3].datetime``) and the
zone, with one of these ``reason`` codes:

* ``missing_field``: a required field is absent;
* ``empty``: an empty list, object or string where data belongs (how outages look);
* ``bad_type``: a field has the wrong JSON type (a boolean or a string where a number belongs, a number where a
  timestamp belongs, a string where a list belongs, ...);
* ``bad_value``: right type, but unreadable (a timestamp that does not parse or has no offset, an unknown unit);
* ``out_of_range``: a number that is not finite, overflows, or is absurd (an intensity above
  :data:`MAX_INTENSITY` after unit conversion), or a timestamp outside :data:`MIN_TIME` .. :data:`MAX_TIME` or whose
  conversion to UTC overflows.

The functions are pure: they take the value, the field's name and the context for the error (service, zone, and a
``redact`` function so that a body echoing a credential never puts it into an exception's text). :class:`Reader`
binds that context once per response.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Final

from airflow_provider_carbon.exceptions import BadPayloadError
from airflow_provider_carbon.hooks.timeutil import parse_timestamp

__all__ = [
    "MAX_INTENSITY",
    "MAX_TIME",
    "MIN_TIME",
    "MISSING",
    "Reader",
    "describe",
    "flag",
    "number",
    "require_list",
    "require_mapping",
    "text",
    "timestamp",
]

#: Highest credible intensity in gCO2eq/kWh. Coal and lignite plants emit 800-1,200 and marginal signals stay
#: under 2,000; a larger number is a unit error or garbage, and would make every other hour look clean.
MAX_INTENSITY: Final = 5000.0
#: Earliest and latest credible instants. Before the epoch is garbage (year 1, a number of seconds read as a year);
#: 2200 leaves the arithmetic of :class:`~airflow_provider_carbon.core.forecast.Forecast` exact (integer
#: microseconds in float64 are exact up to 2255) and keeps ``timestamp + step`` far from ``datetime.max``.
MIN_TIME: Final = datetime(1970, 1, 1, tzinfo=timezone.utc)
MAX_TIME: Final = datetime(2201, 1, 1, tzinfo=timezone.utc)
#: Longest string read as a timestamp, zone or name: ISO 8601 with 7 fractional digits is 33 characters.
MAX_TEXT: Final = 256


class _Missing:
    """Type of :data:`MISSING`: ``item.get(key, MISSING)`` tells an absent field from a ``null`` one."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()


def _same(text: str) -> str:
    return text


def _name(field: str) -> str:
    """How a message names a field: ``'forecast[3].datetime'``, or "the response" for the whole body (``""``)."""
    return f"'{field}'" if field else "the response"


def describe(value: Any) -> str:
    """The JSON type of ``value`` in words, for messages (never the value itself: it may hold a secret)."""
    if value is MISSING:
        return "absent"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"


@dataclass(frozen=True)
class Reader:
    """The context of one response's checks: which service, which zone, and how to redact credentials.

    :param service: the service id, as in every :class:`~airflow_provider_carbon.exceptions.CarbonApiError`.
    :param zone: the zone asked for (the one the error names).
    :param redact: replaces credentials in text that quotes the body (a hook passes its ``redact``).
    """

    service: str
    zone: str | None = None
    redact: Callable[[str], str] = _same

    def error(self, detail: str, reason: str) -> BadPayloadError:
        """The error for a bad field; its text is redacted as a whole (field names may be a body's keys)."""
        return BadPayloadError(self.redact(detail), reason=reason, service=self.service, zone=self.zone)

    def quote(self, value: Any, limit: int = 60) -> str:
        """A short, redacted quotation of a body's string (redacted before the cut: a cut could split a token)."""
        shown = self.redact(repr(value))
        return shown if len(shown) <= limit else shown[: limit - 3] + "..."

    def _wrong(self, value: Any, field: str, expected: str) -> BadPayloadError:
        # an empty container or string where data belongs is how outages look; the rest is a wrong type
        if value in ([], {}, ""):
            return self.error(f"{_name(field)} is empty", "empty")
        return self.error(f"{_name(field)} is {describe(value)}, not {expected}", "bad_type")

    def _absent(self, value: Any, field: str, what: str = "") -> None:
        if value is MISSING:
            raise self.error(f"the response lacks {what or _name(field)}", "missing_field")

    def mapping(self, value: Any, field: str, *, optional: bool = False) -> dict[str, Any]:
        """``value`` as a JSON object; ``{}`` for an absent or null one when ``optional``. ``field`` ``""`` is the
        whole body."""
        if optional and (value is None or value is MISSING):
            return {}
        self._absent(value, field, f"a {_name(field)} object")
        if not isinstance(value, dict):
            raise self._wrong(value, field, "an object")
        return value

    def array(self, value: Any, field: str, *, optional: bool = False) -> list[Any]:
        """``value`` as a JSON array; ``[]`` for an absent or null one when ``optional``."""
        if optional and (value is None or value is MISSING):
            return []
        self._absent(value, field, f"a {_name(field)} list")
        if not isinstance(value, list):
            raise self._wrong(value, field, "a list")
        return value

    def number(
        self,
        value: Any,
        field: str,
        *,
        scale: float = 1.0,
        minimum: float | None = None,
        maximum: float | None = MAX_INTENSITY,
        integer: bool = False,
        unit: str = "gCO2eq/kWh",
    ) -> float:
        """``value`` (times ``scale``) as a finite float within ``[minimum, maximum]``.

        Booleans are refused although Python counts them as integers: ``true`` is not 1 g/kWh. Strings are refused
        too, even numeric ones: no service documents numbers in strings, and ``float("NaN")`` would slip through.
        By default the bounds are those of an intensity (negative ones are left to the forecast's own check).
        """
        self._absent(value, field)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(f"{_name(field)} is {describe(value)}, not a number", "bad_type")
        try:
            result = float(value) * scale
        except OverflowError:  # an integer beyond float's range, e.g. 10**400 (JSON numbers have no limit)
            raise self.error(
                f"{_name(field)} is out of range (a {int(value).bit_length()}-bit integer)", "out_of_range"
            ) from None
        if not math.isfinite(result):
            raise self.error(f"{_name(field)} is not finite ({result})", "out_of_range")
        if integer and not result.is_integer():
            raise self.error(f"{_name(field)} is {result:g}, not a whole number", "bad_value")
        unit_text = f" {unit}" if unit else ""
        if minimum is not None and result < minimum:
            raise self.error(
                f"{_name(field)} is {result:g}{unit_text}, below the minimum of {minimum:g}", "out_of_range"
            )
        if maximum is not None and result > maximum:
            raise self.error(
                f"{_name(field)} is {result:g}{unit_text}, above the credible maximum of {maximum:g}", "out_of_range"
            )
        return result

    def optional_timestamp(self, value: Any, field: str) -> datetime | None:
        """:meth:`timestamp`, or ``None`` for an absent or null field."""
        return None if value is None or value is MISSING else self.timestamp(value, field)

    def timestamp(self, value: Any, field: str) -> datetime:
        """``value`` as an aware UTC datetime from an ISO 8601 string with an offset, from :data:`MIN_TIME` to before
        :data:`MAX_TIME`."""
        self._absent(value, field)
        name = _name(field)
        if not isinstance(value, str):
            raise self.error(f"{name} is {describe(value)}, not an ISO 8601 time string", "bad_type")
        if len(value) > MAX_TEXT:
            raise self.error(f"{name} is a {len(value)}-character string, too long for a time", "bad_value")
        try:
            moment = parse_timestamp(value)
        except OverflowError:  # e.g. 0001-01-01T00:00+01:00: in UTC that is before year 1
            raise self.error(f"{name} {self.quote(value)} is out of range in UTC", "out_of_range") from None
        except ValueError:
            raise self.error(
                f"{name} {self.quote(value)} is not an ISO 8601 time with a UTC offset", "bad_value"
            ) from None
        if not MIN_TIME <= moment < MAX_TIME:
            raise self.error(
                f"{name} {moment.isoformat()} is outside the years {MIN_TIME.year}..{MAX_TIME.year - 1}", "out_of_range"
            )
        return moment

    def text(self, value: Any, field: str, *, optional: bool = False, max_length: int = MAX_TEXT) -> str | None:
        """``value`` as a non-blank string of at most ``max_length`` characters (a zone, a name, a token);
        ``None`` for an absent or null one when ``optional``."""
        if optional and (value is None or value is MISSING):
            return None
        self._absent(value, field)
        if not isinstance(value, str):
            raise self._wrong(value, field, "a string")
        if not value.strip() or len(value) > max_length:
            raise self.error(f"{_name(field)} is a blank or {len(value)}-character string", "bad_value")
        return value

    def flag(self, value: Any, field: str, *, default: bool = False) -> bool:
        """``value`` as a boolean (``default`` when absent or null). ``bool("false")`` is true, so only JSON
        booleans count."""
        if value is None or value is MISSING:
            return default
        if not isinstance(value, bool):
            raise self.error(f"{_name(field)} is {describe(value)}, not a boolean", "bad_type")
        return value


# -- the same checks as plain functions, for callers without a Reader ------------------------------------------


def require_mapping(value: Any, field: str, zone: str | None = None, *, service: str, **kwargs: Any) -> dict[str, Any]:
    """:meth:`Reader.mapping` with its context as arguments."""
    return Reader(service, zone).mapping(value, field, **kwargs)


def require_list(value: Any, field: str, zone: str | None = None, *, service: str, **kwargs: Any) -> list[Any]:
    """:meth:`Reader.array` with its context as arguments."""
    return Reader(service, zone).array(value, field, **kwargs)


def number(value: Any, field: str, zone: str | None = None, *, service: str, **kwargs: Any) -> float:
    """:meth:`Reader.number` with its context as arguments."""
    return Reader(service, zone).number(value, field, **kwargs)


def timestamp(value: Any, field: str, zone: str | None = None, *, service: str) -> datetime:
    """:meth:`Reader.timestamp` with its context as arguments."""
    return Reader(service, zone).timestamp(value, field)


def text(value: Any, field: str, zone: str | None = None, *, service: str, **kwargs: Any) -> str | None:
    """:meth:`Reader.text` with its context as arguments."""
    return Reader(service, zone).text(value, field, **kwargs)


def flag(value: Any, field: str, zone: str | None = None, *, service: str, **kwargs: Any) -> bool:
    """:meth:`Reader.flag` with its context as arguments."""
    return Reader(service, zone).flag(value, field, **kwargs)
