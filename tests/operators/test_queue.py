"""CarbonQueuePlanOperator against a local server in Electricity Maps format: five jobs, two at a time."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from airflow_provider_carbon.core.queue import max_concurrency
from airflow_provider_carbon.operators.queue import QUEUE_XCOM_KEY, CarbonQueuePlanOperator
from tests.em_server import EmGrid
from tests.waiting import Clock, context

pytest.importorskip("scipy")

T0 = datetime.fromisoformat("2025-06-01T22:00:00+00:00")  # midnight in Berlin
H = timedelta(hours=1)
# a two-hour valley from 03:00 to 05:00 UTC (T0 + 5 h), then rising: the herd would all start at T0 + 5 h
VALUES = [400, 400, 380, 300, 250, 100, 100, 250, 300, 380, 400, 420, 440, 460, 480, 500] + [500] * 20


@pytest.fixture
def grid(httpserver, monkeypatch):
    from airflow_provider_carbon.hooks.cache import forecast_cache

    forecast_cache.clear()
    grid = EmGrid(T0, VALUES)
    grid.url = grid.install(httpserver)
    monkeypatch.setenv("AIRFLOW_CONN_GRID", grid.connection(grid.url, cache_ttl=0, max_attempts=1))
    return grid


def operator(**kwargs):
    args = {
        "task_id": "plan_queue",
        "carbon_conn_id": "grid",
        "zone": "DE",
        "capacity": 2,
        "max_delay": 8 * H,
        "fallback_timezone": "Europe/Berlin",
        "jobs": [{"name": f"job-{i}", "duration": "PT2H", "energy_kwh": 2.0 + i} for i in range(5)],
    }
    args.update(kwargs)
    return CarbonQueuePlanOperator(**args)


def spans(records):
    return [(datetime.fromisoformat(r["planned_start"]), datetime.fromisoformat(r["planned_end"])) for r in records]


def test_five_jobs_share_the_clean_hours_two_at_a_time(grid):
    ctx = context(T0)
    with Clock(T0 + timedelta(minutes=5)):
        records = operator().execute(ctx)
    assert len(records) == 5 and all(not r["used_fallback"] for r in records)
    intervals = spans(records)
    assert max_concurrency([(a.timestamp(), b.timestamp()) for a, b in intervals]) <= 2
    assert all(b - a == 2 * H and b <= T0 + 10 * H for a, b in intervals)
    plan = ctx["ti"].xcom[QUEUE_XCOM_KEY]
    assert plan["independent_peak"] == 5 and plan["optimal"] is True
    assert plan["total_emissions_g"] >= plan["independent_emissions_g"]
    # the biggest job gets the valley itself; the others spread around it, never more than two at once
    assert plan["starts"]["job-4"] == (T0 + 5 * H).isoformat()
    assert len({r["planned_start"] for r in records}) >= 3
    # each record is the job's own, at the queue's start, for a sensor's plan=
    for record, (start, _) in zip(records, intervals, strict=True):
        assert record["expected_intensity"] > 0 and record["zone"] == "DE"
        assert record["latest_start"] == (T0 + 8 * H).isoformat()
        assert record["forecast_intensity_at_start"] == VALUES[int((start - T0) / H)]
    moved = [r for r in records if r["replans"]]
    assert moved and all("queue of 2 slot(s)" in r["replans"][-1]["cause"] for r in moved)


def test_the_api_down_staggers_the_fallback_two_at_a_time(grid):
    grid.failures.extend(["500"] * 5)
    ctx = context(T0)
    with Clock(T0 + timedelta(minutes=5)):
        records = operator(fallback="02:00").execute(ctx)
    starts = [a for a, _ in spans(records)]
    two_am = T0 + 2 * H  # 02:00 in Berlin
    assert starts == [two_am, two_am, two_am + 2 * H, two_am + 2 * H, two_am + 4 * H]
    assert all(r["used_fallback"] and r["fallback_reason"] == "unavailable" for r in records)
    assert ctx["ti"].xcom[QUEUE_XCOM_KEY]["used_fallback"] is True


def test_bad_arguments_fail_when_the_dag_is_parsed_or_the_task_runs(grid):
    with pytest.raises(ValueError, match="capacity"):
        operator(capacity=0)
    with pytest.raises(ValueError, match="needs a duration"), Clock(T0):
        operator(jobs=[{"name": "x", "energy_kwh": 1}]).execute(context(T0))
