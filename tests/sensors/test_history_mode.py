"""Plans without a forecast: the sensor and the plan operator against a server in Electricity Maps format that
refuses forecasts for the token's plan (401 "Request unauthorized for zoneKey=...") and serves past-range history;
the plan comes from forecast_from_history, and the record says so."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from werkzeug import Request, Response

from airflow_provider_carbon.operators.plan import CarbonPlanOperator
from tests.em_server import TOKEN, iso_z
from tests.sensors.test_carbon_window import defer, sensor
from tests.waiting import Clock, context, run_trigger

T0 = datetime(2025, 6, 1, 22, tzinfo=timezone.utc)  # midnight in Berlin
H = timedelta(hours=1)


def observed(moment: datetime) -> float:
    """Every day the same: 100 g/kWh from 03:00 to 05:00 UTC, 400 otherwise."""
    return 100.0 if 3 <= moment.hour < 5 else 400.0


class FreeTier:
    """Electricity Maps as a free-tier token sees it: latest and past-range answer, forecast is not in the plan."""

    def __init__(self, httpserver, *, history: bool = True) -> None:
        self.calls: list[str] = []
        self.history = history
        httpserver.expect_request("/v3/carbon-intensity/forecast").respond_with_handler(self._forecast)
        httpserver.expect_request("/v3/carbon-intensity/past-range").respond_with_handler(self._past_range)
        httpserver.expect_request("/v3/carbon-intensity/latest").respond_with_handler(self._latest)
        self.url = httpserver.url_for("/v3")

    def _forecast(self, request: Request) -> Response:
        self.calls.append("forecast")
        body = {"error": "Request unauthorized for zoneKey=DE,requestType=forecast."}
        return Response(json.dumps(body), status=401, content_type="application/json")

    def _latest(self, request: Request) -> Response:
        self.calls.append("latest")
        now = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
        body = {"zone": "DE", "carbonIntensity": observed(now), "datetime": iso_z(now), "updatedAt": iso_z(now),
                "isEstimated": False, "temporalGranularity": "hourly", "emissionFactorType": "lifecycle"}  # fmt: skip
        return Response(json.dumps(body), content_type="application/json")

    def _past_range(self, request: Request) -> Response:
        self.calls.append("past-range")
        if request.headers.get("auth-token") != TOKEN:
            return Response(json.dumps({"error": "Invalid auth-token"}), status=401, content_type="application/json")
        if not self.history:
            body = {"error": "Request unauthorized for zoneKey=DE,requestType=past-range."}
            return Response(json.dumps(body), status=401, content_type="application/json")
        lo = datetime.fromisoformat(request.args["start"].replace("Z", "+00:00"))
        hi = datetime.fromisoformat(request.args["end"].replace("Z", "+00:00"))
        data, t = [], lo
        while t <= hi:
            data.append({"zone": "DE", "carbonIntensity": observed(t), "datetime": iso_z(t), "isEstimated": False})
            t += H
        body = {"zone": "DE", "data": data, "temporalGranularity": "hourly"}
        return Response(json.dumps(body), content_type="application/json")


@pytest.fixture
def free_tier(httpserver, monkeypatch):
    from airflow_provider_carbon.hooks.cache import forecast_cache

    forecast_cache.clear()
    server = FreeTier(httpserver)
    conn = {"conn_type": "electricitymaps", "host": server.url, "password": TOKEN,
            "extra": {"zone": "DE", "retry_backoff": 0.01, "max_retry_wait": 2, "timeout": 5}}  # fmt: skip
    monkeypatch.setenv("AIRFLOW_CONN_GRID", json.dumps(conn))
    return server


def test_a_plan_without_forecasts_plans_from_history_and_records_it(free_tier):
    ctx = context(T0)
    with Clock(T0 + timedelta(minutes=7)):
        deferred = defer(sensor(), ctx)
    record = ctx["ti"].xcom["carbon_decision"]
    assert record["used_fallback"] is False and record["reason"] == "optimum"
    assert record["planned_start"] == (T0 + 5 * H).isoformat()  # 03:00 UTC, the valley every day has
    assert record["expected_intensity"] == pytest.approx(100.0)
    assert record["forecast_source"] == "history-model" and record["history_days"] == 14
    assert record["source"] == "electricitymaps" and record["zone"] == "DE"
    assert free_tier.calls[0] == "forecast" and "past-range" in free_tier.calls
    assert deferred.trigger.decision["forecast_source"] == "history-model"


def test_the_trigger_of_a_history_plan_does_not_re_check_a_forecast_the_plan_has_not(free_tier, monkeypatch):
    """Re-checks every 15 min would each ask for the forecast the service refused: a history plan waits for its
    start, where the deviation check still reads the current intensity."""
    ctx = context(T0)
    with Clock(T0 + timedelta(minutes=7)) as clock:
        deferred = defer(sensor(), ctx)
        before = len(free_tier.calls)
        event = run_trigger(deferred.trigger, clock, monkeypatch)
    assert event.payload["status"] == "release"
    released = event.payload["decision"]
    assert released["released_at"] == (T0 + 5 * H).isoformat() and released["replans"] == []
    assert free_tier.calls[before:] == ["latest"]


def test_history_is_cached_for_the_next_sensor_of_the_zone(free_tier):
    with Clock(T0 + timedelta(minutes=7)):
        defer(sensor(), context(T0))
        asked = free_tier.calls.count("past-range")
        defer(sensor(task_id="second"), context(T0))
    assert asked == 6  # 57 days in the 10-day chunks past-range allows
    assert free_tier.calls.count("past-range") == asked


def test_forecast_mode_history_never_asks_for_a_forecast(free_tier):
    ctx = context(T0)
    with Clock(T0 + timedelta(minutes=7)):
        defer(sensor(forecast_mode="history"), ctx)
    assert "forecast" not in free_tier.calls
    assert ctx["ti"].xcom["carbon_decision"]["forecast_source"] == "history-model"


def test_forecast_mode_forecast_falls_back_as_before(free_tier):
    ctx = context(T0)
    with Clock(T0 + timedelta(minutes=7)):
        defer(sensor(forecast_mode="forecast", fallback="02:00"), ctx)
    record = ctx["ti"].xcom["carbon_decision"]
    assert record["used_fallback"] is True and record["fallback_reason"] == "not_entitled"
    assert "past-range" not in free_tier.calls and record["forecast_source"] is None


def test_without_history_either_the_record_keeps_why_there_was_no_forecast(free_tier):
    free_tier.history = False
    ctx = context(T0)
    with Clock(T0 + timedelta(minutes=7)):
        defer(sensor(fallback="02:00"), ctx)
    record = ctx["ti"].xcom["carbon_decision"]
    assert record["used_fallback"] is True and record["fallback_reason"] == "not_entitled"
    assert "requestType=forecast" in record["fallback_error"]
    assert record["planned_start"] == datetime(2025, 6, 2, 0, tzinfo=timezone.utc).isoformat()  # 02:00 Berlin


def test_the_plan_operator_plans_from_history_too(free_tier):
    ctx = context(T0)
    with Clock(T0 + timedelta(minutes=7)):
        result = CarbonPlanOperator(
            task_id="plan", carbon_conn_id="grid", zone="DE", expected_duration=2 * H, max_delay=10 * H
        ).execute(ctx)
    assert result["forecast_source"] == "history-model" and result["planned_start"] == (T0 + 5 * H).isoformat()


def test_a_typo_in_forecast_mode_fails_when_the_dag_is_parsed():
    with pytest.raises(ValueError, match="forecast_mode='histroy'"):
        sensor(forecast_mode="histroy")
