"""An auth manager that lets users read one DAG only, and a script that asks the Carbon view through it.

Airflow's SimpleAuthManager (the stack's) gives every role all DAGs or none, so it cannot show that the Carbon page
filters rows by readable DAG id. This subclass keeps SimpleAuthManager's users, tokens and roles and refuses every DAG
but ``CARBON_READABLE_DAG``; Airflow's own ``get_authorized_dag_ids`` (of the base class, asking
``is_authorized_dag`` per DAG of the real database) then yields that one DAG.

``python -m tests.e2e.restricted_auth`` builds Airflow's real api-server app in-process (``create_app()``: plugins
mounted as in ``airflow api-server``) with this auth manager against the stack's database, logs in through
``/auth/token`` and prints, as JSON, what the Carbon endpoints answered.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.parse

from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager


class OneDagAuthManager(SimpleAuthManager):
    """SimpleAuthManager whose users may read only the DAG named by ``CARBON_READABLE_DAG``."""

    def is_authorized_dag(self, *, method, user, access_entity=None, details=None) -> bool:
        if details is not None and details.id is not None and details.id != os.environ["CARBON_READABLE_DAG"]:
            return False
        return super().is_authorized_dag(method=method, user=user, access_entity=access_entity, details=details)


def main(dag_id: str, run_id: str, task_id: str) -> None:
    from airflow.api_fastapi.app import create_app
    from fastapi.testclient import TestClient

    with TestClient(create_app()) as client:
        login = client.post("/auth/token", json={"username": "admin", "password": "adminpw"})
        login.raise_for_status()
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        runs = client.get("/carbon/api/runs", headers=headers)
        quoted = [urllib.parse.quote(part, safe="") for part in (dag_id, run_id, task_id)]
        task = client.get("/carbon/dags/{}/runs/{}/tasks/{}".format(*quoted), headers=headers)
        print(
            json.dumps(
                {
                    "runs_status": runs.status_code,
                    "dag_ids": sorted({r["dag_id"] for r in runs.json().get("runs", [])}),
                    "run_ids": [r["run_id"] for r in runs.json().get("runs", [])],
                    "task_status": task.status_code,
                }
            )
        )


if __name__ == "__main__":
    main(*sys.argv[1:4])
