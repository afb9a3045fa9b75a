"""Carbon budgets in a real Airflow 3 run (`airflow dags test`): the ledger the accounting listener writes to an
Airflow Variable, and each policy applied by the sensor before it waits. The three-run story with the scheduler,
the workers and the REST API is in tests/e2e/test_stack.py."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from tests.airflow_stack import AirflowStack
from tests.conftest import REPO_ROOT
from tests.em_server import EmGrid
from tests.sensors.test_dags_test import STEP

pytestmark = pytest.mark.slow
DAG_ID = "carbon_budget_test"
LEDGER = f"carbon_budget.dag.{DAG_ID}"


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> AirflowStack:
    """An Airflow home of its own: the ledger Variable lives in its database."""
    home = AirflowStack(
        tmp_path_factory.mktemp("airflow-home-budget"),
        extra_env={"AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "tests" / "dags")},
    )
    home.migrate()
    return home


def run(stack, httpserver, tmp_path, **conf):
    """`airflow dags test` of the budget DAG; (the job's record or None if it did not run, the log, the exit code)."""
    out = tmp_path / "decision.json"
    grid = EmGrid(datetime.now(timezone.utc).replace(microsecond=0), [400] * 40, step=STEP)
    stack.env["AIRFLOW_CONN_GRID"] = grid.connection(grid.install(httpserver), cache_ttl=0)
    result = stack.run("dags", "test", DAG_ID, "-c", json.dumps({"out": str(out), **conf}), timeout=120)
    decision = json.loads(out.read_text()) if out.exists() else None
    return decision, result.stdout + result.stderr, result.returncode


def set_ledger(stack, grams: float) -> None:
    now = datetime.now(timezone.utc)
    entries = [{"id": "earlier-job", "ended_at": (now - timedelta(minutes=1)).isoformat(), "grams": grams}]
    entries[0]["signal"] = "average"
    result = stack.run("variables", "set", LEDGER, json.dumps({"version": 1, "entries": entries}))
    assert result.returncode == 0, result.stderr[-2000:]


def ledger(stack) -> dict:
    result = stack.run("variables", "get", LEDGER)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout[result.stdout.index("{") :])  # pretty-printed, after any log lines


def test_within_the_budget_the_job_runs_and_its_emissions_join_the_ledger(stack, httpserver, tmp_path):
    stack.run("variables", "delete", LEDGER)
    decision, log, code = run(stack, httpserver, tmp_path, budget_kg=1.0, budget_policy="skip")
    assert code == 0 and decision is not None, log[-5000:]
    budget = decision["budget"]
    assert budget["outcome"] == "within" and budget["used_kg"] == 0 and budget["scope"] == f"dag:{DAG_ID}"
    assert budget["period"] == "day" and budget["limit_kg"] == 1.0 and budget["timezone"] == "UTC"
    (entry,) = ledger(stack)["entries"]
    # 1 kWh at the grid's flat 400 g/kWh, from history or the plan's forecast alike
    assert entry["grams"] == pytest.approx(400) and entry["signal"] == "average"
    assert entry["id"].startswith(f"{DAG_ID}/") and entry["id"].endswith("/work/-1")


def test_warn_logs_and_runs_the_job(stack, httpserver, tmp_path):
    set_ledger(stack, 1500)
    decision, log, code = run(stack, httpserver, tmp_path, budget_kg=1.0, budget_policy="warn")
    assert code == 0 and decision is not None, log[-5000:]
    assert decision["budget"]["outcome"] == "warned" and decision["budget"]["used_kg"] == 1.5
    assert "policy warn: the job runs" in log


def test_skip_skips_the_job(stack, httpserver, tmp_path):
    set_ledger(stack, 1000)  # exactly the limit: "already over"
    decision, log, code = run(stack, httpserver, tmp_path, budget_kg=1.0, budget_policy="skip")
    assert decision is None, "the job ran over budget"
    assert "policy skip: the job and its downstream are skipped" in log
    assert len(ledger(stack)["entries"]) == 1  # nothing ran, nothing accounted


def test_fail_fails_the_sensor_without_its_retries(stack, httpserver, tmp_path):
    set_ledger(stack, 2500)
    decision, log, code = run(stack, httpserver, tmp_path, budget_kg=1.0, budget_policy="fail")
    assert decision is None, "the job ran over budget"
    assert "BudgetFailure" in log and "carbon budget of dag:carbon_budget_test used up: 2.5 kg of 1 kg" in log
    assert "up_for_retry" not in log.lower()


def test_an_unreadable_ledger_never_stops_the_job(stack, httpserver, tmp_path):
    stack.run("variables", "set", LEDGER, '"not a ledger"')
    decision, log, code = run(stack, httpserver, tmp_path, budget_kg=1.0, budget_policy="fail")
    assert code == 0 and decision is not None, log[-5000:]
    assert decision["budget"]["outcome"] == "unknown" and "not a carbon budget ledger" in decision["budget"]["error"]
