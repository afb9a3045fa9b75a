"""Electricity Maps API v3: latest, forecast and past-range carbon intensity, and the zones a token may use.

Connection (type ``electricitymaps``, default id ``electricitymaps_default``):

* password: the API token, sent as the ``auth-token`` header (never in a URL or a log);
* host: the API root, default ``https://api.electricitymaps.com/v3`` (point it at a simulator for tests);
* extras: ``zone`` (default zone key, e.g. ``DE``), ``emission_factor_type`` (``lifecycle`` | ``direct``),
  ``granularity`` (``hourly`` | ``15_minutes`` | ``5_minutes``), ``disable_estimations`` (bool), and the common
  ``timeout``, ``max_attempts``, ``max_retry_wait``, ``cache_ttl``, ``cache_dir``.

Electricity Maps answers **401, not 403**, when a valid token is not entitled to a zone or endpoint (forecasts are
not in the free tier), and reportedly also under bursts beyond the plan's rate; the body tells them apart and so do
our exceptions.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import requests

from airflow_provider_carbon.core.forecast import Forecast
from airflow_provider_carbon.exceptions import (
    AuthenticationError,
    CarbonApiError,
    InvalidRequestError,
    NotEntitledError,
)
from airflow_provider_carbon.hooks.base import CarbonIntensityHook, Location, public_call
from airflow_provider_carbon.hooks.payload import MISSING, Reader
from airflow_provider_carbon.hooks.timeutil import chunks, format_utc

__all__ = ["ElectricityMapsHook", "ZoneAccess"]

_GRANULARITY_NAMES = {
    timedelta(minutes=5): "5_minutes",
    timedelta(minutes=15): "15_minutes",
    timedelta(hours=1): "hourly",
}
_GRANULARITY_STEPS = {name: step for step, name in _GRANULARITY_NAMES.items()}
#: horizons the forecast endpoint offers (third-party summaries; the portal shows 24 h by default, up to 72 h)
_HORIZON_HOURS = (6, 24, 48, 72)


def _end(points: list[tuple[datetime, float, bool]], granularity: str) -> datetime | None:
    """When the last value stops holding: the series' own step (a simulator may compress time), or, for a single
    point, the granularity asked for."""
    if len(points) == 1:
        return points[0][0] + _GRANULARITY_STEPS[granularity]
    return None  # Forecast uses the median step


@dataclass(frozen=True)
class ZoneAccess:
    """One zone of ``GET /zones``: what the token may call there."""

    zone: str
    name: str
    country: str | None
    access: tuple[str, ...]

    @property
    def forecast(self) -> bool:
        """Whether the token may read this zone's carbon-intensity forecast."""
        return "*" in self.access or "carbon-intensity/forecast" in self.access


class ElectricityMapsHook(CarbonIntensityHook):
    """Read carbon intensity from Electricity Maps (API v3).

    :param carbon_conn_id: connection of type ``electricitymaps`` (default ``electricitymaps_default``).

    Other parameters as in :class:`~airflow_provider_carbon.hooks.base.CarbonIntensityHook`.

    .. code-block:: python

        hook = ElectricityMapsHook("electricitymaps_default")
        forecast = hook.get_forecast("DE", horizon=timedelta(hours=24))
        hook.list_zones()["DE"].forecast  # may this token read DE's forecast?
    """

    conn_type = "electricitymaps"
    default_conn_name = "electricitymaps_default"
    hook_name = "Electricity Maps"
    service = "electricitymaps"
    default_host = "https://api.electricitymaps.com/v3"
    max_horizon = timedelta(hours=72)  # horizonHours up to 72 (reference 1.2; available horizons depend on plan)

    # -- settings -----------------------------------------------------------------------------------------------

    @property
    def default_granularity(self) -> timedelta:
        name = self.extras.get("granularity") or "hourly"
        if name not in _GRANULARITY_STEPS:
            raise InvalidRequestError(
                f"granularity {name!r} is not one of {sorted(_GRANULARITY_STEPS)}", service=self.service
            )
        return _GRANULARITY_STEPS[name]

    @property
    def emission_factor_type(self) -> str:
        return self.extras.get("emission_factor_type") or "lifecycle"

    def cache_key_extras(self) -> tuple[Any, ...]:
        return (self.emission_factor_type, self.flag("disable_estimations"))

    def latest_comparable_to_forecast(self) -> bool:
        # the forecast endpoint takes no emissionFactorType and is lifecycle; "direct" latest values are lower
        return self.emission_factor_type == "lifecycle"

    def _headers(self) -> dict[str, str]:
        token = self.token
        if not token:
            raise AuthenticationError(
                "the connection has no API token",
                service=self.service,
                hint=f"put the Electricity Maps token in the 'API token' (password) field of {self.carbon_conn_id!r}",
            )
        return {"auth-token": token}

    def _location_params(self, location: Location) -> dict[str, str]:
        if location.zone is not None:
            params = {"zone": location.zone}
        else:
            params = {"lat": f"{location.lat}", "lon": f"{location.lon}"}
        # Without this, an unresolvable location silently falls back to the *caller's IP* location: a worker in
        # Virginia would get Virginia's grid for coordinates in the Atlantic. The docs name the flag two ways and
        # which one the live API honours is unconfirmed; an unknown parameter is ignored, so send both.
        params["disableCallerLookup"] = "true"
        params["shouldUseFallbackCallerLookup"] = "false"
        return params

    def _granularity_name(self, step: timedelta | None) -> str:
        step = step or self.default_granularity
        if step not in _GRANULARITY_NAMES:
            raise InvalidRequestError(
                f"granularity {step} is not offered; use 5 min, 15 min or 1 h", service=self.service
            )
        return _GRANULARITY_NAMES[step]

    def _data_params(self) -> dict[str, str]:
        return {
            "emissionFactorType": self.emission_factor_type,
            "disableEstimations": "true" if self.flag("disable_estimations") else "false",
        }

    # -- errors -------------------------------------------------------------------------------------------------

    def error_detail(self, response: requests.Response) -> str:
        try:
            body = response.json()
        except (ValueError, RecursionError):  # RecursionError: a nesting bomb
            return super().error_detail(response)
        if isinstance(body, dict):
            parts = [str(body[k]) for k in ("error", "message") if body.get(k)]
            if parts:
                return " ".join(parts)
        return super().error_detail(response)

    def error_from_response(self, response: requests.Response, zone: str | None) -> CarbonApiError:
        status = response.status_code
        if status not in (401, 403, 404):
            return super().error_from_response(response, zone)
        detail = self.redact(self.error_detail(response))
        text = detail.lower()
        common = {"service": self.service, "zone": zone, "status": status}
        if status == 404:
            return InvalidRequestError(
                detail, hint="Electricity Maps has no data for this zone and time; check the zone key", **common
            )
        if "invalid auth-token" in text or "invalid token" in text or "missing auth" in text:
            return AuthenticationError(
                detail,
                hint=f"the token in connection {self.carbon_conn_id!r} was refused; copy it again from the "
                "Electricity Maps portal",
                **common,
            )
        if status == 403 or "unauthorized for zone" in text or "do not have access" in text or "not available" in text:
            endpoint = response.request.path_url.split("?")[0].rsplit("/v3/", 1)[-1] if response.request else "this"
            return NotEntitledError(
                detail,
                hint=f"the token is valid but its plan does not include {endpoint} for zone {zone} (forecasts are "
                "not in the free tier); ElectricityMapsHook.list_zones() shows what it may call",
                **common,
            )
        return AuthenticationError(
            detail,
            hint="Electricity Maps also answers 401 when a plan's rate is exceeded; if the token is right, call "
            "less often (raise cache_ttl)",
            **common,
        )

    # -- reading ------------------------------------------------------------------------------------------------

    def _reader(self, zone: str | None) -> Reader:
        return Reader(self.service, zone, self.redact)

    def _zone(self, read: Reader, body: dict[str, Any], label: str) -> str:
        """The zone the body names, else the one asked for; redacted, since it ends up in errors and logs."""
        zone = read.text(body.get("zone"), "zone", optional=True)
        return self.redact(zone) if zone else label

    def _point(self, read: Reader, item: Any, at: str) -> tuple[datetime, float, bool] | None:
        item = read.mapping(item, at)
        prefix = f"{at}." if at else ""
        value = item.get("carbonIntensity", MISSING)
        if value is None:  # Electricity Maps returns null for hours it has no value for; skip, gaps are checked
            return None
        return (
            read.timestamp(item.get("datetime", MISSING), f"{prefix}datetime"),
            read.number(value, f"{prefix}carbonIntensity"),
            read.flag(item.get("isEstimated"), f"{prefix}isEstimated"),
        )

    def _points(self, read: Reader, items: Any, key: str) -> list[tuple[datetime, float, bool]]:
        points = (self._point(read, item, f"{key}[{i}]") for i, item in enumerate(read.array(items, key)))
        return [p for p in points if p is not None]

    def parse_latest(self, body: Any, label: str, granularity: str) -> Forecast:
        """A decoded ``/carbon-intensity/latest`` answer as a one-point forecast.

        :param label: the zone asked for; :param granularity: the ``temporalGranularity`` asked for.
        :raises BadPayloadError: naming the first bad field.
        """
        read = self._reader(label)
        body = read.mapping(body, "")
        zone = self._zone(read, body, label)
        point = self._point(read, body, "")
        if point is None:
            raise self.missing("a carbonIntensity value (it was null)", label)
        name = read.text(body.get("temporalGranularity"), "temporalGranularity", optional=True) or granularity
        step = _GRANULARITY_STEPS.get(name, timedelta(hours=1))
        return self.build_forecast([point], zone=zone, end=point[0] + step)

    def parse_forecast(self, body: Any, label: str, granularity: str) -> Forecast:
        """A decoded ``/carbon-intensity/forecast`` answer as a forecast.

        :raises BadPayloadError: naming the first bad field.
        """
        read = self._reader(label)
        body = read.mapping(body, "")
        zone = self._zone(read, body, label)
        points = self._points(read, body.get("forecast", MISSING), "forecast")
        generated = read.optional_timestamp(body.get("updatedAt"), "updatedAt")
        return self.build_forecast(points, zone=zone, end=_end(points, granularity), generated_at=generated)

    def parse_history(
        self, bodies: Iterable[Any], label: str, start: datetime, end: datetime, granularity: str
    ) -> Forecast:
        """Decoded ``/carbon-intensity/past-range`` answers (one per chunk of the range) as one series over
        ``[start, end)``.

        :raises BadPayloadError: naming the first bad field.
        """
        read = self._reader(label)
        seen: dict[datetime, tuple[datetime, float, bool]] = {}
        zone = label
        for body in bodies:
            body = read.mapping(body, "")
            zone = self._zone(read, body, zone)
            for point in self._points(read, body.get("data", MISSING), "data"):
                if start <= point[0] < end:
                    seen.setdefault(point[0], point)  # ranges may share their boundary point
        points = sorted(seen.values())
        return self.build_forecast(points, zone=zone, end=_end(points, granularity))

    def parse_zones(self, body: Any) -> dict[str, ZoneAccess]:
        """A decoded ``/zones`` answer: each zone key with what the token may call there.

        :raises BadPayloadError: naming the first bad field.
        """
        read = self._reader(None)
        body = read.mapping(body, "")
        if isinstance(body.get("zones"), dict):  # tolerate the SDK's documented wrapper
            body = body["zones"]
        zones = {}
        for key, info in body.items():
            read.text(key, "a zone key")
            info = read.mapping(info, key)
            zones[key] = ZoneAccess(
                zone=key,
                name=read.text(info.get("zoneName"), f"{key}.zoneName", optional=True) or key,
                country=read.text(info.get("countryName"), f"{key}.countryName", optional=True),
                access=tuple(
                    str(read.text(route, f"{key}.access[{i}]"))
                    for i, route in enumerate(read.array(info.get("access"), f"{key}.access", optional=True))
                ),
            )
        return zones

    def _fetch_latest(self, location: Location) -> Forecast:
        granularity = self._granularity_name(None)
        body = self.request_json(
            "/carbon-intensity/latest",
            params={**self._location_params(location), "temporalGranularity": granularity, **self._data_params()},
            headers=self._headers(),
            zone=location.label,
        )
        return self.parse_latest(body, location.label, granularity)

    def _fetch_forecast(self, location: Location, horizon: timedelta, granularity: timedelta | None) -> Forecast:
        name = self._granularity_name(granularity)
        hours = math.ceil(horizon.total_seconds() / 3600)
        # ask for the smallest offered horizon that covers the request (more is free; less fails the check)
        horizon_hours = next((h for h in _HORIZON_HOURS if h >= hours), _HORIZON_HOURS[-1])
        body = self.request_json(
            "/carbon-intensity/forecast",
            params={**self._location_params(location), "horizonHours": horizon_hours, "temporalGranularity": name},
            headers=self._headers(),
            zone=location.label,
        )
        return self.parse_forecast(body, location.label, name)

    def _fetch_history(
        self, location: Location, start: datetime, end: datetime, granularity: timedelta | None
    ) -> Forecast:
        name = self._granularity_name(granularity)
        # past-range allows 10 days per request at hourly granularity; finer steps get one day (not documented)
        size = timedelta(days=10) if name == "hourly" else timedelta(days=1)
        bodies = (  # a generator: a bad first answer stops the requests for the rest
            self.request_json(
                "/carbon-intensity/past-range",
                params={
                    **self._location_params(location),
                    "start": format_utc(lo),
                    "end": format_utc(hi),
                    "temporalGranularity": name,
                    **self._data_params(),
                },
                headers=self._headers(),
                zone=location.label,
            )
            for lo, hi in chunks(start, end, size)
        )
        return self.parse_history(bodies, location.label, start, end, name)

    @public_call
    def list_zones(self, *, deadline: datetime | None = None) -> dict[str, ZoneAccess]:
        """The zones this token may use, and which routes it may call in each (``GET /zones``).

        :param deadline: a tz-aware instant by which the call has ended (see :meth:`get_forecast`).
        """
        return self.parse_zones(self.request_json("/zones", headers=self._headers()))

    def _test_connection(self) -> str:
        # /zones answers without a valid token, so only a data call proves the token: the default zone's latest
        # value, or the first zone the token lists.
        zones = self.list_zones()
        zone = self.default_zone or next(iter(zones), None)
        if zone is None:
            return "Electricity Maps: reachable, but the token may use no zone"
        latest = self.get_latest(zone)
        with_forecast = sum(1 for z in zones.values() if z.forecast)
        return (
            f"Electricity Maps: token accepted; {zone} is at {latest.values[0]:.0f} {latest.unit} now; "
            f"{len(zones)} zones available, {with_forecast} with forecasts"
        )
