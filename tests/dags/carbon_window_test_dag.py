"""Small DAGs for tests/sensors/test_dags_test.py (not examples for users).

`carbon_window_test`: the sensor really defers (deferrable=True) and `airflow dags test` runs its trigger in line.
`carbon_window_reschedule_test`: no deferral, reschedule mode: every poke is a fresh execution that re-plans.
`carbon_budget_test`: a 1-kWh job under a carbon budget (limit and policy from params), starting at once.
The connection `grid` points at a local server in Electricity Maps format whose forecast is time-compressed
(points seconds apart). Everything that varies per run comes in through params, rendered at run time.
"""

from __future__ import annotations

import json
from typing import Any

import pendulum
from airflow.sdk import dag, task

from airflow_provider_carbon.sensors.carbon_window import CarbonWindowSensor


def carbon_window_dag(dag_id: str, **sensor_args: Any) -> None:
    @dag(
        dag_id=dag_id,
        schedule=None,
        start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
        catchup=False,
        params={
            "out": "/dev/null",
            "fallback": "now",
            "duration_s": 6,
            "max_delay_s": 40,
            "budget_kg": 1.0,
            "budget_policy": "skip",
        },
    )
    def build():
        wait = CarbonWindowSensor(
            task_id="wait_for_clean_power",
            carbon_conn_id="grid",
            zone="DE",
            expected_duration="{{ params.duration_s }}",
            max_delay="{{ params.max_delay_s }}",
            fallback="{{ params.fallback }}",
            fallback_timezone="UTC",
            **sensor_args,
        )

        @task
        def work(decision: dict, params: dict | None = None) -> None:
            with open(params["out"], "w") as fh:
                json.dump(decision, fh)

        work(wait.output)

    build()


carbon_window_dag("carbon_window_test", recheck_interval=5, deferrable=True)
carbon_window_dag("carbon_window_reschedule_test", deferrable=False, mode="reschedule", poke_interval=2)
# a 1-kWh job under a daily budget whose limit and policy come from params; two retries, which `fail` must not use
carbon_window_dag(
    "carbon_budget_test",
    deferrable=True,
    threshold=10_000,  # start at once: the budget is under test, not the wait
    energy_kwh=1.0,
    retries=2,
    budget={"kg": "{{ params.budget_kg }}", "per": "day", "policy": "{{ params.budget_policy }}"},
)
