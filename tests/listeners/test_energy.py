"""Measured energy (listeners/energy.py) with the real CodeCarbon of the test environment, and what happens
without it."""

from __future__ import annotations

import sys
import time
from types import SimpleNamespace

import pytest

from airflow_provider_carbon.core.accounting import EnergySource
from airflow_provider_carbon.listeners import energy
from airflow_provider_carbon.sensors.carbon_window import CarbonWindowSensor


def job(task_id: str = "train") -> SimpleNamespace:
    # the task-instance fields the listener keys its trackers by
    return SimpleNamespace(dag_id="d", run_id="r", task_id=task_id, map_index=-1, try_number=1)


def busy(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def test_codecarbon_measures_the_jobs_energy_and_the_accounting_takes_it():
    # an optional extra: requirements-test.txt installs it; the floor job (Airflow 3.1) does not
    pytest.importorskip("codecarbon", reason="the optional extra codecarbon is not installed")
    sensor = CarbonWindowSensor(task_id="wait", expected_duration=60, measure_energy=True, power_kw=0.3)
    ti = job()
    assert energy.start(ti)
    busy(1.5)
    figures = energy.energy_figures(ti, sensor)
    assert figures is not None and figures["energy_source"] is EnergySource.MEASURED
    # a second and a half of one busy process: something, and far below the declared 0.3 kW over that time
    assert 0 < figures["energy_kwh"] < 0.3 * 1.5 / 3600
    assert energy.stop(ti) is None  # the tracker was stopped and forgotten


def test_without_codecarbon_the_declared_power_stands(monkeypatch):
    monkeypatch.setitem(sys.modules, "codecarbon", None)  # what `import codecarbon` meets when it is not installed
    ti = job("without")
    assert energy.start(ti) is False
    declared = CarbonWindowSensor(task_id="wait", expected_duration=60, measure_energy=True, power_kw=0.3)
    assert energy.energy_figures(ti, declared) == {"power_kw": 0.3, "energy_kwh": None}
    # nothing measured and nothing declared: nothing to account
    assert (
        energy.energy_figures(ti, CarbonWindowSensor(task_id="bare", expected_duration=60, measure_energy=True)) is None
    )


def test_a_sensor_that_measures_accounts_its_jobs():
    assert CarbonWindowSensor(task_id="wait", expected_duration=60, measure_energy=True).accounts_energy
    assert not CarbonWindowSensor(task_id="plain", expected_duration=60).accounts_energy
