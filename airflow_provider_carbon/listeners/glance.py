"""The plan and its outcome at a glance: a DAG-run listener that writes them into the run's note.

A task cannot set a note (the Task SDK's execution API reads a DAG run's note, from 3.3 on, but has no call to write
one), so this listener runs where Airflow decides a run's final state: in the scheduler (and in ``airflow dags
test``, which schedules in-process), inside ``DagRun.update_state``. When a run that holds a carbon decision
(XCom ``carbon_decision``, from a :class:`~airflow_provider_carbon.sensors.carbon_window.CarbonWindowSensor` or a
plan operator) succeeds or fails, its note becomes one line per decision, in the DAG's timezone::

    05:00 CEST optimum, 293 g/kWh, -21 % vs 00:00; ran 05:00 CEST-07:00: 176 g CO2eq, -21 % vs 00:00
    FALLBACK 02:00 CEST: API down (unavailable)

The note shows on the run's page in the UI and in the REST API, where a fallback run now looks different from an
optimal one. A note somebody wrote is never replaced: the listener writes only where there is no note or where the
note is its own (``user_id`` :data:`NOTE_AUTHOR`); a person who edits it takes it over.

Sessions: the listener reads the XComs and writes the note through the session the run object belongs to (the
scheduler's, whose transaction already holds the run's new state), and never commits: the caller commits both
together. A second session would wait on SQLite for the write lock the scheduler's own transaction holds. In
``airflow dags test`` the run comes detached; there it reads in a session of its own and leaves the write to the
merge that follows (see :func:`_write_detached`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from airflow.listeners import hookimpl

if TYPE_CHECKING:
    from datetime import tzinfo

    from sqlalchemy.orm import Session

__all__ = ["NOTE_AUTHOR", "note_for_run", "on_dag_run_failed", "on_dag_run_success", "write_note"]

#: the ``user_id`` of the notes this listener writes (no user has it: Airflow's users come from the auth manager)
NOTE_AUTHOR = "airflow-provider-carbon"

log = logging.getLogger(__name__)


@hookimpl
def on_dag_run_success(dag_run: Any, msg: str) -> None:
    """Write the run's carbon note when it succeeds."""
    _safely(dag_run)


@hookimpl
def on_dag_run_failed(dag_run: Any, msg: str) -> None:
    """Write the run's carbon note when it fails (the plan was made; the job may not have run)."""
    _safely(dag_run)


def _safely(dag_run: Any) -> None:
    try:
        write_note(dag_run)
    except Exception:  # a note is a convenience: it must never disturb the scheduler's loop
        log.exception("carbon note for %s failed", getattr(dag_run, "run_id", dag_run))


def write_note(dag_run: Any, session: Session | None = None) -> str | None:
    """Set ``dag_run``'s note from its carbon decisions and accountings, in ``session`` (default: the run's own),
    unless someone else wrote the note; return the note written, if any."""
    from airflow.models.dagrun import DagRunNote
    from sqlalchemy.orm import object_session

    session = session or object_session(dag_run)
    if session is None:
        return _write_detached(dag_run)
    text = note_for_run(dag_run, session)
    if not text:
        return None
    current = dag_run.dag_run_note
    if current is not None and current.content and current.user_id != NOTE_AUTHOR:
        log.info("carbon note: %s already has a note by someone else; kept it", dag_run.run_id)
        return None
    if current is None:
        dag_run.dag_run_note = DagRunNote(content=text, user_id=NOTE_AUTHOR)
    else:
        current.content, current.user_id = text, NOTE_AUTHOR
    log.info("carbon note for %s: %s", dag_run.run_id, text)
    return text


def _write_detached(dag_run: Any) -> str | None:
    """``airflow dags test`` hands the listener a run outside any session, and merges it into its own session right
    after (``DagRun.update_state`` ends with ``session.merge``, which cascades to the note) and commits it. So:
    read in a session of our own (reads take no write lock), set the note on the object, and let that merge write
    it. A run that already has a note keeps it (replacing a row through a merge is not worth the risk here)."""
    from airflow.models.dagrun import DagRunNote
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as reader:
        text = note_for_run(dag_run, reader)
        noted = reader.scalar(select(DagRunNote.dag_run_id).where(DagRunNote.dag_run_id == dag_run.id))
    if not text:
        return None
    if noted is not None:
        log.info("carbon note: %s already has a note; kept it", dag_run.run_id)
        return None
    dag_run.dag_run_note = DagRunNote(content=text, user_id=NOTE_AUTHOR)
    log.info("carbon note for %s: %s", dag_run.run_id, text)
    return text


def note_for_run(dag_run: Any, session: Session) -> str | None:
    """The note for ``dag_run`` from its XComs, or ``None`` when it holds no carbon decision."""
    from airflow_provider_carbon.core.accounting import Accounting
    from airflow_provider_carbon.core.decision import Decision
    from airflow_provider_carbon.core.glance import run_note
    from airflow_provider_carbon.operators.base import DECISION_XCOM_KEY
    from airflow_provider_carbon.plugins.records import read_records

    records = read_records(session, {dag_run.dag_id}, run_id=dag_run.run_id)  # the Carbon page's query
    decisions: dict[tuple[str, int], Decision] = {}
    accountings: dict[str, list[Accounting]] = {}
    for row in sorted(records, key=lambda r: (r.task_id, r.map_index)):
        value = row.value
        if not isinstance(value, dict):  # a custom XCom backend's reference, or something not ours
            continue
        try:
            if row.key == DECISION_XCOM_KEY:
                decisions[(row.task_id, row.map_index)] = Decision.from_dict(value)
            else:
                accountings.setdefault(row.task_id, []).append(Accounting.from_dict(value))
        except (KeyError, TypeError, ValueError) as err:
            log.warning("carbon note: unreadable %s of %s (%s)", row.key, row.task_id, err)
    if not decisions:
        return None
    dag = _dag(dag_run)
    pairs = []
    for (task_id, _), decision in decisions.items():
        jobs = [job for job in accountings if _downstream(dag, job, task_id, single=len(decisions) == 1)]
        pairs.append((decision, [record for job in jobs for record in accountings[job]]))
    return run_note(pairs, _timezone(dag))


def _dag(dag_run: Any) -> Any:
    try:
        return dag_run.get_dag()
    except Exception:  # a run outside the scheduler (marked from the API) may have no DAG attached
        return None


def _downstream(dag: Any, job_id: str, sensor_id: str, *, single: bool) -> bool:
    """Whether ``job_id`` (a task with an accounting) runs directly after ``sensor_id`` (the one that accounted it);
    without the DAG, every accounting belongs to the run's only decision."""
    if dag is None:
        return single
    try:
        return sensor_id in dag.get_task(job_id).upstream_task_ids
    except Exception:
        return single


def _timezone(dag: Any) -> tzinfo | None:
    """The DAG's timezone (pendulum's, a ``tzinfo``); ``None`` leaves the decision's own timezone in force."""
    zone = getattr(dag, "timezone", None)
    from datetime import tzinfo as tzinfo_type

    return zone if isinstance(zone, tzinfo_type) else None
