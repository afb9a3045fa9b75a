"""The provider's Airflow plugin, registered through the ``airflow.plugins`` entry point.

A plugin listed only in ``get_provider_info()`` loads only when ``[core] lazy_discover_providers`` is off, which is
not the default; the entry point loads it in every Airflow process. So this module stays light: it names the
listener module, and the Carbon page's FastAPI app is a small ASGI wrapper here that imports FastAPI and builds the
app (:mod:`airflow_provider_carbon.plugins.carbon_view`) on the first request, which only the api-server ever gets.
"""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin

from airflow_provider_carbon.listeners import accounting, energy, glance
from airflow_provider_carbon.operators.links import CARBON_VIEW_PREFIX

__all__ = ["CarbonPlugin", "LazyCarbonApp"]

#: the api-server mounts the app here (the extra link's CARBON_VIEW_PREFIX)
URL_PREFIX = CARBON_VIEW_PREFIX


class LazyCarbonApp:
    """An ASGI app that builds the Carbon app on its first request and hands every request to it.

    Airflow mounts whatever ``fastapi_apps`` names in the api-server (``app.mount(prefix, app)`` accepts any ASGI
    callable). Building the FastAPI app needs FastAPI, SQLAlchemy models and the auth manager; the scheduler,
    workers and triggerer import this module too and need none of them.
    """

    def __init__(self) -> None:
        self._app: Any = None

    def _build(self) -> Any:
        # one event loop serves the requests, and nothing here awaits, so two first requests cannot both build it
        if self._app is None:
            from airflow_provider_carbon.plugins.carbon_view import create_app

            self._app = create_app()
        return self._app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await self._build()(scope, receive, send)


class CarbonPlugin(AirflowPlugin):
    """Carbon accounting of the jobs that carbon sensors release (a task-instance listener, with CodeCarbon's
    measurement where asked for), the plan and its outcome in each run's note (a DAG-run listener), and the Carbon
    page in the Airflow UI: the navigation's "Carbon" entry and a "Carbon" tab on every task instance."""

    name = "carbon"
    listeners = [accounting, energy, glance]
    fastapi_apps = [{"app": LazyCarbonApp(), "url_prefix": URL_PREFIX, "name": "Carbon"}]
    external_views = [
        {
            "name": "Carbon",
            "href": f"{URL_PREFIX}/",
            "destination": "nav",
            "url_route": "carbon",
            "nav_top_level": True,
        },
        {
            # the UI substitutes {DAG_ID}, {RUN_ID} and {TASK_ID} (URL-encoded); {MAP_INDEX} only for a mapped task,
            # so the app reads a placeholder left as it is as -1
            "name": "Carbon",
            "href": f"{URL_PREFIX}/dags/{{DAG_ID}}/runs/{{RUN_ID}}/tasks/{{TASK_ID}}?map_index={{MAP_INDEX}}",
            "destination": "task_instance",
            "url_route": "carbon-task",
        },
    ]
