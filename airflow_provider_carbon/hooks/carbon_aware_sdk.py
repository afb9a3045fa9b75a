"""Green Software Foundation Carbon Aware SDK WebAPI: a self-hosted service in front of WattTime or Electricity Maps.

Connection (type ``carbon_aware_sdk``, default id ``carbon_aware_sdk_default``):

* host: the WebAPI's root URL (required: there is no stable public deployment; the GSF demo is documented as
  unstable), e.g. ``http://carbon-aware-sdk:8080``;
* password (optional): a bearer token, for deployments behind an authenticating gateway (the WebAPI has no auth);
* extras: ``location`` (default location name, e.g. ``westeurope``), and the common ``timeout``, ``max_attempts``,
  ``max_retry_wait``, ``cache_ttl``, ``cache_dir``.

The real parameter names differ from the WebAPI's own tutorial: several locations are a **repeated** ``location``
key, forecasts take ``dataStartAt`` / ``dataEndAt`` / ``windowSize``, and ``bylocation`` takes ``time`` / ``toTime``.
Errors are RFC 7807 problem details; errors of the upstream service (401/403/429 from Electricity Maps or
WattTime) are forwarded with the upstream status and body in ``detail``.
"""

from __future__ import annotations

import re
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
from airflow_provider_carbon.hooks.timeutil import format_utc, parse_timestamp

__all__ = ["CarbonAwareSdkHook", "EmissionsPoint", "SdkForecast", "parse_timespan"]


def parse_timespan(value: str | int | float) -> timedelta:
    """A .NET TimeSpan string (``01:00:00``, ``1.02:00:00``) or a number of minutes, as a timedelta."""
    if isinstance(value, (int, float)):
        return timedelta(minutes=value)
    match = re.fullmatch(r"(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2})(?:\.(\d{1,7}))?", value.strip())
    if not match:
        raise ValueError(f"{value!r} is not a TimeSpan")
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups()[:4])
    ticks = int((match.group(5) or "").ljust(7, "0"))  # the fraction is in 100 ns ticks
    return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds, microseconds=ticks / 10)


@dataclass(frozen=True)
class EmissionsPoint:
    """One ``EmissionsData`` item: the intensity of ``location`` from ``time`` for ``duration``."""

    location: str
    time: datetime
    value: float
    duration: timedelta


@dataclass(frozen=True)
class SdkForecast:
    """One ``EmissionsForecastDTO``: the forecast and the SDK's own optimal windows for one location.

    With a ``window_size`` the points of ``forecast`` are the SDK's rolling averages over that window, not
    per-period intensities.
    """

    location: str
    requested_at: datetime | None
    generated_at: datetime | None
    data_start_at: datetime | None
    data_end_at: datetime | None
    window_size: int
    forecast: Forecast
    optimal: tuple[EmissionsPoint, ...]


class CarbonAwareSdkHook(CarbonIntensityHook):
    """Read carbon intensity from a Carbon Aware SDK WebAPI deployment.

    :param carbon_conn_id: connection of type ``carbon_aware_sdk`` (default ``carbon_aware_sdk_default``).

    Other parameters as in :class:`~airflow_provider_carbon.hooks.base.CarbonIntensityHook`. The zone argument of
    the common methods is a location name the deployment knows (``GET /locations``), e.g. an Azure region.

    .. code-block:: python

        hook = CarbonAwareSdkHook("carbon_aware_sdk_default")
        hook.get_forecast("westeurope").values          # g/kWh per period
        hook.get_best_location(["westeurope", "northeurope"])
    """

    conn_type = "carbon_aware_sdk"
    default_conn_name = "carbon_aware_sdk_default"
    hook_name = "Carbon Aware SDK (WebAPI)"
    service = "carbon_aware_sdk"
    # The WebAPI passes no horizon upstream (CASDK #617), so it serves its data source's default: 24 h from
    # Electricity Maps (horizonHours default) and from WattTime (horizon_hours default) alike (reference 2.5, 1.2, 3.2)
    max_horizon = timedelta(hours=24)

    @property
    def default_zone(self) -> str | None:
        return self.extras.get("location") or self.extras.get("zone")

    def cloud_location(self, provider: str, region: str) -> str | None:
        # the SDK's default location source is the Azure region list (eastus, westeurope, ...)
        return region if provider == "azure" else None

    def _headers(self) -> dict[str, str] | None:
        token = self.token
        return {"Authorization": f"Bearer {token}"} if token else None

    def resolve_location(self, zone: str | None, lat: float | None, lon: float | None) -> Location:
        if zone is None and (lat is not None or lon is not None):
            raise InvalidRequestError(
                "the Carbon Aware SDK takes location names, not coordinates",
                service=self.service,
                hint="use a name from the deployment's GET /locations (e.g. an Azure region)",
            )
        return super().resolve_location(zone, lat, lon)

    # -- errors -------------------------------------------------------------------------------------------------

    def error_detail(self, response: requests.Response) -> str:
        """RFC 7807: ``title: detail`` plus the per-field ``errors``."""
        try:
            body = response.json()
        except ValueError:
            return super().error_detail(response)
        if not isinstance(body, dict):
            return super().error_detail(response)
        text = ": ".join(str(body[k]) for k in ("title", "detail") if body.get(k))
        errors = body.get("errors")
        if isinstance(errors, dict):
            fields = "; ".join(
                f"{name}: {', '.join(map(str, msgs)) if isinstance(msgs, list) else msgs}"
                for name, msgs in errors.items()
                if name != "stackTrace"
            )
            if fields:
                text = f"{text} ({fields})" if text else fields
        return text or super().error_detail(response)

    def error_from_response(self, response: requests.Response, zone: str | None) -> CarbonApiError:
        status = response.status_code
        detail = self.redact(self.error_detail(response))
        common = {"service": self.service, "zone": zone, "status": status}
        text = detail.lower()
        if status == 501:  # the configured data source cannot do this (e.g. batch forecasts from Electricity Maps)
            return InvalidRequestError(detail, hint="the SDK's configured data source does not support this", **common)
        if status == 400 and "unknown location" in text:
            return InvalidRequestError(
                detail, hint="use a location name the deployment knows (GET /locations)", **common
            )
        if status in (401, 403):
            upstream = "the SDK's upstream data source"
            if "unauthorized for zone" in text or "invalid scope" in text or "do not have access" in text:
                return NotEntitledError(detail, hint=f"{upstream} is not entitled to this location", **common)
            if status == 401:
                return AuthenticationError(
                    detail,
                    hint=f"a gateway token in the connection, or {upstream}'s credentials, were refused",
                    **common,
                )
        return super().error_from_response(response, zone)

    # -- parsing ------------------------------------------------------------------------------------------------

    def _emissions(self, body: Any, zone: str | None) -> list[EmissionsPoint]:
        if body is None:
            return []
        if not isinstance(body, list):
            raise self.missing("a list of EmissionsData", zone)
        out = []
        for item in body:
            try:
                out.append(
                    EmissionsPoint(
                        location=str(item["location"]),
                        time=parse_timestamp(item["time"]),
                        value=float(item["rating"]),
                        duration=parse_timespan(item.get("duration") or "01:00:00"),
                    )
                )
            except (KeyError, TypeError, ValueError):
                raise self.missing(f"location/time/rating in an EmissionsData item (got {item!r})", zone) from None
        return sorted(out, key=lambda p: p.time)

    def _series(self, points: list[EmissionsPoint], zone: str | None, generated_at: datetime | None = None) -> Forecast:
        if not points:
            return self.build_forecast([], zone=zone)
        return self.build_forecast(
            [(p.time, p.value, False) for p in points],
            zone=zone,
            end=points[-1].time + points[-1].duration,
            generated_at=generated_at,
        )

    def _forecast_dto(self, item: Any, zone: str | None) -> SdkForecast:
        if not isinstance(item, dict) or not isinstance(item.get("forecastData"), list):
            raise self.missing("'forecastData' in the forecast", zone)
        location = str(item.get("location") or zone)

        def points(key: str) -> list[EmissionsPoint]:
            out = []
            for p in item.get(key) or []:
                try:
                    out.append(
                        EmissionsPoint(
                            location=str(p.get("location", location)),
                            time=parse_timestamp(p["timestamp"]),
                            value=float(p["value"]),
                            duration=parse_timespan(p.get("duration") or 0),
                        )
                    )
                except (KeyError, TypeError, ValueError):
                    raise self.missing(f"timestamp/value in a forecast point (got {p!r})", zone) from None
            return sorted(out, key=lambda e: e.time)

        def when(key: str) -> datetime | None:
            try:
                return parse_timestamp(item[key]) if item.get(key) else None
            except (TypeError, ValueError):
                raise self.missing(f"an ISO 8601 time with offset in {key!r} (got {item[key]!r})", zone) from None

        data = points("forecastData")
        if data and any(p.duration <= timedelta(0) for p in data):
            raise self.missing("a positive duration in each forecast point", zone)
        return SdkForecast(
            location=location,
            requested_at=when("requestedAt"),
            generated_at=when("generatedAt"),
            data_start_at=when("dataStartAt"),
            data_end_at=when("dataEndAt"),
            window_size=int(item.get("windowSize") or 0),
            forecast=self._series(data, location, when("generatedAt")),
            optimal=tuple(points("optimalDataPoints")),
        )

    # -- the common interface -----------------------------------------------------------------------------------

    def _fetch_latest(self, location: Location) -> Forecast:
        body = self.request_json(
            "/emissions/bylocations",
            params=[("location", location.label)],
            headers=self._headers(),
            zone=location.label,
            allow_empty=True,
        )
        points = self._emissions(body, location.label)
        return self._series(points[-1:], location.label)

    def _fetch_forecast(self, location: Location, horizon: timedelta, granularity: timedelta | None) -> Forecast:
        # No dataStartAt/dataEndAt: the SDK answers 400 unless both lie inside the upstream forecast, and the
        # horizon check of the base class judges the coverage anyway. No windowSize: we want raw periods.
        (result,) = self.get_current_forecasts([location.label])
        return result.forecast

    def _fetch_history(
        self, location: Location, start: datetime, end: datetime, granularity: timedelta | None
    ) -> Forecast:
        body = self.request_json(
            "/emissions/bylocation",
            params=[("location", location.label), ("time", format_utc(start)), ("toTime", format_utc(end))],
            headers=self._headers(),
            zone=location.label,
            allow_empty=True,
        )
        points = [p for p in self._emissions(body, location.label) if start <= p.time < end]
        return self._series(points, location.label)

    # -- SDK-specific calls -------------------------------------------------------------------------------------

    @public_call
    def get_current_forecasts(
        self,
        locations: list[str],
        *,
        data_start_at: datetime | None = None,
        data_end_at: datetime | None = None,
        window_size: timedelta | None = None,
        deadline: datetime | None = None,
    ) -> list[SdkForecast]:
        """``GET /emissions/forecasts/current`` for one or several locations.

        :param locations: location names (sent as repeated ``location`` keys).
        :param data_start_at: start of the range the SDK searches for optimal windows.
        :param data_end_at: end of that range.
        :param window_size: job length; the SDK then returns rolling averages and the best window start(s).
        :param deadline: a tz-aware instant by which the call has ended (see :meth:`get_forecast`).
        """
        params: list[tuple[str, Any]] = [("location", loc) for loc in locations]
        if data_start_at is not None:
            params.append(("dataStartAt", format_utc(data_start_at)))
        if data_end_at is not None:
            params.append(("dataEndAt", format_utc(data_end_at)))
        if window_size is not None:
            params.append(("windowSize", int(window_size.total_seconds() // 60)))
        label = ",".join(locations)
        body = self.request_json("/emissions/forecasts/current", params=params, headers=self._headers(), zone=label)
        if not isinstance(body, list) or len(body) != len(locations):
            raise self.missing(f"one forecast per location ({len(locations)})", label)
        return [self._forecast_dto(item, loc) for item, loc in zip(body, locations, strict=True)]

    @public_call
    def get_latest_many(self, locations: list[str], *, deadline: datetime | None = None) -> dict[str, Forecast]:
        """Current intensity of several locations, in one request when the answer can be matched back.

        The SDK labels results with its data source's region (a WattTime balancing authority, say), not always
        the name asked for; then each location is asked for on its own.

        :param deadline: a tz-aware instant by which the call has ended (see :meth:`get_forecast`).
        """
        body = self.request_json(
            "/emissions/bylocations",
            params=[("location", loc) for loc in locations],
            headers=self._headers(),
            zone=",".join(locations),
            allow_empty=True,
        )
        by_location: dict[str, list[EmissionsPoint]] = {}
        for point in self._emissions(body, None):
            by_location.setdefault(point.location, []).append(point)
        if set(by_location) == set(locations):
            return {loc: self._series(by_location[loc][-1:], loc) for loc in locations}
        return {loc: self.get_latest(loc) for loc in locations}

    @public_call
    def get_best_location(
        self,
        locations: list[str],
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        deadline: datetime | None = None,
    ) -> list[EmissionsPoint]:
        """``GET /emissions/bylocations/best``: every (location, time) tied at the lowest intensity.

        :param deadline: a tz-aware instant by which the call has ended (see :meth:`get_forecast`).
        """
        params: list[tuple[str, Any]] = [("location", loc) for loc in locations]
        if start is not None:
            params.append(("time", format_utc(start)))
        if end is not None:
            params.append(("toTime", format_utc(end)))
        body = self.request_json(
            "/emissions/bylocations/best",
            params=params,
            headers=self._headers(),
            zone=",".join(locations),
            allow_empty=True,
        )
        return self._emissions(body, ",".join(locations))

    @public_call
    def list_locations(self, *, deadline: datetime | None = None) -> dict[str, Any]:
        """``GET /locations``: the location names this deployment knows.

        :param deadline: a tz-aware instant by which the call has ended (see :meth:`get_forecast`).
        """
        body = self.request_json("/locations", headers=self._headers(), allow_empty=True)
        return body if isinstance(body, dict) else {}

    def _test_connection(self) -> str:
        locations = self.list_locations()
        zone = self.default_zone
        if zone:
            latest = self.get_latest(zone)
            return f"Carbon Aware SDK: reachable; {zone} is at {latest.values[0]:.0f} {latest.unit} now"
        return f"Carbon Aware SDK: reachable; {len(locations)} locations configured"
