"""The interface every carbon-intensity hook implements: connection settings, cache, async twins, test_connection.

A service hook (Electricity Maps, Carbon Aware SDK, WattTime, UK Carbon Intensity) only says how to ask its API and
how to read the answer; this base turns that into one interface returning validated core
:class:`~airflow_provider_carbon.core.forecast.Forecast` objects:

* :meth:`CarbonIntensityHook.get_latest` - the value in force now;
* :meth:`CarbonIntensityHook.get_forecast` - the forecast over a horizon (cached);
* :meth:`CarbonIntensityHook.get_history` - actuals over a past range (for carbon accounting);
* ``aget_*`` twins that never block an event loop (for triggers);
* :meth:`CarbonIntensityHook.test_connection`.

How a request travels (session, timeouts, deadlines, retries, size cap, redirects, redaction) is
:mod:`airflow_provider_carbon.hooks.transport`; the time helpers are :mod:`airflow_provider_carbon.hooks.timeutil`.
Every failure surfaces as one of the typed :class:`~airflow_provider_carbon.exceptions.CarbonApiError` subclasses,
with status, service, zone and a hint, and never with a credential in it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import re
from abc import abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import requests
from airflow.sdk import BaseHook

from airflow_provider_carbon.core.forecast import Forecast, Signal
from airflow_provider_carbon.exceptions import (
    BadPayloadError,
    CarbonApiError,
    CarbonError,
    InvalidForecastError,
    InvalidRequestError,
    ServiceUnavailableError,
)
from airflow_provider_carbon.hooks import transport
from airflow_provider_carbon.hooks._form import ConnectionFormMixin
from airflow_provider_carbon.hooks.cache import forecast_cache
from airflow_provider_carbon.hooks.timeutil import HOUR, ceil_hours, format_hours
from airflow_provider_carbon.hooks.transport import RedactingLogger, Redactor, Transport, TransportSettings

if TYPE_CHECKING:
    from airflow.sdk import Connection

__all__ = ["DEFAULTS", "CarbonIntensityHook", "Location", "public_call", "current_deadline"]

F = TypeVar("F", bound=Callable[..., Any])

#: The deadline of the public call running in this thread or task. A context variable, not hook state: a hook
#: shared by threads (the region operators) or tasks (a trigger) must not pass one caller's deadline to another;
#: ``asyncio.to_thread`` copies it into the worker thread of an ``aget_*`` twin.
_DEADLINE: contextvars.ContextVar[datetime | None] = contextvars.ContextVar("carbon_call_deadline", default=None)


def current_deadline() -> datetime | None:
    """The deadline of the public hook call in progress (the earliest, when calls nest), or ``None``."""
    return _DEADLINE.get()


@contextlib.contextmanager
def _deadline_scope(deadline: datetime | None) -> Iterator[datetime | None]:
    if deadline is not None and deadline.tzinfo is None:
        raise ValueError("deadline must be a tz-aware datetime")
    outer = _DEADLINE.get()
    effective = deadline if outer is None else outer if deadline is None else min(outer, deadline)
    token = _DEADLINE.set(effective)
    try:
        yield effective
    finally:
        _DEADLINE.reset(token)


def public_call(method: F) -> F:
    """The boundary of a public hook method that asks a service:

    * it honours its ``deadline=`` keyword: every request it makes, with all attempts and waits, ends by then
      (nested calls keep the earliest deadline); the method declares ``deadline`` itself, for its signature and
      documentation;
    * every provider error leaving it passes the connection's one redaction rule, whatever raised it (the
      transport, or a parser quoting a bad field of a 200 answer that echoed the token).
    """

    @functools.wraps(method)
    def wrapper(self: CarbonIntensityHook, *args: Any, **kwargs: Any) -> Any:
        with _deadline_scope(kwargs.get("deadline")):
            try:
                return method(self, *args, **kwargs)
            except CarbonError as err:
                raise self.redactor.scrub(err)  # noqa: B904 - the same error, re-raised with its traceback

    return wrapper  # type: ignore[return-value]


#: Defaults of the settings every connection may override in its extras (and a hook in its constructor).
DEFAULTS: dict[str, Any] = {
    "timeout": 10.0,  # seconds to wait for a response (read timeout)
    "request_budget": 30.0,  # seconds one request may take in all: connect, redirects and the whole body
    "max_response_bytes": 4 * 1024 * 1024,  # bytes a response body may have, decompressed
    "allow_redirects": False,  # follow redirects to the same scheme, host and port (never to another server)
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
    :param request_budget: seconds one request may take in all, connect, redirects and whole body (extra
        ``request_budget``); a body still arriving then is a timeout.
    :param max_response_bytes: bytes a response body may have, decompressed (extra ``max_response_bytes``).
    :param allow_redirects: follow redirects to the same scheme, host and port (extra ``allow_redirects``, a word:
        true/false); a redirect elsewhere is always a :class:`~airflow_provider_carbon.exceptions.RedirectError`.

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
    #: the longest forecast the service publishes; :meth:`get_forecast` asks for no more (each service sets it)
    max_horizon: ClassVar[timedelta] = timedelta(hours=72)

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
        request_budget: float | None = None,
        max_response_bytes: int | None = None,
        allow_redirects: bool | None = None,
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
            "request_budget": request_budget,
            "max_response_bytes": max_response_bytes,
            "allow_redirects": allow_redirects,
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
    def transport(self) -> Transport:
        """How this hook's requests travel (see :mod:`~airflow_provider_carbon.hooks.transport`)."""
        return Transport(
            service=self.service, conn_id=self.carbon_conn_id, log=self.log, redactor=lambda: self.redactor
        )

    @property
    def session(self) -> requests.Session:
        """The hook's one HTTP session (connection reuse, one place for the User-Agent)."""
        return self.transport.session

    def close(self) -> None:
        if "transport" in self.__dict__:
            self.transport.close()

    @property
    def token(self) -> str | None:
        """The connection's password, without the whitespace a paste leaves around it (a newline in a header value
        makes requests raise an error that quotes the value)."""
        return (self.connection.password or "").strip() or None

    def _secrets(self) -> list[str]:
        raw = self.connection.password or ""
        return [s for s in {raw, raw.strip()} if s]

    @property
    def redactor(self) -> Redactor:
        """The connection's one redaction rule (see :class:`~airflow_provider_carbon.hooks.transport.Redactor`).

        Knows nothing before the connection is loaded (nothing secret can have been sent or echoed yet), so that
        a log line never makes a hook read its connection (the sync read may deadlock the triggerer).
        """
        if self._connection is None:
            return Redactor(())
        conn = self._connection
        basic = (conn.login, conn.password) if conn.login and conn.password else None
        return Redactor(self._secrets(), basic=basic)

    @property
    def log(self) -> Any:
        """The hook's logger, every line through :attr:`redactor` (a service's warnings quote its answers)."""
        return RedactingLogger(super().log, lambda: self.redactor)

    def redact(self, text: str) -> str:
        """Replace any credential of the connection found in ``text`` (error bodies may echo a request)."""
        return self.redactor(text)

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

    def transport_settings(self) -> TransportSettings:
        """The transport settings of the next call, from the constructor, the extras and the defaults."""
        return TransportSettings(
            connect_timeout=self._number("connect_timeout"),
            read_timeout=self._number("timeout"),
            max_attempts=max(1, int(self._number("max_attempts"))),
            max_retry_wait=self._number("max_retry_wait"),
            retry_backoff=self._number("retry_backoff"),
            max_response_bytes=int(self._number("max_response_bytes")),
            request_budget=self._number("request_budget"),
            allow_redirects=self.flag("allow_redirects"),
        )

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
        return self.transport.get_json(
            self.base_url + path,
            label=path,
            settings=self.transport_settings(),
            error_from_response=self.error_from_response,
            params=params,
            headers=headers,
            auth=auth,
            zone=zone,
            allow_empty=allow_empty,
            deadline=current_deadline(),
        )

    def error_detail(self, response: requests.Response) -> str:
        """The service's own words about an error response (subclasses know their error shapes)."""
        return transport.error_detail(response, self.redact)

    def error_from_response(self, response: requests.Response, zone: str | None) -> CarbonApiError:
        """Map an error status to its typed exception; subclasses refine 401/403 from the body."""
        detail = self.redact(self.error_detail(response))
        return transport.error_for_status(response, detail, service=self.service, zone=zone)

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

    @public_call
    def get_latest(
        self,
        zone: str | None = None,
        *,
        lat: float | None = None,
        lon: float | None = None,
        deadline: datetime | None = None,
    ) -> Forecast:
        """The intensity in force now, as a one-point forecast (its ``end`` says until when it holds).

        :param zone: zone / region / location key; default: the connection's.
        :param lat: latitude instead of a zone, where the service supports it.
        :param lon: longitude instead of a zone.
        :param deadline: a tz-aware instant by which the call has ended, retries included; then it raises
            :class:`~airflow_provider_carbon.exceptions.ServiceUnavailableError`.
        """
        return self._fetch_latest(self.resolve_location(zone, lat, lon))

    @public_call
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
        deadline: datetime | None = None,
    ) -> Forecast:
        """The current forecast, from the cache when fresh.

        :param zone: zone / region / location key; default: the connection's.
        :param lat: latitude instead of a zone, where the service supports it.
        :param lon: longitude instead of a zone.
        :param horizon: how far ahead to ask for; capped at :attr:`max_horizon`, the longest the service publishes
            (a long deadline then gets the longest forecast there is, not an error).
        :param granularity: step (5 min, 15 min, 1 h) where the service offers a choice; default: the connection's.
        :param min_horizon: raise :class:`BadPayloadError` (``short_forecast``) unless the forecast covers at least
            this long from now; default: ``horizon`` minus one hour (services start at the current period). Capped at
            :attr:`max_horizon` minus that hour too.
        :param use_cache: ``False`` always asks the service.
        :param deadline: a tz-aware instant by which the call has ended (retries, and waiting for another caller's
            fetch of the same forecast, included); then it raises
            :class:`~airflow_provider_carbon.exceptions.ServiceUnavailableError`.
        """
        location = self.resolve_location(zone, lat, lon)
        step = granularity or self.default_granularity
        # The service's limit, not the caller's: asking for more only turns a long deadline into a short_forecast
        # error. A forecast starts at the current period, so "the longest there is" covers max_horizon less (up to)
        # one period from now: the needed coverage is capped an hour below it, as for a defaulted min_horizon.
        horizon = min(horizon, self.max_horizon)
        if min_horizon is not None:
            min_horizon = min(min_horizon, max(self.max_horizon - HOUR, timedelta(0)))
        asked = ceil_hours(horizon)  # whole hours: one request and one cache key per hour of a shrinking horizon
        key = "|".join(
            str(p) for p in (self.service, self.base_url, location.label, step, asked, *self.cache_key_extras())
        )

        def fetch() -> dict[str, Any]:
            return self._fetch_forecast(location, asked, step).to_dict()

        ttl = self._number("cache_ttl") if use_cache else 0
        needed, defaulted = (horizon, True) if min_horizon is None else (min_horizon, False)

        def stale(cached: dict[str, Any]) -> bool:
            # A cached forecast younger than its TTL can still end too soon: against a compressed clock (the
            # simulator at 720x ages it 12 h per real minute), or when a longer horizon shares its hour-rounded key.
            # Fetching it again beats turning a good night into a short_forecast fallback.
            try:
                self._check_horizon(Forecast.from_dict(cached), needed, defaulted)
            except (BadPayloadError, ValueError, KeyError, TypeError):
                self.log.info(
                    "%s: the cached forecast for %s ends too soon; asking the service", self.service, location.label
                )
                return True
            return False

        payload = self._cached(key, fetch, "forecast", location, ttl=ttl, stale=stale)
        forecast = Forecast.from_dict(payload)
        self._check_horizon(forecast, needed, defaulted)
        return forecast

    @public_call
    def get_history(
        self,
        zone: str | None = None,
        *,
        start: datetime,
        end: datetime,
        lat: float | None = None,
        lon: float | None = None,
        granularity: timedelta | None = None,
        deadline: datetime | None = None,
        use_cache: bool = False,
    ) -> Forecast:
        """Measured (or best-known) intensities over ``[start, end)``, for carbon accounting and for a forecast
        from history.

        :param deadline: a tz-aware instant by which the call has ended, every chunk of a long range and the retries
            included; then it raises :class:`~airflow_provider_carbon.exceptions.ServiceUnavailableError`.
        :param use_cache: serve the same range from the forecast cache (``cache_ttl``, ``cache_dir``): weeks of
            history for a forecast are several requests, and every sensor of a zone asks for the same ones within
            the hour. Accounting asks for its job's own window and leaves it off.
        :raises ValueError: if the range is empty or naive.
        """
        if start.tzinfo is None or end.tzinfo is None or not start < end:
            raise ValueError("history needs a tz-aware start before a tz-aware end")
        location = self.resolve_location(zone, lat, lon)
        if not use_cache:
            return self._fetch_history(location, start, end, granularity)
        key = "|".join(
            str(p)
            for p in ("history", self.service, self.base_url, location.label, granularity, start.isoformat(),
                      end.isoformat(), *self.cache_key_extras())
        )  # fmt: skip
        payload = self._cached(
            key,
            lambda: self._fetch_history(location, start, end, granularity).to_dict(),
            "history",
            location,
            ttl=self._number("cache_ttl"),
        )
        return Forecast.from_dict(payload)

    def _cached(
        self,
        key: str,
        fetch: Callable[[], dict[str, Any]],
        what: str,
        location: Location,
        *,
        ttl: float,
        stale: Callable[[Any], bool] | None = None,
    ) -> dict[str, Any]:
        """``fetch()``'s payload through the shared cache (single flight, ``cache_dir``), waiting for another
        caller's fetch of ``key`` no longer than the call's deadline allows."""
        clock = transport.Clock(current_deadline())
        try:
            return forecast_cache.get_or_fetch(
                key,
                fetch,
                ttl=ttl,
                cache_dir=self.setting("cache_dir"),
                on_hit=lambda layer: self.log.info(
                    "%s: %s for %s from the %s cache", self.service, what, location.label, layer
                ),
                wait=clock.left(),
                stale=stale,
            )
        except TimeoutError:  # the cache's lock: another caller is fetching the same data and did not finish in time
            raise ServiceUnavailableError(
                f"no answer within {clock.elapsed():.1f} s, before the deadline {clock.deadline.isoformat()}: another "
                f"caller's fetch of the same {what} was still running",
                service=self.service,
                zone=location.label,
            ) from None

    def test_connection(self) -> tuple[bool, str]:
        """Check credentials and reachability with one cheap call; never raises."""
        try:
            return True, self._test_connection()
        except CarbonApiError as err:
            return False, self.redact(str(err))
        except Exception as err:  # the UI shows this message; any failure is an answer, not a crash
            return False, f"{type(err).__name__}: {self.redact(str(err))}"

    # -- async twins, for triggers ------------------------------------------------------------------------------

    async def _aload_connection(self, deadline: datetime | None = None) -> None:
        # The connection must be read with the async API inside an event loop (the sync one can deadlock the
        # triggerer); the HTTP call itself then runs in a worker thread with the connection already in hand.
        if self._connection is not None:
            return
        left = transport.Clock(deadline).left()
        try:
            self._connection = await asyncio.wait_for(self.aget_connection(self.carbon_conn_id), left)
        except asyncio.TimeoutError:
            raise ServiceUnavailableError(
                f"the connection {self.carbon_conn_id!r} could not be read before the deadline {deadline}",
                service=self.service,
            ) from None

    async def aget_latest(self, *args: Any, deadline: datetime | None = None, **kwargs: Any) -> Forecast:
        """:meth:`get_latest` without blocking the event loop; ``deadline`` bounds reading the connection too."""
        await self._aload_connection(deadline)
        return await asyncio.to_thread(self.get_latest, *args, deadline=deadline, **kwargs)

    async def aget_forecast(self, *args: Any, deadline: datetime | None = None, **kwargs: Any) -> Forecast:
        """:meth:`get_forecast` without blocking the event loop; ``deadline`` bounds reading the connection too."""
        await self._aload_connection(deadline)
        return await asyncio.to_thread(self.get_forecast, *args, deadline=deadline, **kwargs)

    async def aget_history(self, *args: Any, deadline: datetime | None = None, **kwargs: Any) -> Forecast:
        """:meth:`get_history` without blocking the event loop; ``deadline`` bounds reading the connection too."""
        await self._aload_connection(deadline)
        return await asyncio.to_thread(self.get_history, *args, deadline=deadline, **kwargs)

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
                f"the forecast covers {format_hours(covered)} from now (until {forecast.end.isoformat()}), "
                f"less than the {format_hours(needed)} needed",
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
