"""The planning base: one definition of the shared arguments, complete docs, and the rules it owns."""

from __future__ import annotations

import inspect
import json
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from airflow.sdk import DAG

from airflow_provider_carbon.operators.base import CarbonBaseOperator, CarbonPlanningBase
from airflow_provider_carbon.operators.links import ElectricityMapsZoneLink, UkCarbonIntensityLink
from airflow_provider_carbon.operators.plan import CarbonPlanOperator
from airflow_provider_carbon.operators.region import GreenestRegionBranchOperator, GreenestRegionOperator
from airflow_provider_carbon.sensors.carbon_window import CarbonWindowSensor
from tests.waiting import Clock, context

PUBLIC = [CarbonWindowSensor, CarbonPlanOperator, GreenestRegionOperator, GreenestRegionBranchOperator]
T0 = datetime(2025, 6, 1, 22, tzinfo=timezone.utc)
H = timedelta(hours=1)


def ours(cls: type) -> list[type]:
    return [k for k in cls.__mro__ if k.__module__.startswith("airflow_provider_carbon.")]


def arguments(cls: type) -> set[str]:
    """Every argument the provider's classes add to the operator's signature (Airflow's own are Airflow's)."""
    names: set[str] = set()
    for klass in ours(cls):
        if "__init__" in klass.__dict__:
            for p in inspect.signature(klass.__dict__["__init__"]).parameters.values():
                if p.kind is p.KEYWORD_ONLY:
                    names.add(p.name)
    return names


@pytest.mark.parametrize("cls", PUBLIC, ids=lambda c: c.__name__)
def test_docstring_names_every_argument_and_has_an_example(cls):
    doc = cls.__doc__
    assert doc and doc.strip(), f"{cls.__name__} has no docstring"
    missing = sorted(name for name in arguments(cls) if f":param {name}:" not in doc)
    assert not missing, f"{cls.__name__}.__doc__ lacks :param for {missing}"
    assert ".. code-block:: python" in doc
    assert doc.count(":param ") == len({*arguments(cls)}), "each argument documented exactly once"


@pytest.mark.parametrize("name", ["carbon_conn_id", "expected_duration", "latest_start", "finish_by", "max_delay"])
def test_window_arguments_are_declared_once(name):
    declaring = [
        k.__name__
        for cls in PUBLIC
        for k in ours(cls)
        if "__init__" in k.__dict__ and name in inspect.signature(k.__dict__["__init__"]).parameters
    ]
    # CarbonPlanningBase redeclares expected_duration only to make it required for a one-zone plan
    allowed = {"CarbonBaseOperator", "CarbonPlanningBase"} if name == "expected_duration" else {"CarbonBaseOperator"}
    assert set(declaring) == allowed


@pytest.mark.parametrize("name", ["zone", "lat", "lon", "fallback", "fallback_timezone", "threshold", "min_saving_pct"])
def test_planning_arguments_are_declared_once(name):
    declaring = {
        k.__name__
        for cls in PUBLIC
        for k in ours(cls)
        if "__init__" in k.__dict__ and name in inspect.signature(k.__dict__["__init__"]).parameters
    }
    assert declaring == {"CarbonPlanningBase"}


def test_default_args_reach_the_base_arguments():
    with DAG("d", schedule=None, start_date=T0, default_args={"carbon_conn_id": "mine", "max_delay": 3600}):
        wait = CarbonWindowSensor(task_id="w", expected_duration=H)
        plan = CarbonPlanOperator(task_id="p", expected_duration=H)
        pick = GreenestRegionOperator(task_id="r", regions=["DE", "FR"])
    assert wait.carbon_conn_id == plan.carbon_conn_id == pick.carbon_conn_id == "mine"
    assert wait.max_delay == plan.max_delay == 3600


def test_expected_duration_is_required_for_one_zone_plans():
    with pytest.raises(TypeError, match="expected_duration"):
        CarbonPlanOperator(task_id="p", zone="DE")


def test_templated_fields_cover_the_shared_arguments():
    for cls in (CarbonWindowSensor, CarbonPlanOperator):
        assert set(CarbonPlanningBase.planning_template_fields) <= set(cls.template_fields)
    for cls in (GreenestRegionOperator, GreenestRegionBranchOperator):
        assert set(CarbonBaseOperator.window_template_fields) <= set(cls.template_fields)


def test_a_fallback_record_keeps_the_zone_it_was_for(monkeypatch):
    """A user tripped over ``zone: null`` in the record of a run whose API was down."""
    monkeypatch.setenv("AIRFLOW_CONN_DOWN", "electricitymaps://:token-for-tests-1234@127.0.0.1:9/")
    ctx = context(T0)
    task = CarbonPlanOperator(
        task_id="p", carbon_conn_id="down", zone="DE", expected_duration=2 * H, max_delay=8 * H, fallback="now"
    )
    with Clock(T0):
        record = task.execute(ctx)
    assert record["used_fallback"] is True and record["fallback_reason"] == "unavailable"
    assert record["zone"] == "DE"
    assert ElectricityMapsZoneLink().get_link(task, ti_key=None) == "https://app.electricitymaps.com/zone/DE"


def test_a_missing_connection_is_a_connection_fallback_and_keeps_the_zone():
    ctx = context(T0)
    task = CarbonPlanOperator(task_id="p", carbon_conn_id="nowhere", zone="FR", expected_duration=H, fallback="now")
    with Clock(T0):
        record = task.execute(ctx)
    assert record["fallback_reason"] == "connection" and record["zone"] == "FR"
    assert "nowhere" in record["fallback_error"]


def test_the_connection_default_zone_is_recorded_when_the_task_names_none(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_DOWN", "electricitymaps://:token-for-tests-1234@127.0.0.1:9/?zone=SE-SE3")
    task = CarbonPlanOperator(task_id="p", carbon_conn_id="down", expected_duration=H, fallback="now")
    with Clock(T0):
        record = task.execute(context(T0))
    assert record["zone"] == "SE-SE3"


@pytest.mark.parametrize(
    ("service", "em", "uk"),
    [
        ("electricitymaps", "https://app.electricitymaps.com/zone/DE", ""),
        ("uk_carbon_intensity", "", "https://carbonintensity.org.uk/"),
        ("watttime", "", ""),
        ("carbon_aware_sdk", "", ""),
        (None, "", ""),
    ],
)
def test_links_lead_only_where_the_service_has_a_page(service, em, uk):
    task = SimpleNamespace(resolved_service=service, resolved_zone="DE", zone=None)
    assert ElectricityMapsZoneLink().get_link(task, ti_key=None) == em
    assert UkCarbonIntensityLink().get_link(task, ti_key=None) == uk


def test_a_token_echoed_in_a_200_body_reaches_no_record_log_or_xcom(httpserver, monkeypatch, caplog, capsys):
    """Issue 11: a bad field that holds the token. The typed error, the decision record, every XCom and every log
    line of the task show it redacted."""
    token = "echo-token-5f2b9c0d7e1a"
    body = {"zone": "DE", "forecast": [{"datetime": f"not a time {token}", "carbonIntensity": 300}]}
    httpserver.expect_request("/v3/carbon-intensity/forecast").respond_with_json(body)
    conn = {"conn_type": "electricitymaps", "host": httpserver.url_for("/v3"), "password": token}
    monkeypatch.setenv("AIRFLOW_CONN_ECHO", json.dumps(conn))
    ctx = context(T0)
    task = CarbonPlanOperator(
        task_id="p", carbon_conn_id="echo", zone="DE", expected_duration=H, max_delay=8 * H, fallback="now"
    )
    with Clock(T0):
        record = task.execute(ctx)
    assert record["used_fallback"] is True and record["fallback_reason"] == "bad_payload"
    assert "***" in record["fallback_error"]
    assert token not in json.dumps(record) and token not in json.dumps(ctx["ti"].xcom, default=str)
    out = capsys.readouterr()
    assert token not in out.out + out.err + caplog.text


def test_a_users_subclass_keeps_its_docstring_and_imports():
    """The docstring completion is for the provider's classes: a DAG file's subclass with its own :param lines
    must import (it raised IndexError at class creation) and keep its text."""

    class MySensor(CarbonWindowSensor):
        """My sensor.

        :param extra: something of mine.
        """

        def __init__(self, *, extra: int = 0, **kwargs):
            super().__init__(**kwargs)
            self.extra = extra

    assert MySensor.__doc__.count(":param ") == 1
    assert MySensor(task_id="w", expected_duration=H, extra=1).extra == 1
