"""Small DAGs for tests/sensors/test_dags_test.py (not examples for users).

`carbon_window_test`: the sensor really defers (deferrable=True) and `airflow dags test` runs its trigger in line.
`carbon_window_reschedule_test`: no deferral, reschedule mode: every poke is a fresh execution that re-plans.
`carbon_budget_test`: a 1-kWh job under a carbon budget (limit and policy from params), starting at once.
`carbon_window_measured_test`: the job's energy is measured by CodeCarbon (``measure_energy=True``) and accounted.
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
            "work_s": 0,
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
            import time

            end = time.monotonic() + float(params["work_s"])
            while time.monotonic() < end:  # busy: a job whose energy there is something to measure of
                pass
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

# the job's energy measured by CodeCarbon in its own process (no declared power)
carbon_window_dag("carbon_window_measured_test", deferrable=True, measure_energy=True)
