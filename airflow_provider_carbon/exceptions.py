"""One small tree of typed errors for the whole provider, as Airflow providers keep theirs in ``exceptions``.

Every error a user can meet derives from :class:`CarbonError`, so a DAG author can catch the family in one
``except``. Each class carries the facts a user needs to act (the bad point, the zone, the window, the status) as
attributes, and its message says them in words; none of them ever holds a credential.

The module imports nothing but the standard library: the pure core raises these errors too.

Every error survives :mod:`pickle` with its type, message and attributes, and compares equal to its copy. Airflow
moves exceptions between processes (a task's failure reaches the supervisor, a trigger's error the triggerer's
main loop); with keyword-only constructors the default ``BaseException.__reduce__`` would call ``cls(*args)`` and
fail there, hiding the real error behind a ``TypeError``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

__all__ = [
    "AuthenticationError",
    "BadPayloadError",
    "CarbonApiError",
    "CarbonBudgetExceeded",
    "CarbonError",
    "DeadlineTooTightError",
    "ForecastCoverageError",
    "InsufficientHistoryError",
    "InvalidForecastError",
    "InvalidRequestError",
    "NotEntitledError",
    "QueueInfeasibleError",
    "RateLimitedError",
    "RedirectError",
    "ServiceUnavailableError",
    "WindowError",
]


def _restore(cls: type[CarbonError], args: tuple[Any, ...], state: dict[str, Any]) -> CarbonError:
    """Rebuild an error without calling its constructor (see the module docstring)."""
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class CarbonError(Exception):
    """Base class of every error raised by ``airflow_provider_carbon``."""

    def __reduce__(self) -> tuple[Any, ...]:
        return _restore, (type(self), self.args, dict(self.__dict__))

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, CarbonError)
        return self.args == other.args and self.__dict__ == other.__dict__

    def __hash__(self) -> int:
        return hash((type(self), self.args))


class InvalidForecastError(CarbonError, ValueError):
    """A carbon-intensity series failed validation.

    :param reason: a short machine-readable code: ``empty``, ``naive_timestamp``, ``not_finite``, ``negative``,
        ``duplicate``, ``unsorted``, ``gap``, ``all_zero``, ``bad_end`` or ``bad_shape``.
    :param detail: what is wrong, in words.
    :param index: position of the first bad point (``None`` when the problem is the whole series).
    :param timestamp: timestamp of the first bad point, if there is one.
    :param value: value of the first bad point, if there is one.
    :param zone: the grid zone the series describes, if known.
    """

    def __init__(
        self,
        reason: str,
        detail: str,
        *,
        index: int | None = None,
        timestamp: datetime | None = None,
        value: float | None = None,
        zone: str | None = None,
    ) -> None:
        self.reason = reason
        self.detail = detail
        self.index = index
        self.timestamp = timestamp
        self.value = value
        self.zone = zone
        where = f" for zone {zone}" if zone else ""
        if index is not None:
            at = f" at {timestamp.isoformat()}" if timestamp is not None else ""
            point = f"point {index}{at}: "
        else:
            point = ""
        super().__init__(f"invalid carbon-intensity forecast{where}: {point}{detail}")


class WindowError(CarbonError, ValueError):
    """No start time satisfies the request; the subclasses say why."""


class ForecastCoverageError(WindowError):
    """The forecast does not cover any window of the requested duration from ``earliest`` on.

    :param forecast_start: first instant the forecast covers.
    :param forecast_end: instant the forecast's last value stops holding.
    :param earliest: the earliest start that was asked for.
    :param duration: the job duration that was asked for.
    """

    def __init__(
        self, *, forecast_start: datetime, forecast_end: datetime, earliest: datetime, duration: timedelta
    ) -> None:
        self.forecast_start = forecast_start
        self.forecast_end = forecast_end
        self.earliest = earliest
        self.duration = duration
        if earliest < forecast_start:
            why = f"earliest start {earliest.isoformat()} is before the forecast starts ({forecast_start.isoformat()})"
        else:
            why = (
                f"a {duration} job starting at {earliest.isoformat()} would end after the forecast ends "
                f"({forecast_end.isoformat()})"
            )
        super().__init__(f"forecast does not cover the window: {why}")


class DeadlineTooTightError(WindowError):
    """The job cannot start at or after ``earliest`` and still meet its deadline.

    :param earliest: the earliest start that was asked for.
    :param latest_start: the latest allowed start after applying ``latest_start`` and ``finish_by``.
    :param duration: the job duration that was asked for.
    """

    def __init__(self, *, earliest: datetime, latest_start: datetime, duration: timedelta) -> None:
        self.earliest = earliest
        self.latest_start = latest_start
        self.duration = duration
        super().__init__(
            f"a {duration} job cannot start at or after {earliest.isoformat()}: the deadline requires it to start "
            f"by {latest_start.isoformat()}"
        )


class InsufficientHistoryError(CarbonError, ValueError):
    """Too little observed history before the start to build a forecast from it (the sensor falls back then).

    :param zone: the grid zone, if known.
    :param days_available: how many days' worth of observations there were before the start.
    :param days_needed: how many the model needs at least.
    :param detail: what is missing, in words.
    """

    def __init__(self, detail: str, *, zone: str | None, days_available: float, days_needed: float) -> None:
        self.detail = detail
        self.zone = zone
        self.days_available = days_available
        self.days_needed = days_needed
        where = f" for zone {zone}" if zone else ""
        super().__init__(
            f"not enough history{where} to forecast from: {detail} ({days_available:.1f} days of observations, "
            f"at least {days_needed:g} needed)"
        )


class QueueInfeasibleError(CarbonError, ValueError):
    """No plan of the queue meets every deadline under the capacity.

    :param detail: what does not fit, in words.
    :param job: the job that cannot meet its deadline whatever the others do, if there is one.
    """

    def __init__(self, detail: str, *, job: str | None) -> None:
        self.detail = detail
        self.job = job
        super().__init__(f"the queue cannot be planned: {detail}")


class CarbonBudgetExceeded(CarbonError):
    """The carbon budget of a DAG or tag is used up for the period, and its policy is ``fail``.

    Raised by the sensor before its job waits (as an ``AirflowFailException`` too, so the task fails without
    retries); the decision record in XCom ``carbon_decision`` has the same figures under ``budget``.

    :param scope: ``dag:<dag_id>`` or ``tag:<tag>``.
    :param period: ``day``, ``week``, ``month`` or ``year``.
    :param period_start: the first instant of the period (tz-aware).
    :param used_kg: kilograms CO2eq accounted in the period.
    :param limit_kg: the budget's limit in kilograms per period.

    .. code-block:: python

        try:
            sensor.execute(context)
        except CarbonBudgetExceeded as err:
            print(err.scope, err.used_kg, err.limit_kg)  # dag:nightly 5.2 5.0
    """

    def __init__(self, *, scope: str, period: str, period_start: datetime, used_kg: float, limit_kg: float) -> None:
        self.scope = scope
        self.period = period
        self.period_start = period_start
        self.used_kg = used_kg
        self.limit_kg = limit_kg
        super().__init__(
            f"carbon budget of {scope} used up: {used_kg:.3g} kg of {limit_kg:g} kg this {period} (since "
            f"{period_start.isoformat()}); the job does not run"
        )


class CarbonApiError(CarbonError):
    """A carbon-intensity service did not give usable data.

    The subclass says what kind of failure it was; every instance carries what a user needs to act on it.
    Never holds a credential: hooks build these from status codes and bodies, with any token redacted.

    :param detail: what happened, in words (from the service's error body where it gave one).
    :param service: which service (``"electricitymaps"``, ``"carbon_aware_sdk"``, ``"watttime"``,
        ``"uk_carbon_intensity"``).
    :param zone: the zone, region or location asked for.
    :param status: the HTTP status code, if a response arrived.
    :param hint: what to do about it.
    """

    #: whether the hook retries this failure (connection problems, timeouts, 5xx and 429 only)
    retryable = False
    default_hint = ""

    def __init__(
        self,
        detail: str,
        *,
        service: str,
        zone: str | None = None,
        status: int | None = None,
        hint: str | None = None,
    ) -> None:
        self.detail = detail
        self.service = service
        self.zone = zone
        self.status = status
        self.hint = hint if hint is not None else self.default_hint
        #: how many requests were made before giving up (set by the hook's retry loop)
        self.attempts = 1
        super().__init__(detail)

    def __str__(self) -> str:
        parts = [self.service]
        if self.status is not None:
            parts.append(f"HTTP {self.status}")
        if self.zone:
            parts.append(f"zone {self.zone}")
        text = f"{', '.join(parts)}: {self.detail}"
        if self.attempts > 1:
            text += f" (after {self.attempts} attempts)"
        if self.hint:
            text += f". Hint: {self.hint}"
        return text


class AuthenticationError(CarbonApiError):
    """The credentials were refused (bad, expired or revoked token; wrong username or password)."""

    default_hint = "check the API token (or login and password) stored in the Airflow connection"


class NotEntitledError(CarbonApiError):
    """The credentials are valid but the plan does not cover this zone, endpoint or signal."""

    default_hint = "the plan behind this token does not include this zone or endpoint; pick another zone or upgrade"


class RateLimitedError(CarbonApiError):
    """The service said to slow down (HTTP 429).

    :param retry_after: seconds the service asked us to wait, if it said.
    """

    retryable = True
    default_hint = "too many requests: raise the cache TTL, call less often, or wait"

    def __init__(self, detail: str, *, retry_after: float | None = None, **kwargs: object) -> None:
        self.retry_after = retry_after
        super().__init__(detail, **kwargs)  # type: ignore[arg-type]


class ServiceUnavailableError(CarbonApiError):
    """The service could not be reached, timed out, or answered with a server error (5xx)."""

    retryable = True
    default_hint = "the service is down or slow; the task's fallback policy decides what happens now"


class InvalidRequestError(CarbonApiError):
    """The service refused the request itself (HTTP 400/404): unknown zone, bad parameters, no data."""

    default_hint = "check the zone or location and the parameters"


class RedirectError(InvalidRequestError):
    """The service answered with a redirect (3xx) that the hook does not follow.

    Redirects are not followed unless the connection allows them (extra ``allow_redirects``), and then only to the
    same scheme, host and port, so that a credential never travels to another server.

    :param location: where the redirect pointed (credentials redacted), if it said.
    """

    default_hint = "set the connection's host to the final URL (redirects are not followed)"

    def __init__(self, detail: str, *, location: str | None = None, **kwargs: object) -> None:
        self.location = location
        super().__init__(detail, **kwargs)  # type: ignore[arg-type]


class BadPayloadError(CarbonApiError):
    """The service answered 200 but the data cannot be trusted.

    :param reason: a short machine-readable code:

        * ``empty``: no body, or no data in it (``{}``, ``[]``, ``{"data": []}``);
        * ``malformed_json``: the body is not JSON, or nested too deeply to decode (a nesting bomb);
        * ``missing_field``: a required field is absent;
        * ``bad_type``: a field has the wrong JSON type (a boolean or a string where a number belongs, a number
          where a timestamp belongs, a string where a list belongs, ...);
        * ``bad_value``: right type but unreadable (a timestamp without offset, an unknown unit, a bad duration);
        * ``out_of_range``: a number that is not finite, overflows or is absurd (an intensity above 5,000
          gCO2eq/kWh after unit conversion), or a timestamp before 1970, after 2200 or overflowing in UTC;
        * ``invalid_forecast``: the series fails validation (all zeros, negative, gaps, ...: see
          :class:`InvalidForecastError`);
        * ``short_forecast``: the forecast covers less than the caller needs;
        * ``too_large``: the body, decompressed, exceeds the connection's ``max_response_bytes``;
        * ``bad_encoding``: a ``Content-Encoding`` the hook did not ask for.

    The detail names the field (``'forecast[3].datetime'``) and never quotes a credential.
    """

    default_hint = "the service returned unusable data; it is treated like an outage"

    def __init__(self, detail: str, *, reason: str, **kwargs: object) -> None:
        self.reason = reason
        super().__init__(detail, **kwargs)  # type: ignore[arg-type]
