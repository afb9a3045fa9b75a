from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone

import pytest
import time_machine
from werkzeug import Response

from airflow_provider_carbon.core.forecast import Signal
from airflow_provider_carbon.exceptions import AuthenticationError, BadPayloadError, NotEntitledError
from airflow_provider_carbon.hooks.watttime import LBS_PER_MWH_TO_G_PER_KWH, WattTimeHook
from tests.hooks.conftest import requests_to

PASSWORD = "wt-password-8c1d"


def forecast_body(start, values, region="CAISO_NORTH", units="lbs_co2_per_mwh"):
    return {
        "data": [
            {"point_time": (start + timedelta(minutes=5 * i)).isoformat(), "value": v} for i, v in enumerate(values)
        ],
        "meta": {
            "region": region,
            "signal_type": "co2_moer",
            "units": units,
            "data_point_period_seconds": 300,
            "generated_at": start.isoformat(),
            "generated_at_period_seconds": 300,
            "model": {"date": "2023-03-01", "type": "binned_regression"},
            "warnings": [{"type": "EXAMPLE_WARNING", "message": "a warning from WattTime"}],
        },
    }


def now5():
    now = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    return now - timedelta(minutes=now.minute % 5)


@pytest.fixture
def hook(httpserver, connection):
    tokens = iter(f"bearer-{i}" for i in range(100))
    httpserver.expect_request("/login").respond_with_handler(
        lambda request: Response(json.dumps({"token": next(tokens)}), content_type="application/json")
    )
    connection(
        "wt_test", "watttime", httpserver.url_for(""), login="ada", password=PASSWORD, extra={"region": "CAISO_NORTH"}
    )
    return WattTimeHook("wt_test")


def test_login_with_basic_auth_then_bearer(hook, httpserver):
    start = now5()
    httpserver.expect_request(
        "/v3/forecast",
        query_string={"region": "CAISO_NORTH", "signal_type": "co2_moer", "horizon_hours": "24"},
        headers={"Authorization": "Bearer bearer-0"},
    ).respond_with_json(forecast_body(start, [1000.0] * 288))
    fc = hook.get_forecast()
    (login,) = requests_to(httpserver, "/login")
    assert login.headers["Authorization"] == "Basic " + base64.b64encode(f"ada:{PASSWORD}".encode()).decode()
    assert fc.signal is Signal.MARGINAL and fc.zone == "CAISO_NORTH"
    assert fc.values[0] == pytest.approx(1000 * LBS_PER_MWH_TO_G_PER_KWH) == pytest.approx(453.59237)
    assert fc.end == start + timedelta(minutes=5 * 288) and fc.generated_at == start


def test_token_is_reused_until_it_expires(hook, httpserver):
    httpserver.expect_request("/v3/forecast").respond_with_handler(
        lambda request: Response(json.dumps(forecast_body(now5(), [900.0] * 300)), content_type="application/json")
    )
    with time_machine.travel(datetime.now(timezone.utc), tick=True) as clock:
        hook.get_forecast(use_cache=False)
        clock.shift(timedelta(minutes=20))
        WattTimeHook("wt_test").get_forecast(use_cache=False)  # another hook in the process shares the token
        assert len(requests_to(httpserver, "/login")) == 1
        clock.shift(timedelta(minutes=20))  # 40 min after login: past its 30 min lifetime
        hook.get_forecast(use_cache=False)
    assert len(requests_to(httpserver, "/login")) == 2
    auth = [r.headers["Authorization"] for r in requests_to(httpserver, "/v3/forecast")]
    assert auth == ["Bearer bearer-0", "Bearer bearer-0", "Bearer bearer-1"]


def test_a_refused_token_is_renewed_once(hook, httpserver):
    def handler(request):
        if request.headers["Authorization"] == "Bearer bearer-0":
            return Response(json.dumps({"error": "token expired"}), status=401, content_type="application/json")
        return Response(json.dumps(forecast_body(now5(), [900.0] * 300)), content_type="application/json")

    httpserver.expect_request("/v3/forecast").respond_with_handler(handler)
    assert len(hook.get_forecast()) == 300
    assert len(requests_to(httpserver, "/login")) == 2


def test_login_refused(httpserver, connection):
    httpserver.expect_request("/login").respond_with_data("<html>403 Forbidden</html>", status=403)
    connection(
        "wt_bad", "watttime", httpserver.url_for(""), login="ada", password=PASSWORD, extra={"region": "CAISO_NORTH"}
    )
    with pytest.raises(AuthenticationError, match="refused the username/password") as info:
        WattTimeHook("wt_bad").get_forecast()
    assert info.value.attempts == 1 and PASSWORD not in str(info.value)
    assert requests_to(httpserver, "/v3/forecast") == []


@pytest.mark.parametrize("prefix", ["", "/wt"])
def test_a_refused_login_is_not_retried(httpserver, connection, prefix):
    """A wrong password answers 401 at /login: one login request (WattTime limits logins), not a 'renewal' retry;
    also when the host carries a path (a gateway in front of WattTime)."""
    httpserver.expect_request(f"{prefix}/login").respond_with_json({"error": "unauthorized"}, status=401)
    connection(
        "wt_wrong",
        "watttime",
        httpserver.url_for(prefix),
        login="ada",
        password=PASSWORD,
        extra={"region": "CAISO_NORTH"},
    )
    with pytest.raises(AuthenticationError, match="refused the username/password"):
        WattTimeHook("wt_wrong").get_forecast()
    assert len(requests_to(httpserver, f"{prefix}/login")) == 1


def test_missing_credentials(httpserver, connection):
    connection("wt_none", "watttime", httpserver.url_for(""), extra={"region": "CAISO_NORTH"})
    with pytest.raises(AuthenticationError, match="needs the WattTime username"):
        WattTimeHook("wt_none").get_forecast()


def test_scope_error_hint(hook, httpserver):
    httpserver.expect_request("/v3/forecast").respond_with_json(
        {
            "error": "Invalid query parameters",
            "message": "Invalid scope. You do not have sufficient access to this resource.",
        },
        status=403,
    )
    with pytest.raises(NotEntitledError, match="new accounts may read only CAISO_NORTH"):
        hook.get_forecast("PJM_NJ")


def test_region_from_coordinates(hook, httpserver):
    httpserver.expect_request(
        "/v3/region-from-loc", query_string={"latitude": "42.37", "longitude": "-72.52", "signal_type": "co2_moer"}
    ).respond_with_json(
        {"region": "ISONE_WCMA", "region_full_name": "ISONE Western/Central Massachusetts", "signal_type": "co2_moer"}
    )
    httpserver.expect_request(
        "/v3/forecast", query_string={"region": "ISONE_WCMA", "signal_type": "co2_moer", "horizon_hours": "0"}
    ).respond_with_json(forecast_body(now5(), [800.0], region="ISONE_WCMA"))
    latest = hook.get_latest(lat=42.37, lon=-72.52)
    assert latest.zone == "ISONE_WCMA" and len(latest) == 1
    assert latest.end - latest.start == timedelta(minutes=5)
    hook.get_latest(lat=42.37, lon=-72.52)
    assert len(requests_to(httpserver, "/v3/region-from-loc")) == 1  # looked up once per process


def test_history_in_30_day_chunks(hook, httpserver):
    start = datetime(2024, 1, 1, tzinfo=timezone.utc)
    end = start + timedelta(days=40)

    def handler(request):
        lo, hi = (datetime.fromisoformat(request.args[k]) for k in ("start", "end"))
        n = int((hi - lo) / timedelta(minutes=5)) + 1  # bounds are inclusive
        return Response(json.dumps(forecast_body(lo, [700.0] * n)), content_type="application/json")

    httpserver.expect_request("/v3/historical").respond_with_handler(handler)
    fc = hook.get_history(start=start, end=end)
    calls = requests_to(httpserver, "/v3/historical")
    assert [(r.args["start"], r.args["end"]) for r in calls] == [
        ("2024-01-01T00:00:00+00:00", "2024-01-31T00:00:00+00:00"),
        ("2024-01-31T00:00:00+00:00", "2024-02-10T00:00:00+00:00"),
    ]
    assert len(fc) == 40 * 288 and fc.start == start and fc.end == end


def test_average_signal_type(httpserver, connection):
    tokens = iter(["t1"])
    httpserver.expect_request("/login").respond_with_handler(
        lambda r: Response(json.dumps({"token": next(tokens)}), content_type="application/json")
    )
    connection(
        "wt_aoer",
        "watttime",
        httpserver.url_for(""),
        login="ada",
        password=PASSWORD,
        extra={"region": "CAISO_NORTH", "signal_type": "co2_aoer"},
    )
    httpserver.expect_request("/v3/historical").respond_with_json(
        forecast_body(datetime(2024, 1, 1, tzinfo=timezone.utc), [500.0] * 12)
    )
    fc = WattTimeHook("wt_aoer").get_history(
        start=datetime(2024, 1, 1, tzinfo=timezone.utc), end=datetime(2024, 1, 1, 1, tzinfo=timezone.utc)
    )
    assert fc.signal is Signal.AVERAGE
    assert requests_to(httpserver, "/v3/historical")[0].args["signal_type"] == "co2_aoer"


def test_percentile_is_not_an_emissions_rate(hook, httpserver):
    httpserver.expect_request("/v3/forecast").respond_with_json(forecast_body(now5(), [50.0] * 300, units="percentile"))
    with pytest.raises(BadPayloadError, match="lbs_co2_per_mwh"):
        hook.get_forecast()


def test_token_and_password_never_logged(hook, httpserver, logs):
    httpserver.expect_request("/v3/forecast").respond_with_json({"error": "bad bearer-0"}, status=400)
    with pytest.raises(Exception) as info:
        hook.get_forecast()
    text = logs() + str(info.value)
    assert "bearer-0" not in text and PASSWORD not in text


def test_test_connection(hook, httpserver):
    httpserver.expect_request("/v3/my-access").respond_with_json(
        {
            "signal_types": [
                {
                    "signal_type": "co2_moer",
                    "regions": [{"region": "CAISO_NORTH", "endpoints": []}, {"region": "PJM_NJ", "endpoints": []}],
                }
            ]
        }
    )
    assert hook.test_connection() == (True, "WattTime: logged in; the account may read 2 regions")


def test_a_slow_login_in_another_thread_does_not_hold_a_caller_past_its_deadline(httpserver, connection):
    """One thread logs in (slowly) holding the token lock; another call waits for it only until its deadline."""
    import threading
    import time as clock

    from airflow_provider_carbon.exceptions import ServiceUnavailableError

    def slow_login(request):
        clock.sleep(1.8)  # under the connection's 2 s read timeout: one slow login, not a retried one
        return Response(json.dumps({"token": "bearer-token-for-tests"}), content_type="application/json")

    httpserver.expect_request("/login").respond_with_handler(slow_login)
    connection("wt_slow", "watttime", httpserver.url_for(""), login="user", password="password-for-tests")
    first = threading.Thread(target=lambda: _swallow(lambda: WattTimeHook("wt_slow").get_forecast("CAISO_NORTH")))
    first.start()
    clock.sleep(0.3)  # the first call is inside its login now
    started = clock.monotonic()
    with pytest.raises(ServiceUnavailableError, match="login did not finish before the deadline"):
        # another region: not the same forecast, which the cache's single-flight would already hold it back for
        WattTimeHook("wt_slow").get_forecast(
            "CAISO_SOUTH", deadline=datetime.now(timezone.utc) + timedelta(seconds=0.8)
        )
    assert clock.monotonic() - started < 1.4
    first.join(10)


def _swallow(call):
    import contextlib

    with contextlib.suppress(Exception):  # the first call's own outcome (no forecast route here) is not the point
        call()
