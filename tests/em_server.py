"""A grid served in Electricity Maps v3 format on a real local HTTP server (pytest-httpserver), following the clock.

It answers ``/v3/carbon-intensity/forecast`` from the current hour on (as the real API does) and
``/v3/carbon-intensity/latest`` with the value in force now, where "now" is whatever the test's clock says, so a
trigger driven by a controlled clock sees a consistent API. ``failures`` is a queue of failure modes consumed one
per request (an empty queue means healthy), which is how tests script outages, garbage and revoked tokens.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone

from werkzeug import Request, Response

TOKEN = "grid-token-7f3a9c"
FAILURE_MODES = ("500", "503", "429", "empty", "garbage", "zeros", "401", "not_entitled")


def iso_z(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


class EmGrid:
    """Hourly (or any step) intensities from ``start``; the part from the current step on is the forecast."""

    def __init__(
        self, start: datetime, values: Iterable[float], *, step: timedelta = timedelta(hours=1), zone: str = "DE"
    ) -> None:
        self.start = start
        self.values = list(values)
        self.step = step
        self.zone = zone
        self.failures: deque[str] = deque()
        self.observed_offset: dict[int, float] = {}  # step index -> value /latest reports instead of the forecast
        self.requests: list[tuple[str, datetime]] = []
        self.forecast_delay = 0.0  # real seconds every forecast answer takes (a slow API)

    @property
    def end(self) -> datetime:
        return self.start + self.step * len(self.values)

    def index_at(self, moment: datetime) -> int:
        return int((moment - self.start) / self.step)

    def install(self, httpserver) -> str:
        httpserver.expect_request("/v3/carbon-intensity/forecast").respond_with_handler(self._forecast)
        httpserver.expect_request("/v3/carbon-intensity/latest").respond_with_handler(self._latest)
        return httpserver.url_for("/v3")

    def connection(self, url: str, **extra) -> str:
        return json.dumps(
            {
                "conn_type": "electricitymaps",
                "host": url,
                "password": TOKEN,
                "extra": {"zone": self.zone, "retry_backoff": 0.01, "max_retry_wait": 2, "timeout": 5, **extra},
            }
        )

    def _failure(self, request: Request) -> Response | None:
        if request.headers.get("auth-token") != TOKEN:
            return _json({"error": "Invalid auth-token"}, 401)
        if not self.failures:
            return None
        mode = self.failures.popleft()
        return {
            "500": lambda: _json({"error": "Internal Server Error"}, 500),
            "503": lambda: Response("upstream unavailable", status=503),
            "429": lambda: _json({"error": "Too Many Requests"}, 429),
            "empty": lambda: Response("", status=200),
            "garbage": lambda: Response("<html>maintenance</html>", status=200, content_type="application/json"),
            "zeros": lambda: _json(self._forecast_body(zeros=True), 200),
            "401": lambda: _json({"error": "Invalid auth-token"}, 401),
            "not_entitled": lambda: _json({"error": "Request unauthorized for zoneKey=DE,requestType=forecast."}, 401),
        }[mode]()

    def _forecast_body(self, *, zeros: bool = False) -> dict:
        now = datetime.now(timezone.utc)
        first = max(self.index_at(now), 0)
        points = [
            {"carbonIntensity": 0 if zeros else self.values[i], "datetime": iso_z(self.start + i * self.step)}
            for i in range(first, len(self.values))
        ]
        return {"zone": self.zone, "updatedAt": iso_z(now), "forecast": points}

    def _forecast(self, request: Request) -> Response:
        self.requests.append(("forecast", datetime.now(timezone.utc)))
        time.sleep(self.forecast_delay)
        failure = self._failure(request)
        return failure or _json(self._forecast_body(), 200)

    def _latest(self, request: Request) -> Response:
        now = datetime.now(timezone.utc)
        self.requests.append(("latest", now))
        failure = self._failure(request)
        if failure is not None:
            return failure
        i = min(max(self.index_at(now), 0), len(self.values) - 1)
        value = self.observed_offset.get(i, self.values[i])
        return _json(
            {
                "zone": self.zone,
                "carbonIntensity": value,
                "datetime": iso_z(self.start + i * self.step),
                "updatedAt": iso_z(now),
                "isEstimated": False,
                "temporalGranularity": "hourly",
                "emissionFactorType": "lifecycle",
                "estimationMethod": None,
            },
            200,
        )


def _json(body: dict, status: int) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json")


class EmZones:
    """Several zones on one server in Electricity Maps format, each hourly from ``start``; a zone in ``broken``
    answers with its failure mode every time (``"500"``, ``"garbage"``, ``"not_entitled"``, ...)."""

    def __init__(self, start: datetime, zones: dict[str, list[float]], *, step: timedelta = timedelta(hours=1)):
        self.grids = {zone: EmGrid(start, values, step=step, zone=zone) for zone, values in zones.items()}
        self.broken: dict[str, str] = {}
        self.requests: list[tuple[str, str]] = []

    def install(self, httpserver) -> str:
        httpserver.expect_request("/v3/carbon-intensity/forecast").respond_with_handler(
            lambda request: self._route(request, "_forecast")
        )
        httpserver.expect_request("/v3/carbon-intensity/latest").respond_with_handler(
            lambda request: self._route(request, "_latest")
        )
        return httpserver.url_for("/v3")

    def connection(self, url: str, **extra) -> str:
        return json.dumps(
            {
                "conn_type": "electricitymaps",
                "host": url,
                "password": TOKEN,
                "extra": {"retry_backoff": 0.01, "max_retry_wait": 2, "timeout": 5, **extra},
            }
        )

    def _route(self, request: Request, handler: str) -> Response:
        zone = request.args.get("zone", "")
        self.requests.append((handler.strip("_"), zone))
        grid = self.grids.get(zone)
        if grid is None:
            return _json({"status": "error", "message": f"Zone {zone} not found"}, 404)
        if zone in self.broken:
            grid.failures.extend([self.broken[zone]])
        return getattr(grid, handler)(request)
