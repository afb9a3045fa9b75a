"""The plugin as Airflow sees it: light to import in every process, views Airflow's own models accept, and an app
that refuses a request without credentials (in-process, no database: authentication comes before any query)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# Starlette's notices about its test client's libraries, raised when Airflow's app module or the test client is
# first imported: it wants httpx2, which Airflow's pins do not include (3.3.2), and uses an anyio alias that the
# floor's pins deprecate (3.1.8)
pytestmark = [
    pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient` is deprecated"),
    pytest.mark.filterwarnings("ignore:The anyio.abc.BlockingPortal alias is deprecated"),
]


def test_importing_the_plugin_loads_no_web_framework():
    # what the scheduler, the workers and the triggerer pay: Airflow's plugin manager is already loaded there
    code = (
        "import sys, json; import airflow.plugins_manager; before = set(sys.modules); "
        "import airflow_provider_carbon.plugins; print(json.dumps(sorted(set(sys.modules) - before)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    new = json.loads(out.strip().splitlines()[-1])
    heavy = [m for m in new if m.split(".")[0] in {"fastapi", "starlette", "pydantic", "sqlalchemy", "numpy"}]
    assert not heavy and not [m for m in new if m.startswith("airflow.api_fastapi")], new
    assert "airflow_provider_carbon.listeners.accounting" in new  # the listener still comes with it


def test_the_views_and_the_app_are_what_airflow_accepts():
    from airflow.api_fastapi.app import RESERVED_URL_PREFIXES
    from airflow.api_fastapi.core_api.datamodels.plugins import ExternalViewResponse

    from airflow_provider_carbon.listeners import accounting, energy, glance
    from airflow_provider_carbon.plugins import CarbonPlugin

    views = [ExternalViewResponse.model_validate(view) for view in CarbonPlugin.external_views]
    assert [(v.name, v.destination) for v in views] == [("Carbon", "nav"), ("Carbon", "task_instance")]
    assert len({v.url_route for v in views}) == 2  # Airflow drops a view whose route another one has
    for placeholder in ("{DAG_ID}", "{RUN_ID}", "{TASK_ID}", "{MAP_INDEX}"):
        assert placeholder in views[1].href
    (app,) = CarbonPlugin.fastapi_apps
    assert not any(app["url_prefix"].startswith(p) for p in RESERVED_URL_PREFIXES)
    assert views[0].href.startswith(app["url_prefix"]) and CarbonPlugin.listeners == [accounting, energy, glance]


@pytest.mark.parametrize("path", ["/", "/api/runs", "/dags/d/runs/r/tasks/t?map_index={MAP_INDEX}"])
def test_no_credentials_is_401(path):
    from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager
    from fastapi.testclient import TestClient

    from airflow_provider_carbon.plugins.carbon_view import create_app

    with TestClient(create_app(auth_manager=SimpleAuthManager())) as client:
        assert client.get(path).status_code == 401
