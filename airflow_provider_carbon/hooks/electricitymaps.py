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
from airflow_provider_carbon.hooks.timeutil import chunks, format_utc, parse_timestamp

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
        except ValueError:
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

    def _point(self, item: Any, zone: str | None) -> tuple[datetime, float, bool] | None:
        if not isinstance(item, dict) or "datetime" not in item or "carbonIntensity" not in item:
            raise self.missing("'datetime' and 'carbonIntensity' in a data point", zone)
        value = item["carbonIntensity"]
        if value is None:  # Electricity Maps returns null for hours it has no value for; skip, gaps are checked
            return None
        try:
            return parse_timestamp(item["datetime"]), float(value), bool(item.get("isEstimated", False))
        except (TypeError, ValueError):
            raise self.missing(f"a valid point (got {item!r})", zone) from None

    def _points(self, items: Any, key: str, zone: str | None) -> list[tuple[datetime, float, bool]]:
        if not isinstance(items, list):
            raise self.missing(f"a '{key}' list", zone)
        return [p for p in (self._point(i, zone) for i in items) if p is not None]

    def _fetch_latest(self, location: Location) -> Forecast:
        granularity = self._granularity_name(None)
        body = self.request_json(
            "/carbon-intensity/latest",
            params={**self._location_params(location), "temporalGranularity": granularity, **self._data_params()},
            headers=self._headers(),
            zone=location.label,
        )
        zone = body.get("zone", location.label) if isinstance(body, dict) else location.label
        point = self._point(body, zone)
        if point is None:
            raise self.missing("a carbonIntensity value (it was null)", zone)
        step = _GRANULARITY_STEPS.get(body.get("temporalGranularity") or granularity, timedelta(hours=1))
        return self.build_forecast([point], zone=zone, end=point[0] + step)

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
        if not isinstance(body, dict):
            raise self.missing("a JSON object", location.label)
        zone = body.get("zone") or location.label
        points = self._points(body.get("forecast"), "forecast", zone)
        generated = body.get("updatedAt")
        return self.build_forecast(
            points, zone=zone, end=_end(points, name), generated_at=parse_timestamp(generated) if generated else None
        )

    def _fetch_history(
        self, location: Location, start: datetime, end: datetime, granularity: timedelta | None
    ) -> Forecast:
        name = self._granularity_name(granularity)
        # past-range allows 10 days per request at hourly granularity; finer steps get one day (not documented)
        size = timedelta(days=10) if name == "hourly" else timedelta(days=1)
        seen: dict[datetime, tuple[datetime, float, bool]] = {}
        zone = location.label
        for lo, hi in chunks(start, end, size):
            body = self.request_json(
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
            if not isinstance(body, dict):
                raise self.missing("a JSON object", location.label)
            zone = body.get("zone") or zone
            for point in self._points(body.get("data"), "data", zone):
                if start <= point[0] < end:
                    seen.setdefault(point[0], point)  # ranges may share their boundary point
        points = sorted(seen.values())
        return self.build_forecast(points, zone=zone, end=_end(points, name))

    @public_call
    def list_zones(self, *, deadline: datetime | None = None) -> dict[str, ZoneAccess]:
        """The zones this token may use, and which routes it may call in each (``GET /zones``).

        :param deadline: a tz-aware instant by which the call has ended (see :meth:`get_forecast`).
        """
        body = self.request_json("/zones", headers=self._headers())
        if isinstance(body, dict) and isinstance(body.get("zones"), dict):  # tolerate the SDK's documented wrapper
            body = body["zones"]
        if not isinstance(body, dict):
            raise self.missing("a JSON object keyed by zone", None)
        return {
            key: ZoneAccess(
                zone=key,
                name=str(info.get("zoneName", key)),
                country=info.get("countryName"),
                access=tuple(info.get("access", ())),
            )
            for key, info in body.items()
            if isinstance(info, dict)
        }

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
