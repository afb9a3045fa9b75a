from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from airflow.sdk.module_loading import import_string

from airflow_provider_carbon.core.decision import PlanSpec, plan
from airflow_provider_carbon.core.fallback import FallbackPolicy
from airflow_provider_carbon.triggers.carbon_window import CarbonWindowTrigger
from tests.waiting import Clock, run_trigger

T0 = datetime(2025, 6, 1, 22, tzinfo=timezone.utc)
H = timedelta(hours=1)
SPEC = PlanSpec(
    duration=2 * H, latest_start=T0 + 6 * H, fallback=FallbackPolicy.parse("02:00"), timezone="Europe/Berlin", anchor=T0
)


def trigger(**kwargs):
    args = {
        "carbon_conn_id": "grid",
        "hook_class": "airflow_provider_carbon.hooks.electricitymaps.ElectricityMapsHook",
        "spec": SPEC.to_dict(),
        "decision": plan(SPEC, None, now=T0, error=RuntimeError("down")).to_dict(),
        "zone": "DE",
        "recheck_interval": 1800.0,
    }
    args.update(kwargs)
    return CarbonWindowTrigger(**args)


def test_serialize_round_trip():
    original = trigger(lat=None, lon=None, deviation_pct=15.0)
    classpath, kwargs = original.serialize()
    assert classpath == "airflow_provider_carbon.triggers.carbon_window.CarbonWindowTrigger"
    json.dumps(kwargs)  # primitives only: the triggerer stores them as JSON
    rebuilt = import_string(classpath)(**kwargs)
    assert rebuilt.serialize() == (classpath, kwargs)


def test_unusable_connection_waits_for_the_fallback_without_any_call(monkeypatch):
    with Clock(T0) as clock:
        event = run_trigger(trigger(hook_class=""), clock, monkeypatch)
        assert clock.now() == T0 + 2 * H  # 02:00 CEST
    assert event.payload["status"] == "release"
    assert event.payload["decision"]["release_reason"] == "fallback_time"


def test_sleeps_are_short_enough_to_notice_clock_jumps(monkeypatch):
    with Clock(T0) as clock:
        run_trigger(trigger(hook_class="", recheck_interval=10 * 3600), clock, monkeypatch)
    assert max(clock.sleeps) <= 60 and sum(clock.sleeps) == 2 * 3600
