"""Run a batch job in the greenest of several regions: branch to that region's task (one queue per region).

Parses in milliseconds and touches no network: the choice is made when the branch task runs.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

from airflow_provider_carbon.operators.region import GreenestRegionBranchOperator

#: region -> (task id, Celery queue served by workers in that region)
REGIONS = {
    "SE-SE3": ("run_in_sweden", "se-se3"),
    "FR": ("run_in_france", "fr"),
    "ES": ("run_in_spain", "es"),
    "DE": ("run_in_germany", "de"),
    "PL": ("run_in_poland", "pl"),
}

DOC = """
### Greenest region

Asks the carbon-intensity service (connection `electricitymaps_default`) for the current intensity of five grid
zones **concurrently**, scores them (carbon only by default; set `cost_per_hour`, `latency_ms`, `weights` or a
`carbon_price` on the operator to trade carbon against money and latency) and follows **only** the chosen region's
task; Airflow skips the others.

* A region whose data fails falls back to its country's 2021 annual average and is marked `fallback` in the
  `carbon_regions` XCom table; if every region fails, the static averages decide.
* Each region's task runs on its own Celery **queue** (`se-se3`, `fr`, ...): start workers in each region with
  `airflow celery worker --queues <queue>` to send the work where the grid is clean. With LocalExecutor the queue
  is ignored and everything runs locally.
"""


@dag(
    dag_id="greenest_region_batch",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    doc_md=DOC,
    tags=["carbon-aware", "example"],
)
def greenest_region_batch():
    pick = GreenestRegionBranchOperator(
        task_id="pick_greenest_region",
        carbon_conn_id="electricitymaps_default",
        branches={region: task_id for region, (task_id, _) in REGIONS.items()},
        mode="now",
    )

    for region, (task_id, queue) in REGIONS.items():

        @task(task_id=task_id, queue=queue)
        def run_batch(region: str = region) -> dict:
            """Stand-in for the batch job: a little real CPU work, then what ran where."""
            import hashlib

            digest = hashlib.sha256()
            for i in range(200_000):
                digest.update(i.to_bytes(4, "little"))
            return {"region": region, "checksum": digest.hexdigest()[:12]}

        pick >> run_batch()


greenest_region_batch()
