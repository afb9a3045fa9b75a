"""Carbon budgets, pure: period boundaries (hand-computed, across DST), usage per signal, the policies."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from airflow_provider_carbon.core.budget import (
    LEDGER_RETENTION,
    Budget,
    Outcome,
    add_entry,
    check,
    period_bounds,
    usage,
)

UTC = timezone.utc


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def entry(i: int, ended: datetime, grams: float, signal: str = "average") -> dict:
    return {"id": f"run-{i}", "ended_at": ended.isoformat(), "grams": grams, "signal": signal, "unit": "gCO2eq/kWh"}


def ledger(*entries: dict) -> dict:
    return {"version": 1, "entries": list(entries)}


@pytest.mark.parametrize(
    ("period", "now", "tz", "start", "end"),
    [
        # Berlin, summer (UTC+2): the day starts at 22:00 UTC the day before
        ("day", utc(2025, 6, 2, 12), "Europe/Berlin", utc(2025, 6, 1, 22), utc(2025, 6, 2, 22)),
        # 2025-06-04 is a Wednesday: the ISO week began Monday 2 June, 00:00 Berlin
        ("week", utc(2025, 6, 4, 12), "Europe/Berlin", utc(2025, 6, 1, 22), utc(2025, 6, 8, 22)),
        # just after local midnight on a Monday is already the new week
        ("week", utc(2025, 6, 8, 22, 30), "Europe/Berlin", utc(2025, 6, 8, 22), utc(2025, 6, 15, 22)),
        # a month that spans the October clock change: starts at +02:00, ends at +01:00
        ("month", utc(2025, 10, 15), "Europe/Berlin", utc(2025, 9, 30, 22), utc(2025, 10, 31, 23)),
        ("month", utc(2025, 12, 31, 23, 30), "Europe/Berlin", utc(2025, 12, 31, 23), utc(2026, 1, 31, 23)),
        ("year", utc(2024, 7, 1), "UTC", utc(2024, 1, 1), utc(2025, 1, 1)),
        ("year", utc(2025, 12, 31, 23, 30), "Europe/Berlin", utc(2025, 12, 31, 23), utc(2026, 12, 31, 23)),
        ("day", utc(2025, 6, 2, 12), "+05:30", utc(2025, 6, 1, 18, 30), utc(2025, 6, 2, 18, 30)),
    ],
)
def test_period_bounds_are_local_calendar_periods(period, now, tz, start, end):
    assert period_bounds(period, now, tz) == (start, end)


def test_the_spring_forward_day_is_23_hours_and_the_fall_back_day_25():
    spring = period_bounds("day", utc(2025, 3, 30, 12), "Europe/Berlin")
    assert spring == (utc(2025, 3, 29, 23), utc(2025, 3, 30, 22))
    assert spring[1] - spring[0] == timedelta(hours=23)
    autumn = period_bounds("day", utc(2025, 10, 26, 12), "Europe/Berlin")
    assert autumn == (utc(2025, 10, 25, 22), utc(2025, 10, 26, 23))
    assert autumn[1] - autumn[0] == timedelta(hours=25)
    # the week containing the fall-back Sunday is 7 days and one hour
    week = period_bounds("week", utc(2025, 10, 22), "Europe/Berlin")
    assert week[1] - week[0] == timedelta(days=7, hours=1)


def test_a_day_whose_midnight_does_not_exist_starts_at_its_first_instant():
    # Havana springs forward at 00:00 (to 01:00): 2025-03-09 begins at 01:00 CDT = 05:00 UTC
    start, end = period_bounds("day", utc(2025, 3, 9, 12), "America/Havana")
    assert start == utc(2025, 3, 9, 5) and end == utc(2025, 3, 10, 4)


def test_period_bounds_refuse_a_naive_time_and_an_unknown_zone():
    with pytest.raises(ValueError, match="no timezone"):
        period_bounds("day", datetime(2025, 6, 2), "UTC")
    with pytest.raises(ValueError, match="unknown timezone"):
        period_bounds("day", utc(2025, 6, 2), "Europe/Berlinn")


def test_usage_counts_the_period_only_and_never_mixes_signals():
    book = ledger(
        entry(1, utc(2025, 6, 1, 21, 59), 900),  # the day before, Berlin
        entry(2, utc(2025, 6, 1, 22), 300),  # the period's first instant: counted
        entry(3, utc(2025, 6, 2, 10), 200),
        entry(4, utc(2025, 6, 2, 11), 700, signal="marginal"),
        entry(5, utc(2025, 6, 2, 22), 50),  # the next day
    )
    start, end = period_bounds("day", utc(2025, 6, 2, 12), "Europe/Berlin")
    assert usage(book, start, end, "average") == (500, 700, 2, "average")
    assert usage(book, start, end, "marginal") == (700, 500, 1, "marginal")
    # no signal given: the newest entry's (average, entry 5)
    assert usage(book, start, end, None) == (500, 700, 2, "average")
    assert usage(None, start, end, None) == (0.0, 0.0, 0, None)


@pytest.mark.parametrize(
    ("policy", "outcome"), [("warn", Outcome.WARNED), ("skip", Outcome.SKIPPED), ("fail", Outcome.FAILED)]
)
def test_the_policy_applies_once_usage_reaches_the_limit(policy, outcome):
    budget = Budget(limit_kg=1.0, period="day", policy=policy)
    now = utc(2025, 6, 2, 12)
    one = ledger(entry(1, utc(2025, 6, 2, 8), 600))
    under = check(budget, one, dag_id="etl", now=now, tz="UTC")
    assert under.outcome is Outcome.WITHIN and under.used_kg == 0.6 and under.remaining_kg == pytest.approx(0.4)
    exactly = check(budget, add_entry(one, entry(2, utc(2025, 6, 2, 9), 400), now), dag_id="etl", now=now, tz="UTC")
    assert exactly.outcome is outcome and exactly.used_kg == 1.0 and exactly.remaining_kg == 0.0
    record = exactly.to_dict()
    assert record["scope"] == "dag:etl" and record["period"] == "day" and record["policy"] == policy
    assert record["period_start"] == "2025-06-02T00:00:00+00:00" and record["limit_kg"] == 1.0
    assert record["outcome"] == outcome.value and record["jobs"] == 2


def test_usage_of_another_signal_does_not_exhaust_the_budget():
    budget = Budget(limit_kg=0.5, period="day", policy="skip", signal="average")
    book = ledger(entry(1, utc(2025, 6, 2, 8), 100), entry(2, utc(2025, 6, 2, 9), 5000, signal="marginal"))
    result = check(budget, book, dag_id="etl", now=utc(2025, 6, 2, 12), tz="UTC")
    assert result.outcome is Outcome.WITHIN and result.used_kg == 0.1 and result.other_signal_kg == 5.0


def test_an_unreadable_ledger_is_outcome_unknown():
    budget = Budget(limit_kg=1, policy="fail")
    result = check(budget, None, dag_id="etl", now=utc(2025, 6, 2), tz="UTC", error=ConnectionError("api down"))
    assert result.outcome is Outcome.UNKNOWN and result.used_kg is None and not result.over
    assert result.to_dict()["error"] == "ConnectionError: api down"


def test_add_entry_counts_a_job_once_and_prunes_beyond_a_year():
    now = utc(2025, 6, 2, 12)
    old = entry(0, now - LEDGER_RETENTION - timedelta(seconds=1), 1000)
    book = add_entry(ledger(old), entry(1, now, 100), now)
    book = add_entry(book, entry(1, now, 100), now)  # the same job written twice
    assert [e["id"] for e in book["entries"]] == ["run-1"]
    with pytest.raises(ValueError, match="grams"):
        add_entry(book, {"id": "x", "ended_at": now.isoformat(), "signal": "average"}, now)


def test_budget_parse_reads_what_users_and_jinja_write():
    assert Budget.parse({"kg": "5", "per": "Month", "policy": "skip"}) == Budget(5.0, "month", "skip")
    assert Budget.parse('{"kg": 20, "per": "week", "scope": "tag:ml"}').scope_key("x") == "tag:ml"
    assert Budget(2).scope_key("nightly") == "dag:nightly"
    for bad, message in (
        ({"per": "day"}, "needs a limit"),
        ({"kg": 0}, "positive"),
        ({"kg": "lots"}, "number of kilograms"),
        ({"kg": 1, "per": "fortnight"}, "day, week, month, year"),
        ({"kg": 1, "policy": "stop"}, "warn, skip, fail"),
        ({"kg": 1, "scope": "team:x"}, "'dag' or 'tag:<tag>'"),
        ({"kg": 1, "limit": 2}, "unknown budget keys"),
        ("5 kg", "dict or its JSON"),
    ):
        with pytest.raises(ValueError, match=message):
            Budget.parse(bad)
