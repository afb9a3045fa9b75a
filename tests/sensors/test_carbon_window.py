"""CarbonWindowSensor against a local server in Electricity Maps format, its trigger driven by a controlled clock."""

from __future__ import annotations

import re
import threading
import time
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_carbon._compat import TaskDeferred
from airflow_provider_carbon.core.forecast import Forecast
from airflow_provider_carbon.core.windows import find_best_window
from airflow_provider_carbon.exceptions import ServiceUnavailableError
from airflow_provider_carbon.hooks.cache import forecast_cache
from airflow_provider_carbon.operators.links import ElectricityMapsZoneLink
from airflow_provider_carbon.operators.plan import CarbonPlanOperator
from airflow_provider_carbon.sensors.carbon_window import CarbonWindowSensor
from tests.em_server import FAILURE_MODES, EmGrid
from tests.waiting import Clock, context, run_trigger

T0 = datetime(2025, 6, 1, 22, tzinfo=timezone.utc)  # midnight in Berlin
H = timedelta(hours=1)
VALUES = [400, 380, 300, 200, 150, 160, 300, 350, 420, 450, 460, 470, 480, 490, 500, 510] + [520] * 20


@pytest.fixture
def grid(httpserver, monkeypatch):
    grid = EmGrid(T0, VALUES)
    grid.url = grid.install(httpserver)
    monkeypatch.setenv("AIRFLOW_CONN_GRID", grid.connection(grid.url))
    return grid


def sensor(**kwargs):
    args = {
        "task_id": "wait",
        "carbon_conn_id": "grid",
        "zone": "DE",
        "expected_duration": 2 * H,
        "max_delay": 10 * H,
        "fallback_timezone": "Europe/Berlin",
        "deferrable": True,
    }
    args.update(kwargs)
    return CarbonWindowSensor(**args)


def defer(task, ctx):
    with pytest.raises(TaskDeferred) as info:
        task.execute(ctx)
    return info.value


def optimum(grid, now, duration, latest_start):
    fc = Forecast.from_points([(grid.start + i * grid.step, v) for i, v in enumerate(grid.values)])
    return find_best_window(fc, duration, earliest=now, latest_start=latest_start)


def test_defers_to_exactly_the_optimum_and_records_the_decision(grid, monkeypatch):
    ctx = context(T0)
    with Clock(T0 + timedelta(minutes=7)) as clock:
        deferred = defer(task := sensor(), ctx)
        expected = optimum(grid, clock.now(), 2 * H, T0 + 10 * H)
        record = ctx["ti"].xcom["carbon_decision"]
        assert record["planned_start"] == expected.start.isoformat() == (T0 + 4 * H).isoformat()
        assert record["planned_end"] == (T0 + 6 * H).isoformat()
        assert record["zone"] == "DE" and record["source"] == "electricitymaps"
        assert record["signal"] == "average" and record["unit"] == "gCO2eq/kWh"
        assert record["expected_intensity"] == 155 and record["intensity_if_started_at_decision"] == pytest.approx(
            expected.baseline_intensity
        )
        assert record["expected_saving_pct"] == pytest.approx(expected.saving_pct)
        assert record["forecast_generated_at"] is not None
        assert (
            record["used_fallback"] is False and record["fallback_reason"] is None and record["fallback_error"] is None
        )
        assert record["replans"] == [] and record["latest_start"] == (T0 + 10 * H).isoformat()
        # the trigger carries only primitives, and enough time to reach the deadline
        assert deferred.method_name == "execute_complete"
        assert deferred.timeout >= 10 * H - timedelta(minutes=7)
        event = run_trigger(deferred.trigger, clock, monkeypatch)
        assert clock.now() == T0 + 4 * H  # released at the optimum, to the microsecond
    result = task.execute_complete(ctx, event.payload)
    assert result["released_at"] == (T0 + 4 * H).isoformat()
    assert result["release_reason"] == "planned_start"
    assert result["observed_intensity_at_start"] == 150
    assert ctx["ti"].xcom["carbon_decision"] == result
    assert ElectricityMapsZoneLink().get_link(task, ti_key=None) == "https://app.electricitymaps.com/zone/DE"


def test_recheck_moves_the_start_when_the_optimum_moves(grid, monkeypatch):
    ctx = context(T0)
    with Clock(T0) as clock:
        deferred = defer(sensor(recheck_interval=H), ctx)
        assert deferred.trigger.decision["planned_start"] == (T0 + 4 * H).isoformat()

        def wind_arrives():  # a new forecast: 02:00-04:00 is now cleaner
            grid.values = grid.values[:2] + [90, 90] + grid.values[4:]
            forecast_cache.clear()

        clock.at(T0 + 30 * timedelta(minutes=1), wind_arrives)
        event = run_trigger(deferred.trigger, clock, monkeypatch)
        assert clock.now() == T0 + 2 * H
    record = event.payload["decision"]
    assert [r["cause"] for r in record["replans"]] == ["re-check: the optimum moved"]
    assert record["replans"][0]["new_start"] == (T0 + 2 * H).isoformat()


def test_a_trigger_rebuilt_by_a_restarted_triggerer_rechecks_at_once(grid, monkeypatch):
    """The triggerer restarts at 01:30 and rebuilds the trigger from its serialized arguments (the plan made at
    00:00). The optimum moved meanwhile: the rebuilt trigger re-checks at once instead of an interval later."""
    from airflow_provider_carbon.triggers.carbon_window import CarbonWindowTrigger

    ctx = context(T0)
    with Clock(T0) as clock:
        deferred = defer(sensor(recheck_interval=H), ctx)
        assert deferred.trigger.decision["planned_start"] == (T0 + 4 * H).isoformat()
        clock.shift(1.5 * 3600)
        grid.values = grid.values[:2] + [90, 90] + grid.values[4:]  # 02:00-04:00 is now cleaner
        forecast_cache.clear()
        _, kwargs = deferred.trigger.serialize()
        event = run_trigger(CarbonWindowTrigger(**kwargs), clock, monkeypatch)
        assert clock.now() == T0 + 2 * H
    assert [r["cause"] for r in event.payload["decision"]["replans"]] == ["re-check: the optimum moved"]


def test_deviation_at_the_start_replans_once(grid, monkeypatch):
    grid.observed_offset[4] = 400  # forecast said 150 for 02:00-03:00; reality is far dirtier
    grid.observed_offset[5] = 400  # and at the new start too: a second check would re-plan again
    ctx = context(T0)
    with Clock(T0) as clock:
        deferred = defer(sensor(), ctx)

        def forecast_updates():  # the fresh forecast knows 02:00-03:00 is bad
            grid.values = grid.values[:4] + [400] + grid.values[5:]

        clock.at(T0 + 4 * H, forecast_updates)
        event = run_trigger(deferred.trigger, clock, monkeypatch)
        released = clock.now()
    record = event.payload["decision"]
    assert [r["cause"] for r in record["replans"]] == ["deviation: observed 400 > forecast 150 + 20 %"]
    assert released == datetime.fromisoformat(record["planned_start"]) > T0 + 4 * H
    assert released <= T0 + 10 * H


def test_no_deviation_check_across_emission_factors(grid, monkeypatch):
    """Electricity Maps forecasts are lifecycle figures; with emission_factor_type=direct the current value is
    a different quantity, so the trigger starts as planned instead of comparing the two."""
    monkeypatch.setenv("AIRFLOW_CONN_GRID", grid.connection(grid.url, emission_factor_type="direct"))
    grid.observed_offset[4] = 400  # would be a deviation if it were comparable
    ctx = context(T0)
    with Clock(T0) as clock:
        deferred = defer(sensor(), ctx)
        event = run_trigger(deferred.trigger, clock, monkeypatch)
        assert clock.now() == T0 + 4 * H
    assert event.payload["decision"]["replans"] == []
    assert not [kind for kind, _ in grid.requests if kind == "latest"]


@pytest.mark.parametrize(
    ("kwargs", "start", "reason"),
    [
        ({}, 4, "optimum"),  # 02:00-04:00 at 155
        ({"threshold": 310}, 2, "threshold"),  # the first hour at or below 310 g/kWh: 00:00 UTC
        ({"min_saving_pct": 70}, 0, "min_saving"),  # waiting saves 60 %: not enough, start now
        ({"min_saving_pct": 50}, 4, "optimum"),
        ({"finish_by": T0 + 5 * H}, 3, "optimum"),  # must end by 03:00 UTC: 01:00-03:00 at 175
    ],
)
def test_plan_parameters(grid, kwargs, start, reason):
    ctx = context(T0)
    with Clock(T0):
        deferred_or_done = sensor(**kwargs)
        record = deferred_or_done.execute(ctx) if start == 0 else defer(deferred_or_done, ctx).trigger.decision
    assert record["planned_start"] == (T0 + start * H).isoformat() and record["reason"] == reason


def test_deviation_pct_sets_how_far_reality_may_stray(grid, monkeypatch):
    grid.observed_offset[4] = 170  # 13 % above the forecast's 150 at 02:00 UTC
    original = list(grid.values)

    def fresh_forecast():  # what a re-plan at 02:00 would see: 03:00-05:00 is now the best
        grid.values = original[:4] + [170, 100, 100] + original[7:]

    for pct, replans in ((20.0, 0), (10.0, 1)):
        grid.values = list(original)
        forecast_cache.clear()
        with Clock(T0) as clock:
            deferred = defer(sensor(deviation_pct=pct), context(T0))
            clock.at(T0 + 4 * H, fresh_forecast)
            event = run_trigger(deferred.trigger, clock, monkeypatch)
        assert len(event.payload["decision"]["replans"]) == replans, pct


def test_fallback_time_is_in_the_dags_timezone_by_default(grid):
    """No fallback_timezone: 02:00 in the DAG's timezone (New York here), not the sensor default's Berlin."""
    import pendulum
    from airflow.sdk import DAG

    grid.failures.extend(["500"] * 100)
    with DAG("ny", schedule=None, start_date=pendulum.datetime(2025, 1, 1, tz="America/New_York")):
        task = sensor(fallback_timezone=None)
    with Clock(T0):  # 18:00 in New York
        record = defer(task, context(T0)).trigger.decision
    assert record["used_fallback"] and record["timezone"] == "America/New_York"
    assert record["planned_start"] == (T0 + 8 * H).isoformat()  # 02:00 EDT


def test_a_fallback_plan_gives_way_when_the_forecast_returns(grid, monkeypatch):
    grid.failures.extend(["500"] * 4)  # down while planning (the hook tries 4 times)
    ctx = context(T0)
    with Clock(T0) as clock:
        deferred = defer(sensor(recheck_interval=1800), ctx)
        assert deferred.trigger.decision["used_fallback"] is True
        event = run_trigger(deferred.trigger, clock, monkeypatch)
        assert clock.now() == T0 + 4 * H
    record = event.payload["decision"]
    assert record["used_fallback"] is False
    assert [r["cause"] for r in record["replans"]] == ["re-check: forecast available again"]


def test_coordinates_reach_the_api_and_bad_events_are_refused(grid, httpserver):
    with Clock(T0):
        deferred = defer(task := sensor(zone=None, lat=48.1, lon=11.6), context(T0))
    (request, _), *_ = httpserver.log
    assert request.args["lat"] == "48.1" and request.args["lon"] == "11.6" and "zone" not in request.args
    assert deferred.trigger.lat == 48.1 and deferred.trigger.lon == 11.6
    with pytest.raises(RuntimeError, match="unexpected event"):
        task.execute_complete(context(T0), {"status": "timeout"})


def test_token_revoked_mid_wait_still_releases_as_planned(grid, monkeypatch):
    ctx = context(T0)
    with Clock(T0) as clock:
        deferred = defer(sensor(recheck_interval=H), ctx)
        grid.failures.extend(["401"] * 100)
        run_trigger(deferred.trigger, clock, monkeypatch)
        assert clock.now() == T0 + 4 * H


@pytest.mark.parametrize(
    ("run_start", "expected", "night"),
    [
        (
            datetime(2025, 3, 29, 23, tzinfo=timezone.utc),
            datetime(2025, 3, 30, 1, tzinfo=timezone.utc),
            "spring forward: 02:00 is skipped, 03:00 CEST",
        ),
        (
            datetime(2025, 10, 25, 22, tzinfo=timezone.utc),
            datetime(2025, 10, 26, 0, tzinfo=timezone.utc),
            "fall back: the first 02:00 (CEST)",
        ),
        (
            datetime(2025, 6, 1, 22, tzinfo=timezone.utc),
            datetime(2025, 6, 2, 0, tzinfo=timezone.utc),
            "an ordinary night: 02:00 CEST",
        ),
    ],
)
def test_api_down_falls_back_to_0200_berlin(httpserver, monkeypatch, run_start, expected, night):
    grid = EmGrid(run_start, VALUES)
    monkeypatch.setenv("AIRFLOW_CONN_GRID", grid.connection(grid.install(httpserver)))
    grid.failures.extend(["503"] * 1000)
    ctx = context(run_start)
    with Clock(run_start + timedelta(minutes=1)) as clock:
        deferred = defer(sensor(), ctx)
        record = ctx["ti"].xcom["carbon_decision"]
        assert record["used_fallback"] is True, night
        assert record["planned_start"] == expected.isoformat(), night
        assert record["fallback_reason"] == "unavailable" and "ServiceUnavailableError" in record["fallback_error"]
        event = run_trigger(deferred.trigger, clock, monkeypatch)
        assert clock.now() == expected, night
    assert event.payload["decision"]["release_reason"] == "fallback_time"


def test_fallback_now_runs_at_once(grid):
    grid.failures.extend(["500"] * 10)
    ctx = context(T0)
    with Clock(T0):
        result = sensor(fallback="now").execute(ctx)
    assert result["used_fallback"] is True and result["planned_start"] == T0.isoformat()
    assert result["release_reason"] == "fallback_time"  # the fallback "now" chose the start


def test_fallback_fail_raises_the_typed_error(grid):
    grid.failures.extend(["500"] * 10)
    with Clock(T0), pytest.raises(ServiceUnavailableError, match="after 4 attempts"):
        sensor(fallback="fail").execute(context(T0))


def test_bad_token_fails_over_to_the_fallback(httpserver, monkeypatch):
    grid = EmGrid(T0, VALUES)
    url = grid.install(httpserver)
    monkeypatch.setenv("AIRFLOW_CONN_GRID", grid.connection(url).replace("grid-token-7f3a9c", "wrong-token"))
    ctx = context(T0)
    with Clock(T0):
        defer(sensor(), ctx)
    record = ctx["ti"].xcom["carbon_decision"]
    assert (
        record["used_fallback"]
        and record["fallback_reason"] == "authentication"
        and record["fallback_error"].startswith("AuthenticationError")
    )
    assert "wrong-token" not in str(record)


def test_missing_connection_falls_back_or_fails():
    with Clock(T0):
        ctx = context(T0)
        deferred = defer(sensor(carbon_conn_id="nope"), ctx)
        assert ctx["ti"].xcom["carbon_decision"]["used_fallback"]
        assert deferred.trigger.hook_class == ""
        with pytest.raises(Exception, match="nope"):
            sensor(carbon_conn_id="nope", fallback="fail").execute(context(T0))


def test_wait_from_a_plan_task(grid, monkeypatch):
    ctx = context(T0)
    with Clock(T0) as clock:
        planned = CarbonPlanOperator(
            task_id="plan_window",
            carbon_conn_id="grid",
            zone="DE",
            expected_duration="PT2H",
            max_delay=10 * 3600,
            fallback_timezone="Europe/Berlin",
        ).execute(ctx)
        assert planned["planned_start"] == (T0 + 4 * H).isoformat()
        requests_before = len(grid.requests)
        # what Jinja renders for "{{ ti.xcom_pull(task_ids='plan_window') }}": the dict's Python repr
        deferred = defer(sensor(plan=str(planned)), context(T0))
        assert len(grid.requests) == requests_before  # no second forecast call
        run_trigger(deferred.trigger, clock, monkeypatch)
        assert clock.now() == T0 + 4 * H


def test_plan_after_this_sensors_deadline_is_clamped(grid):
    ctx = context(T0)
    with Clock(T0):
        planned = CarbonPlanOperator(
            task_id="p", carbon_conn_id="grid", expected_duration=2 * H, max_delay=10 * H
        ).execute(ctx)
        deferred = defer(sensor(plan=planned, max_delay=H), context(T0))
    record = deferred.trigger.decision
    assert record["planned_start"] == (T0 + H).isoformat()
    assert record["replans"][0]["cause"] == "the given plan starts after this sensor's deadline"


def test_non_deferrable_pokes_release_at_the_nearest_poke(grid):
    task = sensor(deferrable=False, poke_interval=600)
    ctx = context(T0)
    with Clock(T0) as clock:
        assert task.poke(ctx) is False
        clock.shift((4 * H - timedelta(minutes=6)).total_seconds())  # 01:54: more than half a poke early
        assert task.poke(ctx) is False
        clock.shift(120)  # 01:56: within half a poke (5 min) of 02:00
        released = task.poke(ctx)
    assert released.is_done and released.xcom_value["release_reason"] == "planned_start"
    assert released.xcom_value["planned_start"] == (T0 + 4 * H).isoformat()


def test_non_deferrable_never_pokes_past_the_deadline(grid):
    grid.values = [500] * 2 + [100] * 34  # the best window is beyond a 1 h deadline
    task = sensor(deferrable=False, poke_interval=600, max_delay=H)
    ctx = context(T0)
    with Clock(T0 + timedelta(minutes=52)):  # plan: 23:00, 8 min away; the next poke (23:02) would be late
        released = task.poke(ctx)
    assert released.is_done and released.xcom_value["release_reason"] == "deadline"


def test_fail_policy_applies_before_the_plan_not_during_the_wait(grid, monkeypatch):
    """With fallback="fail", a re-check whose forecast cannot be planned (it starts after the deadline) keeps the
    plan: the trigger must not die mid-wait."""
    ctx = context(T0)
    with Clock(T0) as clock:
        deferred = defer(sensor(fallback="fail", recheck_interval=H), ctx)

        def forecast_jumps_past_the_deadline():
            grid.start = T0 + 12 * H
            forecast_cache.clear()

        clock.at(T0 + timedelta(minutes=30), forecast_jumps_past_the_deadline)
        event = run_trigger(deferred.trigger, clock, monkeypatch)
        assert clock.now() == T0 + 4 * H
    assert event.payload["decision"]["replans"] == []


def test_poke_mode_keeps_its_plan_when_the_api_fails_mid_wait(grid):
    task = sensor(deferrable=False, poke_interval=600, fallback="fail")
    ctx = context(T0)
    with Clock(T0) as clock:
        assert task.poke(ctx) is False
        assert ctx["ti"].xcom["carbon_decision"]["planned_start"] == (T0 + 4 * H).isoformat()  # visible at once
        grid.failures.extend(["401"] * 100)  # token revoked
        forecast_cache.clear()
        clock.shift(3600)
        assert task.poke(ctx) is False  # neither raises nor jumps to a fallback
        clock.shift((3 * H - timedelta(minutes=4)).total_seconds())
        released = task.poke(ctx)
    record = released.xcom_value
    assert released.is_done and record["planned_start"] == (T0 + 4 * H).isoformat() and record["replans"] == []
    assert record["intensity_if_started_at_decision"] == pytest.approx(
        390
    )  # from the plan made at 00:00, not at the release


def test_poke_mode_records_a_moved_optimum(grid):
    task = sensor(deferrable=False, poke_interval=600)
    ctx = context(T0)
    with Clock(T0) as clock:
        assert task.poke(ctx) is False
        grid.values = grid.values[:2] + [90, 90] + grid.values[4:]  # 02:00-04:00 is now cleaner
        forecast_cache.clear()
        clock.shift(1800)
        assert task.poke(ctx) is False
        clock.shift((90 - 2) * 60)
        released = task.poke(ctx)
    record = released.xcom_value
    assert record["planned_start"] == (T0 + 2 * H).isoformat()
    assert [r["cause"] for r in record["replans"]] == ["re-check: the optimum moved"]


def test_a_slow_api_cannot_push_the_plan_past_the_deadline(grid, monkeypatch):
    """The forecast request is given up when the deadline comes (real time: the API takes 6 s, the deadline is
    2 s away), and the fallback (here: now) starts the job by then."""
    grid.forecast_delay = 6.0
    monkeypatch.setenv("AIRFLOW_CONN_GRID", grid.connection(grid.url, max_attempts=1, cache_ttl=0))
    now = datetime.now(timezone.utc)
    task = sensor(fallback="now", latest_start=now + timedelta(seconds=2), max_delay=None)
    started = time.monotonic()
    record = task.execute(context(now))
    took = time.monotonic() - started
    assert took < 5, took  # waiting for the answer would take 6 s
    assert (
        record["used_fallback"] is True
        # the request's budget (capped by the deadline) ends it, whichever of the timers says so first
        and re.search(
            r"no answer from /carbon-intensity/forecast within|/carbon-intensity/forecast took longer than",
            record["fallback_error"],
        )
        and record["fallback_reason"] == "unavailable"
    )
    assert datetime.fromisoformat(record["released_at"]) <= now + timedelta(seconds=2)
    assert not [t for t in threading.enumerate() if t.name == "carbon-forecast"]  # no watchdog thread any more


def test_a_recheck_cannot_delay_a_due_release(monkeypatch):
    """A re-check one second before the planned start is bounded by that second, not by the deadline."""
    from pytest_httpserver import HTTPServer

    server = HTTPServer(threaded=True)  # the abandoned slow request must not hold up the next one
    server.start()
    grid = EmGrid(T0, VALUES)
    monkeypatch.setenv("AIRFLOW_CONN_GRID", grid.connection(grid.install(server)))
    ctx = context(T0)
    with Clock(T0) as clock:
        deferred = defer(sensor(recheck_interval=(4 * H).total_seconds() - 1), ctx)
        grid.forecast_delay = 6.0
        timings = []
        try:
            run_trigger(deferred.trigger, clock, monkeypatch, timings=timings)
        finally:
            server.stop()
        assert clock.now() == T0 + 4 * H
    assert timings[0] < 5, timings  # bounded by the 1 s left, not by the 6 s answer


def test_reschedule_timeout_counts_from_the_first_poke(grid, monkeypatch):
    """Airflow measures a rescheduled sensor's timeout from its first poke; the raised timeout must too."""
    from airflow.exceptions import AirflowRescheduleException

    monkeypatch.setenv("AIRFLOW__SENSORS__DEFAULT_TIMEOUT", str(24 * 3600))
    task = sensor(deferrable=False, mode="reschedule", max_delay=30 * H, poke_interval=600)
    ctx = context(T0)
    ctx["ti"].first_reschedule_date = T0 + timedelta(minutes=1)
    with Clock(T0 + H), pytest.raises(AirflowRescheduleException):  # 23:00, the optimum is at 02:00
        task.execute(ctx)
    assert task.timeout >= (29 * H + timedelta(minutes=59)).total_seconds()


def test_deferrable_default_is_read_when_the_sensor_is_created(monkeypatch):
    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "True")
    assert sensor(deferrable=None).deferrable is True
    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "False")
    assert sensor(deferrable=None).deferrable is False


def test_no_work_in_init(grid, monkeypatch):
    """Building the sensor or the plan operator (DAG parse) reads no connection and makes no request, although a
    working connection to a live server exists."""
    from airflow.sdk import BaseHook

    def no_connection(*args, **kwargs):
        raise AssertionError("a connection was read at DAG parse time")

    monkeypatch.setattr(BaseHook, "get_connection", classmethod(no_connection))
    sensor(zone="{{ params.zone }}", latest_start="{{ data_interval_end }}")
    sensor(deferrable=False, mode="reschedule")
    CarbonPlanOperator(task_id="p", carbon_conn_id="grid", zone="DE", expected_duration=2 * H, max_delay=10 * H)
    assert grid.requests == []


def test_timeout_covers_a_long_deadline_unless_the_user_set_one(grid, capsys):
    from airflow_provider_carbon.sensors.carbon_window import DEFERRAL_GRACE

    with Clock(T0):
        deferred = defer(task := sensor(max_delay=timedelta(days=9)), context(T0))
        # the grace keeps Airflow's own deferral timeout from firing just before the trigger releases
        assert deferred.timeout >= timedelta(days=9) + DEFERRAL_GRACE > timedelta(days=9)
        assert task.timeout >= (timedelta(days=9) + DEFERRAL_GRACE).total_seconds()
        assert "ends the wait before the deadline" not in capsys.readouterr().out  # task logs go to stdout
        deferred = defer(
            sensor(max_delay=timedelta(days=9), timeout=3600, execution_timeout=timedelta(hours=2)), context(T0)
        )
        assert deferred.timeout == timedelta(hours=1)  # the user's own choice stands, with a warning
    logged = capsys.readouterr().out
    assert "timeout=3600" in logged and "ends the wait before the deadline" in logged
    assert "execution_timeout=2:00:00 counts the time spent waiting" in logged


def test_naive_deadline_is_refused(grid):
    with pytest.raises(ValueError, match="has no timezone"):
        sensor(latest_start="2025-06-02T04:00:00").execute(context(T0))


def test_link_without_a_zone_is_empty():
    assert ElectricityMapsZoneLink().get_link(SimpleNamespace(zone=None), ti_key=None) == ""


# -- the guarantee, property-based ---------------------------------------------------------------------------------


@st.composite
def scenarios(draw, *, failures: bool):
    n = draw(st.integers(6, 30))
    values = draw(st.lists(st.integers(50, 800), min_size=n, max_size=n))
    start_offset = draw(st.integers(0, 3599))  # seconds into the first hour: "now" is off any grid
    duration = draw(st.integers(1, 4)) * H
    max_delay = draw(st.integers(1, n)) * H
    modes = st.lists(st.sampled_from(FAILURE_MODES), min_size=1 if failures else 0, max_size=12 if failures else 0)
    before, during = draw(modes), draw(modes)
    recheck = draw(st.sampled_from([H / 2, H, 3 * H]))
    return values, start_offset, duration, max_delay, before, during, recheck


def run_scenario(httpserver, monkeypatch, scenario):
    """Plan with the sensor, wait with the trigger on a controlled clock; return (now, deadline, release, grid)."""
    values, start_offset, duration, max_delay, before, during, recheck = scenario
    httpserver.clear()
    forecast_cache.clear()
    grid = EmGrid(T0, values)
    monkeypatch.setenv("AIRFLOW_CONN_GRID", grid.connection(grid.install(httpserver), max_attempts=2))
    now = T0 + timedelta(seconds=start_offset)
    ctx = context(now)
    task = sensor(expected_duration=duration, max_delay=max_delay, recheck_interval=recheck)
    grid.failures.extend(before)
    with Clock(now) as clock:
        try:
            result = task.execute(ctx)
        except TaskDeferred as deferred:
            grid.failures.clear()
            grid.failures.extend(during)  # whatever planning left unused is dropped: these hit the wait
            run_trigger(deferred.trigger, clock, monkeypatch)
            released = clock.now()
        else:  # not deferred: released at once by execute()
            released = clock.now()
            assert datetime.fromisoformat(result["released_at"]) == released
    return now, now + max_delay, released, grid


SLOW_EXAMPLES = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


@SLOW_EXAMPLES
@given(scenarios(failures=True))
def test_released_by_the_deadline_whatever_the_api_does(httpserver, monkeypatch, scenario):
    now, deadline, released, _ = run_scenario(httpserver, monkeypatch, scenario)
    assert now <= released <= deadline


@SLOW_EXAMPLES
@given(scenarios(failures=False))
def test_released_at_the_optimum_when_nothing_fails(httpserver, monkeypatch, scenario):
    now, deadline, released, grid = run_scenario(httpserver, monkeypatch, scenario)
    duration = scenario[2]
    if now + duration > grid.end:  # the job does not fit the forecast at all: the 02:00 fallback, by the deadline
        assert now <= released <= deadline
    else:
        assert released == optimum(grid, now, duration, deadline).start
