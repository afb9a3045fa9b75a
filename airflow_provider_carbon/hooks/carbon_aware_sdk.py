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
from airflow_provider_carbon.hooks.payload import MISSING, Reader
from airflow_provider_carbon.hooks.timeutil import format_utc

__all__ = ["CarbonAwareSdkHook", "EmissionsPoint", "SdkForecast", "parse_timespan"]

_HOUR = timedelta(hours=1)
_MINUTE = timedelta(minutes=1)
#: Longest credible duration of one data point (a year: Electricity Maps' coarsest granularity)
_MAX_DURATION = timedelta(days=366)


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
        except (ValueError, RecursionError):  # RecursionError: a nesting bomb
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

    def _reader(self, zone: str | None) -> Reader:
        return Reader(self.service, zone, self.redact)

    @staticmethod
    def _duration(read: Reader, value: Any, field: str, default: timedelta) -> timedelta:
        """A TimeSpan string or a number of minutes; ``default`` when absent, null, 0 or ``""`` (as the SDK omits
        it)."""
        if value is None or value is MISSING or (not isinstance(value, bool) and value in (0, "")):
            return default
        if isinstance(value, str):
            try:
                if len(value) > 64:
                    raise ValueError("too long")
                duration = parse_timespan(value)
            except (ValueError, OverflowError):  # OverflowError: more days than a timedelta holds
                raise read.error(f"'{field}' {read.quote(value)} is not a TimeSpan", "bad_value") from None
        else:
            minutes = read.number(value, field, minimum=0, maximum=_MAX_DURATION / _MINUTE, unit="minutes")
            duration = timedelta(minutes=minutes)
        if duration > _MAX_DURATION:  # also keeps time + duration far from datetime's limits
            raise read.error(f"'{field}' is {duration}, longer than {_MAX_DURATION.days} days", "out_of_range")
        return duration

    def parse_emissions(self, body: Any, zone: str | None) -> list[EmissionsPoint]:
        """A decoded list of ``EmissionsData`` (``bylocation``, ``bylocations``, ``bylocations/best``), sorted by
        time; ``None`` (a 204) is no data.

        :raises BadPayloadError: naming the first bad field.
        """
        if body is None:
            return []
        read = self._reader(zone)
        out = []
        for i, item in enumerate(read.array(body, "")):
            at = f"[{i}]"
            item = read.mapping(item, at)
            out.append(
                EmissionsPoint(
                    location=str(read.text(item.get("location", MISSING), f"{at}.location")),
                    time=read.timestamp(item.get("time", MISSING), f"{at}.time"),
                    # the SDK writes -1 for an upstream null (carbon-aware-sdk#571): refused, or it would rank best
                    value=read.number(item.get("rating", MISSING), f"{at}.rating", minimum=0),
                    duration=self._duration(read, item.get("duration"), f"{at}.duration", _HOUR),
                )
            )
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

    def _forecast_dto(self, item: Any, zone: str) -> SdkForecast:
        read = self._reader(zone)
        item = read.mapping(item, "")
        data_items = read.array(item.get("forecastData", MISSING), "forecastData")
        named = read.text(item.get("location"), "location", optional=True)
        location = self.redact(named) if named else zone  # redacted: it becomes the zone errors name

        def points(key: str, items: Any) -> list[EmissionsPoint]:
            out = []
            for i, p in enumerate(read.array(items, key, optional=True)):
                at = f"{key}[{i}]"
                p = read.mapping(p, at)
                out.append(
                    EmissionsPoint(
                        location=read.text(p.get("location"), f"{at}.location", optional=True) or location,
                        time=read.timestamp(p.get("timestamp", MISSING), f"{at}.timestamp"),
                        value=read.number(p.get("value", MISSING), f"{at}.value", minimum=0),
                        duration=self._duration(read, p.get("duration"), f"{at}.duration", timedelta(0)),
                    )
                )
            return sorted(out, key=lambda e: e.time)

        def when(key: str) -> datetime | None:
            value = item.get(key)
            return None if value == "" else read.optional_timestamp(value, key)

        data = points("forecastData", data_items)
        if data and any(p.duration <= timedelta(0) for p in data):
            raise self.missing("a positive duration in each forecast point", zone)
        window = item.get("windowSize")
        return SdkForecast(
            location=location,
            requested_at=when("requestedAt"),
            generated_at=when("generatedAt"),
            data_start_at=when("dataStartAt"),
            data_end_at=when("dataEndAt"),
            window_size=0
            if window is None
            else int(
                read.number(
                    window, "windowSize", minimum=0, maximum=_MAX_DURATION / _MINUTE, integer=True, unit="minutes"
                )
            ),
            forecast=self._series(data, location, when("generatedAt")),
            optimal=tuple(points("optimalDataPoints", item.get("optimalDataPoints"))),
        )

    def parse_forecasts(self, body: Any, locations: list[str]) -> list[SdkForecast]:
        """A decoded ``/emissions/forecasts/current`` answer: one ``EmissionsForecastDTO`` per location asked for.

        :raises BadPayloadError: naming the first bad field.
        """
        label = ",".join(locations)
        items = self._reader(label).array(body, "")
        if len(items) != len(locations):
            raise self.missing(f"one forecast per location ({len(locations)})", label)
        return [self._forecast_dto(item, loc) for item, loc in zip(items, locations, strict=True)]

    def parse_latest(self, body: Any, label: str) -> Forecast:
        """A decoded ``/emissions/bylocations`` answer for one location: its latest value as a one-point forecast."""
        return self._series(self.parse_emissions(body, label)[-1:], label)

    def parse_latest_many(self, body: Any, locations: list[str]) -> dict[str, Forecast] | None:
        """A decoded ``/emissions/bylocations`` answer for several locations: each one's latest value, or ``None``
        when the answer's locations are not the ones asked for (the SDK may name its data source's regions)."""
        by_location: dict[str, list[EmissionsPoint]] = {}
        for point in self.parse_emissions(body, ",".join(locations)):
            by_location.setdefault(point.location, []).append(point)
        if set(by_location) != set(locations):
            return None
        return {loc: self._series(by_location[loc][-1:], loc) for loc in locations}

    def parse_history(self, body: Any, label: str, start: datetime, end: datetime) -> Forecast:
        """A decoded ``/emissions/bylocation`` answer as the series over ``[start, end)``."""
        return self._series([p for p in self.parse_emissions(body, label) if start <= p.time < end], label)

    def parse_locations(self, body: Any) -> dict[str, Any]:
        """A decoded ``/locations`` answer: location name -> ``{Latitude, Longitude, Name}``; ``None`` (204) is none."""
        if body is None:
            return {}
        read = self._reader(None)
        locations = read.mapping(body, "")
        for name, info in locations.items():
            read.text(name, "a location name")
            read.mapping(info, name)
        return locations

    # -- the common interface -----------------------------------------------------------------------------------

    def _fetch_latest(self, location: Location) -> Forecast:
        body = self.request_json(
            "/emissions/bylocations",
            params=[("location", location.label)],
            headers=self._headers(),
            zone=location.label,
            allow_empty=True,
        )
        return self.parse_latest(body, location.label)

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
        return self.parse_history(body, location.label, start, end)

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
        return self.parse_forecasts(body, locations)

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
        latest = self.parse_latest_many(body, locations)
        return latest if latest is not None else {loc: self.get_latest(loc) for loc in locations}

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
        return self.parse_emissions(body, ",".join(locations))

    @public_call
    def list_locations(self, *, deadline: datetime | None = None) -> dict[str, Any]:
        """``GET /locations``: the location names this deployment knows.

        :param deadline: a tz-aware instant by which the call has ended (see :meth:`get_forecast`).
        """
        return self.parse_locations(self.request_json("/locations", headers=self._headers(), allow_empty=True))

    def _test_connection(self) -> str:
        locations = self.list_locations()
        zone = self.default_zone
        if zone:
            latest = self.get_latest(zone)
            return f"Carbon Aware SDK: reachable; {zone} is at {latest.values[0]:.0f} {latest.unit} now"
        return f"Carbon Aware SDK: reachable; {len(locations)} locations configured"
