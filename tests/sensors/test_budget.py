"""The sensor's budget check in process: the ledger comes from Airflow's environment-variable secrets backend
(``AIRFLOW_VAR_...``), the forecast from a local server. The real Variable store is in test_budget_dags_test.py and
the e2e test."""

from __future__ import annotations

import json
import pickle
from datetime import timedelta

import pytest

from airflow_provider_carbon._compat import AirflowFailException, AirflowSkipException
from airflow_provider_carbon.core.budget import Budget
from airflow_provider_carbon.exceptions import CarbonBudgetExceeded
from tests.sensors.test_carbon_window import T0, grid, sensor  # noqa: F401 (grid is a fixture)
from tests.waiting import Clock, context

VAR = "AIRFLOW_VAR_CARBON_BUDGET.DAG.BUDGET_DAG"


def ctx():
    run = context(T0)
    run["dag_run"].dag_id = "budget_dag"
    return run


def spent(monkeypatch, grams: float, signal: str = "average") -> None:
    entry = {"id": "job-1", "ended_at": (T0 - timedelta(hours=1)).isoformat(), "grams": grams, "signal": signal}
    monkeypatch.setenv(VAR, json.dumps({"version": 1, "entries": [entry]}))


def test_skip_records_why_and_skips_before_asking_for_a_forecast(grid, monkeypatch):  # noqa: F811
    spent(monkeypatch, 5000)
    run = ctx()
    with Clock(T0), pytest.raises(AirflowSkipException, match="policy skip"):
        sensor(budget=Budget(limit_kg=5, period="month", policy="skip")).execute(run)
    record = run["ti"].xcom["carbon_decision"]
    assert record["reason"] == "budget" and record["released_at"] is None and record["forecast"] is None
    budget = record["budget"]
    assert budget["scope"] == "dag:budget_dag" and budget["outcome"] == "skipped" and budget["used_kg"] == 5.0
    # June in Berlin (the sensor's fallback timezone) begins at 22:00 UTC on 31 May
    assert budget["period_start"] == "2025-05-31T22:00:00+00:00" and budget["timezone"] == "Europe/Berlin"
    assert grid.requests == [], "the forecast was asked for although the budget stops the job"


def test_fail_raises_the_typed_error_that_airflow_does_not_retry(grid, monkeypatch):  # noqa: F811
    spent(monkeypatch, 7000)
    run = ctx()
    with Clock(T0), pytest.raises(CarbonBudgetExceeded, match="7 kg of 5 kg this month") as info:
        sensor(budget={"kg": 5, "per": "month", "policy": "fail"}).execute(run)
    assert isinstance(info.value, AirflowFailException)
    assert info.value.used_kg == 7.0 and info.value.scope == "dag:budget_dag"
    copy = pickle.loads(pickle.dumps(info.value))
    assert type(copy) is type(info.value) and copy == info.value
    assert run["ti"].xcom["carbon_decision"]["budget"]["outcome"] == "failed"


def test_warn_and_within_run_the_job_and_keep_the_check_in_the_record(grid, monkeypatch):  # noqa: F811
    spent(monkeypatch, 5000)
    with Clock(T0):
        warned = sensor(threshold=10_000, budget='{"kg": 5, "per": "month", "policy": "warn"}').execute(ctx())
        within = sensor(threshold=10_000, budget={"kg": 6, "per": "month", "policy": "fail"}).execute(ctx())
    assert warned["reason"] == "threshold" and warned["budget"]["outcome"] == "warned"
    assert within["budget"]["outcome"] == "within" and within["budget"]["remaining_kg"] == pytest.approx(1.0)


def test_another_signal_never_counts_against_the_budget(grid, monkeypatch):  # noqa: F811
    spent(monkeypatch, 9000, signal="marginal")
    with Clock(T0):
        result = sensor(threshold=10_000, budget={"kg": 5, "policy": "skip", "signal": "average"}).execute(ctx())
    assert result["budget"]["outcome"] == "within" and result["budget"]["other_signal_kg"] == 9.0


def test_an_unreadable_ledger_never_stops_the_job(grid, monkeypatch):  # noqa: F811
    monkeypatch.setenv(VAR, "[1, 2, 3]")
    with Clock(T0):
        result = sensor(threshold=10_000, budget={"kg": 5, "policy": "fail"}).execute(ctx())
    assert result["budget"]["outcome"] == "unknown" and "not a carbon budget ledger" in result["budget"]["error"]


def test_a_budget_written_wrong_fails_loudly_and_none_leaves_the_record_without_one(grid):  # noqa: F811
    with Clock(T0), pytest.raises(ValueError, match="warn, skip, fail"):
        sensor(budget={"kg": 5, "policy": "stop"}).execute(ctx())
    with Clock(T0):
        assert sensor(threshold=10_000).execute(ctx())["budget"] is None
