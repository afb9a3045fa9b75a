"""A small DAG for tests/operators/test_region_dags_test.py (not an example for users): branch to the greenest of
five regions; each region's task leaves a marker file so the test sees which ones really ran."""

from __future__ import annotations

from pathlib import Path

import pendulum
from airflow.sdk import dag, task

from airflow_provider_carbon.operators.region import GreenestRegionBranchOperator

REGIONS = {"SE-SE3": "run_se", "FR": "run_fr", "DE": "run_de", "PL": "run_pl", "ES": "run_es"}


@dag(
    dag_id="greenest_region_test",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    params={"out": "/tmp"},
)
def greenest_region_test():
    pick = GreenestRegionBranchOperator(task_id="pick_region", carbon_conn_id="grid", branches=REGIONS)
    for region, task_id in REGIONS.items():

        @task(task_id=task_id)
        def run_in(region: str = region, params: dict | None = None) -> str:
            Path(params["out"], f"ran-{region}").write_text(region)
            return region

        pick >> run_in()


greenest_region_test()
