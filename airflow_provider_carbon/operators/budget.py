"""Carbon budgets in Airflow: the ledger of each scope in an Airflow Variable, read by the sensor before its job
waits and appended by the accounting listener after a job is accounted.

Why a Variable: a task in Airflow 3 reaches the metadata database only through the Task SDK, and usage must be
shared by every worker machine, so a local file will not do. Of what the Task SDK offers on every supported release
(3.1 to 3.3), Variables are the only store a task can both read and write for another DAG run; it cannot list other
runs' XComs (3.1 has no call that lists DAG runs). One Variable per scope, ``carbon_budget.dag.<dag_id>`` and
``carbon_budget.tag.<tag>``, holds the ledger of :mod:`airflow_provider_carbon.core.budget` as JSON.

Concurrent writers: a Variable has no compare-and-set, so an append is read, add, write, then read back after a
short random pause; if the entry is gone (another writer's older copy overwrote it) it is written again, up to
:data:`WRITE_ATTEMPTS` times. An entry is keyed by run, task and map index, so a second write of the same job counts
once. What remains: two writers whose read-add-write cycles overlap *after* both verified can still lose one entry
(usage then reads low, never high); the pause makes that rare for jobs that end seconds apart, it cannot rule it out.

Nothing here may break a pipeline: an unreadable ledger gives the check's outcome ``unknown`` (the job runs) and a
failed append is logged.
"""

from __future__ import annotations

import logging
import random
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from airflow_provider_carbon._compat import AirflowFailException
from airflow_provider_carbon.exceptions import CarbonBudgetExceeded

if TYPE_CHECKING:
    from airflow_provider_carbon.core.budget import Budget, BudgetCheck

__all__ = ["BudgetFailure", "WRITE_ATTEMPTS", "check_budget", "ledger_key", "record_usage"]

#: how often an append is written before it is given up (each attempt verified by reading it back)
WRITE_ATTEMPTS = 4
#: the random pause before an append is read back, in seconds: long enough for a concurrent writer's write to land
VERIFY_PAUSE_S = (0.2, 0.8)

log = logging.getLogger(__name__)


class BudgetFailure(CarbonBudgetExceeded, AirflowFailException):
    """:class:`~airflow_provider_carbon.exceptions.CarbonBudgetExceeded` as Airflow's "fail without retries": what
    the sensor raises under policy ``fail``. Catch it as ``CarbonBudgetExceeded``."""


def ledger_key(scope: str) -> str:
    """The Variable holding the ledger of ``scope`` (``dag:<dag_id>`` or ``tag:<tag>``)."""
    kind, _, name = scope.partition(":")
    return f"carbon_budget.{kind}.{name}"


def _read(key: str) -> dict[str, Any] | None:
    from airflow.sdk import Variable

    value = Variable.get(key, default=None, deserialize_json=True)
    if value is not None and not isinstance(value, dict):
        raise ValueError(f"Variable {key} is not a carbon budget ledger (a JSON object); got {type(value).__name__}")
    return value


def check_budget(budget: Budget, *, dag_id: str, tz: str, now: datetime | None = None) -> BudgetCheck:
    """Read the ledger of ``budget``'s scope and check it; an unreadable ledger gives outcome ``unknown``."""
    from airflow_provider_carbon.core.budget import check

    now = now or datetime.now(timezone.utc)
    key = ledger_key(budget.scope_key(dag_id))
    try:
        ledger = _read(key)
        return check(budget, ledger, dag_id=dag_id, now=now, tz=tz)
    except Exception as err:  # the Variable backend, or a ledger edited by hand: never break the pipeline
        log.warning("carbon budget: ledger %s unreadable (%s: %s); the job runs", key, type(err).__name__, err)
        return check(budget, None, dag_id=dag_id, now=now, tz=tz, error=err)


def _append(key: str, entry: dict[str, Any]) -> bool:
    """Add ``entry`` to the ledger in Variable ``key``, verified by reading it back; whether it is there."""
    from airflow.sdk import Variable

    from airflow_provider_carbon.core.budget import add_entry

    for attempt in range(1, WRITE_ATTEMPTS + 1):
        now = datetime.now(timezone.utc)
        Variable.set(key, add_entry(_read(key), entry, now), serialize_json=True)
        time.sleep(random.uniform(*VERIFY_PAUSE_S))  # noqa: S311 (jitter, not security)
        stored = _read(key) or {}
        if any(e.get("id") == entry["id"] for e in stored.get("entries", [])):
            return True
        log.warning("carbon budget: entry %s lost in %s to a concurrent write (attempt %d)", entry["id"], key, attempt)
    return False


def record_usage(ti: Any, dag: Any, record: dict[str, Any]) -> list[str]:
    """Add an accounting record of the job ``ti`` to the ledgers of its DAG and of each of the DAG's tags; the keys
    written. Never raises: a budget's bookkeeping must not fail a job that succeeded."""
    dag_id = getattr(ti, "dag_id", None) or getattr(dag, "dag_id", "")
    scopes = [f"dag:{dag_id}", *(f"tag:{tag}" for tag in sorted(getattr(dag, "tags", None) or ()))]
    entry = {
        "id": f"{dag_id}/{getattr(ti, 'run_id', '')}/{ti.task_id}/{getattr(ti, 'map_index', -1)}",
        "ended_at": record["ended_at"],
        "grams": float(record["emissions_g"]),
        "signal": record["signal"],
        "unit": record.get("unit"),
    }
    written = []
    for scope in scopes:
        key = ledger_key(scope)
        try:
            if _append(key, entry):
                written.append(key)
            else:
                log.error("carbon budget: could not add %s to %s; its usage reads low", entry["id"], key)
        except Exception:
            log.exception("carbon budget: could not add %s to %s; its usage reads low", entry["id"], key)
    return written
