"""The provider's carbon records in the metadata database: one query for the Carbon page and the run's note.

Runs in Airflow's server-side processes only (the api-server for the page, the scheduler for the note), which have
the metadata database; it imports SQLAlchemy and Airflow's models, not FastAPI.
"""

from __future__ import annotations

from typing import Any

from airflow.models.dagrun import DagRun
from airflow.models.xcom import XComModel
from sqlalchemy import select

from airflow_provider_carbon.core.report import ACCOUNTING_KEY, DECISION_KEY, XComRecord, decode_stored

__all__ = ["read_records"]

_KEYS = (DECISION_KEY, ACCOUNTING_KEY)


def read_records(session: Any, dag_ids: set[str], *, run_id: str | None = None) -> list[XComRecord]:
    """The carbon XComs of ``dag_ids`` (of one run when ``run_id`` is given, with its DAG id the only one in
    ``dag_ids``), with their runs' ``run_after``, in one query.

    The XCom ``value`` column is JSON (JSONB on PostgreSQL); what the Task SDK stores there is the value serialized
    to a JSON string once more, so each row is decoded with Airflow's own :meth:`XComModel.deserialize_value`,
    which also passes through values that were stored undecoded.
    """
    if not dag_ids:
        return []
    stmt = (
        select(
            XComModel.dag_id,
            XComModel.run_id,
            XComModel.task_id,
            XComModel.map_index,
            XComModel.key,
            XComModel.value,
            DagRun.run_after,
        )
        .join(DagRun, DagRun.id == XComModel.dag_run_id)
        .where(XComModel.key.in_(_KEYS), XComModel.dag_id.in_(dag_ids))
    )
    if run_id is not None:
        stmt = stmt.where(XComModel.run_id == run_id)
    return [
        XComRecord(
            dag_id=row.dag_id,
            run_id=row.run_id,
            task_id=row.task_id,
            map_index=row.map_index,
            key=row.key,
            value=_decoded(row),
            run_after=row.run_after,
        )
        for row in session.execute(stmt)
    ]


def _decoded(row: Any) -> Any:
    """The row's value: our fast decoder for the plain JSON our records are, Airflow's own for anything else."""
    value = decode_stored(row.value)
    return value if value is not None else XComModel.deserialize_value(row)


def _decoded(row: Any) -> Any:
    """The row's value: our fast decoder for the plain JSON our records are, Airflow's own for anything else."""
    value = decode_stored(row.value)
    return value if value is not None else XComModel.deserialize_value(row)
