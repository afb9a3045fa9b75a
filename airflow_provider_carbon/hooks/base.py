"""What every carbon-intensity hook shares: connection settings, one HTTP session, timeouts, retries, cache, async.

A service hook (Electricity Maps, Carbon Aware SDK, WattTime, UK Carbon Intensity) only says how to ask its API and
how to read the answer; this base turns that into one interface returning validated core
:class:`~airflow_provider_carbon.core.forecast.Forecast` objects:

* :meth:`CarbonIntensityHook.get_latest` - the value in force now;
* :meth:`CarbonIntensityHook.get_forecast` - the forecast over a horizon (cached);
* :meth:`CarbonIntensityHook.get_history` - actuals over a past range (for carbon accounting);
* ``aget_*`` twins that never block an event loop (for triggers);
* :meth:`CarbonIntensityHook.test_connection`.

Failure policy, the same for every service: connection errors, timeouts, 5xx and 429 are retried with tenacity
(exponential back-off with jitter, or exactly the ``Retry-After`` the service asked for) within a bounded number of
attempts and a bounded total wait; 400/401/403/404 are never retried. Every failure surfaces as one of the typed
:class:`~airflow_provider_carbon.exceptions.CarbonApiError` subclasses, with status, service, zone and a hint,
and never with a credential in it.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import random
import re
import time
from abc import abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import requests
import tenacity
from airflow.sdk import BaseHook
from requests.exceptions import ChunkedEncodingError, ContentDecodingError

from airflow_provider_carbon import __version__
from airflow_provider_carbon.core.forecast import Forecast, Signal
from airflow_provider_carbon.exceptions import (
    AuthenticationError,
    BadPayloadError,
    CarbonApiError,
    InvalidForecastError,
    InvalidRequestError,
    NotEntitledError,
    RateLimitedError,
    ServiceUnavailableError,
)
from airflow_provider_carbon.hooks._form import ConnectionFormMixin
from airflow_provider_carbon.hooks.cache import forecast_cache

if TYPE_CHECKING:
    from airflow.sdk import Connection

__all__ = ["CarbonIntensityHook", "Location", "parse_timestamp"]

HOMEPAGE = "https://github.com/airflow-provider-carbon/airflow-provider-carbon"
T = TypeVar("T")

#: Defaults of the settings every connection may override in its extras (and a hook in its constructor).
DEFAULTS: dict[str, Any] = {
    "timeout": 10.0,  # seconds to wait for a response (read timeout)
    "connect_timeout": 5.0,  # seconds to establish the connection
    "max_attempts": 4,  # requests per call at most, the first included
    "max_retry_wait": 30.0,  # seconds of waiting between attempts per call at most
    "retry_backoff": 1.0,  # first back-off step in seconds; doubles each retry, with jitter
    "cache_ttl": 900,  # seconds a forecast stays fresh in the cache; 0 disables caching
    "cache_dir": None,  # directory of the file cache shared by processes; None = in-process only
}


@dataclass(frozen=True)
class Location:
    """Where to ask about: a zone/region key, or coordinates."""

    zone: str | None = None
    lat: float | None = None
    lon: float | None = None

    @property
    def label(self) -> str:
        return self.zone if self.zone is not None else f"{self.lat},{self.lon}"


_HOUR = timedelta(hours=1)


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
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


class CarbonIntensityHook(ConnectionFormMixin, BaseHook):
    """Base of the carbon-intensity hooks: one connection, one session, one failure policy, one interface.

    :param carbon_conn_id: the Airflow connection to use; its type must match the hook.
    :param timeout: read timeout in seconds (connection extra ``timeout``).
    :param connect_timeout: connect timeout in seconds (extra ``connect_timeout``).
    :param max_attempts: requests per call at most, the first included (extra ``max_attempts``).
    :param max_retry_wait: seconds of waiting between attempts per call at most (extra ``max_retry_wait``).
    :param retry_backoff: first back-off step in seconds (extra ``retry_backoff``).
    :param cache_ttl: seconds a forecast stays cached; 0 disables the cache (extra ``cache_ttl``).
    :param cache_dir: directory of a file cache shared by the processes of a machine (extra ``cache_dir``).

    Arguments given here win over the connection's extras, which win over the defaults.
    """

    conn_name_attr = "carbon_conn_id"
    default_conn_name: ClassVar[str]
    conn_type: ClassVar[str]
    hook_name: ClassVar[str]
    #: short service id used in errors, logs, cache keys and ``Forecast.source``
    service: ClassVar[str]
    default_host: ClassVar[str | None] = None
    #: what the service's numbers mean
    signal: ClassVar[Signal] = Signal.AVERAGE

    def __init__(
        self,
        carbon_conn_id: str | None = None,
        *,
        timeout: float | None = None,
        connect_timeout: float | None = None,
        max_attempts: int | None = None,
        max_retry_wait: float | None = None,
        retry_backoff: float | None = None,
        cache_ttl: float | None = None,
        cache_dir: str | None = None,
    ) -> None:
        super().__init__()
        self.carbon_conn_id = carbon_conn_id or self.default_conn_name
        self._overrides = {
            "timeout": timeout,
            "connect_timeout": connect_timeout,
            "max_attempts": max_attempts,
            "max_retry_wait": max_retry_wait,
            "retry_backoff": retry_backoff,
            "cache_ttl": cache_ttl,
            "cache_dir": cache_dir,
        }
        self._connection: Connection | None = None

    def __repr__(self) -> str:  # never the connection itself: it holds the token
        return f"{type(self).__name__}(carbon_conn_id={self.carbon_conn_id!r})"

    # -- connection and settings ----------------------------------------------------------------------------------

    @property
    def connection(self) -> Connection:
        """The Airflow connection, fetched once per hook."""
        if self._connection is None:
            self._connection = self.get_connection(self.carbon_conn_id)
        return self._connection

    @cached_property
    def extras(self) -> dict[str, Any]:
        return dict(self.connection.extra_dejson or {})

    def setting(self, name: str) -> Any:
        """A setting from the constructor, else the connection's extras, else ``[carbon]`` in Airflow's
        configuration (``AIRFLOW__CARBON__<NAME>``), else :data:`DEFAULTS`."""
        value = self._overrides.get(name)
        if value is None:
            value = self.extras.get(name)
        if value in (None, ""):
            from airflow_provider_carbon._compat import conf

            value = conf.get("carbon", name, fallback=None)
        if value in (None, ""):
            value = DEFAULTS.get(name)
        return value

    def _number(self, name: str) -> float:
        try:
            return float(self.setting(name))
        except (TypeError, ValueError):
            raise InvalidRequestError(
                f"setting {name}={self.setting(name)!r} is not a number",
                service=self.service,
                hint=f"fix the '{name}' extra of connection {self.carbon_conn_id!r}",
            ) from None

    def limit_time(self, seconds: float) -> None:
        """Cap the timeouts and the retry budget of later calls at ``seconds``, for a caller with a deadline
        (one call may still take up to ``max_attempts`` times that; callers that must not wait longer also bound
        the call from outside)."""
        limit = max(float(seconds), 0.1)
        for name in ("connect_timeout", "timeout", "max_retry_wait"):
            self._overrides[name] = min(self._number(name), limit)

    def flag(self, name: str) -> bool:
        """A yes/no setting. Extras set in a URI or an environment variable arrive as strings, and
        ``bool("false")`` is true, so strings are read as words."""
        value = self.setting(name)
        if isinstance(value, str):
            word = value.strip().lower()
            if word in ("true", "1", "yes", "on"):
                return True
            if word in ("false", "0", "no", "off", ""):
                return False
            raise InvalidRequestError(
                f"setting {name}={value!r} is not true or false",
                service=self.service,
                hint=f"fix the '{name}' extra of connection {self.carbon_conn_id!r}",
            )
        return bool(value)

    @property
    def base_url(self) -> str:
        """Service root URL: the connection's host (with scheme and path), else the service's public default."""
        host = (self.connection.host or "").strip() or self.default_host
        if not host:
            raise InvalidRequestError(
                "the connection has no host",
                service=self.service,
                hint=f"set the service's URL as host of connection {self.carbon_conn_id!r}",
            )
        if "://" not in host:
            host = f"https://{host}"
        port = self.connection.port
        if port and not re.search(r"://[^/]+:\d+", host):
            scheme, rest = host.split("://", 1)
            netloc, _, path = rest.partition("/")
            host = f"{scheme}://{netloc}:{port}" + (f"/{path}" if path else "")
        return host.rstrip("/")

    @cached_property
    def user_agent(self) -> str:
        from airflow import __version__ as airflow_version

        return (
            f"airflow-provider-carbon/{__version__} (+{HOMEPAGE}) apache-airflow/{airflow_version} "
            f"python-requests/{requests.__version__}"
        )

    @cached_property
    def session(self) -> requests.Session:
        """One HTTP session per hook: connection reuse and one place for the User-Agent."""
        session = requests.Session()
        session.headers["User-Agent"] = self.user_agent
        session.headers["Accept"] = "application/json"
        return session

    def close(self) -> None:
        if "session" in self.__dict__:
            self.session.close()
            del self.__dict__["session"]

    @property
    def token(self) -> str | None:
        """The connection's password, without the whitespace a paste leaves around it (a newline in a header value
        makes requests raise an error that quotes the value)."""
        return (self.connection.password or "").strip() or None

    def _secrets(self) -> list[str]:
        raw = self.connection.password or ""
        return [s for s in {raw, raw.strip()} if s]

    def redact(self, text: str) -> str:
        """Replace any credential of the connection found in ``text`` (error bodies may echo a request)."""
        for secret in self._secrets():
            text = text.replace(secret, "***")
        return text

    def resolve_location(self, zone: str | None, lat: float | None, lon: float | None) -> Location:
        """The explicit zone, else coordinates, else the connection's default zone."""
        if zone:
            return Location(zone=str(zone))
        if lat is not None and lon is not None:
            return Location(lat=float(lat), lon=float(lon))
        default = self.default_zone
        if default:
            return Location(zone=str(default))
        raise InvalidRequestError(
            "no zone given and the connection has no default zone",
            service=self.service,
            hint=f"pass zone=... (or lat/lon), or set the zone extra of connection {self.carbon_conn_id!r}",
        )

    @property
    def default_zone(self) -> str | None:
        return self.extras.get("zone")

    # -- HTTP with retries ----------------------------------------------------------------------------------------

    def request_json(
        self,
        path: str,
        *,
        params: Mapping[str, Any] | list[tuple[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
        zone: str | None = None,
        auth: tuple[str, str] | None = None,
        allow_empty: bool = False,
    ) -> Any:
        """GET ``base_url + path`` and return the parsed JSON body, retrying transient failures.

        :param allow_empty: return ``None`` for an empty body or 204 instead of raising :class:`BadPayloadError`.
        :raises CarbonApiError: the typed failure, with ``attempts`` set.
        """
        url = self.base_url + path
        timeouts = (self._number("connect_timeout"), self._number("timeout"))

        def attempt() -> Any:
            started = time.monotonic()
            try:
                response = self.session.get(url, params=params, headers=headers, auth=auth, timeout=timeouts)
            except requests.Timeout:
                raise ServiceUnavailableError(
                    f"no answer from {path} within {timeouts[1]:g} s (connect {timeouts[0]:g} s)",
                    service=self.service,
                    zone=zone,
                ) from None
            except (requests.ConnectionError, ChunkedEncodingError, ContentDecodingError) as err:
                # refused, reset, or dropped in the middle of the body: transient, so retried
                raise ServiceUnavailableError(
                    f"could not connect to {self.base_url} or read its answer ({type(err).__name__})",
                    service=self.service,
                    zone=zone,
                ) from None
            except requests.RequestException as err:
                # e.g. InvalidHeader for a token pasted with a newline: requests' message quotes the header value,
                # so only the class name may travel on (chained with `from None`)
                raise InvalidRequestError(
                    f"the request to {path} could not be sent ({type(err).__name__})",
                    service=self.service,
                    zone=zone,
                    hint=f"check the host and the credentials of connection {self.carbon_conn_id!r} for stray "
                    "characters",
                ) from None
            self.log.info(
                "%s GET %s (zone %s) -> HTTP %s in %.0f ms",
                self.service,
                path,
                zone,
                response.status_code,
                (time.monotonic() - started) * 1000,
            )
            if response.status_code >= 400:
                raise self.error_from_response(response, zone)
            return self._parse_body(response, path, zone, allow_empty)

        return self._with_retries(attempt)

    def _with_retries(self, attempt: Callable[[], T]) -> T:
        max_attempts = max(1, int(self._number("max_attempts")))
        budget = self._number("max_retry_wait")
        backoff = self._number("retry_backoff")
        count = 0

        def counted() -> T:
            nonlocal count
            count += 1
            return attempt()

        def wait(state: tenacity.RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            retry_after = getattr(exc, "retry_after", None)
            if retry_after is not None:
                return float(retry_after)  # the service said exactly how long; do not hammer it
            # exponential with "equal jitter": never less than half the step, so retries spread out
            step = backoff * 2 ** (state.attempt_number - 1)
            return step / 2 + random.uniform(0, step / 2)

        def stop(state: tenacity.RetryCallState) -> bool:
            # tenacity computes the upcoming sleep before asking to stop, so the total wait stays within budget
            return state.attempt_number >= max_attempts or state.idle_for + state.upcoming_sleep > budget

        def before_sleep(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            self.log.warning(
                "%s: attempt %d failed (%s); retrying in %.2f s",
                self.service,
                state.attempt_number,
                exc,
                state.upcoming_sleep,
            )

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(lambda e: isinstance(e, CarbonApiError) and e.retryable),
            wait=wait,
            stop=stop,
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            return retrying(counted)
        except CarbonApiError as err:
            err.attempts = count
            if count > 1 or not err.retryable:
                self.log.error("%s: giving up: %s", self.service, err)
            raise

    def _parse_body(self, response: requests.Response, path: str, zone: str | None, allow_empty: bool) -> Any:
        if response.status_code == 204 or not response.content.strip():
            if allow_empty:
                return None
            raise BadPayloadError(
                f"{path} answered HTTP {response.status_code} with an empty body",
                reason="empty",
                service=self.service,
                zone=zone,
                status=response.status_code,
            )
        try:
            return response.json()
        except ValueError:
            snippet = self.redact(response.text)[:80]  # redact first: a cut could split a token
            raise BadPayloadError(
                f"{path} answered with malformed JSON: {snippet!r}",
                reason="malformed_json",
                service=self.service,
                zone=zone,
                status=response.status_code,
            ) from None

    def error_detail(self, response: requests.Response) -> str:
        """The service's own words about an error response (subclasses know their error shapes)."""
        try:
            body = response.json()
        except ValueError:
            return self.redact(response.text).strip()[:200] or response.reason or "no details"
        if isinstance(body, dict):
            for key in ("message", "error", "detail", "title"):
                value = body.get(key)
                if isinstance(value, str) and value:
                    return value
                if isinstance(value, dict) and isinstance(value.get("message"), str):
                    return value["message"]
        return self.redact(str(body))[:200]

    def error_from_response(self, response: requests.Response, zone: str | None) -> CarbonApiError:
        """Map an error status to its typed exception; subclasses refine 401/403 from the body."""
        status = response.status_code
        detail = self.redact(self.error_detail(response))
        common = {"service": self.service, "zone": zone, "status": status}
        if status == 429:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            hint = None
            if retry_after is not None:
                hint = f"the service asked to wait {retry_after:g} s; raise the cache TTL or call less often"
            return RateLimitedError(detail, retry_after=retry_after, hint=hint, **common)
        if status >= 500:
            return ServiceUnavailableError(detail, **common)
        if status == 401:
            return AuthenticationError(detail, **common)
        if status == 403:
            return NotEntitledError(detail, **common)
        return InvalidRequestError(detail, **common)

    # -- building forecasts -----------------------------------------------------------------------------------------

    def build_forecast(
        self,
        points: list[tuple[datetime, float, bool]],
        *,
        zone: str | None,
        end: datetime | None = None,
        generated_at: datetime | None = None,
        signal: Signal | None = None,
    ) -> Forecast:
        """Validate parsed points into a :class:`Forecast`; bad data becomes :class:`BadPayloadError`."""
        if not points:
            raise BadPayloadError("the response holds no data points", reason="empty", service=self.service, zone=zone)
        try:
            return Forecast.from_points(
                points,
                end=end,
                zone=zone,
                signal=signal or self.signal,
                source=self.service,
                generated_at=generated_at,
            )
        except InvalidForecastError as err:
            raise BadPayloadError(str(err), reason="invalid_forecast", service=self.service, zone=zone) from None

    def missing(self, what: str, zone: str | None) -> BadPayloadError:
        return BadPayloadError(f"the response lacks {what}", reason="missing_field", service=self.service, zone=zone)

    # -- the common interface ---------------------------------------------------------------------------------------

    def get_latest(self, zone: str | None = None, *, lat: float | None = None, lon: float | None = None) -> Forecast:
        """The intensity in force now, as a one-point forecast (its ``end`` says until when it holds).

        :param zone: zone / region / location key; default: the connection's.
        :param lat: latitude instead of a zone, where the service supports it.
        :param lon: longitude instead of a zone.
        """
        return self._fetch_latest(self.resolve_location(zone, lat, lon))

    def get_forecast(
        self,
        zone: str | None = None,
        *,
        lat: float | None = None,
        lon: float | None = None,
        horizon: timedelta = timedelta(hours=24),
        granularity: timedelta | None = None,
        min_horizon: timedelta | None = None,
        use_cache: bool = True,
    ) -> Forecast:
        """The current forecast, from the cache when fresh.

        :param zone: zone / region / location key; default: the connection's.
        :param lat: latitude instead of a zone, where the service supports it.
        :param lon: longitude instead of a zone.
        :param horizon: how far ahead to ask for.
        :param granularity: step (5 min, 15 min, 1 h) where the service offers a choice; default: the connection's.
        :param min_horizon: raise :class:`BadPayloadError` (``short_forecast``) unless the forecast covers at least
            this long from now; default: ``horizon`` minus one hour (services start at the current period).
        :param use_cache: ``False`` always asks the service.
        """
        location = self.resolve_location(zone, lat, lon)
        step = granularity or self.default_granularity
        # Callers ask for "up to my deadline", a horizon that shrinks by the second; asking for whole hours keeps
        # the request and the cache key the same for an hour, so re-checks and sibling tasks share one answer.
        asked = _HOUR * math.ceil(horizon / _HOUR)
        key = "|".join(
            str(p) for p in (self.service, self.base_url, location.label, step, asked, *self.cache_key_extras())
        )

        def fetch() -> dict[str, Any]:
            return self._fetch_forecast(location, asked, step).to_dict()

        ttl = self._number("cache_ttl") if use_cache else 0
        payload = forecast_cache.get_or_fetch(
            key,
            fetch,
            ttl=ttl,
            cache_dir=self.setting("cache_dir"),
            on_hit=lambda layer: self.log.info(
                "%s: forecast for %s from the %s cache", self.service, location.label, layer
            ),
        )
        forecast = Forecast.from_dict(payload)
        self._check_horizon(forecast, horizon if min_horizon is None else min_horizon, min_horizon is None)
        return forecast

    def get_history(
        self,
        zone: str | None = None,
        *,
        start: datetime,
        end: datetime,
        lat: float | None = None,
        lon: float | None = None,
        granularity: timedelta | None = None,
    ) -> Forecast:
        """Measured (or best-known) intensities over ``[start, end)``, for carbon accounting.

        :raises ValueError: if the range is empty or naive.
        """
        if start.tzinfo is None or end.tzinfo is None or not start < end:
            raise ValueError("history needs a tz-aware start before a tz-aware end")
        return self._fetch_history(self.resolve_location(zone, lat, lon), start, end, granularity)

    def test_connection(self) -> tuple[bool, str]:
        """Check credentials and reachability with one cheap call; never raises."""
        try:
            return True, self._test_connection()
        except CarbonApiError as err:
            return False, str(err)
        except Exception as err:  # the UI shows this message; any failure is an answer, not a crash
            return False, f"{type(err).__name__}: {self.redact(str(err))}"

    # -- async twins, for triggers ------------------------------------------------------------------------------

    async def _aload_connection(self) -> None:
        # The connection must be read with the async API inside an event loop (the sync one can deadlock the
        # triggerer); the HTTP call itself then runs in a worker thread with the connection already in hand.
        if self._connection is None:
            self._connection = await self.aget_connection(self.carbon_conn_id)

    async def aget_latest(self, *args: Any, **kwargs: Any) -> Forecast:
        """:meth:`get_latest` without blocking the event loop."""
        await self._aload_connection()
        return await asyncio.to_thread(self.get_latest, *args, **kwargs)

    async def aget_forecast(self, *args: Any, **kwargs: Any) -> Forecast:
        """:meth:`get_forecast` without blocking the event loop."""
        await self._aload_connection()
        return await asyncio.to_thread(self.get_forecast, *args, **kwargs)

    async def aget_history(self, *args: Any, **kwargs: Any) -> Forecast:
        """:meth:`get_history` without blocking the event loop."""
        await self._aload_connection()
        return await asyncio.to_thread(self.get_history, *args, **kwargs)

    async def atest_connection(self) -> tuple[bool, str]:
        """:meth:`test_connection` without blocking the event loop."""
        await self._aload_connection()
        return await asyncio.to_thread(self.test_connection)

    # -- what each service implements ---------------------------------------------------------------------------

    @property
    def default_granularity(self) -> timedelta | None:
        """The step asked for when the caller does not say; ``None`` where the service has only one."""
        return None

    def cache_key_extras(self) -> tuple[Any, ...]:
        """Settings besides zone, step and horizon that change the data (e.g. emission factor type)."""
        return ()

    def latest_comparable_to_forecast(self) -> bool:
        """Whether :meth:`get_latest` measures what :meth:`get_forecast` predicts (same emission factors), so that
        the trigger may compare them at the planned start."""
        return True

    def cloud_location(self, provider: str, region: str) -> str | None:
        """The name this service uses for a cloud region, if it has one; else the region's grid zone is used."""
        return None

    def _check_horizon(self, forecast: Forecast, needed: timedelta, defaulted: bool) -> None:
        if defaulted:
            needed = max(needed - timedelta(hours=1), timedelta(0))
        now = datetime.now(timezone.utc)
        covered = forecast.end - max(now, forecast.start)
        if covered < needed:
            raise BadPayloadError(
                f"the forecast covers {_hours(covered)} from now (until {forecast.end.isoformat()}), "
                f"less than the {_hours(needed)} needed",
                reason="short_forecast",
                service=self.service,
                zone=forecast.zone,
                hint="ask for a shorter horizon, or pass min_horizon= to accept a shorter forecast",
            )

    @abstractmethod
    def _fetch_latest(self, location: Location) -> Forecast: ...

    @abstractmethod
    def _fetch_forecast(self, location: Location, horizon: timedelta, granularity: timedelta | None) -> Forecast: ...

    @abstractmethod
    def _fetch_history(
        self, location: Location, start: datetime, end: datetime, granularity: timedelta | None
    ) -> Forecast: ...

    @abstractmethod
    def _test_connection(self) -> str: ...


def _hours(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:.1f} h" if not math.isclose(hours, round(hours)) else f"{round(hours)} h"


def chunks(start: datetime, end: datetime, size: timedelta) -> list[tuple[datetime, datetime]]:
    """Split ``[start, end)`` into consecutive ranges no longer than ``size`` (APIs cap range lengths)."""
    out = []
    while start < end:
        stop = min(start + size, end)
        out.append((start, stop))
        start = stop
    return out
