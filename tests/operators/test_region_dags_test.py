"""The branch operator in a real `airflow dags test` run: five regions on a local Electricity Maps-format
server, two of them failing; only the greenest region's task runs."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from tests.airflow_stack import AirflowStack
from tests.conftest import REPO_ROOT
from tests.em_server import EmZones

pytestmark = pytest.mark.slow


def test_only_the_greenest_regions_task_runs(tmp_path, httpserver):
    start = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    zones = EmZones(start, {"SE-SE3": [300] * 30, "FR": [40] * 30, "DE": [380] * 30, "PL": [660] * 30, "ES": [25] * 30})
    zones.broken = {"ES": "500", "SE-SE3": "not_entitled"}  # Spain would have won; its data fails
    (tmp_path / "home").mkdir()
    stack = AirflowStack(tmp_path / "home", extra_env={"AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "tests" / "dags")})
    stack.env["AIRFLOW_CONN_GRID"] = zones.connection(zones.install(httpserver))
    stack.migrate()
    out = tmp_path / "out"
    out.mkdir()
    result = stack.run("dags", "test", "greenest_region_test", "-c", json.dumps({"out": str(out)}), timeout=180)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-5000:]
    # Spain failed live and falls back to its 2021 national average (193.9): France's live 40 wins
    assert sorted(p.name for p in out.iterdir()) == ["ran-FR"]
    assert "greenest region: FR (FR): lowest score" in log
