from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
import time_machine
from werkzeug import Response

from airflow_provider_carbon.exceptions import BadPayloadError, InvalidRequestError, ServiceUnavailableError
from airflow_provider_carbon.hooks.carbon_aware_sdk import CarbonAwareSdkHook, parse_timespan
from tests.hooks.conftest import requests_to

T0 = datetime(2022, 7, 19, 14, tzinfo=timezone.utc)


def dto(location, values, *, window=0, step=10, optimal=None):
    return {
        "requestedAt": "2022-07-19T13:37:49+00:00",
        "generatedAt": "2022-07-19T13:35:00.1234567+00:00",
        "location": location,
        "dataStartAt": T0.isoformat(),
        "dataEndAt": (T0 + timedelta(minutes=step * (len(values) - 1))).isoformat(),
        "windowSize": window,
        "optimalDataPoints": optimal or [],
        "forecastData": [
            {
                "location": "IE",
                "timestamp": (T0 + timedelta(minutes=step * i)).isoformat(),
                "duration": step,
                "value": v,
            }
            for i, v in enumerate(values)
        ],
    }


@pytest.fixture
def hook(httpserver, connection):
    connection("casdk_test", "carbon_aware_sdk", httpserver.url_for(""), extra={"location": "northeurope"})
    return CarbonAwareSdkHook("casdk_test")


@time_machine.travel(T0 - timedelta(minutes=20), tick=True)
def test_forecast_uses_raw_periods(hook, httpserver):
    httpserver.expect_request("/emissions/forecasts/current", query_string="location=northeurope").respond_with_json(
        [dto("northeurope", [532.02, 448.44, 500.0])]
    )
    fc = hook.get_forecast(min_horizon=timedelta(minutes=30))
    assert fc.zone == "northeurope" and fc.source == "carbon_aware_sdk"
    assert fc.values.tolist() == [532.02, 448.44, 500.0]
    assert fc.start == T0 and fc.end == T0 + timedelta(minutes=30)  # last point's start + its duration
    assert fc.generated_at == datetime(2022, 7, 19, 13, 35, 0, 123456, tzinfo=timezone.utc)


@time_machine.travel(T0 - timedelta(minutes=20), tick=True)
def test_trimmed_fractions_parse_and_a_bad_time_is_a_bad_payload(hook, httpserver):
    body = dto("northeurope", [532.02, 448.44, 500.0])
    body["generatedAt"] = "2022-07-19T13:35:00.12+00:00"  # .NET trims trailing zeros
    httpserver.expect_request("/emissions/forecasts/current").respond_with_json([body])
    fc = hook.get_forecast(min_horizon=timedelta(minutes=30))
    assert fc.generated_at == datetime(2022, 7, 19, 13, 35, 0, 120000, tzinfo=timezone.utc)

    httpserver.clear()
    httpserver.expect_request("/emissions/forecasts/current").respond_with_json([{**body, "generatedAt": "soon"}])
    with pytest.raises(BadPayloadError, match="'generatedAt'"):
        hook.get_forecast(min_horizon=timedelta(minutes=30), use_cache=False)


def test_current_forecasts_for_several_locations_with_window(hook, httpserver):
    optimal = [
        {"location": "IE", "timestamp": (T0 + timedelta(minutes=10)).isoformat(), "duration": 20, "value": 470.0}
    ]
    httpserver.expect_request("/emissions/forecasts/current").respond_with_json(
        [dto("northeurope", [520, 470, 480], window=20, optimal=optimal), dto("westeurope", [300, 310, 320])]
    )
    results = hook.get_current_forecasts(
        ["northeurope", "westeurope"],
        data_start_at=T0,
        data_end_at=T0 + timedelta(hours=1),
        window_size=timedelta(minutes=20),
    )
    (request,) = requests_to(httpserver, "/emissions/forecasts/current")
    # the real parameter names: a repeated `location` key, dataStartAt/dataEndAt, windowSize in minutes
    assert request.args.getlist("location") == ["northeurope", "westeurope"]
    assert request.args["dataStartAt"] == "2022-07-19T14:00:00Z"
    assert request.args["dataEndAt"] == "2022-07-19T15:00:00Z"
    assert request.args["windowSize"] == "20"
    assert [r.location for r in results] == ["northeurope", "westeurope"]
    assert results[0].window_size == 20 and results[0].optimal[0].value == 470.0
    assert results[0].optimal[0].duration == timedelta(minutes=20)


def test_latest_and_latest_many(hook, httpserver):
    httpserver.expect_request("/emissions/bylocations").respond_with_json(
        [
            {"location": "eastus", "time": "2024-09-30T05:00:00+00:00", "rating": 337, "duration": "01:00:00"},
            {"location": "westus", "time": "2024-09-30T05:00:00+00:00", "rating": 210, "duration": "01:00:00"},
        ]
    )
    many = hook.get_latest_many(["eastus", "westus"])
    assert {k: v.values[0] for k, v in many.items()} == {"eastus": 337, "westus": 210}
    (request,) = requests_to(httpserver, "/emissions/bylocations")
    assert request.args.getlist("location") == ["eastus", "westus"]
    assert many["eastus"].end - many["eastus"].start == timedelta(hours=1)


def test_latest_many_falls_back_when_the_sdk_renames_locations(hook, httpserver):
    def handler(request):
        names = request.args.getlist("location")
        body = [
            {"location": f"BA_{n}", "time": "2024-09-30T05:00:00+00:00", "rating": 100 + len(n), "duration": "00:05:00"}
            for n in names
        ]
        return Response(json.dumps(body), content_type="application/json")

    httpserver.expect_request("/emissions/bylocations").respond_with_handler(handler)
    many = hook.get_latest_many(["eastus", "westus2"])
    assert {k: v.values[0] for k, v in many.items()} == {"eastus": 106, "westus2": 107}
    assert len(requests_to(httpserver, "/emissions/bylocations")) == 3  # one joint, then one each


def test_best_location(hook, httpserver):
    httpserver.expect_request("/emissions/bylocations/best").respond_with_json(
        [{"location": "westus", "time": "2024-09-30T05:00:00+00:00", "rating": 210, "duration": "01:00:00"}]
    )
    best = hook.get_best_location(["eastus", "westus"], start=T0, end=T0 + timedelta(hours=4))
    assert [(b.location, b.value) for b in best] == [("westus", 210)]
    (request,) = requests_to(httpserver, "/emissions/bylocations/best")
    assert request.args.getlist("location") == ["eastus", "westus"]
    assert (request.args["time"], request.args["toTime"]) == ("2022-07-19T14:00:00Z", "2022-07-19T18:00:00Z")


def test_history_uses_time_and_totime(hook, httpserver):
    httpserver.expect_request(
        "/emissions/bylocation",
        query_string={"location": "northeurope", "time": "2022-07-19T14:00:00Z", "toTime": "2022-07-19T16:00:00Z"},
    ).respond_with_json(
        [
            {"location": "IE", "time": "2022-07-19T15:00:00+00:00", "rating": 400, "duration": "01:00:00"},
            {"location": "IE", "time": "2022-07-19T14:00:00+00:00", "rating": 450, "duration": "01:00:00"},
        ]
    )
    fc = hook.get_history(start=T0, end=T0 + timedelta(hours=2))
    assert fc.values.tolist() == [450, 400] and fc.end == T0 + timedelta(hours=2)


def test_no_content_is_an_empty_payload(hook, httpserver):
    httpserver.expect_request("/emissions/bylocations").respond_with_data("", status=204)
    with pytest.raises(BadPayloadError, match="no data points"):
        hook.get_latest()


def test_problem_details_are_readable(hook, httpserver):
    httpserver.expect_request("/emissions/forecasts/current").respond_with_json(
        {
            "type": "https://tools.ietf.org/html/rfc7231#section-6.5.1",
            "title": "ArgumentException",
            "status": 400,
            "detail": "Invalid parameters",
            "errors": {"Start": ["Start must be before End"]},
            "traceId": "00-1-2-00",
        },
        status=400,
    )
    with pytest.raises(InvalidRequestError) as info:
        hook.get_forecast()
    assert "ArgumentException: Invalid parameters (Start: Start must be before End)" in str(info.value)
    assert info.value.attempts == 1


def test_unknown_location(hook, httpserver):
    httpserver.expect_request("/emissions/forecasts/current").respond_with_json(
        {"title": "ArgumentException", "status": 400, "detail": "Unknown Location: 'mars' not found"}, status=400
    )
    with pytest.raises(InvalidRequestError, match="GET /locations"):
        hook.get_forecast("mars")


def test_terse_500(hook, httpserver):
    httpserver.expect_request("/emissions/forecasts/current").respond_with_json(
        {"title": "InternalServerError", "status": 500}, status=500
    )
    with pytest.raises(ServiceUnavailableError, match="InternalServerError") as info:
        hook.get_forecast()
    assert info.value.attempts == 4


def test_501_is_not_retried(hook, httpserver):
    httpserver.expect_request("/emissions/forecasts/current").respond_with_json(
        {"title": "NotImplementedException", "status": 501}, status=501
    )
    with pytest.raises(InvalidRequestError, match="does not support this") as info:
        hook.get_forecast()
    assert info.value.attempts == 1


def test_coordinates_are_refused(hook):
    with pytest.raises(InvalidRequestError, match="location names, not coordinates"):
        hook.get_forecast(lat=1.0, lon=2.0)


def test_gateway_token_is_a_bearer_header(httpserver, connection):
    connection(
        "casdk_gw", "carbon_aware_sdk", httpserver.url_for(""), password="gw-token-123456", extra={"location": "westus"}
    )
    httpserver.expect_request(
        "/emissions/bylocations", headers={"Authorization": "Bearer gw-token-123456"}
    ).respond_with_json(
        [{"location": "westus", "time": "2024-09-30T05:00:00+00:00", "rating": 1, "duration": "01:00:00"}]
    )
    assert CarbonAwareSdkHook("casdk_gw").get_latest().values[0] == 1


def test_missing_host(connection):
    connection("casdk_nohost", "carbon_aware_sdk", "")
    with pytest.raises(InvalidRequestError, match="the connection has no host"):
        CarbonAwareSdkHook("casdk_nohost").get_latest("westus")


def test_test_connection(hook, httpserver):
    httpserver.expect_request("/locations").respond_with_json(
        {"northeurope": {"Latitude": 53.3, "Longitude": -6.2, "Name": "northeurope"}}
    )
    httpserver.expect_request("/emissions/bylocations").respond_with_json(
        [{"location": "IE", "time": "2024-09-30T05:00:00+00:00", "rating": 337.4, "duration": "01:00:00"}]
    )
    assert hook.test_connection() == (True, "Carbon Aware SDK: reachable; northeurope is at 337 gCO2eq/kWh now")


@pytest.mark.parametrize(
    ("text", "minutes"),
    [
        ("01:00:00", 60),
        ("00:05:00", 5),
        ("1.02:00:00", 26 * 60),
        (10, 10),
        ("00:00:03.6000000", 0.06),
        ("00:00:00.5", 0.5 / 60),
    ],
)
def test_parse_timespan(text, minutes):
    assert parse_timespan(text) == timedelta(minutes=minutes)
