"""Hostile servers for the hook tests: each service's documented answers as seeds, every endpoint a hook reads, and a
loopback HTTP server whose answers a test sets per request.

Shared by the fuzzer (``test_fuzz.py``) and the table of malformed bodies (``test_payload.py``). The seeds follow
``../shared/reference/carbon-apis.md`` and are built relative to now, so that an unmutated body is a valid answer.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from airflow_provider_carbon.hooks.carbon_aware_sdk import CarbonAwareSdkHook
from airflow_provider_carbon.hooks.electricitymaps import ElectricityMapsHook
from airflow_provider_carbon.hooks.uk_carbon_intensity import UkCarbonIntensityHook
from airflow_provider_carbon.hooks.watttime import WattTimeHook
from tests.hooks.conftest import FAST, TOKEN

#: the bearer token the seeded WattTime login hands out: once handed out, a secret of the hook like the password
WT_BEARER = "wt-bearer-token-7c1d9e4a"

# -- seeds: each API's documented answer, relative to now so that unmutated bodies give valid forecasts ---------


def _hour() -> datetime:
    return datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)


def _z(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _uk(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%MZ")


VALUES = [420, 380, 300, 250, 210, 190]


def em_point(moment: datetime, value: float) -> dict[str, Any]:
    return {
        "zone": "DE",
        "carbonIntensity": value,
        "datetime": _z(moment),
        "updatedAt": _z(moment + timedelta(minutes=48)),
        "createdAt": _z(moment - timedelta(days=3)),
        "emissionFactorType": "lifecycle",
        "isEstimated": True,
        "estimationMethod": "TIME_SLICER_AVERAGE",
        "temporalGranularity": "hourly",
    }


def em_latest() -> Any:
    return em_point(_hour(), 302)


def em_forecast() -> Any:
    start = _hour()
    return {
        "zone": "DE",
        "updatedAt": _z(start - timedelta(minutes=13)),
        "forecast": [
            {"carbonIntensity": v, "datetime": _z(start + i * timedelta(hours=1))} for i, v in enumerate(VALUES)
        ],
    }


def em_past_range() -> Any:
    start = _hour() - timedelta(hours=6)
    return {
        "zone": "DE",
        "data": [em_point(start + i * timedelta(hours=1), v) for i, v in enumerate(VALUES)],
        "temporalGranularity": "hourly",
    }


def em_zones() -> Any:
    return {
        "DE": {"zoneName": "Germany", "access": ["*"]},
        "PT": {"zoneName": "Portugal", "countryName": "Portugal", "access": ["carbon-intensity/latest"]},
    }


def casdk_emissions(start: datetime, locations: tuple[str, ...] = ("westeurope",)) -> list[dict[str, Any]]:
    return [
        {"location": loc, "time": (start + i * timedelta(hours=1)).isoformat(), "rating": v, "duration": "01:00:00"}
        for loc in locations
        for i, v in enumerate(VALUES[:3])
    ]


def casdk_latest() -> Any:
    return casdk_emissions(_hour())[:1]


def casdk_latest_many() -> Any:
    return [p for p in casdk_emissions(_hour(), ("westeurope", "northeurope")) if p["rating"] == VALUES[0]]


def casdk_history() -> Any:
    return casdk_emissions(_hour() - timedelta(hours=3))


def casdk_dto(location: str) -> dict[str, Any]:
    start = _hour()
    return {
        "requestedAt": start.isoformat(),
        "generatedAt": (start - timedelta(minutes=5)).isoformat(),
        "location": location,
        "dataStartAt": start.isoformat(),
        "dataEndAt": (start + timedelta(hours=len(VALUES) - 1)).isoformat(),
        "windowSize": 0,
        "optimalDataPoints": [
            {"location": "IE", "timestamp": (start + 5 * timedelta(hours=1)).isoformat(), "duration": 60, "value": 190}
        ],
        "forecastData": [
            {"location": "IE", "timestamp": (start + i * timedelta(hours=1)).isoformat(), "duration": 60, "value": v}
            for i, v in enumerate(VALUES)
        ],
    }


def casdk_forecast() -> Any:
    return [casdk_dto("westeurope")]


def casdk_forecasts() -> Any:
    return [casdk_dto("westeurope"), casdk_dto("northeurope")]


def casdk_locations() -> Any:
    return {"westeurope": {"Latitude": 52.37, "Longitude": 4.9, "Name": "westeurope"}}


def wt_series(start: datetime, count: int = 18) -> dict[str, Any]:
    return {
        "data": [
            {"point_time": (start + i * timedelta(minutes=5)).isoformat(), "value": 900 - 10 * i} for i in range(count)
        ],
        "meta": {
            "region": "CAISO_NORTH",
            "signal_type": "co2_moer",
            "units": "lbs_co2_per_mwh",
            "data_point_period_seconds": 300,
            "generated_at": start.isoformat(),
            "generated_at_period_seconds": 300,
            "model": {"date": "2023-03-01", "type": "binned_regression"},
            "warnings": [{"type": "EXAMPLE_WARNING", "message": "an example"}],
        },
    }


def _five_minutes() -> datetime:
    now = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    return now - timedelta(minutes=now.minute % 5)


def wt_login() -> Any:
    return {"token": WT_BEARER}


def wt_forecast() -> Any:
    return wt_series(_five_minutes())


def wt_history() -> Any:
    return wt_series(_five_minutes() - timedelta(hours=1), 12)


def wt_region() -> Any:
    return {"region": "CAISO_NORTH", "region_full_name": "California ISO Northern", "signal_type": "co2_moer"}


def wt_my_access() -> Any:
    model = {
        "model": "2023-03-01",
        "data_start": "2020-01-01",
        "train_start": "2019-01-01",
        "train_end": "2023-01-01",
        "type": "binned_regression",
    }
    region = {
        "region": "CAISO_NORTH",
        "region_full_name": "California ISO Northern",
        "parent": "CAISO",
        "data_point_period_seconds": 300,
        "endpoints": [{"endpoint": "v3/forecast", "models": [model]}],
    }
    return {"signal_types": [{"signal_type": "co2_moer", "regions": [region]}]}


def uk_periods(start: datetime, count: int = 6, *, actual: bool = True) -> list[dict[str, Any]]:
    out = []
    for i in range(count):
        lo = start + i * timedelta(minutes=30)
        intensity: dict[str, Any] = {"forecast": 200 + 10 * i, "index": "moderate"}
        if actual:
            intensity["actual"] = 190 + 10 * i if lo < datetime.now(timezone.utc) - timedelta(minutes=30) else None
        out.append({"from": _uk(lo), "to": _uk(lo + timedelta(minutes=30)), "intensity": intensity})
    return out


def _half_hour() -> datetime:
    now = datetime.now(timezone.utc)
    return now.replace(minute=30 if now.minute >= 30 else 0, second=0, microsecond=0)


def _uk_region(periods: list[dict[str, Any]]) -> dict[str, Any]:
    return {"regionid": 12, "dnoregion": "SSE South", "shortname": "South England", "postcode": "RG41", "data": periods}


def uk_latest() -> Any:
    return {"data": uk_periods(_half_hour() - timedelta(minutes=30), 1)}


def uk_regional_latest() -> Any:
    return {"data": [_uk_region(uk_periods(_half_hour(), 1, actual=False))]}  # as documented: wrapped in a list


def uk_forecast() -> Any:
    return {"data": uk_periods(_half_hour())}


def uk_regional_forecast() -> Any:
    return {"data": _uk_region(uk_periods(_half_hour(), actual=False))}  # as served: the region object itself


def uk_history() -> Any:
    return {"data": uk_periods(_half_hour() - timedelta(hours=3))}


# -- endpoints -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """One route of one service: its seed, how the hook parses a decoded body, how the public fetcher is called.

    :ivar route: regex of the path whose body is fuzzed; ``others`` answer the other paths the fetcher needs
        (WattTime's login before data) with their valid seeds.
    """

    name: str
    route: str
    seed: Callable[[], Any]
    parse: Callable[[Any, Any], Any]
    fetch: Callable[[Any], Any]
    others: dict[str, Callable[[], Any]] = field(default_factory=dict)


H1 = timedelta(hours=1)


def _range(hours: float) -> dict[str, datetime]:
    end = _hour()
    return {"start": end - timedelta(hours=hours), "end": end}


EM = [
    Endpoint(
        "latest",
        r"/v3/carbon-intensity/latest",
        em_latest,
        lambda h, b: h.parse_latest(b, "DE", "hourly"),
        lambda h: h.get_latest("DE"),
    ),
    Endpoint(
        "forecast",
        r"/v3/carbon-intensity/forecast",
        em_forecast,
        lambda h, b: h.parse_forecast(b, "DE", "hourly"),
        lambda h: h.get_forecast("DE", horizon=H1, use_cache=False),
    ),
    Endpoint(
        "history",
        r"/v3/carbon-intensity/past-range",
        em_past_range,
        lambda h, b: h.parse_history([b], "DE", **_range(6), granularity="hourly"),
        lambda h: h.get_history("DE", **_range(6)),
    ),
    Endpoint("zones", r"/v3/zones", em_zones, lambda h, b: h.parse_zones(b), lambda h: h.list_zones()),
]
CASDK = [
    Endpoint(
        "latest",
        r"/emissions/bylocations",
        casdk_latest,
        lambda h, b: h.parse_latest(b, "westeurope"),
        lambda h: h.get_latest("westeurope"),
    ),
    Endpoint(
        "latest_many",
        r"/emissions/bylocations",
        casdk_latest_many,
        lambda h, b: h.parse_latest_many(b, ["westeurope", "northeurope"]),
        lambda h: h.get_latest_many(["westeurope", "northeurope"]),
    ),
    Endpoint(
        "forecast",
        r"/emissions/forecasts/current",
        casdk_forecast,
        lambda h, b: h.parse_forecasts(b, ["westeurope"]),
        lambda h: h.get_forecast("westeurope", horizon=H1, use_cache=False),
    ),
    Endpoint(
        "forecasts",
        r"/emissions/forecasts/current",
        casdk_forecasts,
        lambda h, b: h.parse_forecasts(b, ["westeurope", "northeurope"]),
        lambda h: h.get_current_forecasts(["westeurope", "northeurope"]),
    ),
    Endpoint(
        "history",
        r"/emissions/bylocation",
        casdk_history,
        lambda h, b: h.parse_history(b, "westeurope", **_range(3)),
        lambda h: h.get_history("westeurope", **_range(3)),
    ),
    Endpoint(
        "best",
        r"/emissions/bylocations/best",
        casdk_latest_many,
        lambda h, b: h.parse_emissions(b, "westeurope,northeurope"),
        lambda h: h.get_best_location(["westeurope", "northeurope"]),
    ),
    Endpoint(
        "locations", r"/locations", casdk_locations, lambda h, b: h.parse_locations(b), lambda h: h.list_locations()
    ),
]
_WT_FORECAST = {r"/v3/forecast": wt_forecast}
WT = [
    Endpoint(
        "login",
        r"/login",
        wt_login,
        lambda h, b: h.parse_login(b),
        lambda h: h.get_forecast("CAISO_NORTH", horizon=H1, use_cache=False),
        _WT_FORECAST,
    ),
    Endpoint(
        "latest",
        r"/v3/forecast",
        wt_forecast,
        lambda h, b: h.parse_latest(b, "CAISO_NORTH"),
        lambda h: h.get_latest("CAISO_NORTH"),
        {"/login": wt_login},
    ),
    Endpoint(
        "forecast",
        r"/v3/forecast",
        wt_forecast,
        lambda h, b: h.parse_forecast(b, "CAISO_NORTH"),
        lambda h: h.get_forecast("CAISO_NORTH", horizon=H1, use_cache=False),
        {"/login": wt_login},
    ),
    Endpoint(
        "history",
        r"/v3/historical",
        wt_history,
        lambda h, b: h.parse_history([b], "CAISO_NORTH", **_range(1)),
        lambda h: h.get_history("CAISO_NORTH", **_range(1)),
        {"/login": wt_login},
    ),
    Endpoint(
        "region",
        r"/v3/region-from-loc",
        wt_region,
        lambda h, b: h.parse_region(b, "38.5,-121.5"),
        lambda h: h.get_forecast(lat=38.5, lon=-121.5, horizon=H1, use_cache=False),
        {"/login": wt_login, **_WT_FORECAST},
    ),
    Endpoint(
        "my_access",
        r"/v3/my-access",
        wt_my_access,
        lambda h, b: h.parse_my_access(b),
        lambda h: h.my_access(),
        {"/login": wt_login},
    ),
]
UK = [
    Endpoint("latest", r"/intensity", uk_latest, lambda h, b: h.parse_latest(b, "national"), lambda h: h.get_latest()),
    Endpoint(
        "regional_latest",
        r"/regional/postcode/RG41",
        uk_regional_latest,
        lambda h, b: h.parse_latest(b, "RG41"),
        lambda h: h.get_latest("RG41"),
    ),
    Endpoint(
        "forecast",
        r"/intensity/[^/]+/fw24h",
        uk_forecast,
        lambda h, b: h.parse_forecast(b, "national"),
        lambda h: h.get_forecast(horizon=H1, use_cache=False),
    ),
    Endpoint(
        "regional_forecast",
        r"/regional/intensity/[^/]+/fw24h/postcode/RG41",
        uk_regional_forecast,
        lambda h, b: h.parse_forecast(b, "RG41"),
        lambda h: h.get_forecast("RG41", horizon=H1, use_cache=False),
    ),
    Endpoint(
        "history",
        r"/intensity/[^/]+/[^/]+",
        uk_history,
        lambda h, b: h.parse_history([b], "national", **_range(3)),
        lambda h: h.get_history(**_range(3)),
    ),
]


@dataclass(frozen=True)
class Service:
    name: str
    hook: Callable[[], Any]
    endpoints: list[Endpoint]


SERVICES = [
    Service("electricitymaps", lambda: ElectricityMapsHook("fuzz_em"), EM),
    Service("carbon_aware_sdk", lambda: CarbonAwareSdkHook("fuzz_casdk"), CASDK),
    Service("watttime", lambda: WattTimeHook("fuzz_wt"), WT),
    Service("uk_carbon_intensity", lambda: UkCarbonIntensityHook("fuzz_uk"), UK),
]


# -- a real local server whose answers each example sets -------------------------------------------------------------


class Hostile:
    """A loopback HTTP server answering each path from a table the current example sets (404 elsewhere)."""

    def __init__(self) -> None:
        self.routes: list[tuple[re.Pattern[str], int, bytes]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: one connection for a whole run
            disable_nagle_algorithm = True  # headers and body go out in two writes; Nagle would delay by 40 ms

            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                path = self.path.split("?", 1)[0]
                status, body = 404, b'{"error": "not found"}'
                for pattern, code, payload in owner.routes:
                    if pattern.fullmatch(path):
                        status, body = code, payload
                        break
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_port}"

    def serve(self, endpoint: Endpoint, status: int, payload: bytes) -> None:
        self.routes = [(re.compile(endpoint.route), status, payload)] + [
            (re.compile(path), 200, json.dumps(seed()).encode()) for path, seed in endpoint.others.items()
        ]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@contextmanager
def hostile_server() -> Iterator[Hostile]:
    """A started :class:`Hostile` server and the connections ``fuzz_em``, ``fuzz_casdk``, ``fuzz_wt``, ``fuzz_uk``
    pointing at it (one attempt per call, no cache)."""
    hostile_server = Hostile()
    extra = {**FAST, "max_attempts": 1, "cache_ttl": 0}
    conns = {
        "fuzz_em": {
            "conn_type": "electricitymaps",
            "host": f"{hostile_server.url}/v3",
            "password": TOKEN,
            "extra": {**extra, "zone": "DE"},
        },
        "fuzz_casdk": {
            "conn_type": "carbon_aware_sdk",
            "host": hostile_server.url,
            "password": TOKEN,
            "extra": {**extra, "location": "westeurope"},
        },
        "fuzz_wt": {
            "conn_type": "watttime",
            "host": hostile_server.url,
            "login": "ada",
            "password": TOKEN,
            "extra": {**extra, "region": "CAISO_NORTH"},
        },
        # the UK API takes no credentials, but a password in the connection must be redacted all the same
        "fuzz_uk": {"conn_type": "uk_carbon_intensity", "host": hostile_server.url, "password": TOKEN, "extra": extra},
    }
    with pytest.MonkeyPatch.context() as patch:
        for conn_id, conn in conns.items():
            patch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
        yield hostile_server
    hostile_server.close()


def fresh() -> None:
    """Forget WattTime's cached login and regions, so that every example fuzzes the whole sequence of calls."""
    WattTimeHook._tokens.clear()
    WattTimeHook._regions.clear()


def encode(body: Any) -> bytes:
    return json.dumps(body).encode()  # NaN and Infinity as Python writes them; 10**400 as its digits


def endpoint(service: str, name: str) -> tuple[Service, Endpoint]:
    """A service and one of its endpoints, by name."""
    found = next(s for s in SERVICES if s.name == service)
    return found, next(e for e in found.endpoints if e.name == name)
