"""The Carbon page: a FastAPI app the api-server mounts under ``/carbon`` (see :class:`CarbonPlugin`).

Imported only by the api-server, on the first request to ``/carbon`` (the plugin hands Airflow a small ASGI wrapper
that imports this module then), so no scheduler, worker or triggerer ever loads FastAPI for it.

Each page reads the metadata database once: the ``carbon_decision`` and ``carbon_accounting`` XComs of the DAGs the
user may read, joined with their DAG runs. Everything after the query is pure
(:mod:`airflow_provider_carbon.core.report`).

Authentication and authorization are Airflow's own dependencies: :data:`GetUserDep` takes the UI's session cookie
(``_token``) or a ``Authorization: Bearer`` token and answers 401 without either; :data:`ReadableTIFilterDep` asks
the auth manager for the DAG ids the user may read (it reads ``request.app.state.auth_manager``, which a mounted
plugin app does not inherit: :func:`create_app` sets it); the task page also passes ``requires_access_dag``.
"""

from __future__ import annotations

from typing import Annotated, Any

from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import GetUserDep, ReadableTIFilterDep, requires_access_dag
from fastapi import Depends, FastAPI, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import HTMLResponse

from airflow_provider_carbon.core.report import (
    DEFAULT_PER_PAGE,
    MAX_PER_PAGE,
    build_overview,
    build_task_view,
    render_overview,
    render_task_view,
)
from airflow_provider_carbon.operators.links import CARBON_VIEW_PREFIX
from airflow_provider_carbon.plugins.records import read_records

__all__ = ["URL_PREFIX", "create_app"]

#: where the api-server mounts the app (Airflow refuses /api/v2, /ui, /execution, /auth and /pluginsv2)
URL_PREFIX = CARBON_VIEW_PREFIX


def _bases(request: Request) -> tuple[str, str]:
    """(this app's mount path, the Airflow UI's root) as the browser sees them."""
    mount = request.scope.get("root_path", "") or URL_PREFIX
    return mount, mount[: -len(URL_PREFIX)] if mount.endswith(URL_PREFIX) else ""


def create_app(auth_manager: Any = None) -> FastAPI:
    """The Carbon app; ``auth_manager`` defaults to the api-server's (initialised before the first request)."""
    if auth_manager is None:
        from airflow.api_fastapi.app import get_auth_manager

        auth_manager = get_auth_manager()
    app = FastAPI(title="Carbon", docs_url=None, redoc_url=None, openapi_url=None)
    # Airflow's Readable*FilterDep dependencies read the auth manager from the app serving the request: this one
    app.state.auth_manager = auth_manager

    @app.get("/", response_class=HTMLResponse)
    def overview(
        request: Request,
        user: GetUserDep,
        readable: ReadableTIFilterDep,
        session: SessionDep,
        page: Annotated[int, Query(ge=1)] = 1,
        per_page: Annotated[int, Query(ge=1, le=MAX_PER_PAGE)] = DEFAULT_PER_PAGE,
    ) -> HTMLResponse:
        """Recent carbon-aware runs of the DAGs the user may read, their totals and the savings chart."""
        model = build_overview(read_records(session, readable.value or set()), page=page, per_page=per_page)
        mount, airflow_base = _bases(request)
        return HTMLResponse(render_overview(model, base=mount, airflow_base=airflow_base))

    @app.get("/api/runs")
    def runs(
        user: GetUserDep,
        readable: ReadableTIFilterDep,
        session: SessionDep,
        page: Annotated[int, Query(ge=1)] = 1,
        per_page: Annotated[int, Query(ge=1, le=MAX_PER_PAGE)] = DEFAULT_PER_PAGE,
    ) -> dict[str, Any]:
        """The overview's rows and totals as JSON (same query, same filter)."""
        model = build_overview(read_records(session, readable.value or set()), page=page, per_page=per_page)
        return jsonable_encoder(
            {
                "runs": model.rows,
                "total_entries": model.total_rows,
                "page": model.page,
                "per_page": model.per_page,
                "per_dag": [
                    {"dag_id": d, "signal": s, "unit": u, **vars(t), "saving_pct": t.saving_pct}
                    for (d, s, u), t in model.per_dag.items()
                ],
                "per_month": [
                    {"month": m, "signal": s, "unit": u, **vars(t), "saving_pct": t.saving_pct}
                    for (m, s, u), t in model.per_month.items()
                ],
            }
        )

    @app.get(
        "/dags/{dag_id}/runs/{run_id}/tasks/{task_id}",
        response_class=HTMLResponse,
        dependencies=[Depends(requires_access_dag("GET", DagAccessEntity.TASK_INSTANCE))],
    )
    def task_instance(
        request: Request,
        dag_id: str,
        run_id: str,
        task_id: str,
        user: GetUserDep,
        readable: ReadableTIFilterDep,
        session: SessionDep,
        map_index: str = "-1",
    ) -> HTMLResponse:
        """One task instance: the forecast its plan used, the chosen window and the actual run, the alternatives
        and every re-plan."""
        # the UI fills {MAP_INDEX} only for mapped tasks and leaves the placeholder in the URL otherwise
        index = int(map_index) if map_index.lstrip("-").isdigit() else -1
        allowed = {dag_id} & (readable.value or set())
        records = read_records(session, allowed, run_id=run_id)
        view = build_task_view(records, dag_id=dag_id, run_id=run_id, task_id=task_id, map_index=index)
        mount, _ = _bases(request)
        return HTMLResponse(render_task_view(view, base=mount))

    return app
