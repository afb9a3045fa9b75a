"""WattTime API v3: marginal operating emissions rate (MOER) forecasts and history.

Connection (type ``watttime``, default id ``watttime_default``):

* login / password: the WattTime username and password; the hook logs in with HTTP Basic auth at ``/login`` and
  reuses the bearer token (valid 30 minutes) until shortly before it expires, renewing it once on a 401;
* host: default ``https://api.watttime.org``;
* extras: ``region`` (default region, e.g. ``CAISO_NORTH``), ``signal_type`` (``co2_moer``, the default, is
  *marginal*; ``co2_aoer`` is *average*), and the common ``timeout``, ``max_attempts``, ``max_retry_wait``,
  ``cache_ttl``, ``cache_dir``.

WattTime publishes lbs CO2 per MWh; the hook converts to gCO2eq/kWh (x 0.45359237) so its forecasts compare with
the other services' numbers (but a marginal signal still does not compare with an average one).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar

import requests

from airflow_provider_carbon.core.forecast import Forecast, Signal
from airflow_provider_carbon.exceptions import (
    AuthenticationError,
    CarbonApiError,
    InvalidRequestError,
    ServiceUnavailableError,
)
from airflow_provider_carbon.hooks.base import CarbonIntensityHook, Location, current_deadline, public_call
from airflow_provider_carbon.hooks.payload import MISSING, Reader
from airflow_provider_carbon.hooks.timeutil import chunks

__all__ = ["LBS_PER_MWH_TO_G_PER_KWH", "WattTimeHook"]

#: 1 lb = 453.59237 g and 1 MWh = 1000 kWh
LBS_PER_MWH_TO_G_PER_KWH = 0.45359237
_TOKEN_LIFETIME = 30 * 60.0
_TOKEN_MARGIN = 60.0  # renew a minute early rather than send a token that expires in flight
_SIGNALS = {"co2_moer": Signal.MARGINAL, "co2_aoer": Signal.AVERAGE}
_MAX_TOKEN = 8192  # a JWT; longer is not a token, and would be sent in every header


class WattTimeHook(CarbonIntensityHook):
    """Read marginal (or average) emission rates from WattTime (API v3).

    :param carbon_conn_id: connection of type ``watttime`` (default ``watttime_default``).

    Other parameters as in :class:`~airflow_provider_carbon.hooks.base.CarbonIntensityHook`. The zone argument is a
    WattTime region (``CAISO_NORTH``); with ``lat``/``lon`` the region is looked up (``/v3/region-from-loc``).

    .. code-block:: python

        hook = WattTimeHook("watttime_default")
        hook.get_forecast("CAISO_NORTH", horizon=timedelta(hours=24)).signal  # Signal.MARGINAL
    """

    conn_type = "watttime"
    default_conn_name = "watttime_default"
    hook_name = "WattTime"
    service = "watttime"
    default_host = "https://api.watttime.org"
    max_horizon = timedelta(hours=72)  # /v3/forecast horizon_hours 0-72 (reference 3.2)

    # tokens shared by every hook of a process, per (host, username): a login costs 1 of 100 allowed per 5 min
    _tokens: ClassVar[dict[tuple[str, str], tuple[str, float]]] = {}
    _token_lock: ClassVar[threading.RLock] = threading.RLock()  # re-entered: redacting an error reads tokens
    _regions: ClassVar[dict[tuple[str, float, float, str], str]] = {}

    @property
    def default_zone(self) -> str | None:
        return self.extras.get("region") or self.extras.get("zone")

    @property
    def signal_type(self) -> str:
        signal_type = self.extras.get("signal_type") or "co2_moer"
        if signal_type not in _SIGNALS:
            raise InvalidRequestError(
                f"signal_type {signal_type!r} is not an emissions rate; use one of {sorted(_SIGNALS)}",
                service=self.service,
            )
        return signal_type

    @property
    def signal(self) -> Signal:  # type: ignore[override]
        return _SIGNALS[self.signal_type]

    def cache_key_extras(self) -> tuple[Any, ...]:
        return (self.signal_type,)

    def _secrets(self) -> list[str]:
        # No lock: every log line is redacted, and must not wait for another thread's login in flight; copying the
        # dict's items is a single step for the interpreter, so it never sees the dict change size.
        tokens = [tok for (host, _), (tok, _) in list(self._tokens.items()) if host == self.base_url]
        return [*super()._secrets(), *tokens]

    # -- login --------------------------------------------------------------------------------------------------

    def _token(self, *, renew: bool = False) -> str:
        login, password = self.connection.login, self.connection.password
        if not login or not password:
            raise AuthenticationError(
                "the connection needs the WattTime username (login) and password",
                service=self.service,
                hint=f"fill login and password of connection {self.carbon_conn_id!r}",
            )
        key = (self.base_url, login)
        # Another thread may be logging in while holding the lock: wait for it no longer than this call's deadline
        # allows (a login that hangs must not hold every other caller past theirs).
        deadline = current_deadline()
        wait = -1.0 if deadline is None else max((deadline - datetime.now(timezone.utc)).total_seconds(), 0.0)
        if not self._token_lock.acquire(timeout=wait):
            raise ServiceUnavailableError(
                f"another call's WattTime login did not finish before the deadline {deadline.isoformat()}",
                service=self.service,
                hint="the WattTime login is slow; the caller's fallback policy decides what happens now",
            )
        try:
            cached = self._tokens.get(key)
            if cached and not renew and cached[1] > time.time():
                return cached[0]
            token = self.parse_login(self.request_json("/login", auth=(login, password)))
            self._tokens[key] = (token, time.time() + _TOKEN_LIFETIME - _TOKEN_MARGIN)
            return token
        finally:
            self._token_lock.release()

    def _data(self, path: str, params: dict[str, Any], zone: str | None) -> Any:
        """A data call with the bearer token, logging in again once if the token was refused."""
        headers = self._auth()  # outside the try: a refused *login* must not be taken for an expired token
        try:
            return self.request_json(path, params=params, headers=headers, zone=zone)
        except AuthenticationError as err:
            if err.status != 401:
                raise
            self.log.info("watttime: token refused (expired?); logging in again")
            return self.request_json(path, params=params, headers=self._auth(renew=True), zone=zone)

    def _auth(self, *, renew: bool = False) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token(renew=renew)}"}

    def error_from_response(self, response: requests.Response, zone: str | None) -> CarbonApiError:
        err = super().error_from_response(response, zone)
        login_url = f"{self.base_url}/login"
        at_login = response.request is not None and (response.request.url or "").split("?")[0] == login_url
        if at_login and response.status_code in (401, 403):
            return AuthenticationError(
                err.detail,
                service=self.service,
                status=response.status_code,
                hint=f"WattTime refused the username/password of connection {self.carbon_conn_id!r}",
            )
        if response.status_code == 403:
            err.hint = (
                "the account may not read this region or signal (new accounts may read only CAISO_NORTH); "
                "WattTimeHook.my_access() lists what it may read"
            )
        if response.status_code == 404:
            err.hint = "WattTime has no coverage for this location or region"
        return err

    # -- parsing ------------------------------------------------------------------------------------------------

    def _reader(self, zone: str | None) -> Reader:
        return Reader(self.service, zone, self.redact)

    def parse_login(self, body: Any) -> str:
        """The bearer token of a decoded ``/login`` answer.

        :raises BadPayloadError: if there is none, or it could not be sent in a header (never quoting it).
        """
        read = self._reader(None)
        token = read.text(read.mapping(body, "").get("token", MISSING), "token", max_length=_MAX_TOKEN)
        if not token or not token.isascii() or not token.isprintable() or any(c.isspace() for c in token):
            raise read.error("'token' is not a bearer token (not printable ASCII without spaces)", "bad_value")
        return token

    def parse_series(self, body: Any, zone: str, *, end: datetime | None = None) -> Forecast:
        """A decoded ``/v3/forecast`` or ``/v3/historical`` answer as a forecast in gCO2eq/kWh (points at or after
        ``end`` left out).

        :raises BadPayloadError: naming the first bad field.
        """
        read = self._reader(zone)
        body = read.mapping(body, "")
        items = read.array(body.get("data", MISSING), "data")
        meta = read.mapping(body.get("meta"), "meta", optional=True)
        units = meta.get("units", "lbs_co2_per_mwh")
        if units != "lbs_co2_per_mwh":
            raise read.error(
                f"'meta.units' is {read.quote(units)}, not an emissions rate in lbs_co2_per_mwh", "bad_value"
            )
        for warning in read.array(meta.get("warnings"), "meta.warnings", optional=True):
            self.log.warning("watttime: %s", self.redact(str(warning))[:300])  # the body's words: redacted, cut
        points = []
        for i, p in enumerate(items):
            at = f"data[{i}]"
            p = read.mapping(p, at)
            moment = read.timestamp(p.get("point_time", MISSING), f"{at}.point_time")
            if end and moment >= end:
                continue
            value = read.number(p.get("value", MISSING), f"{at}.value", scale=LBS_PER_MWH_TO_G_PER_KWH)
            points.append((moment, value, read.flag(p.get("imputed_data_used"), f"{at}.imputed_data_used")))
        seconds = meta.get("data_point_period_seconds")
        if seconds is None:
            seconds = 300
        period = timedelta(
            seconds=read.number(seconds, "meta.data_point_period_seconds", minimum=1, maximum=86400, unit="s")
        )
        region = read.text(meta.get("region"), "meta.region", optional=True)
        return self.build_forecast(
            points,
            zone=self.redact(region) if region else zone,  # redacted: the zone is named in errors and logs
            end=points[-1][0] + period if points else None,
            generated_at=read.optional_timestamp(meta.get("generated_at"), "meta.generated_at"),
        )

    def parse_forecast(self, body: Any, region: str) -> Forecast:
        """A decoded ``/v3/forecast`` answer as a forecast."""
        return self.parse_series(body, region)

    def parse_latest(self, body: Any, region: str) -> Forecast:
        """A decoded ``/v3/forecast`` nowcast (horizon 0) as the one-point forecast of the current interval."""
        forecast = self.parse_series(body, region)
        first = forecast.to_points()[:1]
        step = (forecast.end - forecast.start) / len(forecast)
        return self.build_forecast(
            [(t, v, False) for t, v in first],
            zone=forecast.zone,
            end=first[0][0] + step,
            generated_at=forecast.generated_at,
        )

    def parse_history(self, bodies: Iterable[Any], region: str, start: datetime, end: datetime) -> Forecast:
        """Decoded ``/v3/historical`` answers (one per chunk of the range) as one series over ``[start, end)``."""
        points: dict[datetime, tuple[datetime, float, bool]] = {}
        meta_end: datetime | None = None
        for body in bodies:
            part = self.parse_series(body, region, end=end)
            for t, v, e in zip(part.timestamps, part.values.tolist(), part.estimated.tolist(), strict=True):
                if t >= start:
                    points.setdefault(t, (t, v, e))  # bounds are inclusive: neighbours share a point
            meta_end = part.end
        ordered = sorted(points.values())
        return self.build_forecast(ordered, zone=region, end=min(meta_end, end) if meta_end else None)

    def parse_region(self, body: Any, label: str) -> str:
        """The region of a decoded ``/v3/region-from-loc`` answer (redacted: it is used as a zone in errors)."""
        read = self._reader(label)
        region = read.text(read.mapping(body, "").get("region", MISSING), "region")
        return self.redact(str(region))

    def parse_my_access(self, body: Any) -> dict[str, Any]:
        """A decoded ``/v3/my-access`` answer, its hierarchy (signal types -> regions -> endpoints -> models)
        checked.

        :raises BadPayloadError: naming the first bad field.
        """
        read = self._reader(None)
        access = read.mapping(body, "")
        for i, signal in enumerate(read.array(access.get("signal_types"), "signal_types", optional=True)):
            at = f"signal_types[{i}]"
            signal = read.mapping(signal, at)
            read.text(signal.get("signal_type"), f"{at}.signal_type", optional=True)
            for j, region in enumerate(read.array(signal.get("regions"), f"{at}.regions", optional=True)):
                rat = f"{at}.regions[{j}]"
                region = read.mapping(region, rat)
                read.text(region.get("region"), f"{rat}.region", optional=True)
                for k, endpoint in enumerate(read.array(region.get("endpoints"), f"{rat}.endpoints", optional=True)):
                    eat = f"{rat}.endpoints[{k}]"
                    endpoint = read.mapping(endpoint, eat)
                    read.text(endpoint.get("endpoint"), f"{eat}.endpoint", optional=True)
                    for m, model in enumerate(read.array(endpoint.get("models"), f"{eat}.models", optional=True)):
                        read.mapping(model, f"{eat}.models[{m}]")
        return access

    def _region(self, location: Location) -> str:
        if location.zone is not None:
            return location.zone
        key = (self.base_url, float(location.lat or 0), float(location.lon or 0), self.signal_type)
        if key not in self._regions:
            body = self._data(
                "/v3/region-from-loc",
                {"latitude": str(location.lat), "longitude": str(location.lon), "signal_type": self.signal_type},
                location.label,
            )
            self._regions[key] = self.parse_region(body, location.label)
        return self._regions[key]

    # -- the common interface -----------------------------------------------------------------------------------

    def _fetch_latest(self, location: Location) -> Forecast:
        # v3 has no "latest MOER" route; a forecast with horizon 0 (the "nowcast") is the current interval.
        region = self._region(location)
        body = self._data(
            "/v3/forecast", {"region": region, "signal_type": self.signal_type, "horizon_hours": 0}, region
        )
        return self.parse_latest(body, region)

    def _fetch_forecast(self, location: Location, horizon: timedelta, granularity: timedelta | None) -> Forecast:
        region = self._region(location)
        hours = min(72, max(1, math.ceil(horizon.total_seconds() / 3600)))
        body = self._data(
            "/v3/forecast", {"region": region, "signal_type": self.signal_type, "horizon_hours": hours}, region
        )
        return self.parse_forecast(body, region)

    def _fetch_history(
        self, location: Location, start: datetime, end: datetime, granularity: timedelta | None
    ) -> Forecast:
        region = self._region(location)
        bodies = (  # a generator: a bad first answer stops the requests for the rest
            self._data(
                "/v3/historical",
                {"region": region, "signal_type": self.signal_type, "start": lo.isoformat(), "end": hi.isoformat()},
                region,
            )
            for lo, hi in chunks(start, end, timedelta(days=30))  # the API allows 32 days per request
        )
        return self.parse_history(bodies, region, start, end)

    @public_call
    def my_access(self, *, deadline: datetime | None = None) -> dict[str, Any]:
        """``GET /v3/my-access``: the signal types, regions and endpoints this account may read.

        :param deadline: a tz-aware instant by which the call has ended (see :meth:`get_forecast`).
        """
        return self.parse_my_access(self._data("/v3/my-access", {}, None))

    def _test_connection(self) -> str:
        access = self.my_access()
        regions = {
            r.get("region")
            for s in access.get("signal_types", [])
            if isinstance(s, dict)
            for r in s.get("regions", [])
            if isinstance(r, dict)
        }
        return f"WattTime: logged in; the account may read {len(regions)} regions"
