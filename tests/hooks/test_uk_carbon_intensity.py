from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone

import pytest
import time_machine
from werkzeug import Response

from airflow_provider_carbon.exceptions import BadPayloadError, InvalidRequestError, ServiceUnavailableError
from airflow_provider_carbon.hooks.uk_carbon_intensity import UkCarbonIntensityHook
from tests.hooks.conftest import requests_to

NOW = datetime(2025, 1, 20, 12, 17, tzinfo=timezone.utc)
FMT = "%Y-%m-%dT%H:%MZ"


def periods(start, values, *, actual=False):
    return [
        {
            "from": (start + timedelta(minutes=30 * i)).strftime(FMT),
            "to": (start + timedelta(minutes=30 * (i + 1))).strftime(FMT),
            "intensity": {"forecast": v, "actual": (v - 3 if actual else None), "index": "moderate"},
        }
        for i, v in enumerate(values)
    ]


def region(regionid, data, **extra):
    return {
        "regionid": regionid,
        "dnoregion": "Electricity North West",
        "shortname": "North West England",
        "data": data,
        **extra,
    }


@pytest.fixture
def hook(httpserver, connection):
    connection("uk_test", "uk_carbon_intensity", httpserver.url_for(""))
    return UkCarbonIntensityHook("uk_test")


@pytest.fixture
def clock():
    with time_machine.travel(NOW, tick=True):
        yield


def test_national_forecast_starts_at_hh01(hook, httpserver, clock):
    start = datetime(2025, 1, 20, 12, tzinfo=timezone.utc)
    httpserver.expect_request("/intensity/2025-01-20T12:01Z/fw24h").respond_with_json(
        {"data": periods(start, [266 - i for i in range(48)])}
    )
    fc = hook.get_forecast()
    assert fc.zone == "national" and fc.source == "uk_carbon_intensity"
    assert fc.start == start and fc.end == start + timedelta(hours=24)  # the last period's explicit `to`
    assert fc.values[:2].tolist() == [266, 265]


def test_second_half_hour_starts_at_hh31(hook, httpserver):
    with time_machine.travel(datetime(2025, 1, 20, 12, 45, tzinfo=timezone.utc), tick=True):
        start = datetime(2025, 1, 20, 12, 30, tzinfo=timezone.utc)
        httpserver.expect_request("/intensity/2025-01-20T12:31Z/fw48h").respond_with_json(
            {"data": periods(start, [200] * 96)}
        )
        assert len(hook.get_forecast(horizon=timedelta(hours=48))) == 96


@pytest.mark.parametrize("shape", ["served", "documented"])
def test_regional_by_id_in_both_shapes(hook, httpserver, clock, shape):
    start = datetime(2025, 1, 20, 12, tzinfo=timezone.utc)
    scoped = region(3, periods(start, [150] * 48))
    body = {"data": scoped} if shape == "served" else {"data": [scoped]}
    httpserver.expect_request("/regional/intensity/2025-01-20T12:01Z/fw24h/regionid/3").respond_with_json(body)
    fc = hook.get_forecast("3")
    assert fc.zone == "3" and len(fc) == 48


def test_regional_by_postcode_outward_code(hook, httpserver, clock):
    start = datetime(2025, 1, 20, 12, tzinfo=timezone.utc)
    httpserver.expect_request("/regional/intensity/2025-01-20T12:01Z/fw24h/postcode/RG41").respond_with_json(
        {"data": region(12, periods(start, [99] * 48), postcode="RG41")}
    )
    assert hook.get_forecast("rg41 1aa").zone == "RG41"


def test_forecast_ending_early(hook, httpserver, clock):
    """The API sometimes ends its forecast at 23:30 of the current day: too short for 24 h, fine for 6 h."""
    start = datetime(2025, 1, 20, 12, tzinfo=timezone.utc)
    httpserver.expect_request("/intensity/2025-01-20T12:01Z/fw24h").respond_with_json(
        {"data": periods(start, [180] * 24)}
    )
    with pytest.raises(BadPayloadError, match="covers 11.7 h from now") as info:
        hook.get_forecast()
    assert info.value.reason == "short_forecast"
    assert hook.get_forecast(min_horizon=timedelta(hours=6)).end == datetime(2025, 1, 21, tzinfo=timezone.utc)


@pytest.mark.parametrize("body", [{}, {"data": []}, {"data": {"regionid": 3, "data": []}}])
def test_empty_200_bodies(hook, httpserver, clock, body):
    httpserver.expect_request("/regional/intensity/2025-01-20T12:01Z/fw24h/regionid/3").respond_with_json(body)
    with pytest.raises(BadPayloadError, match="answered 200 without data") as info:
        hook.get_forecast("3")
    assert info.value.reason == "empty"


def test_duplicate_period_is_dropped(hook, httpserver, clock):
    start = datetime(2025, 1, 20, 12, tzinfo=timezone.utc)
    data = periods(start, [100] * 48)
    data.insert(5, dict(data[4]))
    httpserver.expect_request("/intensity/2025-01-20T12:01Z/fw24h").respond_with_json({"data": data})
    assert len(hook.get_forecast()) == 48


def test_latest_national_uses_the_actual(hook, httpserver):
    httpserver.expect_request("/intensity").respond_with_json(
        {"data": periods(datetime(2018, 1, 20, 12, tzinfo=timezone.utc), [266], actual=True)}
    )
    latest = hook.get_latest()
    assert latest.values.tolist() == [263] and latest.estimated.tolist() == [False]
    assert latest.end - latest.start == timedelta(minutes=30)


def test_latest_regional(hook, httpserver):
    httpserver.expect_request("/regional/regionid/13").respond_with_json(
        {"data": [region(13, periods(datetime(2018, 1, 20, 12, tzinfo=timezone.utc), [120]))]}
    )
    latest = hook.get_latest("13")
    assert latest.values.tolist() == [120] and latest.estimated.tolist() == [True]  # regional: forecast only


def test_history_in_14_day_chunks_with_actuals(hook, httpserver):
    start = datetime(2025, 1, 1, tzinfo=timezone.utc)
    end = start + timedelta(days=20)

    def handler(request):
        lo, hi = (datetime.strptime(p, FMT).replace(tzinfo=timezone.utc) for p in request.path.split("/")[2:4])
        n = int((hi - lo) / timedelta(minutes=30))
        data = periods(lo, [200] * n, actual=True)
        data[0]["intensity"]["actual"] = None  # not measured yet: the forecast is used and flagged
        return Response(json.dumps({"data": data}), content_type="application/json")

    httpserver.expect_request(re.compile(r"^/intensity/[^/]+/[^/]+$")).respond_with_handler(handler)
    fc = hook.get_history(start=start, end=end)
    paths = [r.path for r, _ in httpserver.log]
    assert paths == ["/intensity/2025-01-01T00:00Z/2025-01-15T00:00Z", "/intensity/2025-01-15T00:00Z/2025-01-21T00:00Z"]
    assert len(fc) == 20 * 48 and fc.start == start and fc.end == end
    assert fc.estimated.sum() == 2 and set(fc.values.tolist()) == {197.0, 200.0}


def test_bad_postcode(hook, httpserver, clock):
    httpserver.expect_request("/regional/intensity/2025-01-20T12:01Z/fw24h/postcode/ZZ9").respond_with_json(
        {"error": {"code": "400 Bad Request", "message": "Please enter a valid postcode i.e. RG10 or SW1"}}, status=400
    )
    with pytest.raises(InvalidRequestError, match="Please enter a valid postcode") as info:
        hook.get_forecast("ZZ9")
    assert "outward code" in info.value.hint and info.value.attempts == 1


def test_outage_500_is_retried(hook, httpserver, clock):
    httpserver.expect_request("/intensity/2025-01-20T12:01Z/fw24h").respond_with_json(
        {"error": {"code": "500 Internal Server Error", "message": "Requested resource not found."}}, status=500
    )
    with pytest.raises(ServiceUnavailableError, match="Requested resource not found") as info:
        hook.get_forecast()
    assert info.value.attempts == 4 == len(requests_to(httpserver, "/intensity/2025-01-20T12:01Z/fw24h"))


@pytest.mark.parametrize("zone", ["18", "0", "London", "not a postcode"])
def test_invalid_zones(hook, zone):
    with pytest.raises(InvalidRequestError):
        hook.get_forecast(zone)


def test_test_connection(hook, httpserver):
    httpserver.expect_request("/intensity").respond_with_json(
        {"data": periods(datetime(2018, 1, 20, 12, tzinfo=timezone.utc), [266], actual=True)}
    )
    assert hook.test_connection() == (True, "UK Carbon Intensity: national is at 263 gCO2eq/kWh")
