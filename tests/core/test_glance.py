"""The one-line plan and outcome (core/glance.py): real decisions from the planner on real forecasts, real
accounting records; only the clock is fixed (passed in as ``now``)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from airflow_provider_carbon.core.accounting import IntensitySource, account
from airflow_provider_carbon.core.decision import FallbackReason, PlanSpec, ReleaseReason, plan
from airflow_provider_carbon.core.fallback import FallbackPolicy
from airflow_provider_carbon.core.forecast import Forecast
from airflow_provider_carbon.core.glance import NOTE_MAX_CHARS, headline, outcome, run_note
from airflow_provider_carbon.exceptions import ServiceUnavailableError

BERLIN = "Europe/Berlin"


def night(midnight_utc: datetime, values: list[float]) -> Forecast:
    return Forecast.from_points([(midnight_utc + timedelta(hours=h), v) for h, v in enumerate(values)], zone="DE")


def spec_for(anchor: datetime, *, hours: float = 2, max_delay: float = 6, fallback: str = "02:00") -> PlanSpec:
    return PlanSpec(
        duration=timedelta(hours=hours),
        latest_start=anchor + timedelta(hours=max_delay),
        fallback=FallbackPolicy.parse(fallback),
        timezone=BERLIN,
        anchor=anchor,
        zone="DE",
    )


# a June night in Berlin (CEST, UTC+2): midnight is 22:00 UTC; the cleanest 2 hours start at 05:00
JUNE = datetime(2025, 6, 1, 22, tzinfo=timezone.utc)
JUNE_NIGHT = [379, 359, 329, 347, 325, 300, 286, 304, 330, 350]


def test_an_optimal_plan_reads_as_local_time_reason_intensity_and_change():
    decision = plan(spec_for(JUNE), night(JUNE, JUNE_NIGHT), now=JUNE + timedelta(seconds=7))
    # 05:00 and 06:00 CEST average 293; starting at 00:00 (379, 359) averages 369: 20.6 % less
    assert headline(decision) == "05:00 CEST optimum, 293 g/kWh, -21 % vs 00:00"
    # another timezone, given explicitly (the DAG's), moves every time and the abbreviation with it; the start is
    # on the next day there, and says so
    assert headline(decision, "UTC") == "2 Jun 03:00 UTC optimum, 293 g/kWh, -21 % vs 22:00"


def test_a_fallback_says_so_first_with_the_reason_in_words_and_its_value():
    error = ServiceUnavailableError("could not connect", service="electricitymaps", zone="DE")
    decision = plan(spec_for(JUNE), None, now=JUNE + timedelta(seconds=7), error=error)
    assert decision.used_fallback
    assert headline(decision) == "FALLBACK 02:00 CEST: API down (unavailable)"


@pytest.mark.parametrize(
    ("reason", "words"),
    [
        (FallbackReason.CONNECTION, "no usable connection"),
        (FallbackReason.AUTHENTICATION, "token refused"),
        (FallbackReason.RATE_LIMITED, "rate-limited"),
        (FallbackReason.BAD_PAYLOAD, "unusable data"),
        (FallbackReason.FORECAST_UNUSABLE, "forecast too short"),
        (FallbackReason.NO_FORECAST, "no forecast"),
    ],
)
def test_every_fallback_reason_has_words(reason, words):
    decision = plan(spec_for(JUNE), None, now=JUNE, fallback_reason=reason)
    assert headline(decision) == f"FALLBACK 02:00 CEST: {words} ({reason.value})"


def test_the_spring_forward_night_shows_both_abbreviations():
    # 30 March 2025: at 02:00 CET the clocks jump to 03:00 CEST; midnight is 23:00 UTC the day before
    midnight = datetime(2025, 3, 29, 23, tzinfo=timezone.utc)
    values = [400, 390, 380, 200, 210, 380, 390, 400, 410]  # hour 3 UTC+... : 02:00 UTC is 04:00 CEST
    decision = plan(spec_for(midnight), night(midnight, values), now=midnight)
    assert decision.planned_start == midnight + timedelta(hours=3)
    assert headline(decision) == "04:00 CEST optimum, 205 g/kWh, -48 % vs 00:00 CET"


def test_the_fall_back_night_tells_the_two_half_past_twos_apart():
    # 26 October 2025: 02:30 happens twice, first in CEST (00:30 UTC), then in CET (01:30 UTC)
    midnight = datetime(2025, 10, 25, 22, tzinfo=timezone.utc)
    spec = spec_for(midnight)
    forecast = Forecast.from_points(
        [(midnight + timedelta(minutes=30 * i), v) for i, v in enumerate([400] * 7 + [100] * 4 + [400] * 9)],
        zone="DE",
    )
    decision = plan(spec, forecast, now=midnight)
    assert decision.planned_start == midnight + timedelta(hours=3, minutes=30)  # 01:30 UTC
    assert headline(decision).startswith("02:30 CET optimum")
    earlier = replace(decision, planned_start=midnight + timedelta(hours=2, minutes=30))
    assert headline(earlier).startswith("02:30 CEST optimum")


def test_a_start_on_another_day_carries_its_date():
    decision = plan(spec_for(JUNE), night(JUNE, JUNE_NIGHT), now=JUNE)
    later = replace(decision, planned_start=decision.planned_start + timedelta(days=1))
    assert headline(later).startswith("3 Jun 05:00 CEST optimum")


def test_replans_and_a_deadline_release_are_counted():
    decision = plan(spec_for(JUNE), night(JUNE, JUNE_NIGHT), now=JUNE)
    moved = decision.moved_to(decision.planned_start + timedelta(hours=1), "re-check: the optimum moved")
    released = moved.released(moved.planned_start, ReleaseReason.DEADLINE)
    assert headline(released).endswith(", re-planned 1x, released at the deadline 06:00")


def test_a_passed_deadline_and_min_saving_are_named():
    spec = spec_for(JUNE)
    late = plan(spec, night(JUNE, JUNE_NIGHT), now=spec.latest_start + timedelta(minutes=1))
    assert headline(late) == "DEADLINE 06:01 CEST: the latest start had passed, started at once"
    small = plan(replace(spec, min_saving_pct=50), night(JUNE, JUNE_NIGHT), now=JUNE)
    assert headline(small) == "00:00 CEST at once: waiting would save only 21 %, 369 g/kWh"


def accounted(decision, forecast, started, ended):
    return account(
        started_at=started,
        ended_at=ended,
        intensity=forecast,
        intensity_source=IntensitySource.HISTORY,
        baseline_start=decision.decided_at,
        fallback_start=decision.fallback_start,
        power_kw=0.3,
    )


def test_the_outcome_adds_what_the_job_emitted_and_saved():
    forecast = night(JUNE, JUNE_NIGHT)
    decision = plan(spec_for(JUNE), forecast, now=JUNE)
    record = accounted(decision, forecast, decision.planned_start, decision.planned_end)
    # 0.6 kWh at 293 g/kWh is 176 g; starting at once (369 g/kWh) would have emitted 221 g
    assert outcome([record], decision=decision) == "ran 05:00 CEST-07:00: 176 g CO2eq, -21 % vs 00:00"
    note = run_note([(decision, [record])])
    assert note == "05:00 CEST optimum, 293 g/kWh, -21 % vs 00:00; ran 05:00 CEST-07:00: 176 g CO2eq, -21 % vs 00:00"
    # two jobs after one sensor are summed; a plan-only record has no outcome
    assert outcome([record, record], decision=decision).startswith("ran 2 jobs 05:00 CEST-07:00: 352 g CO2eq")
    assert run_note([(decision, [])]) == headline(decision)


def test_an_outcome_estimated_from_the_forecast_says_so_and_kilograms_read_as_kilograms():
    forecast = night(JUNE, JUNE_NIGHT)
    decision = plan(spec_for(JUNE), forecast, now=JUNE)
    record = replace(
        accounted(decision, forecast, decision.planned_start, decision.planned_end),
        intensity_source=IntensitySource.FORECAST,
        emissions_g=12_345.0,
        emissions_if_started_at_baseline_g=None,
    )
    # no counterfactual at the start: the change against the fallback time instead
    text = outcome([record], decision=decision)
    assert text.startswith("ran 05:00 CEST-07:00: 12.3 kg CO2eq (forecast), ")
    assert text.endswith(" vs 02:00 fallback")


def test_a_note_stays_within_airflows_column():
    decision = plan(spec_for(JUNE), night(JUNE, JUNE_NIGHT), now=JUNE)
    note = run_note([(decision, [])] * 40)
    assert len(note) == NOTE_MAX_CHARS and note.endswith("…")
