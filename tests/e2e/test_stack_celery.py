"""The production-like variant: CeleryExecutor with Redis as broker, PostgreSQL as metadata database and result
backend, a Celery worker serving the default and the region queues (as docker-compose.yaml runs them), and the
same example DAGs through the REST API."""

from __future__ import annotations

import os
import socket
import urllib.parse
import uuid
from datetime import timedelta

import pytest

from tests.conftest import require_or_skip
from tests.e2e.test_stack import (
    NIGHTLY,
    REGION_TASKS,
    REGIONS,
    check_carbon_api,
    check_region_run,
    compressed_conf,
    night_starts_now,
    run_dag,
    set_failure,
    simulator,  # noqa: F401 - the module-scoped fixture
    start_stack,
    task_states,
    trigger_logs,
    xcom,
)

pytestmark = pytest.mark.slow
PG = os.environ.get("CARBON_E2E_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
REDIS = os.environ.get("CARBON_E2E_REDIS", "redis://127.0.0.1:6379/7")


def reachable(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def database():
    import psycopg2

    pg, redis_url = urllib.parse.urlparse(PG), urllib.parse.urlparse(REDIS)
    require_or_skip(reachable(pg.hostname or "127.0.0.1", pg.port or 5432), f"PostgreSQL at {PG}")
    require_or_skip(reachable(redis_url.hostname or "127.0.0.1", redis_url.port or 6379), f"Redis at {REDIS}")
    name = f"carbon_e2e_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(f"{PG}/postgres")
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG}/{name}"
    finally:
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(scope="module")
def celery_stack(tmp_path_factory, simulator, database):  # noqa: F811 - pytest fixture injection
    import redis

    redis.Redis.from_url(REDIS).flushdb()
    sqlalchemy_url = database.replace("postgresql://", "postgresql+psycopg2://", 1)
    env = {
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sqlalchemy_url,
        "AIRFLOW__CELERY__BROKER_URL": REDIS,
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + database,
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
    }
    worker = ("celery", "worker", "--queues", "default,se-se3,fr,es,de,pl", "--skip-serve-logs")
    yield from start_stack(tmp_path_factory.mktemp("airflow-home-celery"), simulator, env, (worker,))


def test_nightly_dag_on_celery_and_postgres(celery_stack, simulator):  # noqa: F811
    set_failure(simulator, "ok")
    run = run_dag(celery_stack, NIGHTLY, compressed_conf(night_starts_now(simulator) + timedelta(seconds=20)))
    run_id = run["dag_run_id"]
    assert run["state"] == "success", task_states(celery_stack, NIGHTLY, run_id)
    decision = xcom(celery_stack, NIGHTLY, run_id, "wait_for_low_carbon_window", "carbon_decision")
    assert decision["used_fallback"] is False
    assert trigger_logs(celery_stack, NIGHTLY, run_id, "wait_for_low_carbon_window")
    # the tasks ran in the Celery worker, not in a LocalExecutor child of the scheduler
    assert "Executing workload in Celery: dag_rel_path=PurePosixPath('nightly_low_carbon.py')" in celery_stack.log(
        "worker-0"
    )
    # the Carbon page decodes the XComs PostgreSQL keeps in JSONB (SQLite: JSON text) to the same numbers
    check_carbon_api(celery_stack, run_id)


def test_region_branch_routes_to_the_region_queue(celery_stack, simulator):  # noqa: F811
    set_failure(simulator, "ok")
    run = run_dag(celery_stack, REGIONS, {})
    task_id = check_region_run(celery_stack, run)
    quoted = urllib.parse.quote(run["dag_run_id"], safe="")
    ti = celery_stack.request("GET", f"/api/v2/dags/{REGIONS}/dagRuns/{quoted}/taskInstances/{task_id}")
    region = next(r for r, t in REGION_TASKS.items() if t == task_id)
    assert ti["queue"] == region.lower()  # the DAG gives each region its own queue, served by the worker
