"""Carbon accounting of every job a carbon sensor released: an Airflow task-instance listener.

When a task succeeds whose direct upstream is a
:class:`~airflow_provider_carbon.sensors.carbon_window.CarbonWindowSensor` given the job's power or energy
(``power_kw=`` or ``energy_kwh=``), this listener, running in that task's own process right after it succeeded,
accounts the run with :func:`~airflow_provider_carbon.core.accounting.account`:

* the job's real start and end are the task instance's, as Airflow measured them;
* the intensity it experienced comes from the service's history over the run (through the sensor's connection),
  or, when history is unavailable or does not cover the run yet, from the forecast the sensor's plan used, and the
  record says which (``intensity_source``);
* the counterfactuals are the sensor's decision time (no shifting) and its fallback time (the 02:00 cron).

The record goes to the job's XCom ``carbon_accounting``, to one log line, and to Airflow's metrics. Why a listener
and not a decorator or a report task: the DAG author adds one argument to the sensor they already have, any kind of
task (operator, ``@task``, a KubernetesPodOperator) is accounted, and the start and end are Airflow's own figures.

Nothing here may fail a job: every error is logged and the job's success stands. Nothing heavy is imported at module
level, because every Airflow process that loads plugins imports this module.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from airflow.listeners import hookimpl

if TYPE_CHECKING:
    from airflow_provider_carbon.core.accounting import Accounting
    from airflow_provider_carbon.core.forecast import Forecast
    from airflow_provider_carbon.sensors.carbon_window import CarbonWindowSensor

__all__ = ["ACCOUNTING_XCOM_KEY", "METRIC_PREFIX", "on_task_instance_success"]

ACCOUNTING_XCOM_KEY = "carbon_accounting"
#: metric names start with this (Airflow adds its own ``[metrics] statsd_prefix`` in front)
METRIC_PREFIX = "carbon"
#: how long the history request may take: the job is done, but its task process waits for this listener
HISTORY_BUDGET = timedelta(seconds=30)

log = logging.getLogger(__name__)


@hookimpl
def on_task_instance_success(previous_state: Any, task_instance: Any) -> None:
    """Account the task if a carbon sensor with the job's power or energy released it."""
    task = getattr(task_instance, "task", None)
    if task is None:
        return
    for sensor in _accounting_sensors(task):
        try:
            account_job(task_instance, sensor)
        except Exception:  # accounting is a report: it must never turn a successful job into a failed one
            log.exception("carbon accounting of %s failed; the job's result stands", task.task_id)


def _accounting_sensors(task: Any) -> list[CarbonWindowSensor]:
    """The sensors with the job's power or energy that released ``task`` as their job.

    A sensor's job is a direct downstream task that does not come after another of that sensor's direct downstream
    tasks: in ``wait >> train >> report`` where ``report`` also reads ``wait.output`` (which makes it a direct
    downstream too), ``train`` is the job and ``report`` is not, so a run is never accounted twice.
    """
    from airflow_provider_carbon.sensors.carbon_window import CarbonWindowSensor

    try:
        upstream = list(task.upstream_list)
        before = task.get_flat_relative_ids(upstream=True)
    except Exception:  # a task outside a DAG has no upstream to ask about
        return []
    return [
        t
        for t in upstream
        if isinstance(t, CarbonWindowSensor)
        and t.accounts_energy
        and not (set(t.downstream_task_ids) - {task.task_id}) & before
    ]


def account_job(ti: Any, sensor: CarbonWindowSensor) -> dict[str, Any] | None:
    """Account the job ``ti`` that ``sensor`` released; push, log and measure the record; return it."""
    from airflow_provider_carbon.core.accounting import IntensitySource, account
    from airflow_provider_carbon.listeners.energy import energy_figures

    energy = energy_figures(ti, sensor)  # first: it stops the job's CodeCarbon tracker, if any
    decision = ti.xcom_pull(task_ids=sensor.task_id, key="carbon_decision")
    if not isinstance(decision, dict) or not decision.get("decided_at"):
        log.warning("carbon accounting: no decision of %s to account %s against", sensor.task_id, ti.task_id)
        return None
    now = datetime.now(timezone.utc)
    started = _utc(ti.start_date) or now
    ended = _utc(getattr(ti, "end_date", None)) or now
    baseline = datetime.fromisoformat(decision["decided_at"])
    fallback_start = datetime.fromisoformat(decision["fallback_start"]) if decision.get("fallback_start") else None
    series, source = _history(sensor, decision, min(baseline, started, fallback_start or started), ended)
    if series is None:
        series, source = _plan_forecast(decision), IntensitySource.FORECAST
    if series is None or not (series.start <= started and ended <= series.end):
        log.warning(
            "carbon accounting: neither history nor the plan's forecast covers %s's run %s .. %s; not accounted",
            ti.task_id,
            started.isoformat(),
            ended.isoformat(),
        )
        return None
    if energy is None:
        log.warning("carbon accounting: no measured or declared energy for %s; not accounted", ti.task_id)
        return None
    record = account(
        started_at=started,
        ended_at=ended,
        intensity=series,
        intensity_source=source,
        baseline_start=baseline,
        fallback_start=fallback_start,
        **energy,
        pue=float(sensor.pue),
    )
    data = record.to_dict()
    ti.xcom_push(key=ACCOUNTING_XCOM_KEY, value=data)
    log.info("carbon accounting: %s", record.summary())
    emit_metrics(record, dag_id=getattr(ti, "dag_id", None), task_id=ti.task_id, decision=decision)
    from airflow_provider_carbon.operators.budget import record_usage

    record_usage(ti, sensor.dag if sensor.has_dag() else None, data)  # the carbon budgets' shared ledger
    return data


def _utc(moment: datetime | None) -> datetime | None:
    return moment.astimezone(timezone.utc) if moment is not None else None


def _history(
    sensor: CarbonWindowSensor, decision: dict[str, Any], start: datetime, end: datetime
) -> tuple[Forecast | None, Any]:
    """The service's history over ``[start, end)`` if it covers the run, else ``(None, None)`` (logged)."""
    from airflow_provider_carbon.core.accounting import IntensitySource

    try:
        hook = sensor.carbon_hook()
        # an hour before: services list a period at its start, and the one in force at `start` began before it
        history = hook.get_history(
            decision.get("zone"),
            start=start - timedelta(hours=1),
            end=end,
            deadline=datetime.now(timezone.utc) + HISTORY_BUDGET,
        )
    except Exception as err:
        log.warning(
            "carbon accounting: history unavailable (%s: %s); using the plan's forecast", type(err).__name__, err
        )
        return None, None
    if history.signal.value != decision.get("signal", history.signal.value):
        # never mix average and marginal (or lifecycle and direct) in one record
        log.warning(
            "carbon accounting: history is %s, the plan %s; using the plan's forecast",
            history.signal.value,
            decision.get("signal"),
        )
        return None, None
    if not (history.start <= start and end <= history.end):
        log.info(
            "carbon accounting: history ends %s, before the job did (%s); using the plan's forecast",
            history.end.isoformat(),
            end.isoformat(),
        )
        return None, None
    return history, IntensitySource.HISTORY


def _plan_forecast(decision: dict[str, Any]) -> Forecast | None:
    from airflow_provider_carbon.core.forecast import Forecast

    compact = decision.get("forecast")
    return Forecast.from_compact(compact) if compact else None


def emit_metrics(record: Accounting, *, dag_id: str | None, task_id: str, decision: dict[str, Any]) -> None:
    """Gauges of one accounted run through Airflow's own metrics client, tagged where the backend supports tags."""
    from airflow_provider_carbon._compat import stats

    client = stats()
    tags = {"dag_id": dag_id or "", "task_id": task_id, "zone": record.zone or "", "signal": record.signal}
    figures = {
        "emissions_g": record.emissions_g,
        "experienced_intensity": record.experienced_intensity,
        "planned_intensity": decision.get("expected_intensity"),
        "saving_vs_start_g": record.saving_vs_baseline_g,
        "saving_vs_start_pct": record.saving_vs_baseline_pct,
        "saving_vs_fallback_g": record.saving_vs_fallback_g,
        "saving_vs_fallback_pct": record.saving_vs_fallback_pct,
        "delay_s": record.delay_s,
        "energy_kwh": record.energy_kwh,
        "used_fallback": 1.0 if decision.get("used_fallback") else 0.0,
    }
    for name, value in figures.items():
        if value is not None:
            client.gauge(f"{METRIC_PREFIX}.{name}", float(value), tags=tags)
