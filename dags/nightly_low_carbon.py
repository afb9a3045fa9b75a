"""Nightly training at the lowest-carbon time of the night, with a 02:00 fallback when the carbon API is down.

Parses in milliseconds and touches no network: every carbon decision happens when the tasks run.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

from airflow_provider_carbon.sensors.carbon_window import CarbonWindowSensor

DOC = """
### Nightly low-carbon training

At **midnight** (Europe/Berlin) this DAG asks the carbon-intensity service behind the connection
`electricitymaps_default` for its 24-hour forecast, picks the start of the **2-hour** training job with the lowest
expected emissions that still **finishes within 8 hours of the run's start** (08:00 on an ordinary night when the
run starts on time; 09:00 on the spring-forward night and 07:00 on the fall-back night, as the clocks change), and
waits for it in the triggerer (no worker slot).

* **API down or unusable** (timeouts, 5xx, 429, bad token, garbage, all zeros): the job starts at the
  **02:00 fallback** instead, and the decision record says why.
* **Decision record**: the sensor's XCom `carbon_decision` (and `return_value`) holds the planned start, the
  expected mean intensity of the chosen window (`expected_intensity`), what starting at decision time (just after
  midnight) or at 02:00 would have averaged (`intensity_if_started_at_decision`, `intensity_if_fallback`), the
  saving, the forecast's source, whether and why the fallback applied, and every re-plan. In the Airflow 3.3 UI it
  is under the sensor task's *XCom* tab.
* **Accounting**: the sensor knows the job's average power (`power_kw=0.3`), so when `train_model` succeeds its
  real runtime, energy, the intensity it met (the service's history, else the plan's forecast), its emissions and
  the grams saved against starting at once and at 02:00 go to its XCom `carbon_accounting`, one log line and
  Airflow's metrics (`carbon.*`).
* **Report**: the last task logs the savings against starting at decision time and at the 02:00 default.

Change the zone, the job length or the deadline in the trigger form (params); point the connection at a real
Electricity Maps token, or at the offline simulator (`make demo`).
"""


@dag(
    dag_id="nightly_low_carbon_training",
    schedule="0 0 * * *",
    start_date=pendulum.datetime(2025, 1, 1, tz="Europe/Berlin"),
    catchup=False,
    max_active_runs=1,
    doc_md=DOC,
    tags=["carbon-aware", "example"],
    params={
        "zone": "DE",
        "expected_duration": "PT2H",
        "max_delay": "PT6H",
        "fallback": "02:00",
        "fallback_timezone": "",
        "training_rounds": 300,
        "report_file": "",
    },
)
def nightly_low_carbon_training():
    wait = CarbonWindowSensor(
        task_id="wait_for_low_carbon_window",
        carbon_conn_id="electricitymaps_default",
        zone="{{ params.zone }}",
        expected_duration="{{ params.expected_duration }}",
        max_delay="{{ params.max_delay }}",  # 6 h + a 2 h job: done within 8 h of the run's start
        fallback="{{ params.fallback }}",
        fallback_timezone="{{ params.fallback_timezone }}",  # empty: the DAG's timezone
        recheck_interval=1800,
        deferrable=True,
        power_kw=0.3,  # the training job's average draw: its run is carbon-accounted (XCom carbon_accounting)
        doc_md="Plans the window at run time and waits for it in the triggerer; see the DAG docs.",
    )

    @task
    def train_model(params: dict | None = None) -> dict:
        """A small real CPU workload standing in for training: gradient descent on a least-squares problem."""
        import time

        import numpy as np

        rng = np.random.default_rng(42)
        x = rng.normal(size=(2000, 50))
        truth = rng.normal(size=50)
        y = x @ truth + rng.normal(scale=0.1, size=2000)
        weights = np.zeros(50)
        started = time.perf_counter()
        for _ in range(int(params["training_rounds"])):
            weights -= 0.1 * x.T @ (x @ weights - y) / len(y)
        loss = float(np.mean((x @ weights - y) ** 2))
        return {"loss": loss, "seconds": round(time.perf_counter() - started, 3)}

    @task
    def report(metrics: dict, params: dict | None = None, ti=None) -> dict:
        """Log what was decided and what it saved against starting at decision time and at the 02:00 default."""
        import json

        # pulled here rather than passed as wait.output: that would make this task a direct downstream of the
        # sensor, and the sensor's power_kw would account the report as a second 0.3 kW job
        decision = ti.xcom_pull(task_ids="wait_for_low_carbon_window", key="carbon_decision")

        def saving(reference: float | None) -> float | None:
            expected = decision.get("expected_intensity")
            if reference is None or expected is None or reference <= 0:
                return None
            return round(100 * (reference - expected) / reference, 1)

        summary = {
            "planned_start": decision["planned_start"],
            "released_at": decision.get("released_at"),
            "zone": decision.get("zone"),
            "source": decision.get("source"),
            "used_fallback": decision["used_fallback"],
            "fallback_reason": decision.get("fallback_reason"),
            "fallback_error": decision.get("fallback_error"),
            "expected_intensity": decision.get("expected_intensity"),
            "intensity_if_started_at_decision": decision.get("intensity_if_started_at_decision"),
            "intensity_if_fallback": decision.get("intensity_if_fallback"),
            "saving_vs_start_pct": saving(decision.get("intensity_if_started_at_decision")),
            "saving_vs_fallback_time_pct": saving(decision.get("intensity_if_fallback")),
            "replans": len(decision.get("replans", [])),
            "training": metrics,
            # what the run really emitted and saved, from the accounting listener (power_kw on the sensor)
            "accounting": ti.xcom_pull(task_ids="train_model", key="carbon_accounting") if ti else None,
            "decision": decision,
        }
        print("carbon report:", json.dumps({k: v for k, v in summary.items() if k != "decision"}))
        if params.get("report_file"):
            with open(params["report_file"], "w") as fh:
                json.dump(summary, fh)
        return summary

    metrics = train_model()
    wait >> metrics
    report(metrics)


nightly_low_carbon_training()
