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
from datetime import datetime, timedelta
from typing import Any, ClassVar

import requests

from airflow_provider_carbon.core.forecast import Forecast, Signal
from airflow_provider_carbon.exceptions import AuthenticationError, CarbonApiError, InvalidRequestError
from airflow_provider_carbon.hooks.base import CarbonIntensityHook, Location, public_call
from airflow_provider_carbon.hooks.timeutil import chunks, parse_timestamp

__all__ = ["LBS_PER_MWH_TO_G_PER_KWH", "WattTimeHook"]

#: 1 lb = 453.59237 g and 1 MWh = 1000 kWh
LBS_PER_MWH_TO_G_PER_KWH = 0.45359237
_TOKEN_LIFETIME = 30 * 60.0
_TOKEN_MARGIN = 60.0  # renew a minute early rather than send a token that expires in flight
_SIGNALS = {"co2_moer": Signal.MARGINAL, "co2_aoer": Signal.AVERAGE}


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
        with self._token_lock:
            cached = self._tokens.get(key)
            if cached and not renew and cached[1] > time.time():
                return cached[0]
            body = self.request_json("/login", auth=(login, password))
            token = body.get("token") if isinstance(body, dict) else None
            if not token:
                raise self.missing("a token in the login response", None)
            self._tokens[key] = (token, time.time() + _TOKEN_LIFETIME - _TOKEN_MARGIN)
            return token

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

    def _series(self, body: Any, zone: str, *, end: datetime | None = None) -> Forecast:
        if not isinstance(body, dict) or not isinstance(body.get("data"), list):
            raise self.missing("a 'data' list", zone)
        meta = body.get("meta") or {}
        units = meta.get("units", "lbs_co2_per_mwh")
        if units != "lbs_co2_per_mwh":
            raise self.missing(f"an emissions rate in lbs_co2_per_mwh (got units {units!r})", zone)
        for warning in meta.get("warnings") or []:
            self.log.warning("watttime: %s", warning)
        try:
            points = [
                (
                    parse_timestamp(p["point_time"]),
                    float(p["value"]) * LBS_PER_MWH_TO_G_PER_KWH,
                    bool(p.get("imputed_data_used", False)),
                )
                for p in body["data"]
                if not end or parse_timestamp(p["point_time"]) < end
            ]
        except (KeyError, TypeError, ValueError):
            raise self.missing("point_time and value in every point", zone) from None
        period = timedelta(seconds=float(meta.get("data_point_period_seconds") or 300))
        generated = meta.get("generated_at")
        return self.build_forecast(
            points,
            zone=meta.get("region") or zone,
            end=points[-1][0] + period if points else None,
            generated_at=parse_timestamp(generated) if generated else None,
        )

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
            if not isinstance(body, dict) or not body.get("region"):
                raise self.missing("a region for these coordinates", location.label)
            self._regions[key] = str(body["region"])
        return self._regions[key]

    # -- the common interface -----------------------------------------------------------------------------------

    def _fetch_latest(self, location: Location) -> Forecast:
        # v3 has no "latest MOER" route; a forecast with horizon 0 (the "nowcast") is the current interval.
        region = self._region(location)
        body = self._data(
            "/v3/forecast", {"region": region, "signal_type": self.signal_type, "horizon_hours": 0}, region
        )
        forecast = self._series(body, region)
        first = forecast.to_points()[:1]
        step = (forecast.end - forecast.start) / len(forecast)
        return self.build_forecast(
            [(t, v, False) for t, v in first],
            zone=forecast.zone,
            end=first[0][0] + step,
            generated_at=forecast.generated_at,
        )

    def _fetch_forecast(self, location: Location, horizon: timedelta, granularity: timedelta | None) -> Forecast:
        region = self._region(location)
        hours = min(72, max(1, math.ceil(horizon.total_seconds() / 3600)))
        body = self._data(
            "/v3/forecast", {"region": region, "signal_type": self.signal_type, "horizon_hours": hours}, region
        )
        return self._series(body, region)

    def _fetch_history(
        self, location: Location, start: datetime, end: datetime, granularity: timedelta | None
    ) -> Forecast:
        region = self._region(location)
        points: dict[datetime, tuple[datetime, float, bool]] = {}
        meta_end: datetime | None = None
        for lo, hi in chunks(start, end, timedelta(days=30)):  # the API allows 32 days per request
            body = self._data(
                "/v3/historical",
                {"region": region, "signal_type": self.signal_type, "start": lo.isoformat(), "end": hi.isoformat()},
                region,
            )
            part = self._series(body, region, end=end)
            for t, v, e in zip(part.timestamps, part.values.tolist(), part.estimated.tolist(), strict=True):
                if t >= start:
                    points.setdefault(t, (t, v, e))  # bounds are inclusive: neighbours share a point
            meta_end = part.end
        ordered = sorted(points.values())
        return self.build_forecast(ordered, zone=region, end=min(meta_end, end) if meta_end else None)

    @public_call
    def my_access(self, *, deadline: datetime | None = None) -> dict[str, Any]:
        """``GET /v3/my-access``: the signal types, regions and endpoints this account may read.

        :param deadline: a tz-aware instant by which the call has ended (see :meth:`get_forecast`).
        """
        body = self._data("/v3/my-access", {}, None)
        return body if isinstance(body, dict) else {}

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
