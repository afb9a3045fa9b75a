"""A batch job under a carbon budget: once the month's accounted emissions reach the limit, later runs are skipped.

Parses in milliseconds and touches no network: the budget is read and checked when the sensor runs.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

from airflow_provider_carbon.sensors.carbon_window import CarbonWindowSensor

DOC = """
### Batch job under a carbon budget

Each run waits for the lowest-carbon start within 6 hours, like the nightly DAG, but first checks the DAG's
**carbon budget**: `budget_kg` kilograms CO2eq per `budget_per` (day, week, month or year, in the DAG's timezone).
The job declares its energy (`energy_kwh=1.0`), so every run that succeeds is accounted (XCom `carbon_accounting`)
and added to the budget's ledger, the Airflow Variable `carbon_budget.dag.carbon_budget_batch`.

Once the period's usage has reached the limit, `budget_policy` decides:

* `warn`: a warning in the sensor's log, and the job runs;
* `skip`: the sensor, the job and the report are skipped, and the run stays green;
* `fail`: the sensor fails (no retries).

The sensor's XCom `carbon_decision` says what the check found under `budget` (scope, period, limit, usage,
outcome). Trigger it with other values in the form (params).
"""


@dag(
    dag_id="carbon_budget_batch",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="Europe/Berlin"),
    catchup=False,
    doc_md=DOC,
    tags=["carbon-aware", "example"],
    params={
        "zone": "DE",
        "expected_duration": "PT1H",
        "max_delay": "PT6H",
        "threshold": "",
        "budget_kg": 5.0,
        "budget_per": "month",
        "budget_policy": "skip",
    },
)
def carbon_budget_batch():
    wait = CarbonWindowSensor(
        task_id="wait_for_low_carbon_window",
        carbon_conn_id="electricitymaps_default",
        zone="{{ params.zone }}",
        expected_duration="{{ params.expected_duration }}",
        max_delay="{{ params.max_delay }}",
        threshold="{{ params.threshold }}",  # empty: wait for the optimum
        deferrable=True,
        retries=2,  # for a flaky worker; an exhausted budget under policy fail fails at once, never retried
        energy_kwh=1.0,  # the job's energy per run: each run is accounted and counts against the budget
        budget={
            "kg": "{{ params.budget_kg }}",
            "per": "{{ params.budget_per }}",
            "policy": "{{ params.budget_policy }}",
        },
    )

    @task
    def batch_job() -> dict:
        """Stands in for the real work: a small sum, so that the run's energy is the declared figure."""
        return {"rows": sum(range(100_000))}

    @task
    def report(ti=None) -> dict:
        """Log what the budget check found and what the job emitted."""
        # pulled here, not passed as wait.output: every task directly downstream of the sensor is accounted as
        # one of its jobs, and this report must not count against the budget
        decision = ti.xcom_pull(task_ids="wait_for_low_carbon_window", key="carbon_decision") or {}
        accounting = ti.xcom_pull(task_ids="batch_job", key="carbon_accounting") or {}
        summary = {"budget": decision.get("budget"), "emissions_g": accounting.get("emissions_g")}
        print("carbon budget report:", summary)
        return summary

    wait >> batch_job() >> report()


carbon_budget_batch()
