"""Measured energy: CodeCarbon in the job's own process, for jobs after a sensor with ``measure_energy=True``.

Airflow calls task-instance listeners in the task's own process (the Task SDK's task runner), before ``execute``
(``on_task_instance_running``) and after it. So a tracker started here measures the job itself: its process's CPU
share and RAM (CodeCarbon's ``tracking_mode="process"``), and GPUs where NVML sees any. Only the energy is used: the
intensity stays the grid's at that hour from the carbon service, since CodeCarbon's country averages are not the
grid at that hour. The accounting listener (``listeners/accounting.py``) calls :func:`stop` when the job succeeded
and accounts the measured kWh (``energy_source: measured``); a failed job's tracker is stopped and dropped.

CodeCarbon is the optional extra ``codecarbon``. When it is missing or fails, this logs why and the accounting
uses the sensor's declared ``power_kw`` / ``energy_kwh`` if given: measuring never fails a job.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.listeners import hookimpl

__all__ = ["energy_figures", "on_task_instance_failed", "on_task_instance_running", "start", "stop"]

log = logging.getLogger(__name__)

#: running trackers of this process, by task instance (one process runs one task instance, but be exact)
_TRACKERS: dict[tuple[Any, ...], Any] = {}


def _key(ti: Any) -> tuple[Any, ...]:
    return (ti.dag_id, ti.run_id, ti.task_id, getattr(ti, "map_index", -1), getattr(ti, "try_number", None))


def _measuring(task: Any) -> bool:
    """Whether ``task`` is the job of a sensor that asks for measured energy (the accounting listener's rule)."""
    from airflow_provider_carbon.listeners.accounting import _accounting_sensors

    return any(sensor.measure_energy for sensor in _accounting_sensors(task))


@hookimpl
def on_task_instance_running(previous_state: Any, task_instance: Any) -> None:
    """Start measuring a job released by a sensor with ``measure_energy=True``."""
    task = getattr(task_instance, "task", None)
    if task is not None and _measuring(task):
        start(task_instance)


@hookimpl
def on_task_instance_failed(previous_state: Any, task_instance: Any, error: Any = None) -> None:
    """A failed job is not accounted: stop its tracker (CodeCarbon's thread) and forget it."""
    if _key(task_instance) in _TRACKERS:
        stop(task_instance)


def start(ti: Any) -> bool:
    """Start a CodeCarbon tracker for ``ti`` in this process; ``False`` (logged) when CodeCarbon is unusable."""
    try:
        from codecarbon import OfflineEmissionsTracker
    except ImportError:
        log.warning(
            "carbon accounting: measure_energy needs CodeCarbon (pip install 'airflow-provider-carbon[codecarbon]');"
            " using the declared power or energy, if any"
        )
        return False
    try:
        tracker = OfflineEmissionsTracker(
            # required by the offline tracker for its own emission figure, which is not used: only its energy is
            country_iso_code="USA",
            tracking_mode="process",  # this task's process, not the whole machine's
            measure_power_secs=1,
            output_methods=[],  # no emissions.csv in the worker's directory: the record goes to XCom
            log_level="error",
            # a worker may run several jobs at once; CodeCarbon's lock file would refuse the second tracker
            allow_multiple_runs=True,
        )
        tracker.start()
    except Exception as err:  # CodeCarbon itself failing must not fail the job
        log.warning("carbon accounting: CodeCarbon could not start (%s: %s)", type(err).__name__, err)
        return False
    _TRACKERS[_key(ti)] = tracker
    return True


def stop(ti: Any) -> float | None:
    """Stop ``ti``'s tracker; the energy it measured in kWh, or ``None`` (logged) when there is none."""
    tracker = _TRACKERS.pop(_key(ti), None)
    if tracker is None:
        return None
    try:
        tracker.stop()
        energy = float(tracker.final_emissions_data.energy_consumed)
    except Exception as err:
        log.warning("carbon accounting: CodeCarbon could not measure (%s: %s)", type(err).__name__, err)
        return None
    if not energy >= 0:  # NaN or negative: not a measurement
        log.warning("carbon accounting: CodeCarbon measured %r kWh; not used", energy)
        return None
    return energy


def energy_figures(ti: Any, sensor: Any) -> dict[str, Any] | None:
    """The energy arguments of :func:`~airflow_provider_carbon.core.accounting.account` for job ``ti``: what
    CodeCarbon measured (stopping its tracker) when ``sensor`` asks for it and it worked, else the sensor's declared
    power or energy; ``None`` when there is neither."""
    from airflow_provider_carbon.core.accounting import EnergySource

    if getattr(sensor, "measure_energy", False):
        measured = stop(ti)
        if measured is not None:
            return {"energy_kwh": measured, "energy_source": EnergySource.MEASURED}
    if sensor.power_kw is None and sensor.energy_kwh is None:
        return None
    return {"power_kw": sensor.power_kw, "energy_kwh": sensor.energy_kwh}
