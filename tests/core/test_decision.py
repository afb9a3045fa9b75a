from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from airflow_provider_carbon.core.decision import (
    DECISION_SCHEMA_VERSION,
    Decision,
    FallbackReason,
    PlanSpec,
    ReleaseReason,
    StartReason,
    plan,
)
from airflow_provider_carbon.core.fallback import FallbackPolicy
from airflow_provider_carbon.core.forecast import Forecast
from airflow_provider_carbon.exceptions import ServiceUnavailableError

T0 = datetime(2025, 6, 1, 22, tzinfo=timezone.utc)  # midnight in Berlin (CEST)
H = timedelta(hours=1)
DOWN = ServiceUnavailableError("could not connect", service="electricitymaps", zone="DE")


def spec(**kw):
    values = {
        "duration": 2 * H,
        "latest_start": T0 + 10 * H,
        "fallback": FallbackPolicy.parse("02:00"),
        "timezone": "Europe/Berlin",
        "anchor": T0,
    }
    values.update(kw)
    return PlanSpec(**values)


def forecast(values, start=T0):
    return Forecast.from_points(
        [(start + i * H, v) for i, v in enumerate(values)],
        zone="DE",
        source="electricitymaps",
        generated_at=start - timedelta(minutes=10),
    )


FC = forecast([400, 380, 300, 200, 150, 160, 300, 350, 420, 450, 460, 470, 480, 490])


def test_optimum_record():
    d = plan(spec(), FC, now=T0 + timedelta(minutes=7))
    assert d.reason == "optimum" and not d.used_fallback
    assert d.planned_start == T0 + 4 * H and d.planned_end == T0 + 6 * H
    assert d.expected_intensity == 155 and d.forecast_intensity_at_start == 150
    assert d.intensity_if_started_at_decision == pytest.approx((400 * 53 + 380 * 60 + 300 * 7) / 120)  # 00:07 to 02:07
    assert d.expected_saving_pct == pytest.approx(
        100 * (d.intensity_if_started_at_decision - 155) / d.intensity_if_started_at_decision
    )
    assert (d.zone, d.source, d.signal, d.unit) == ("DE", "electricitymaps", "average", "gCO2eq/kWh")
    assert d.forecast_generated_at == T0 - timedelta(minutes=10)
    assert d.alternatives[0]["start"] == (T0 + 4 * H).isoformat() and len(d.alternatives) == 3
    assert "optimum: start at 2025-06-02T02:00:00+00:00 at 155 gCO2eq/kWh" in d.summary()


def test_threshold_starts_at_the_first_clean_enough_time():
    d = plan(spec(threshold=310), FC, now=T0)
    assert d.reason == "threshold" and d.planned_start == T0 + 2 * H
    assert d.expected_intensity == 250


def test_threshold_already_met_now():
    assert plan(spec(threshold=500), FC, now=T0).planned_start == T0


def test_min_saving_not_reached_starts_now():
    flat = forecast([300, 299, 298, 297, 296, 295, 294, 293, 292, 291, 290, 289, 288])
    d = plan(spec(min_saving_pct=10), flat, now=T0)
    assert d.reason == "min_saving" and d.planned_start == T0 and d.expected_saving_pct == 0


def test_fallback_at_0200_local_when_the_api_is_down():
    d = plan(spec(), None, now=T0 + timedelta(minutes=1), error=DOWN)
    assert d.used_fallback and d.reason == "fallback" and d.fallback == "02:00"
    assert d.planned_start == T0 + 2 * H  # 02:00 CEST
    assert d.fallback_reason == "unavailable"
    assert d.fallback_error.startswith("ServiceUnavailableError: electricitymaps, zone DE: could not connect. Hint:")
    assert d.expected_intensity is None and "fallback (02:00)" in d.summary()


def test_fallback_clamped_to_the_deadline():
    d = plan(spec(latest_start=T0 + H), None, now=T0, error=DOWN)
    assert d.planned_start == T0 + H


def test_fallback_time_already_past_means_now():
    now = T0 + 5 * H
    assert plan(spec(), None, now=now, error=DOWN).planned_start == now


def test_fallback_now_and_fail():
    assert plan(spec(fallback=FallbackPolicy.parse("now")), None, now=T0, error=DOWN).planned_start == T0
    with pytest.raises(ServiceUnavailableError):
        plan(spec(fallback=FallbackPolicy.parse("fail")), None, now=T0, error=DOWN)


def test_forecast_that_does_not_cover_the_job_falls_back():
    short = Forecast.from_points([(T0, 300)], end=T0 + H, zone="DE")  # one hour: a 2 h job does not fit
    d = plan(spec(), short, now=T0)
    assert d.used_fallback and "ForecastCoverageError" in d.fallback_error and d.fallback_reason == "forecast_unusable"


def test_deadline_passed_starts_now():
    d = plan(spec(latest_start=T0), FC, now=T0 + H)
    assert d.reason == "deadline" and d.planned_start == T0 + H


def test_forecast_starting_in_the_future_is_used_from_its_start():
    later = forecast([100, 300, 300, 300], start=T0 + H)
    d = plan(spec(), later, now=T0 + timedelta(minutes=30))
    assert d.planned_start == T0 + H


@pytest.mark.parametrize(
    ("anchor", "expected", "night"),
    [
        (
            datetime(2025, 3, 29, 23, tzinfo=timezone.utc),
            datetime(2025, 3, 30, 1, tzinfo=timezone.utc),
            "spring forward: 02:00 does not exist, 03:00 CEST",
        ),
        (
            datetime(2025, 10, 25, 22, tzinfo=timezone.utc),
            datetime(2025, 10, 26, 0, tzinfo=timezone.utc),
            "fall back: the first 02:00 (CEST)",
        ),
    ],
)
def test_0200_fallback_in_berlin_on_dst_nights(anchor, expected, night):
    d = plan(spec(anchor=anchor, latest_start=anchor + 10 * H), None, now=anchor, error=DOWN)
    assert d.planned_start == expected, night


def test_record_is_json_and_round_trips():
    d = plan(spec(), FC, now=T0)
    moved = d.replanned(plan(spec(), forecast([100] * 14), now=T0 + H), "re-check: the optimum moved", T0 + H)
    done = moved.released(T0 + H, ReleaseReason.PLANNED_START, observed=101.0)
    data = json.loads(json.dumps(done.to_dict()))
    assert Decision.from_dict(data) == done
    assert data["replans"] == [
        {
            "at": (T0 + H).isoformat(),
            "cause": "re-check: the optimum moved",
            "previous_start": (T0 + 4 * H).isoformat(),
            "new_start": (T0 + H).isoformat(),
            "expected_intensity": 100.0,
            "used_fallback": False,
        }
    ]
    assert data["released_at"] == (T0 + H).isoformat() and data["observed_intensity_at_start"] == 101.0


def test_spec_round_trip():
    s = spec(threshold=100.0, min_saving_pct=5.0)
    assert PlanSpec.from_dict(json.loads(json.dumps(s.to_dict()))) == s


def test_records_what_the_fixed_fallback_time_would_have_emitted():
    d = plan(spec(), FC, now=T0)
    assert d.intensity_if_fallback == (300 + 200) / 2  # a 2 h job at 02:00 Berlin = 00:00 UTC + 2 h
    assert plan(spec(fallback=FallbackPolicy.parse("now")), FC, now=T0).intensity_if_fallback == (400 + 380) / 2
    assert plan(spec(fallback=FallbackPolicy.parse("fail")), FC, now=T0).intensity_if_fallback is None


# -- the record as a documented, versioned shape -------------------------------------------------------------------

FIXTURES = Path(__file__).parent / "fixtures"


def test_every_field_is_documented_and_the_schema_is_versioned():
    docs = Decision.field_docs()
    assert list(docs) == [f.name for f in dataclasses.fields(Decision)]
    assert all(text.strip() for text in docs.values())
    assert plan(spec(), FC, now=T0).to_dict()["schema_version"] == DECISION_SCHEMA_VERSION == 2


def test_reasons_are_enums_stored_as_their_strings():
    d = plan(spec(), FC, now=T0).released(T0 + 4 * H)
    data = json.loads(json.dumps(d.to_dict()))
    assert data["reason"] == "optimum" and data["release_reason"] == "planned_start"
    assert type(data["reason"]) is str  # plain JSON, not an enum repr
    assert d.reason is StartReason.OPTIMUM and d.release_reason is ReleaseReason.PLANNED_START
    down = plan(spec(), None, now=T0, error=DOWN).released(T0 + 2 * H)
    assert down.fallback_reason is FallbackReason.UNAVAILABLE and down.release_reason is ReleaseReason.FALLBACK_TIME
    assert down.to_dict()["fallback_reason"] == "unavailable"


def test_a_fallback_record_keeps_the_zone_asked_for():
    d = plan(spec(zone="DE"), None, now=T0, error=DOWN)
    assert d.zone == "DE" and d.to_dict()["zone"] == "DE"


def test_a_record_of_release_0_1_0_loads_and_renders():
    old = json.loads((FIXTURES / "decision_v1.json").read_text())
    optimal = Decision.from_dict(old["optimal"])
    assert optimal.schema_version == DECISION_SCHEMA_VERSION
    assert optimal.intensity_if_started_at_decision == old["optimal"]["intensity_if_now"] == 390.0
    assert optimal.forecast_intensity_at_start == old["optimal"]["intensity_at_start"]
    assert optimal.reason is StartReason.OPTIMUM and optimal.release_reason is ReleaseReason.PLANNED_START
    assert optimal.fallback_reason is None and optimal.fallback_error is None
    assert "optimum: start at 2026-11-21T03:00:00+00:00 at 270 gCO2eq/kWh" in optimal.summary()
    fallback = Decision.from_dict(old["fallback"])
    assert fallback.used_fallback and fallback.fallback_reason is FallbackReason.UNAVAILABLE
    assert fallback.fallback_error == old["fallback"]["fallback_reason"]
    assert fallback.release_reason is ReleaseReason.FALLBACK_TIME
    assert "fallback (02:00): start at 2026-11-21T01:00:00+00:00; why: unavailable" in fallback.summary()
    # and it is written back in this schema's shape, which loads to the same record
    again = fallback.to_dict()
    assert "intensity_if_now" not in again and Decision.from_dict(again) == fallback


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("AuthenticationError: electricitymaps, HTTP 401: refused", FallbackReason.AUTHENTICATION),
        ("BadPayloadError: zeros", FallbackReason.BAD_PAYLOAD),
        ("ForecastCoverageError: short", FallbackReason.FORECAST_UNUSABLE),
        ("AirflowNotFoundException: The conn_id `x` isn't defined", FallbackReason.ERROR),
        ("no forecast", FallbackReason.NO_FORECAST),
    ],
)
def test_schema_1_fallback_texts_map_onto_the_enum(text, reason):
    data = {**json.loads((FIXTURES / "decision_v1.json").read_text())["fallback"], "fallback_reason": text}
    assert Decision.from_dict(data).fallback_reason is reason


def test_a_newer_record_with_unknown_fields_still_loads():
    data = {**plan(spec(), FC, now=T0).to_dict(), "schema_version": 3, "something_new": 1}
    assert Decision.from_dict(data).planned_start == T0 + 4 * H


def test_the_record_keeps_the_forecast_it_used_and_the_fallback_start():
    d = plan(spec(), FC, now=T0 + timedelta(minutes=7))
    used = Forecast.from_compact(d.forecast)
    # from the run's start to the deadline plus the job: 00:00 to 12:00 Berlin, all of it the forecast's values
    assert used.start == T0 and used.end == T0 + 12 * H
    assert used.values.tolist() == FC.values.tolist()[:12]
    assert d.fallback_start == T0 + 2 * H  # 02:00 Berlin
    down = plan(spec(), None, now=T0, error=DOWN)
    assert down.forecast is None and down.fallback_start == T0 + 2 * H == down.planned_start
    assert plan(spec(fallback=FallbackPolicy.parse("fail")), FC, now=T0).fallback_start is None


def test_the_kept_forecast_stays_small():
    step = timedelta(minutes=5)
    long = Forecast.from_points([(T0 + i * step, 300 + (i % 37) * 1.2345) for i in range(72 * 12)], zone="DE")
    d = plan(spec(latest_start=T0 + 70 * H), long, now=T0)
    assert len(json.dumps(d.to_dict())) < 12_000  # 72 h at 5 min, values to 0.1 g


@pytest.mark.parametrize(
    ("text", "used_fallback", "reason", "expected"),
    [
        ("the planned start is now", True, "fallback", ReleaseReason.FALLBACK_TIME),  # fallback "now", deferrable
        ("planned start", True, "fallback", ReleaseReason.FALLBACK_TIME),  # a fallback plan in poke mode
        ("planned start", False, "deadline", ReleaseReason.DEADLINE),
        ("deadline: the next poke would be too late", False, "optimum", ReleaseReason.DEADLINE),
        ("planned start (optimum)", False, "optimum", ReleaseReason.PLANNED_START),
    ],
)
def test_schema_1_release_texts_map_by_what_the_plan_was(text, used_fallback, reason, expected):
    base = json.loads((FIXTURES / "decision_v1.json").read_text())["optimal"]
    data = {**base, "release_reason": text, "used_fallback": used_fallback, "reason": reason}
    assert Decision.from_dict(data).release_reason is expected


def test_a_job_stopped_by_its_budget_is_recorded_without_a_wait_and_reads_back():
    from airflow_provider_carbon.core.decision import over_budget

    budget = {"scope": "dag:etl", "period": "month", "limit_kg": 5.0, "used_kg": 5.25, "outcome": "skipped"}
    d = over_budget(spec(zone="DE"), budget, now=T0 + H)
    assert d.reason == StartReason.BUDGET and d.planned_start == T0 + H and d.released_at is None
    assert d.zone == "DE" and d.fallback == "02:00" and d.forecast is None
    assert d.summary() == "over the carbon budget of dag:etl (5.25 of 5 kg this month): skipped, the job does not start"
    data = json.loads(json.dumps(d.to_dict()))
    assert list(data)[-1] == "forecast" and Decision.from_dict(data) == d
    # a record written before budgets existed has none
    old = {k: v for k, v in plan(spec(), FC, now=T0).to_dict().items() if k != "budget"}
    assert Decision.from_dict(old).budget is None
