from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from werkzeug import Response

from airflow_provider_carbon.core.forecast import Signal
from airflow_provider_carbon.exceptions import AuthenticationError, InvalidRequestError, NotEntitledError
from airflow_provider_carbon.hooks.electricitymaps import ElectricityMapsHook
from tests.hooks.conftest import TOKEN, em_forecast, iso_z, requests_to, this_hour

NO_CALLER_LOOKUP = {"disableCallerLookup": "true", "shouldUseFallbackCallerLookup": "false"}

LATEST = {
    "zone": "DE",
    "carbonIntensity": 302,
    "datetime": "2024-03-06T19:00:00.000Z",
    "updatedAt": "2024-03-06T18:48:27.926Z",
    "createdAt": "2024-03-03T19:47:16.265Z",
    "emissionFactorType": "lifecycle",
    "isEstimated": True,
    "estimationMethod": "TIME_SLICER_AVERAGE",
    "temporalGranularity": "hourly",
}


@pytest.fixture
def hook(httpserver, connection):
    connection(
        "em_test",
        "electricitymaps",
        httpserver.url_for("/v3"),
        password=TOKEN,
        extra={"zone": "DE", "emission_factor_type": "direct", "disable_estimations": True},
    )
    return ElectricityMapsHook("em_test")


def test_forecast_request_and_parsing(hook, httpserver):
    start = this_hour()
    httpserver.expect_request(
        "/v3/carbon-intensity/forecast",
        query_string={"zone": "FR", **NO_CALLER_LOOKUP, "horizonHours": "48", "temporalGranularity": "15_minutes"},
        headers={"auth-token": TOKEN},
    ).respond_with_json(em_forecast("FR", [50 + i for i in range(4 * 40)], start=start, step=timedelta(minutes=15)))
    fc = hook.get_forecast("FR", horizon=timedelta(hours=40), granularity=timedelta(minutes=15))
    assert fc.zone == "FR" and fc.source == "electricitymaps" and fc.signal is Signal.AVERAGE
    assert fc.start == start and fc.end == start + timedelta(hours=40)
    assert fc.values[:3].tolist() == [50, 51, 52]
    assert fc.generated_at == start - timedelta(minutes=13)
    (request,) = requests_to(httpserver, "/v3/carbon-intensity/forecast")
    assert request.headers["Accept"] == "application/json"


def test_forecast_horizon_rounds_up_to_an_offered_one(hook, httpserver):
    httpserver.expect_request(
        "/v3/carbon-intensity/forecast",
        query_string={"zone": "DE", **NO_CALLER_LOOKUP, "horizonHours": "72", "temporalGranularity": "hourly"},
    ).respond_with_json(em_forecast("DE", [300] * 73))
    assert len(hook.get_forecast(horizon=timedelta(hours=60))) == 73


def test_granularity_extra_is_the_default(httpserver, connection):
    connection(
        "em_15",
        "electricitymaps",
        httpserver.url_for("/v3"),
        password=TOKEN,
        extra={"zone": "FR", "granularity": "15_minutes"},
    )
    httpserver.expect_request(
        "/v3/carbon-intensity/forecast",
        query_string={"zone": "FR", **NO_CALLER_LOOKUP, "horizonHours": "24", "temporalGranularity": "15_minutes"},
    ).respond_with_json(em_forecast("FR", [50] * 96, start=this_hour(), step=timedelta(minutes=15)))
    assert ElectricityMapsHook("em_15").get_forecast().values[0] == 50


def test_forecast_nulls_are_skipped(hook, httpserver):
    start = this_hour()  # once: the hour may turn during the test
    body = em_forecast("DE", [300] * 25, start=start)
    body["forecast"][3]["carbonIntensity"] = None
    httpserver.expect_request("/v3/carbon-intensity/forecast").respond_with_json(body)
    fc = hook.get_forecast()
    assert len(fc) == 24 and fc.end == start + timedelta(hours=25)


def test_latest_with_coordinates_and_flags(hook, httpserver):
    httpserver.expect_request(
        "/v3/carbon-intensity/latest",
        query_string={
            "lat": "48.1",
            "lon": "11.6",
            **NO_CALLER_LOOKUP,
            "temporalGranularity": "hourly",
            "emissionFactorType": "direct",
            "disableEstimations": "true",
        },
        headers={"auth-token": TOKEN},
    ).respond_with_json(LATEST)
    fc = hook.get_latest(lat=48.1, lon=11.6)
    assert fc.zone == "DE" and fc.values.tolist() == [302.0] and fc.estimated.tolist() == [True]
    assert fc.start == datetime(2024, 3, 6, 19, tzinfo=timezone.utc) and fc.end == fc.start + timedelta(hours=1)


@pytest.mark.parametrize(
    ("value", "sent"),
    [("false", "false"), ("False", "false"), ("true", "true"), ("1", "true"), (False, "false"), (True, "true")],
)
def test_disable_estimations_reads_strings_as_words(httpserver, connection, value, sent):
    """Extras from a URI or an environment variable are strings, and bool("false") is true."""
    connection(
        "em_flag",
        "electricitymaps",
        httpserver.url_for("/v3"),
        password=TOKEN,
        extra={"zone": "DE", "disable_estimations": value},
    )
    httpserver.expect_request(
        "/v3/carbon-intensity/latest",
        query_string={
            "zone": "DE",
            **NO_CALLER_LOOKUP,
            "temporalGranularity": "hourly",
            "emissionFactorType": "lifecycle",
            "disableEstimations": sent,
        },
    ).respond_with_json(LATEST)
    assert ElectricityMapsHook("em_flag").get_latest().values.tolist() == [302.0]


def test_a_flag_that_is_not_a_word_is_refused(httpserver, connection):
    connection(
        "em_flag",
        "electricitymaps",
        httpserver.url_for("/v3"),
        password=TOKEN,
        extra={"zone": "DE", "disable_estimations": "maybe"},
    )
    with pytest.raises(InvalidRequestError, match="disable_estimations='maybe' is not true or false"):
        ElectricityMapsHook("em_flag").get_latest()
    assert httpserver.log == []


def test_history_is_chunked_by_ten_days_and_skips_nulls(hook, httpserver):
    start = datetime(2024, 1, 1, tzinfo=timezone.utc)
    end = start + timedelta(days=12)

    def handler(request):
        lo = datetime.fromisoformat(request.args["start"].replace("Z", "+00:00"))
        hi = datetime.fromisoformat(request.args["end"].replace("Z", "+00:00"))
        data = []
        t = lo
        while t <= hi:  # inclusive end: neighbouring chunks share a point
            value = None if t == start + timedelta(hours=5) else 200 + t.hour
            data.append(
                {
                    "zone": "DE",
                    "carbonIntensity": value,
                    "datetime": iso_z(t),
                    "isEstimated": t.hour == 3,
                    "updatedAt": iso_z(t),
                    "emissionFactorType": "direct",
                    "estimationMethod": None,
                }
            )
            t += timedelta(hours=1)
        return Response(
            json.dumps({"zone": "DE", "data": data, "temporalGranularity": "hourly"}), content_type="application/json"
        )

    httpserver.expect_request("/v3/carbon-intensity/past-range").respond_with_handler(handler)
    fc = hook.get_history(start=start, end=end)
    calls = requests_to(httpserver, "/v3/carbon-intensity/past-range")
    assert [(r.args["start"], r.args["end"]) for r in calls] == [
        ("2024-01-01T00:00:00Z", "2024-01-11T00:00:00Z"),
        ("2024-01-11T00:00:00Z", "2024-01-13T00:00:00Z"),
    ]
    assert all(r.args["emissionFactorType"] == "direct" and r.args["disableEstimations"] == "true" for r in calls)
    assert len(fc) == 12 * 24 - 1  # every hour once, the null one skipped
    assert fc.start == start and fc.end == end
    assert fc.estimated.sum() == 12


def test_list_zones_and_forecast_entitlement(hook, httpserver):
    httpserver.expect_request("/v3/zones", headers={"auth-token": TOKEN}).respond_with_json(
        {
            "DE": {"zoneName": "Germany", "access": ["*"]},
            "PT": {
                "zoneName": "Portugal",
                "countryName": "Portugal",
                "access": ["carbon-intensity/latest", "carbon-intensity/history"],
            },
        }
    )
    zones = hook.list_zones()
    assert zones["DE"].forecast and not zones["PT"].forecast
    assert zones["PT"].country == "Portugal"


def test_not_entitled_message_says_what_to_do(hook, httpserver):
    httpserver.expect_request("/v3/carbon-intensity/forecast").respond_with_json(
        {
            "error": "Request unauthorized for zoneKey=PT,requestType=forecast.",
            "message": "You do not have access to this specific endpoint for this specific zone.",
        },
        status=401,
    )
    with pytest.raises(NotEntitledError) as info:
        hook.get_forecast("PT")
    text = str(info.value)
    assert "electricitymaps, HTTP 401, zone PT: Request unauthorized for zoneKey=PT" in text
    assert "plan does not include carbon-intensity/forecast for zone PT" in text
    assert "list_zones()" in text and "free tier" in text


def test_other_401_mentions_rate_limiting(hook, httpserver):
    httpserver.expect_request("/v3/carbon-intensity/forecast").respond_with_json({"error": "Unauthorized"}, status=401)
    with pytest.raises(AuthenticationError, match="also answers 401 when a plan's rate is exceeded"):
        hook.get_forecast()


def test_404_no_data(hook, httpserver):
    httpserver.expect_request("/v3/carbon-intensity/latest").respond_with_json(
        {"status": "error", "message": "No recent data available for this zone"}, status=404
    )
    with pytest.raises(InvalidRequestError, match="No recent data available") as info:
        hook.get_latest("DK-BHM")
    assert info.value.attempts == 1


def test_missing_token(httpserver, connection):
    connection("em_notoken", "electricitymaps", httpserver.url_for("/v3"))
    with pytest.raises(AuthenticationError, match="no API token"):
        ElectricityMapsHook("em_notoken").get_latest("DE")
    assert httpserver.log == []


def test_default_host_is_the_public_api(connection):
    connection("em_public", "electricitymaps", "", password=TOKEN)
    assert ElectricityMapsHook("em_public").base_url == "https://api.electricitymaps.com/v3"


def test_unknown_granularity_setting(httpserver, connection):
    connection("em_bad", "electricitymaps", httpserver.url_for("/v3"), password=TOKEN, extra={"granularity": "daily"})
    with pytest.raises(InvalidRequestError, match="granularity 'daily'"):
        ElectricityMapsHook("em_bad").get_forecast("DE")


def test_test_connection(hook, httpserver):
    httpserver.expect_request("/v3/zones").respond_with_json({"DE": {"zoneName": "Germany", "access": ["*"]}})
    httpserver.expect_request("/v3/carbon-intensity/latest").respond_with_json(LATEST)
    assert hook.test_connection() == (
        True,
        "Electricity Maps: token accepted; DE is at 302 gCO2eq/kWh now; 1 zones available, 1 with forecasts",
    )


def test_test_connection_reports_a_refused_token(hook, httpserver):
    httpserver.expect_request("/v3/zones").respond_with_json({"DE": {"zoneName": "Germany", "access": ["*"]}})
    httpserver.expect_request("/v3/carbon-intensity/latest").respond_with_json(
        {"error": "Invalid auth-token"}, status=401
    )
    ok, message = hook.test_connection()
    assert not ok and "Invalid auth-token" in message and TOKEN not in message
