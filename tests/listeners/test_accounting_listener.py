"""Which tasks the accounting listener accounts: the job a carbon sensor released, once."""

from __future__ import annotations

import pendulum
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG

from airflow_provider_carbon.listeners.accounting import _accounting_sensors
from airflow_provider_carbon.sensors.carbon_window import CarbonWindowSensor


def sensor(task_id: str, **kwargs) -> CarbonWindowSensor:
    return CarbonWindowSensor(task_id=task_id, zone="DE", expected_duration=3600, max_delay=3600, **kwargs)


def test_the_job_is_accounted_and_a_report_reading_the_sensor_output_is_not():
    with DAG("accounting_selection", schedule=None, start_date=pendulum.datetime(2025, 1, 1, tz="UTC")):
        wait = sensor("wait", power_kw=0.3)
        train = EmptyOperator(task_id="train")
        report = EmptyOperator(task_id="report")
        wait >> train >> report
        wait >> report  # what passing wait.output to the report task does
    assert _accounting_sensors(train) == [wait]
    assert _accounting_sensors(report) == []


def test_parallel_jobs_are_each_accounted_and_a_sensor_without_power_accounts_none():
    with DAG("accounting_parallel", schedule=None, start_date=pendulum.datetime(2025, 1, 1, tz="UTC")):
        wait = sensor("wait", energy_kwh=1.0)
        unmeasured = sensor("unmeasured")
        a, b = EmptyOperator(task_id="a"), EmptyOperator(task_id="b")
        wait >> [a, b]
        unmeasured >> a
    assert _accounting_sensors(a) == [wait]
    assert _accounting_sensors(b) == [wait]


def test_a_task_outside_a_dag_is_not_accounted():
    assert _accounting_sensors(EmptyOperator(task_id="alone")) == []
