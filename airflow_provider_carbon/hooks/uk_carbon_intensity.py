"""UK Carbon Intensity API (National Energy System Operator): national and regional half-hourly forecasts.

Connection (type ``uk_carbon_intensity``, default id ``uk_carbon_intensity_default``): no credentials; host
defaults to ``https://api.carbonintensity.org.uk``; extras ``zone`` (default zone, see below) and the common
``timeout``, ``max_attempts``, ``max_retry_wait``, ``cache_ttl``, ``cache_dir``.

Zones: ``"national"`` (or ``"GB"``, or nothing) for Great Britain as a whole; ``"1"`` to ``"17"`` for a DNO region
id (15 England, 16 Scotland, 17 Wales); anything else is a postcode's **outward code** (``"RG41"``, ``"SW1"``).

Quirks handled: periods come with explicit ``from``/``to`` (so the last period's end is known, not guessed); a
``from`` exactly on a half hour also returns the period ending there, so requests start at ``:01``/``:31`` (the
fix cats uses); outages answer 200 with ``{}`` or ``{"data": []}`` (an empty-body error here), and forecasts
sometimes end early (the horizon check decides whether that is enough); scoped regional answers come as
``{"data": {...}}`` from the live API but ``{"data": [{...}]}`` in its docs, and both are read.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from typing import Any

import requests

from airflow_provider_carbon.core.forecast import Forecast
from airflow_provider_carbon.exceptions import BadPayloadError, CarbonApiError, InvalidRequestError
from airflow_provider_carbon.hooks.base import CarbonIntensityHook, Location
from airflow_provider_carbon.hooks.payload import MISSING, Reader
from airflow_provider_carbon.hooks.timeutil import chunks

__all__ = ["UkCarbonIntensityHook"]

_OUTCODE = re.compile(r"^[A-Z]{1,2}[0-9][A-Z0-9]?$")
_PERIOD = timedelta(minutes=30)


def _url_time(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%MZ")


class UkCarbonIntensityHook(CarbonIntensityHook):
    """Read Great Britain's carbon intensity from the NESO Carbon Intensity API.

    :param carbon_conn_id: connection of type ``uk_carbon_intensity`` (default ``uk_carbon_intensity_default``).

    Other parameters as in :class:`~airflow_provider_carbon.hooks.base.CarbonIntensityHook`.

    .. code-block:: python

        hook = UkCarbonIntensityHook()
        hook.get_forecast("RG41", horizon=timedelta(hours=48))   # regional, by postcode outward code
    """

    conn_type = "uk_carbon_intensity"
    default_conn_name = "uk_carbon_intensity_default"
    hook_name = "UK Carbon Intensity (NESO)"
    service = "uk_carbon_intensity"
    default_host = "https://api.carbonintensity.org.uk"
    max_horizon = timedelta(hours=48)  # fw48h is the longest forecast route (reference 4)

    def resolve_location(self, zone: str | None, lat: float | None, lon: float | None) -> Location:
        if zone is None and (lat is not None or lon is not None):
            raise InvalidRequestError(
                "the UK Carbon Intensity API takes a region id or a postcode outward code, not coordinates",
                service=self.service,
            )
        zone = zone or self.default_zone or "national"
        normalised = str(zone).strip().upper()
        if normalised in ("NATIONAL", "GB"):
            return Location(zone="national")
        if normalised.isascii() and normalised.isdigit():
            if not 1 <= int(normalised) <= 17:
                raise InvalidRequestError(f"region id {zone} is not between 1 and 17", service=self.service)
            return Location(zone=str(int(normalised)))
        outcode = normalised.split()[0]
        if not _OUTCODE.match(outcode):
            raise InvalidRequestError(
                f"{zone!r} is neither 'national', a region id 1-17, nor a postcode outward code",
                service=self.service,
                hint="give the outward code only, e.g. 'RG41' for 'RG41 1AA'",
            )
        return Location(zone=outcode)

    def _scope(self, location: Location) -> str:
        zone = location.zone or "national"
        if zone == "national":
            return ""
        return f"/regionid/{zone}" if zone.isascii() and zone.isdigit() else f"/postcode/{zone}"

    def error_from_response(self, response: requests.Response, zone: str | None) -> CarbonApiError:
        err = super().error_from_response(response, zone)
        if response.status_code == 400 and "postcode" in err.detail.lower():
            err.hint = "use the outward code of a GB postcode only, e.g. 'RG41'"
        return err

    # -- parsing ------------------------------------------------------------------------------------------------

    def _reader(self, zone: str | None) -> Reader:
        return Reader(self.service, zone, self.redact)

    def parse_periods(self, body: Any, zone: str) -> list[Any]:
        """The list of half-hour periods in a decoded national or (scoped) regional answer.

        :raises BadPayloadError: ``empty`` for the API's outage symptoms (``{}``, ``{"data": []}``), else naming the
            first field of a wrong type.
        """
        read = self._reader(zone)
        data = read.mapping(body, "").get("data")
        if data in (None, [], {}):
            raise self.empty(zone)
        where = "data"
        if isinstance(data, list) and isinstance(data[0], dict) and "data" in data[0]:
            data, where = data[0], "data[0]"  # regional as documented: the region object wrapped in a list
        if isinstance(data, dict):  # regional as served: {"data": {"regionid": ..., "data": [periods]}}
            data = data.get("data")
            if data in (None, [], {}):
                raise self.empty(zone)
            return read.array(data, f"{where}.data")
        return read.array(data, "data")

    def empty(self, zone: str) -> CarbonApiError:
        return BadPayloadError(
            "the API answered 200 without data (its usual outage symptom, or a time beyond its horizon)",
            reason="empty",
            service=self.service,
            zone=zone,
        )

    def parse_series(
        self,
        periods: list[Any],
        zone: str,
        *,
        actuals: bool,
        within: tuple[datetime, datetime] | None = None,
    ) -> Forecast:
        """Periods as a forecast: the actual where ``actuals`` and there is one, else the forecast value.

        :raises BadPayloadError: naming the first bad field.
        """
        read = self._reader(zone)
        by_start: dict[datetime, tuple[datetime, float, bool]] = {}
        ends: dict[datetime, datetime] = {}
        for i, period in enumerate(periods):
            at = f"data[{i}]"
            period = read.mapping(period, at)
            start = read.timestamp(period.get("from", MISSING), f"{at}.from")
            end = read.timestamp(period.get("to", MISSING), f"{at}.to")
            intensity = read.mapping(period.get("intensity", MISSING), f"{at}.intensity")
            actual = intensity.get("actual") if actuals else None
            kind = "forecast" if actual is None else "actual"
            value = intensity.get(kind, MISSING)
            if value is None:
                continue
            point = (start, read.number(value, f"{at}.intensity.{kind}"), actual is None)
            if within is not None and not within[0] <= start < within[1]:
                continue
            if start in by_start:  # the API has served one period twice; keep the first and say so
                self.log.warning("uk_carbon_intensity: duplicate period %s ignored", start.isoformat())
                continue
            by_start[start] = point
            ends[start] = end
        points = sorted(by_start.values())
        return self.build_forecast(points, zone=zone, end=ends[points[-1][0]] if points else None)

    def parse_latest(self, body: Any, zone: str) -> Forecast:
        """A decoded ``/intensity`` (or regional) answer: its last period, the actual where there is one."""
        # /intensity is the latest *complete* half hour; its actual is the best value we have for now
        return self.parse_series(self.parse_periods(body, zone)[-1:], zone, actuals=True)

    def parse_forecast(self, body: Any, zone: str) -> Forecast:
        """A decoded ``.../fw24h`` or ``.../fw48h`` answer as a forecast."""
        return self.parse_series(self.parse_periods(body, zone), zone, actuals=False)

    def parse_history(self, bodies: Iterable[Any], zone: str, start: datetime, end: datetime) -> Forecast:
        """Decoded ``{from}/{to}`` answers (one per chunk of the range) as one series over ``[start, end)``."""
        periods = [period for body in bodies for period in self.parse_periods(body, zone)]
        # national history carries actuals; regional only forecasts, so those points are flagged estimated
        return self.parse_series(periods, zone, actuals=True, within=(start, end))

    # -- the common interface -----------------------------------------------------------------------------------

    def _fetch_latest(self, location: Location) -> Forecast:
        zone = location.zone or "national"
        path = "/intensity" if zone == "national" else "/regional" + self._scope(location)
        return self.parse_latest(self.request_json(path, zone=zone), zone)

    def _fetch_forecast(self, location: Location, horizon: timedelta, granularity: timedelta | None) -> Forecast:
        zone = location.zone or "national"
        now = datetime.now(timezone.utc)
        # HH:01 / HH:31: a `from` on the boundary would also return the period that just ended
        aligned = now.replace(minute=31 if now.minute >= 30 else 1, second=0, microsecond=0)
        window = "fw24h" if horizon <= timedelta(hours=24) else "fw48h"
        if zone == "national":
            path = f"/intensity/{_url_time(aligned)}/{window}"
        else:
            path = f"/regional/intensity/{_url_time(aligned)}/{window}{self._scope(location)}"
        return self.parse_forecast(self.request_json(path, zone=zone), zone)

    def _fetch_history(
        self, location: Location, start: datetime, end: datetime, granularity: timedelta | None
    ) -> Forecast:
        zone = location.zone or "national"
        paths = []
        for lo, hi in chunks(start, end, timedelta(days=14)):  # ranges are capped at 14 days
            if zone == "national":
                paths.append(f"/intensity/{_url_time(lo)}/{_url_time(hi)}")
            else:
                paths.append(f"/regional/intensity/{_url_time(lo)}/{_url_time(hi)}{self._scope(location)}")
        # a generator: a bad first answer stops the requests for the rest
        return self.parse_history((self.request_json(path, zone=zone) for path in paths), zone, start, end)

    def _test_connection(self) -> str:
        latest = self.get_latest()
        return f"UK Carbon Intensity: {latest.zone} is at {latest.values[0]:.0f} {latest.unit}"
