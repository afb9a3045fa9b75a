"""An offline carbon-intensity API: Electricity Maps v3 and Carbon Aware SDK WebAPI formats, with failure modes.

It serves the routes, parameters, bodies and errors of the real services that the provider uses (see the hooks),
from :mod:`~airflow_provider_carbon.simulator.grid` models, so the provider's demo, example DAGs and end-to-end
tests run with every component real and no API key. It is not a full replica: for instance its Carbon Aware SDK
forecast ignores ``dataStartAt``/``dataEndAt``, it sends failure-mode errors as plain JSON rather than
``application/problem+json``, it has no ``/emissions/average-carbon-intensity``, and its ``/v3/zones`` asks for the
token.

**Time compression.** With ``speed`` S, one simulated second passes per 1/S real second: at S=720 a simulated hour
lasts 5 real seconds and a whole night 40 seconds. Timestamps in answers are *real* instants, spaced by the
compressed step (a 24-hour hourly forecast has points 5 s apart), so a sensor that waits for the cleanest point
really waits for it. ``sim_start`` says which simulated instant "now" was when the server started.

**Control** (``/sim/...``): ``GET /sim/state``; ``POST /sim/failure`` (below); ``POST /sim/clock`` with
``{"sim_start": ..., "real_start": ..., "speed": ...}`` re-anchors the simulated time while the server runs (e.g.
"simulated midnight is now"), as ``--sim-start``/``--real-start``/``--speed`` do at start.

**Failure modes** (at start with ``--failure``, at run time with ``POST /sim/failure``), for all zones or some:
``down`` (the connection is closed without an answer), ``slow`` (answers after ``delay`` seconds), ``429`` (with
``Retry-After``), ``500``, ``503``, ``empty`` (200 with no body), ``garbage`` (200 with HTML), ``zeros`` (all values
0), ``not_entitled`` (401 "Request unauthorized for zoneKey=..."), ``bad_token`` (401 "Invalid auth-token").
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from airflow_provider_carbon.simulator.grid import CsvGrid, SyntheticGrid, step_floor

__all__ = ["FAILURE_MODES", "SimClock", "Simulator", "serve"]

FAILURE_MODES = ("ok", "down", "slow", "429", "500", "503", "empty", "garbage", "zeros", "not_entitled", "bad_token")
_GRANULARITY = {"5_minutes": timedelta(minutes=5), "15_minutes": timedelta(minutes=15), "hourly": timedelta(hours=1)}


def _iso_ms(moment: datetime) -> str:
    """Electricity Maps' format: UTC with milliseconds and a Z."""
    moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _parse_time(text: str) -> datetime:
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _timespan(delta: timedelta) -> str:
    """.NET's TimeSpan text, with the 7-digit fraction it uses when there is one (compressed hours are short)."""
    ticks = round(delta.total_seconds() * 10_000_000)
    seconds, fraction = divmod(ticks, 10_000_000)
    text = f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
    return f"{text}.{fraction:07d}" if fraction else text


@dataclass
class SimClock:
    """Maps real instants to simulated ones: ``sim = sim_anchor + (real - real_anchor) * speed``."""

    speed: float = 1.0
    real_anchor: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    sim_anchor: datetime | None = None

    def __post_init__(self) -> None:
        if self.speed <= 0:
            raise ValueError("speed must be positive")
        if self.sim_anchor is None:
            self.sim_anchor = self.real_anchor

    def sim(self, real: datetime) -> datetime:
        assert self.sim_anchor is not None
        return self.sim_anchor + (real - self.real_anchor) * self.speed

    def real(self, sim: datetime) -> datetime:
        assert self.sim_anchor is not None
        return self.real_anchor + (sim - self.sim_anchor) / self.speed

    def now(self) -> datetime:
        return self.sim(datetime.now(timezone.utc))

    def to_dict(self) -> dict[str, Any]:
        return {
            "speed": self.speed,
            "real_anchor": self.real_anchor.isoformat(),
            "sim_anchor": self.sim_anchor.isoformat() if self.sim_anchor else None,
        }


@dataclass
class Failure:
    mode: str = "ok"
    zones: frozenset[str] | None = None  # None: every zone
    delay: float = 30.0  # for "slow"
    retry_after: int = 60  # for "429"

    def applies(self, zones: list[str]) -> bool:
        return self.mode != "ok" and (self.zones is None or any(z in self.zones for z in zones))

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "zones": sorted(self.zones) if self.zones else None,
            "delay": self.delay,
            "retry_after": self.retry_after,
        }


class Simulator:
    """The simulated grids, clock, credentials and failure state behind the HTTP server.

    :param grids: zone key -> grid model (``SyntheticGrid`` or ``CsvGrid``).
    :param clock: the time mapping (``speed`` > 1 compresses time).
    :param token: the Electricity Maps token it accepts.
    :param locations: Carbon Aware SDK location name -> zone key (zone keys themselves always work).
    """

    def __init__(
        self,
        grids: dict[str, SyntheticGrid | CsvGrid],
        *,
        clock: SimClock | None = None,
        token: str = "simulator-token",
        locations: dict[str, str] | None = None,
    ) -> None:
        self.grids = grids
        self.clock = clock or SimClock()
        self.token = token
        self.locations = {**{z: z for z in grids}, **(locations or {})}
        self.failure = Failure()
        self._lock = threading.Lock()
        self.requests: list[dict[str, Any]] = []

    @classmethod
    def synthetic(cls, zones: list[str], *, seed: int = 7, **kwargs: Any) -> Simulator:
        from airflow_provider_carbon.core.regions import cloud_regions

        grids: dict[str, SyntheticGrid | CsvGrid] = {z: SyntheticGrid(z, seed=seed) for z in zones}
        # the SDK's usual location names (Azure regions) for the zones simulated
        azure = {r.region: r.zone for r in cloud_regions().values() if r.provider == "azure" and r.zone in grids}
        return cls(grids, locations={**azure, **kwargs.pop("locations", {})}, **kwargs)

    def set_failure(
        self, mode: str, zones: list[str] | None = None, delay: float | None = None, retry_after: int | None = None
    ) -> Failure:
        if mode not in FAILURE_MODES:
            raise ValueError(f"failure mode must be one of {FAILURE_MODES}, got {mode!r}")
        with self._lock:
            self.failure = Failure(
                mode=mode,
                zones=frozenset(zones) if zones else None,
                delay=self.failure.delay if delay is None else float(delay),
                retry_after=self.failure.retry_after if retry_after is None else int(retry_after),
            )
            return self.failure

    # -- series ---------------------------------------------------------------------------------------------------

    def step_real(self, step: timedelta) -> timedelta:
        return step / self.clock.speed

    def actual(self, zone: str, sim_time: datetime) -> float:
        return self.grids[zone].value(sim_time)

    def forecast_points(self, zone: str, horizon: timedelta, step: timedelta) -> tuple[datetime, list]:
        """``(issued_at_sim, [(real_time, value), ...])`` from the current simulated step over ``horizon``."""
        issued = step_floor(self.clock.now(), step)
        points = []
        for k in range(int(horizon / step) + 1):
            sim_time = issued + k * step
            points.append((self.clock.real(sim_time), self.grids[zone].forecast(sim_time, issued)))
        return issued, points

    def actual_points(self, zone: str, real_start: datetime, real_end: datetime, step: timedelta) -> list:
        first = step_floor(self.clock.sim(real_start), step)
        last = self.clock.sim(real_end)
        points, t = [], first
        while t <= last:
            points.append((self.clock.real(t), self.actual(zone, t)))
            t += step
        return points


class _Handler(BaseHTTPRequestHandler):
    server: _Server  # type: ignore[assignment]
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        if self.server.verbose:
            super().log_message(format, *args)

    # -- plumbing ---------------------------------------------------------------------------------------------------

    def _send(
        self,
        status: int,
        body: Any = None,
        *,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        if body is None:
            payload = b""
        elif isinstance(body, (bytes, str)):
            payload = body.encode() if isinstance(body, str) else body
        else:
            payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        url = urlparse(self.path)
        query = parse_qs(url.query)
        sim = self.server.simulator
        sim.requests.append({"method": method, "path": url.path, "query": query, "at": time.time()})
        try:
            if url.path.startswith("/sim/"):
                return self._control(method, url.path, query)
            if url.path.startswith("/v3/"):
                return self._electricity_maps(url.path[3:], query)
            if url.path.startswith("/emissions") or url.path in ("/locations", "/health"):
                return self._carbon_aware_sdk(url.path, query)
            self._send(404, {"error": f"no route {url.path}"})
        except _Abort:
            self.close_connection = True
        except (KeyError, ValueError) as err:
            self._send(400, {"status": "error", "message": str(err)})

    def _failure(self, zones: list[str], api: str) -> bool:
        """Apply the active failure mode; return True when the request has been answered (or dropped)."""
        failure = self.server.simulator.failure
        if not failure.applies(zones):
            return False
        mode = failure.mode
        if mode == "down":
            raise _Abort
        if mode == "slow":
            time.sleep(failure.delay)
            return False
        zone = zones[0] if zones else ""
        em = api == "em"
        if mode == "429":
            body = {"error": "Too Many Requests"} if em else {"title": "WattTimeClientHttpException", "status": 429}
            self._send(429, body, headers={"Retry-After": str(failure.retry_after)})
        elif mode in ("500", "503"):
            body = {"error": "Internal Server Error"} if em else {"title": "InternalServerError", "status": int(mode)}
            self._send(int(mode), body)
        elif mode == "empty":
            self._send(200, None)
        elif mode == "garbage":
            self._send(200, "<html><body>Scheduled maintenance</body></html>")
        elif mode in ("not_entitled", "bad_token"):
            upstream = (
                {
                    "error": f"Request unauthorized for zoneKey={zone},requestType=forecast.",
                    "message": "You do not have access to this specific endpoint for this specific zone.",
                }
                if mode == "not_entitled"
                else {"error": "Invalid auth-token"}
            )
            body = (
                upstream
                if em
                else {"title": "ElectricityMapsClientHttpException", "status": 401, "detail": json.dumps(upstream)}
            )
            self._send(401, body)
        else:  # zeros: answered normally, with zero values (the handlers check the mode)
            return False
        return True

    def _value(self, value: float, zone: str) -> float:
        failure = self.server.simulator.failure
        return 0.0 if failure.mode == "zeros" and failure.applies([zone]) else value

    # -- control ----------------------------------------------------------------------------------------------------

    def _json_body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"{}")

    def _control(self, method: str, path: str, query: dict[str, list[str]]) -> None:
        sim = self.server.simulator
        if path == "/sim/health":
            return self._send(200, {"status": "ok"})
        if path == "/sim/state":
            return self._send(
                200,
                {
                    **sim.clock.to_dict(),
                    "sim_now": sim.clock.now().isoformat(),
                    "zones": sorted(sim.grids),
                    "locations": sim.locations,
                    "failure": sim.failure.to_dict(),
                    "requests": len(sim.requests),
                },
            )
        if path == "/sim/failure" and method == "POST":
            body = self._json_body()
            failure = sim.set_failure(
                body.get("mode", "ok"), body.get("zones"), body.get("delay"), body.get("retry_after")
            )
            return self._send(200, failure.to_dict())
        if path == "/sim/failure":
            return self._send(200, sim.failure.to_dict())
        if path == "/sim/clock" and method == "POST":
            # re-anchor the simulated time, e.g. "simulated midnight is now", so a run starts at a known hour
            body = self._json_body()
            try:
                sim.clock = SimClock(
                    speed=float(body.get("speed") or sim.clock.speed),
                    real_anchor=_parse_time(body["real_start"])
                    if body.get("real_start")
                    else datetime.now(timezone.utc),
                    sim_anchor=_parse_time(body["sim_start"]) if body.get("sim_start") else None,
                )
            except (ValueError, TypeError) as err:
                return self._send(400, {"error": f"bad clock: {err}"})
            return self._send(200, sim.clock.to_dict())
        self._send(404, {"error": f"no route {path}"})

    # -- Electricity Maps v3 ------------------------------------------------------------------------------------

    def _electricity_maps(self, route: str, query: dict[str, list[str]]) -> None:
        sim = self.server.simulator
        if self.headers.get("auth-token") != sim.token:
            return self._send(401, {"error": "Invalid auth-token"})
        if route == "/zones":
            if self._failure([], "em"):
                return None
            return self._send(200, {z: {"zoneName": z, "access": ["*"]} for z in sorted(sim.grids)})
        if "zone" not in query:
            return self._send(
                400, {"status": "error", "message": "the simulator needs zone=... (no lat/lon or caller lookup)"}
            )
        zone = query["zone"][0]
        if zone not in sim.grids:
            return self._send(404, {"status": "error", "message": f"No recent data available for zone {zone}"})
        if self._failure([zone], "em"):
            return None
        step = _GRANULARITY.get(query.get("temporalGranularity", ["hourly"])[0], timedelta(hours=1))
        now = sim.clock.now()
        if route == "/carbon-intensity/latest":
            current = step_floor(now, step)
            return self._send(
                200,
                {
                    "zone": zone,
                    "carbonIntensity": self._value(sim.actual(zone, current), zone),
                    "datetime": _iso_ms(sim.clock.real(current)),
                    "updatedAt": _iso_ms(datetime.now(timezone.utc)),
                    "createdAt": _iso_ms(sim.clock.real(current)),
                    "emissionFactorType": "lifecycle",
                    "isEstimated": False,
                    "estimationMethod": None,
                    "temporalGranularity": _name(step),
                },
            )
        if route == "/carbon-intensity/forecast":
            horizon = timedelta(hours=float(query.get("horizonHours", ["24"])[0]))
            issued, points = sim.forecast_points(zone, horizon, step)
            return self._send(
                200,
                {
                    "zone": zone,
                    "updatedAt": _iso_ms(sim.clock.real(issued)),
                    "forecast": [{"carbonIntensity": self._value(v, zone), "datetime": _iso_ms(t)} for t, v in points],
                },
            )
        if route in ("/carbon-intensity/history", "/carbon-intensity/past-range"):
            if route.endswith("history"):
                real_end = datetime.now(timezone.utc)
                real_start = sim.clock.real(now - timedelta(hours=24))
                key = "history"
            else:
                real_start, real_end = _parse_time(query["start"][0]), _parse_time(query["end"][0])
                key = "data"
            points = sim.actual_points(zone, real_start, real_end, step)
            return self._send(
                200,
                {
                    "zone": zone,
                    "temporalGranularity": _name(step),
                    key: [
                        {
                            "zone": zone,
                            "carbonIntensity": self._value(v, zone),
                            "datetime": _iso_ms(t),
                            "isEstimated": False,
                            "estimationMethod": None,
                            "emissionFactorType": "lifecycle",
                            "updatedAt": _iso_ms(t),
                        }
                        for t, v in points
                    ],
                },
            )
        self._send(404, {"status": "error", "message": f"unknown route {route}"})

    # -- Carbon Aware SDK WebAPI --------------------------------------------------------------------------------

    def _problem(self, status: int, title: str, detail: str, errors: dict[str, list[str]] | None = None) -> None:
        body: dict[str, Any] = {
            "type": "https://tools.ietf.org/html/rfc7231#section-6.5.1",
            "title": title,
            "status": status,
            "detail": detail,
            "traceId": f"00-sim-{time.time_ns()}-00",
        }
        if errors:
            body["errors"] = errors
        self._send(status, body, content_type="application/problem+json")

    def _carbon_aware_sdk(self, path: str, query: dict[str, list[str]]) -> None:
        sim = self.server.simulator
        if path == "/health":
            return self._send(200, "Healthy", content_type="text/plain")
        if path == "/locations":
            return self._send(200, {name: {"Name": name, "Latitude": 0, "Longitude": 0} for name in sim.locations})
        names = query.get("location", [])
        if not names:
            return self._problem(
                400, "ArgumentException", "Invalid parameters", {"MultipleLocations": ["MultipleLocations is not set"]}
            )
        unknown = [n for n in names if n not in sim.locations]
        if unknown:
            return self._problem(400, "ArgumentException", f"Unknown Location: '{unknown[0]}' not found")
        zones = [sim.locations[n] for n in names]
        if self._failure(zones, "sdk"):
            return None
        step = timedelta(hours=1)
        real_step = sim.step_real(step)
        now = sim.clock.now()
        if path in ("/emissions/bylocations", "/emissions/bylocation", "/emissions/bylocations/best"):
            if "time" in query:
                real_start = _parse_time(query["time"][0])
                real_end = _parse_time(query["toTime"][0]) if "toTime" in query else real_start
            else:
                real_start = real_end = datetime.now(timezone.utc)
            rows = []
            for name, zone in zip(names, zones, strict=True):
                for t, v in sim.actual_points(zone, real_start, real_end, step):
                    if "time" in query and "toTime" in query and t >= real_end:
                        continue
                    rows.append(
                        {
                            "location": name,
                            "time": t.isoformat(),
                            "rating": self._value(v, zone),
                            "duration": _timespan(real_step),
                        }
                    )
            if path.endswith("/best") and rows:
                low = min(r["rating"] for r in rows)
                rows = [r for r in rows if r["rating"] == low]
            return self._send(200, rows) if rows else self._send(204, None)
        if path == "/emissions/forecasts/current":
            return self._send(
                200, [self._sdk_forecast(n, z, query, now, real_step) for n, z in zip(names, zones, strict=True)]
            )
        self._problem(404, "NotFound", f"unknown route {path}")

    def _sdk_forecast(
        self, name: str, zone: str, query: dict[str, list[str]], now: datetime, real_step: timedelta
    ) -> dict[str, Any]:
        from airflow_provider_carbon.core.forecast import Forecast

        sim = self.server.simulator
        issued, points = sim.forecast_points(zone, timedelta(hours=24), timedelta(hours=1))
        points = [(t, self._value(v, zone)) for t, v in points]  # a "zeros" failure applies to the windows too
        minutes = real_step.total_seconds() / 60
        data = [{"location": zone, "timestamp": t.isoformat(), "duration": minutes, "value": v} for t, v in points]
        window = int(query.get("windowSize", ["0"])[0])
        optimal: list[dict[str, Any]] = []
        if window:  # the SDK's rolling average of windowSize (real) minutes, and every window tied at the minimum
            forecast = Forecast.from_points(
                [(t, max(v, 0.001)) for t, v in points], end=points[-1][0] + real_step, max_gap=None
            )
            span = timedelta(minutes=window)
            starts = [t for t, _ in points if t + span <= forecast.end]
            means = [forecast.mean(t, t + span) for t in starts]
            if all(v == 0 for _, v in points):  # "zeros": the 0.001 floor above only keeps Forecast's check quiet
                means = [0.0] * len(starts)
            data = [
                {"location": zone, "timestamp": t.isoformat(), "duration": window, "value": round(m, 3)}
                for t, m in zip(starts, means, strict=True)
            ]
            low = min(means) if means else None
            optimal = [d for d in data if low is not None and d["value"] == round(low, 3)]
        return {
            "requestedAt": datetime.now(timezone.utc).isoformat(),
            "generatedAt": sim.clock.real(issued).isoformat(),
            "location": name,
            "dataStartAt": points[0][0].isoformat(),
            "dataEndAt": points[-1][0].isoformat(),
            "windowSize": window,
            "optimalDataPoints": optimal,
            "forecastData": data,
        }


def _name(step: timedelta) -> str:
    return next((name for name, value in _GRANULARITY.items() if value == step), "hourly")


class _Abort(Exception):
    """Drop the connection without an answer (failure mode ``down``)."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], simulator: Simulator, verbose: bool) -> None:
        self.simulator = simulator
        self.verbose = verbose
        super().__init__(address, _Handler)


def serve(simulator: Simulator, host: str = "127.0.0.1", port: int = 0, *, verbose: bool = False) -> _Server:
    """Start serving in a background thread; returns the server (``server_address`` has the port;
    ``shutdown()`` stops it)."""
    server = _Server((host, port), simulator, verbose)
    threading.Thread(target=server.serve_forever, name="carbon-simulator", daemon=True).start()
    return server
