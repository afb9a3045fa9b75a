"""A queue of five training jobs planned together at midnight, two at a time, each started at its planned time.

Parses in milliseconds and touches no network: the plan is made when the first task runs.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task, task_group

from airflow_provider_carbon.operators.queue import CarbonQueuePlanOperator
from airflow_provider_carbon.sensors.carbon_window import CarbonWindowSensor

DOC = """
### A queue of low-carbon training jobs

At **midnight** (Europe/Berlin) `plan_queue` asks the service behind `electricitymaps_default` for its forecast
and plans **five 2-hour jobs** at once, **at most two running together** (the slots of the GPU pool they would
share), each finishing within 10 hours of the run's start, with the least total emissions. Planned one by one,
all five would choose the same cleanest hours and then wait behind the pool; planned together they share them.

Each job is a mapped task group: its `CarbonWindowSensor` waits in the triggerer for that job's planned start (the
plan is passed with `plan=`), then `train` runs. The queue's XCom `carbon_queue_plan` has every start, the total
expected emissions and the "each at its own optimum" plan for comparison. With the API down, the jobs start at the
02:00 fallback, staggered two at a time.

In production, give the train tasks `pool="gpu"` (a pool of 2 slots) so that Airflow enforces the capacity too.
"""

JOBS = [
    {"name": "train-resnet", "duration": "{{ params.job_duration }}", "energy_kwh": 4.0, "priority": 1},
    {"name": "train-bert", "duration": "{{ params.job_duration }}", "energy_kwh": 6.0},
    {"name": "train-gpt-small", "duration": "{{ params.job_duration }}", "energy_kwh": 5.0},
    {"name": "tune-xgboost", "duration": "{{ params.job_duration }}", "energy_kwh": 1.5},
    {"name": "embed-corpus", "duration": "{{ params.job_duration }}", "energy_kwh": 2.5},
]


@dag(
    dag_id="carbon_queue_training",
    schedule="0 0 * * *",
    start_date=pendulum.datetime(2025, 1, 1, tz="Europe/Berlin"),
    catchup=False,
    max_active_runs=1,
    doc_md=DOC,
    tags=["carbon-aware", "example"],
    params={"zone": "DE", "job_duration": "PT2H", "max_delay": "PT8H", "fallback": "02:00", "fallback_timezone": ""},
)
def carbon_queue_training():
    queue = CarbonQueuePlanOperator(
        task_id="plan_queue",
        carbon_conn_id="electricitymaps_default",
        zone="{{ params.zone }}",
        jobs=JOBS,
        capacity=2,
        max_delay="{{ params.max_delay }}",  # every job starts within 8 h (done within 10 h) of the run's start
        fallback="{{ params.fallback }}",
        fallback_timezone="{{ params.fallback_timezone }}",
    )

    @task_group
    def job(plan: dict):
        wait = CarbonWindowSensor(
            task_id="wait",
            carbon_conn_id="electricitymaps_default",
            zone="{{ params.zone }}",
            plan=plan,  # this job's start, from the queue's plan
            expected_duration="{{ params.job_duration }}",
            max_delay="{{ params.max_delay }}",
            fallback="{{ params.fallback }}",
            fallback_timezone="{{ params.fallback_timezone }}",
            recheck_interval=None,  # the queue's plan stands: no solo re-plan that would undo the sharing
            deferrable=True,
        )

        @task
        def train(decision: dict) -> dict:
            """Stands in for a training job: reports when it was planned and when it really began."""
            import datetime as dt

            return {"planned_start": decision["planned_start"], "began": dt.datetime.now(dt.timezone.utc).isoformat()}

        train(wait.output)

    job.expand(plan=queue.output)


carbon_queue_training()
