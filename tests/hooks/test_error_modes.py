"""Every error mode, for every service, against a real local HTTP server speaking that service's format.

Each service adapter knows the service's forecast route, a valid answer, and how that service words a bad token or
a missing entitlement; the same table of modes then runs against all four hooks, checking the typed error and the
number of requests the hook made (retries only for connection errors, timeouts, 5xx and 429).
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

import pytest
from werkzeug import Request, Response

from airflow_provider_carbon.exceptions import (
    AuthenticationError,
    BadPayloadError,
    NotEntitledError,
    RateLimitedError,
    ServiceUnavailableError,
)
from airflow_provider_carbon.hooks.carbon_aware_sdk import CarbonAwareSdkHook
from airflow_provider_carbon.hooks.electricitymaps import ElectricityMapsHook
from airflow_provider_carbon.hooks.uk_carbon_intensity import UkCarbonIntensityHook
from airflow_provider_carbon.hooks.watttime import WattTimeHook
from tests.hooks.conftest import TOKEN, em_forecast, this_hour

NOW_VALUES = [420, 380, 300, 250, 210, 190, 230, 300] * 3 + [400]  # 25 hourly points, like EM's 24 h forecast


def uk_period(start: datetime, value: float) -> dict:
    fmt = "%Y-%m-%dT%H:%MZ"
    return {
        "from": start.strftime(fmt),
        "to": (start + timedelta(minutes=30)).strftime(fmt),
        "intensity": {"forecast": value, "actual": None, "index": "moderate"},
    }


class EM:
    name = "electricitymaps"
    path = "/v3/carbon-intensity/forecast"
    bad_token = (401, {"error": "Invalid auth-token"}, AuthenticationError, 1)
    not_entitled = (
        401,
        {
            "error": "Request unauthorized for zoneKey=DE,requestType=forecast.",
            "message": "You do not have access to this specific endpoint for this specific zone.",
        },
        NotEntitledError,
        1,
    )

    def hook(self, httpserver, connection):
        connection("em", "electricitymaps", httpserver.url_for("/v3"), password=TOKEN, extra={"zone": "DE"})
        return ElectricityMapsHook("em")

    def body(self, values):
        return em_forecast("DE", values)

    def call(self, hook, **kwargs):
        return hook.get_forecast(**kwargs)


class CASDK:
    name = "carbon_aware_sdk"
    path = "/emissions/forecasts/current"
    upstream = {
        "type": "https://tools.ietf.org/html/rfc7231#section-6.5.1",
        "status": 401,
        "title": "ElectricityMapsClientHttpException",
        "traceId": "00-abc-01",
    }
    bad_token = (401, {**upstream, "detail": '{"error":"Invalid auth-token"}'}, AuthenticationError, 1)
    not_entitled = (
        401,
        {**upstream, "detail": '{"error":"Request unauthorized for zoneKey=DE,requestType=forecast."}'},
        NotEntitledError,
        1,
    )

    def hook(self, httpserver, connection):
        connection("casdk", "carbon_aware_sdk", httpserver.url_for(""), extra={"location": "germanywestcentral"})
        return CarbonAwareSdkHook("casdk")

    def body(self, values):
        start = this_hour()
        return [
            {
                "requestedAt": start.isoformat(),
                "generatedAt": start.isoformat(),
                "location": "germanywestcentral",
                "dataStartAt": start.isoformat(),
                "dataEndAt": (start + timedelta(hours=len(values) - 1)).isoformat(),
                "windowSize": 0,
                "optimalDataPoints": [],
                "forecastData": [
                    {
                        "location": "DE",
                        "timestamp": (start + timedelta(hours=i)).isoformat(),
                        "duration": 60,
                        "value": v,
                    }
                    for i, v in enumerate(values)
                ],
            }
        ]

    def call(self, hook, **kwargs):
        return hook.get_forecast(**kwargs)


class WT:
    name = "watttime"
    path = "/v3/forecast"
    # a refused token is renewed once by logging in again, so a token that stays refused costs two data requests
    bad_token = (401, {"error": "Unauthorized"}, AuthenticationError, 2)
    not_entitled = (
        403,
        {
            "error": "Invalid query parameters",
            "message": "Invalid scope. You do not have sufficient access to this resource.",
        },
        NotEntitledError,
        1,
    )

    def hook(self, httpserver, connection):
        httpserver.expect_request("/login").respond_with_json({"token": "wt-bearer-token-1"})
        connection(
            "wt", "watttime", httpserver.url_for(""), login="ada", password=TOKEN, extra={"region": "CAISO_NORTH"}
        )
        return WattTimeHook("wt")

    def body(self, values):
        start = datetime.now(timezone.utc).replace(second=0, microsecond=0)
        start -= timedelta(minutes=start.minute % 5)
        # 5-minute data: spread the hourly pattern over 12 points per hour
        points = [v for v in values for _ in range(12)]
        return {
            "data": [
                {"point_time": (start + timedelta(minutes=5 * i)).isoformat(), "value": v / 0.45359237}
                for i, v in enumerate(points)
            ],
            "meta": {
                "region": "CAISO_NORTH",
                "signal_type": "co2_moer",
                "units": "lbs_co2_per_mwh",
                "data_point_period_seconds": 300,
                "generated_at": start.isoformat(),
                "warnings": [],
            },
        }

    def call(self, hook, **kwargs):
        return hook.get_forecast(**kwargs)


class UK:
    name = "uk_carbon_intensity"
    path = None  # the path carries the time: matched by prefix below
    bad_token = None  # the UK API has no authentication
    not_entitled = None

    def hook(self, httpserver, connection):
        connection("uk", "uk_carbon_intensity", httpserver.url_for(""))
        return UkCarbonIntensityHook("uk")

    def body(self, values):
        now = datetime.now(timezone.utc)
        start = now.replace(minute=30 if now.minute >= 30 else 0, second=0, microsecond=0)
        half_hours = [v for v in values for _ in range(2)]
        return {"data": [uk_period(start + timedelta(minutes=30 * i), v) for i, v in enumerate(half_hours)]}

    def call(self, hook, **kwargs):
        return hook.get_forecast(**kwargs)


SERVICES = [EM(), CASDK(), WT(), UK()]


def serve(httpserver, api, responses):
    """Serve ``responses`` in turn on the service's forecast route (the last one repeats); count the requests."""
    calls: list[Request] = []

    def handler(request: Request) -> Response:
        calls.append(request)
        spec = responses[min(len(calls) - 1, len(responses) - 1)]
        if callable(spec):
            return spec(request)
        status, body, headers = spec
        payload = body if isinstance(body, (str, bytes)) else json.dumps(body)
        return Response(payload, status=status, headers=headers or {}, content_type="application/json")

    if api.path is None:
        import re

        httpserver.expect_request(re.compile(r"^/intensity/.+/fw24h$")).respond_with_handler(handler)
    else:
        httpserver.expect_request(api.path).respond_with_handler(handler)
    return calls


def ok(api, values=NOW_VALUES):
    return (200, api.body(values), None)


@pytest.fixture(params=SERVICES, ids=lambda s: s.name)
def api(request):
    return request.param


@pytest.fixture(params=[s for s in SERVICES if s.bad_token], ids=lambda s: s.name)
def api_with_auth(request):
    """The services that have credentials and plans (the UK API has neither)."""
    return request.param


def test_valid_answer_gives_a_validated_forecast(api, httpserver, connection):
    hook = api.hook(httpserver, connection)
    calls = serve(httpserver, api, [ok(api)])
    forecast = api.call(hook)
    assert len(calls) == 1
    assert forecast.source == api.name and forecast.unit == "gCO2eq/kWh"
    assert forecast.values.max() == pytest.approx(420) and forecast.values.min() == pytest.approx(190)
    assert calls[0].headers["User-Agent"].startswith("airflow-provider-carbon/0.1.0 (+https://")


def test_500_is_retried_then_unavailable(api, httpserver, connection):
    hook = api.hook(httpserver, connection)
    calls = serve(
        httpserver,
        api,
        [(500, {"error": {"code": "500 Internal Server Error", "message": "Requested resource not found."}}, None)],
    )
    with pytest.raises(ServiceUnavailableError) as info:
        api.call(hook)
    assert len(calls) == 4 and info.value.attempts == 4 and info.value.status == 500
    assert "after 4 attempts" in str(info.value)


def test_503_then_success(api, httpserver, connection):
    hook = api.hook(httpserver, connection)
    calls = serve(httpserver, api, [(503, "Service Unavailable", {"Content-Type": "text/plain"}), ok(api)])
    assert len(api.call(hook)) > 0
    assert len(calls) == 2


def test_429_honours_retry_after(api, httpserver, connection, logs):
    hook = api.hook(httpserver, connection)
    calls = serve(httpserver, api, [(429, {"error": "Too Many Requests"}, {"Retry-After": "1"}), ok(api)])
    started = time.monotonic()
    api.call(hook)
    assert len(calls) == 2
    assert time.monotonic() - started >= 1.0
    assert "retrying in 1.00 s" in logs()


def test_429_asking_longer_than_the_budget_fails_at_once(api, httpserver, connection):
    hook = api.hook(httpserver, connection)
    calls = serve(httpserver, api, [(429, {"error": "Too Many Requests"}, {"Retry-After": "120"})])
    with pytest.raises(RateLimitedError) as info:
        api.call(hook)
    assert len(calls) == 1 and info.value.retry_after == 120
    assert "the service asked to wait 120 s" in str(info.value)


def test_timeout_is_retried_then_unavailable(api, httpserver, connection):
    hook = api.hook(httpserver, connection)
    hook._overrides.update(timeout=0.3, max_attempts=2)

    def slow(request):
        time.sleep(0.8)
        return Response(json.dumps(api.body(NOW_VALUES)), content_type="application/json")

    calls = serve(httpserver, api, [slow])
    with pytest.raises(ServiceUnavailableError, match=r"no answer from .* within 0.3 s") as info:
        api.call(hook)
    assert info.value.attempts == 2
    time.sleep(0.9)  # let the server finish the second slow answer
    assert len(calls) == 2


def test_bad_token(api_with_auth, httpserver, connection):
    api = api_with_auth
    status, body, error, requests_made = api.bad_token
    hook = api.hook(httpserver, connection)
    calls = serve(httpserver, api, [(status, body, None)])
    with pytest.raises(error) as info:
        api.call(hook)
    assert len(calls) == requests_made and info.value.status == status
    assert TOKEN not in str(info.value)


def test_not_entitled(api_with_auth, httpserver, connection):
    api = api_with_auth
    status, body, error, requests_made = api.not_entitled
    hook = api.hook(httpserver, connection)
    calls = serve(httpserver, api, [(status, body, None)])
    with pytest.raises(error) as info:
        api.call(hook)
    assert len(calls) == requests_made
    assert info.value.hint and "not" in info.value.hint


@pytest.mark.parametrize(
    "body", ["", "{}", '{"data": []}', "[]"], ids=["no-body", "empty-object", "empty-data", "empty-list"]
)
def test_empty_200(api, httpserver, connection, body):
    hook = api.hook(httpserver, connection)
    calls = serve(httpserver, api, [(200, body, None)])
    with pytest.raises(BadPayloadError) as info:
        api.call(hook)
    # bad_type: {"data": []} where the Carbon Aware SDK sends a list
    assert info.value.reason in ("empty", "missing_field", "bad_type")
    assert len(calls) == 1  # bad data is not retried: it is treated like an outage by the caller's fallback


def test_malformed_json(api, httpserver, connection):
    hook = api.hook(httpserver, connection)
    calls = serve(httpserver, api, [(200, '{"forecast": [{"carbonIntensity": 3', None)])
    with pytest.raises(BadPayloadError, match="malformed JSON") as info:
        api.call(hook)
    assert info.value.reason == "malformed_json" and len(calls) == 1


def test_all_zeros(api, httpserver, connection):
    hook = api.hook(httpserver, connection)
    serve(httpserver, api, [ok(api, [0] * 25)])
    with pytest.raises(BadPayloadError, match="all .* values are 0") as info:
        api.call(hook)
    assert info.value.reason == "invalid_forecast"


def test_short_forecast(api, httpserver, connection):
    hook = api.hook(httpserver, connection)
    serve(httpserver, api, [ok(api, NOW_VALUES[:6])])
    with pytest.raises(BadPayloadError, match="less than the 23 h needed") as info:
        api.call(hook)
    assert info.value.reason == "short_forecast"
    # a caller that needs less accepts the same data (the UK API often ends its forecast early)
    assert len(api.call(hook, min_horizon=timedelta(hours=4))) > 0


def test_failures_are_not_cached(api, httpserver, connection):
    hook = api.hook(httpserver, connection)
    hook._overrides.update(max_attempts=1)
    calls = serve(httpserver, api, [(500, {"error": "boom"}, None), ok(api)])
    with pytest.raises(ServiceUnavailableError):
        api.call(hook)
    assert len(api.call(hook)) > 0
    assert len(api.call(hook)) > 0  # now cached
    assert len(calls) == 2


def test_connection_refused(api, httpserver, connection):
    hook = api.hook(httpserver, connection)
    hook._overrides.update(max_attempts=2)
    httpserver.stop()
    try:
        with pytest.raises(ServiceUnavailableError, match="could not connect") as info:
            api.call(hook)
        assert info.value.attempts == 2
    finally:
        httpserver.start()
