"""Malformed bodies become typed errors naming the field and the zone: a table per service and endpoint through a real
local server, the cases the fuzzer found first (nesting bombs, 10**400, booleans, timestamps as numbers, year 1
with an offset), and the checks of ``hooks/payload.py`` themselves.

Each row of the table takes a service's documented answer (``tests/hooks/hostile.py``), breaks one field, serves it
from a loopback server and calls the hook's public fetcher. Before these checks existed, most rows escaped as
``TypeError``/``AttributeError``/``OverflowError``/``ValueError``, and the rest were silently accepted (``true``
read as 1 g/kWh, ``"*"`` as the access list ``["*"]``).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest

from airflow_provider_carbon.exceptions import BadPayloadError, ServiceUnavailableError
from airflow_provider_carbon.hooks.payload import MAX_INTENSITY, MISSING, Reader, number, require_list, timestamp
from tests.hooks.conftest import TOKEN
from tests.hooks.hostile import Hostile, encode, endpoint, fresh, hostile_server

BIG = 10**400  # a valid JSON number; float() of it overflows
YEAR_1 = "0001-01-01T00:00:00+01:00"  # parses, but in UTC it is before year 1
DROP = MISSING


@pytest.fixture(scope="module")
def server() -> Iterator[Hostile]:
    with hostile_server() as running:
        yield running


def broken(body: Any, path: tuple[Any, ...], value: Any) -> Any:
    """``body`` with the field at ``path`` replaced by ``value`` (or removed, for :data:`DROP`)."""
    body = copy.deepcopy(body)
    parent = body
    for key in path[:-1]:
        parent = parent[key]
    if value is DROP:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return body


def fetch(server: Hostile, service: str, name: str, body: Any = None, *, raw: bytes | None = None, status: int = 200):
    """Serve ``body`` (or ``raw``) on the endpoint's route and call its public fetcher with a fresh hook."""
    svc, ep = endpoint(service, name)
    server.serve(ep, status, raw if raw is not None else encode(body))
    fresh()
    return ep.fetch(svc.hook())


# (service, endpoint, path of the broken field, value, reason, the field's name as the error gives it)
TABLE = [
    # Electricity Maps
    ("electricitymaps", "forecast", ("forecast",), "302", "bad_type", "'forecast'"),
    ("electricitymaps", "forecast", ("forecast",), 7, "bad_type", "'forecast'"),
    ("electricitymaps", "forecast", ("forecast", 0), "x", "bad_type", "'forecast[0]'"),
    ("electricitymaps", "forecast", ("forecast", 0, "datetime"), 1_700_000_000, "bad_type", "'forecast[0].datetime'"),
    ("electricitymaps", "forecast", ("forecast", 0, "datetime"), YEAR_1, "out_of_range", "'forecast[0].datetime'"),
    ("electricitymaps", "forecast", ("forecast", 0, "datetime"), "1969-12-31T23:00:00Z", "out_of_range", "datetime"),
    ("electricitymaps", "forecast", ("forecast", 0, "datetime"), "soon", "bad_value", "'forecast[0].datetime'"),
    ("electricitymaps", "forecast", ("forecast", 0, "carbonIntensity"), True, "bad_type", "carbonIntensity"),
    ("electricitymaps", "forecast", ("forecast", 0, "carbonIntensity"), "302", "bad_type", "carbonIntensity"),
    ("electricitymaps", "forecast", ("forecast", 0, "carbonIntensity"), BIG, "out_of_range", "carbonIntensity"),
    ("electricitymaps", "forecast", ("forecast", 0, "carbonIntensity"), 5001, "out_of_range", "carbonIntensity"),
    ("electricitymaps", "forecast", ("forecast", 0, "carbonIntensity"), math.nan, "out_of_range", "carbonIntensity"),
    ("electricitymaps", "forecast", ("forecast", 0, "carbonIntensity"), [302], "bad_type", "carbonIntensity"),
    ("electricitymaps", "forecast", ("updatedAt",), 1_700_000_000, "bad_type", "'updatedAt'"),
    ("electricitymaps", "forecast", ("zone",), ["DE"], "bad_type", "'zone'"),
    ("electricitymaps", "latest", ("carbonIntensity",), False, "bad_type", "'carbonIntensity'"),
    ("electricitymaps", "latest", ("datetime",), "", "bad_value", "'datetime'"),
    ("electricitymaps", "latest", ("isEstimated",), "false", "bad_type", "'isEstimated'"),
    ("electricitymaps", "latest", ("temporalGranularity",), ["hourly"], "bad_type", "'temporalGranularity'"),
    ("electricitymaps", "history", ("data",), {"0": 1}, "bad_type", "'data'"),
    ("electricitymaps", "history", ("data", 2, "carbonIntensity"), -BIG, "out_of_range", "'data[2].carbonIntensity'"),
    ("electricitymaps", "zones", ("DE", "access"), "*", "bad_type", "'DE.access'"),
    ("electricitymaps", "zones", ("DE", "access"), 1, "bad_type", "'DE.access'"),
    ("electricitymaps", "zones", ("DE",), "Germany", "bad_type", "'DE'"),
    ("electricitymaps", "zones", ("PT", "countryName"), 351, "bad_type", "'PT.countryName'"),
    # Carbon Aware SDK
    ("carbon_aware_sdk", "latest", (0, "time"), 1_700_000_000, "bad_type", "'[0].time'"),
    ("carbon_aware_sdk", "latest", (0, "rating"), True, "bad_type", "'[0].rating'"),
    ("carbon_aware_sdk", "latest", (0, "rating"), -1, "out_of_range", "'[0].rating'"),  # the SDK's null
    ("carbon_aware_sdk", "latest", (0, "duration"), BIG, "out_of_range", "'[0].duration'"),
    ("carbon_aware_sdk", "latest", (0, "duration"), "99999999999.00:00:00", "bad_value", "'[0].duration'"),
    ("carbon_aware_sdk", "latest", (0, "location"), 7, "bad_type", "'[0].location'"),
    ("carbon_aware_sdk", "latest", (0,), "westeurope", "bad_type", "'[0]'"),
    ("carbon_aware_sdk", "forecast", (0, "forecastData"), "abc", "bad_type", "'forecastData'"),
    ("carbon_aware_sdk", "forecast", (0, "optimalDataPoints"), "abc", "bad_type", "'optimalDataPoints'"),
    ("carbon_aware_sdk", "forecast", (0, "windowSize"), "ten", "bad_type", "'windowSize'"),
    ("carbon_aware_sdk", "forecast", (0, "windowSize"), math.inf, "out_of_range", "'windowSize'"),
    ("carbon_aware_sdk", "forecast", (0, "generatedAt"), 1_700_000_000, "bad_type", "'generatedAt'"),
    ("carbon_aware_sdk", "forecast", (0, "forecastData", 1, "value"), True, "bad_type", "'forecastData[1].value'"),
    ("carbon_aware_sdk", "forecast", (0, "forecastData", 1, "timestamp"), YEAR_1, "out_of_range", "timestamp"),
    ("carbon_aware_sdk", "forecast", (0, "forecastData", 1, "duration"), BIG, "out_of_range", "duration"),
    ("carbon_aware_sdk", "best", (1, "time"), [], "bad_type", "'[1].time'"),
    ("carbon_aware_sdk", "locations", ("westeurope",), "x", "bad_type", "'westeurope'"),
    # WattTime
    ("watttime", "login", ("token",), 12345, "bad_type", "'token'"),
    ("watttime", "login", ("token",), ["t"], "bad_type", "'token'"),
    ("watttime", "login", ("token",), "two words", "bad_value", "'token'"),
    ("watttime", "forecast", ("data", 0, "point_time"), 1_700_000_000, "bad_type", "'data[0].point_time'"),
    ("watttime", "forecast", ("data", 0, "point_time"), YEAR_1, "out_of_range", "'data[0].point_time'"),
    ("watttime", "forecast", ("data", 0, "value"), True, "bad_type", "'data[0].value'"),
    ("watttime", "forecast", ("data", 0, "value"), DROP, "missing_field", "'data[0].value'"),
    ("watttime", "forecast", ("data", 0, "value"), 11_100, "out_of_range", "'data[0].value'"),  # 5,035 g/kWh
    ("watttime", "forecast", ("meta",), "x", "bad_type", "'meta'"),
    ("watttime", "forecast", ("meta", "data_point_period_seconds"), BIG, "out_of_range", "data_point_period"),
    ("watttime", "forecast", ("meta", "data_point_period_seconds"), "300", "bad_type", "data_point_period"),
    ("watttime", "forecast", ("meta", "warnings"), 3, "bad_type", "'meta.warnings'"),
    ("watttime", "forecast", ("meta", "region"), 3, "bad_type", "'meta.region'"),
    ("watttime", "forecast", ("data", 0, "imputed_data_used"), "no", "bad_type", "imputed_data_used"),
    ("watttime", "history", ("data",), "x", "bad_type", "'data'"),
    ("watttime", "region", ("region",), 5, "bad_type", "'region'"),
    ("watttime", "my_access", ("signal_types",), 5, "bad_type", "'signal_types'"),
    ("watttime", "my_access", ("signal_types", 0, "regions"), "CAISO", "bad_type", "'signal_types[0].regions'"),
    # UK Carbon Intensity
    ("uk_carbon_intensity", "forecast", ("data", 0, "from"), 1_700_000_000, "bad_type", "'data[0].from'"),
    ("uk_carbon_intensity", "forecast", ("data", 0, "to"), "2024-13-01T00:00Z", "bad_value", "'data[0].to'"),
    ("uk_carbon_intensity", "forecast", ("data", 0, "intensity"), "high", "bad_type", "'data[0].intensity'"),
    ("uk_carbon_intensity", "forecast", ("data", 0, "intensity", "forecast"), True, "bad_type", "forecast'"),
    ("uk_carbon_intensity", "forecast", ("data", 0, "intensity", "forecast"), BIG, "out_of_range", "forecast'"),
    ("uk_carbon_intensity", "forecast", ("data", 0), [], "empty", "'data[0]'"),
    ("uk_carbon_intensity", "regional_forecast", ("data", "data"), "x", "bad_type", "'data.data'"),
    ("uk_carbon_intensity", "regional_forecast", ("data", "data", 0, "from"), YEAR_1, "out_of_range", "from"),
    ("uk_carbon_intensity", "latest", ("data", 0, "intensity", "actual"), "263", "bad_type", "actual'"),
    ("uk_carbon_intensity", "regional_latest", ("data", 0, "data"), 5, "bad_type", "'data[0].data'"),
]


@pytest.mark.parametrize(
    ("service", "name", "path", "value", "reason", "field"),
    TABLE,
    ids=[f"{s}-{n}-{'.'.join(map(str, p))}-{str(v)[:12]}" for s, n, p, v, *_ in TABLE],
)
def test_a_malformed_field_is_a_bad_payload_naming_it(server, service, name, path, value, reason, field):
    svc, ep = endpoint(service, name)
    with pytest.raises(BadPayloadError) as info:
        fetch(server, service, name, broken(ep.seed(), path, value))
    err = info.value
    assert (err.reason, err.service) == (reason, service), str(err)
    assert field in err.detail
    assert err.zone or name in ("zones", "login", "my_access", "locations")  # account-wide routes have no zone


@pytest.mark.parametrize("service", ["electricitymaps", "carbon_aware_sdk", "watttime", "uk_carbon_intensity"])
@pytest.mark.parametrize("depth", [100_000, 2_000_000])
def test_a_nesting_bomb_is_malformed_json(server, service, depth):
    """Python's json raises RecursionError on deeply nested arrays; that must not escape as one."""
    with pytest.raises(BadPayloadError) as info:
        fetch(server, service, "forecast", raw=b"[" * depth + b"]" * depth)
    assert info.value.reason == "malformed_json"


@pytest.mark.parametrize("service", ["electricitymaps", "carbon_aware_sdk", "watttime", "uk_carbon_intensity"])
def test_a_nesting_bomb_in_an_error_body_is_read_as_text(server, service):
    with pytest.raises(ServiceUnavailableError) as info:
        fetch(server, service, "forecast", raw=b"[" * 100_000 + b"]" * 100_000, status=500)
    assert len(str(info.value)) < 600  # the body is quoted in part, not whole


def test_booleans_are_not_intensities(server):
    """``true`` used to read as 1 g/kWh: a broken body looked like the cleanest grid ever."""
    _, ep = endpoint("electricitymaps", "forecast")
    body = ep.seed()
    for point in body["forecast"]:
        point["carbonIntensity"] = True
    with pytest.raises(BadPayloadError, match="'forecast\\[0\\].carbonIntensity' is a boolean, not a number") as info:
        fetch(server, "electricitymaps", "forecast", body)
    assert info.value.reason == "bad_type" and info.value.zone == "DE"


def test_a_huge_integer_is_out_of_range(server):
    _, ep = endpoint("watttime", "forecast")
    with pytest.raises(BadPayloadError, match="out of range \\(a 1329-bit integer\\)") as info:
        fetch(server, "watttime", "forecast", broken(ep.seed(), ("data", 3, "value"), BIG))
    assert info.value.reason == "out_of_range"


def test_a_timestamp_as_a_number_names_the_field(server):
    _, ep = endpoint("uk_carbon_intensity", "forecast")
    with pytest.raises(BadPayloadError, match="'data\\[2\\].from' is a number, not an ISO 8601 time string"):
        fetch(server, "uk_carbon_intensity", "forecast", broken(ep.seed(), ("data", 2, "from"), 1_700_000_000))


def test_year_one_with_an_offset_is_out_of_range(server):
    """Year 1 at +01:00 is year 0 in UTC: ``astimezone`` raised OverflowError."""
    _, ep = endpoint("carbon_aware_sdk", "latest")
    with pytest.raises(BadPayloadError, match="'\\[0\\].time' '0001-01-01T00:00:00\\+01:00' is out of range") as info:
        fetch(server, "carbon_aware_sdk", "latest", broken(ep.seed(), (0, "time"), YEAR_1))
    assert info.value.reason == "out_of_range" and info.value.zone == "westeurope"


ECHO = f"echo {TOKEN} echo"


@pytest.mark.parametrize(
    ("service", "name", "path"),
    [
        ("electricitymaps", "forecast", ("forecast", 1, "datetime")),
        ("carbon_aware_sdk", "latest", (0, "time")),
        ("watttime", "forecast", ("meta", "units")),
        ("uk_carbon_intensity", "forecast", ("data", 1, "to")),
    ],
)
def test_a_field_echoing_the_token_is_not_quoted_with_it(server, service, name, path):
    _, ep = endpoint(service, name)
    with pytest.raises(BadPayloadError) as info:
        fetch(server, service, name, broken(ep.seed(), path, ECHO))
    assert TOKEN not in str(info.value) and TOKEN not in repr(vars(info.value))
    assert "***" in str(info.value)


@pytest.mark.parametrize(
    ("service", "zone", "data"),
    [
        ("electricitymaps", ("zone",), ("forecast",)),
        ("carbon_aware_sdk", (0, "location"), (0, "forecastData")),
        ("watttime", ("meta", "region"), ("data",)),
    ],
)
def test_a_zone_echoing_the_token_is_redacted(server, service, zone, data):
    """The zone a body names becomes the forecast's zone, which later errors and logs name."""
    _, ep = endpoint(service, "forecast")
    with pytest.raises(BadPayloadError) as info:
        fetch(server, service, "forecast", broken(broken(ep.seed(), zone, ECHO), data, []))
    assert TOKEN not in str(info.value) and TOKEN not in repr(vars(info.value))


# -- the checks themselves -------------------------------------------------------------------------------------------

READ = Reader("electricitymaps", "DE")


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (True, "bad_type"),
        (False, "bad_type"),
        (None, "bad_type"),
        ("302", "bad_type"),
        ("NaN", "bad_type"),
        ([1], "bad_type"),
        (BIG, "out_of_range"),
        (math.nan, "out_of_range"),
        (math.inf, "out_of_range"),
        (MAX_INTENSITY + 1, "out_of_range"),
        (MISSING, "missing_field"),
    ],
)
def test_number_refuses(value, reason):
    with pytest.raises(BadPayloadError) as info:
        READ.number(value, "x")
    assert info.value.reason == reason and info.value.zone == "DE" and "'x'" in info.value.detail


def test_number_scales_before_the_maximum():
    assert READ.number(2, "v", scale=0.5) == 1.0
    assert READ.number(10**3, "v") == 1000.0
    with pytest.raises(BadPayloadError, match="above the credible maximum"):
        READ.number(11_100, "v", scale=0.45359237)  # lbs/MWh: 5,035 g/kWh
    assert number(5, "v", service="watttime", minimum=1, maximum=None, unit="s") == 5.0


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (1_700_000_000, "bad_type"),
        (None, "bad_type"),
        ("0001-01-01T00:00:00+01:00", "out_of_range"),
        ("9999-12-31T23:59:59-01:00", "out_of_range"),
        ("1969-12-31T23:59:59Z", "out_of_range"),
        ("2201-01-01T00:00:00Z", "out_of_range"),
        ("2024-01-01T00:00:00", "bad_value"),
        ("2024-13-01T00:00Z", "bad_value"),
        ("x" * 1000, "bad_value"),
    ],
)
def test_timestamp_refuses(value, reason):
    with pytest.raises(BadPayloadError) as info:
        timestamp(value, "t", "DE", service="uk_carbon_intensity")
    assert info.value.reason == reason


def test_timestamp_reads_every_documented_form():
    utc = timezone.utc
    assert READ.timestamp("2024-03-06T19:00:00.000Z", "t") == datetime(2024, 3, 6, 19, tzinfo=utc)
    assert READ.timestamp("2018-01-20T12:00Z", "t") == datetime(2018, 1, 20, 12, tzinfo=utc)
    assert READ.timestamp("2022-05-17T20:45:11.5092741+00:00", "t").microsecond == 509274
    assert READ.timestamp("2200-12-31T23:59:59Z", "t").year == 2200
    assert READ.optional_timestamp(None, "t") is None


def test_containers_text_and_flags():
    assert require_list([1], "l", service="watttime") == [1]
    with pytest.raises(BadPayloadError, match="'l' is a string, not a list"):
        require_list("[1]", "l", service="watttime")
    with pytest.raises(BadPayloadError) as info:
        READ.mapping([], "")
    assert info.value.reason == "empty" and "the response is empty" in str(info.value)
    assert READ.mapping(None, "m", optional=True) == {} and READ.array(MISSING, "a", optional=True) == []
    with pytest.raises(BadPayloadError, match="the response lacks a 'forecast' list"):
        READ.array(MISSING, "forecast")
    assert READ.text(None, "z", optional=True) is None
    with pytest.raises(BadPayloadError) as info:
        READ.text("  ", "z")
    assert info.value.reason == "bad_value"
    assert READ.flag(None, "f") is False and READ.flag(True, "f") is True
    with pytest.raises(BadPayloadError):
        READ.flag("false", "f")  # bool("false") is True


def test_errors_are_redacted_and_quotes_cut_after_redaction():
    read = Reader("electricitymaps", "DE", lambda text: text.replace(TOKEN, "***"))
    with pytest.raises(BadPayloadError) as info:
        read.timestamp(f"{'x' * 50}{TOKEN}", "t")
    assert TOKEN not in str(info.value) and TOKEN[:10] not in str(info.value)
    with pytest.raises(BadPayloadError) as info:
        read.number(True, f"zones.{TOKEN}")
    assert TOKEN not in str(info.value)
