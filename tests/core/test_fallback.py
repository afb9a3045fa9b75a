from __future__ import annotations

from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pendulum
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_carbon.core.fallback import FallbackPolicy, local_time_on, next_local_time, parse_clock

UTC = timezone.utc


def utc(*args):
    return datetime(*args, tzinfo=UTC)


# (timezone, `after` in UTC, wall-clock time, expected UTC instant, what the night is)
DST_CASES = [
    # Europe/Berlin: spring forward 2025-03-30 02:00 CET -> 03:00 CEST; fall back 2025-10-26 03:00 CEST -> 02:00 CET
    ("Europe/Berlin", utc(2025, 3, 29, 23, 0), "02:00", utc(2025, 3, 30, 1, 0), "02:00 missing: 03:00 CEST"),
    ("Europe/Berlin", utc(2025, 3, 29, 23, 0), "02:30", utc(2025, 3, 30, 1, 30), "02:30 missing: 03:30 CEST"),
    ("Europe/Berlin", utc(2025, 3, 29, 23, 0), "01:59", utc(2025, 3, 30, 0, 59), "before the gap: CET"),
    ("Europe/Berlin", utc(2025, 3, 29, 23, 0), "03:00", utc(2025, 3, 30, 1, 0), "after the gap: CEST"),
    ("Europe/Berlin", utc(2025, 10, 25, 22, 0), "02:00", utc(2025, 10, 26, 0, 0), "02:00 twice: first (CEST)"),
    ("Europe/Berlin", utc(2025, 10, 25, 22, 0), "02:30", utc(2025, 10, 26, 0, 30), "02:30 twice: first (CEST)"),
    ("Europe/Berlin", utc(2025, 10, 26, 0, 10), "02:00", utc(2025, 10, 27, 1, 0), "after the first 02:00: next day"),
    ("Europe/Berlin", utc(2025, 10, 25, 22, 0), "03:00", utc(2025, 10, 26, 2, 0), "03:00 once: CET"),
    # America/New_York: spring forward 2025-03-09 02:00 EST -> 03:00 EDT; fall back 2025-11-02 02:00 EDT -> 01:00 EST
    ("America/New_York", utc(2025, 3, 9, 5, 0), "02:00", utc(2025, 3, 9, 7, 0), "02:00 missing: 03:00 EDT"),
    ("America/New_York", utc(2025, 3, 9, 5, 0), "02:30", utc(2025, 3, 9, 7, 30), "02:30 missing: 03:30 EDT"),
    ("America/New_York", utc(2025, 11, 2, 4, 0), "01:30", utc(2025, 11, 2, 5, 30), "01:30 twice: first (EDT)"),
    ("America/New_York", utc(2025, 11, 2, 4, 0), "02:00", utc(2025, 11, 2, 7, 0), "02:00 once: EST"),
    ("America/New_York", utc(2025, 11, 2, 5, 45), "01:30", utc(2025, 11, 3, 6, 30), "after the first 01:30"),
    # Australia/Sydney: fall back 2025-04-06 03:00 AEDT -> 02:00 AEST;
    # spring forward 2025-10-05 02:00 AEST -> 03:00 AEDT
    ("Australia/Sydney", utc(2025, 4, 5, 13, 0), "02:00", utc(2025, 4, 5, 15, 0), "02:00 twice: first (AEDT)"),
    ("Australia/Sydney", utc(2025, 4, 5, 13, 0), "02:30", utc(2025, 4, 5, 15, 30), "02:30 twice: first (AEDT)"),
    ("Australia/Sydney", utc(2025, 4, 5, 15, 1), "02:00", utc(2025, 4, 6, 16, 0), "after the first 02:00"),
    ("Australia/Sydney", utc(2025, 10, 4, 14, 0), "02:00", utc(2025, 10, 4, 16, 0), "02:00 missing: 03:00 AEDT"),
    ("Australia/Sydney", utc(2025, 10, 4, 14, 0), "02:30", utc(2025, 10, 4, 16, 30), "02:30 missing: 03:30 AEDT"),
]


@pytest.mark.parametrize(
    ("tz", "after", "at", "expected", "night"), DST_CASES, ids=[c[4] + " " + c[0] for c in DST_CASES]
)
def test_dst_nights(tz, after, at, expected, night):
    got = next_local_time(after, at, tz)
    assert got == expected, night
    assert got.tzinfo is UTC


def test_ordinary_days():
    assert next_local_time(utc(2025, 6, 1, 12, 0), "02:00", "Europe/Berlin") == utc(2025, 6, 2, 0, 0)
    assert next_local_time(utc(2025, 6, 1, 12, 0), "02:00", "UTC") == utc(2025, 6, 2, 2, 0)
    # `after` given in another timezone: same instant, same answer
    ny = ZoneInfo("America/New_York")
    assert next_local_time(datetime(2025, 6, 1, 8, 0, tzinfo=ny), "02:00", "Europe/Berlin") == utc(2025, 6, 2, 0, 0)


def test_at_is_inclusive_and_just_after_goes_to_tomorrow():
    assert next_local_time(utc(2025, 6, 1, 2, 0), "02:00") == utc(2025, 6, 1, 2, 0)
    assert next_local_time(utc(2025, 6, 1, 2, 0, 1), "02:00") == utc(2025, 6, 2, 2, 0)


def test_accepts_time_objects_and_tzinfo_objects():
    berlin = pendulum.timezone("Europe/Berlin")  # what a DAG's timezone is
    assert next_local_time(utc(2025, 6, 1, 12, 0), time(2, 0), berlin) == utc(2025, 6, 2, 0, 0)


@pytest.mark.parametrize("tz", ["Europe/Berlin", "America/New_York", "Australia/Sydney", "Asia/Kolkata"])
def test_one_fallback_per_local_day_through_a_whole_year(tz):
    """Every local day of 2025 gets exactly one 02:00 fallback, strictly later than the previous one."""
    zone = ZoneInfo(tz)
    after = datetime(2025, 1, 1, 3, 0, tzinfo=zone)
    previous = None
    for _ in range(365):
        got = next_local_time(after, "02:00", tz)
        local = got.astimezone(zone)
        assert local.time() in (time(2, 0), time(3, 0))  # 03:00 only on the spring-forward night
        if previous is not None:
            assert local.date() == previous.date() + timedelta(days=1)
        previous = local
        after = got + timedelta(seconds=1)


@settings(max_examples=300, deadline=None)
@given(
    st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 12, 31), timezones=st.just(UTC)),
    st.sampled_from(["Europe/Berlin", "America/New_York", "Australia/Sydney", "Europe/London", "UTC"]),
    st.times(),
)
def test_next_local_time_is_the_first_at_or_after(after, tz, at):
    at = at.replace(microsecond=0)
    got = next_local_time(after, at, tz)
    assert after <= got < after + timedelta(hours=49)
    local = got.astimezone(ZoneInfo(tz))
    wall = local.replace(tzinfo=None)
    if wall.time() != at:
        # only a local time that does not exist that day may show differently, shifted forward by the DST gap
        asked = datetime.combine(local.date(), at)
        round_trip = asked.replace(tzinfo=ZoneInfo(tz)).astimezone(UTC).astimezone(ZoneInfo(tz))
        assert round_trip.replace(tzinfo=None) != asked
        assert timedelta(0) < wall - asked <= timedelta(hours=1)
    # nothing earlier at or after `after` on the previous local day qualifies
    assert local_time_on(local.date() - timedelta(days=1), at, tz) < after


def test_refuses_naive_after_and_bad_inputs():
    with pytest.raises(ValueError, match="naive datetime"):
        next_local_time(datetime(2025, 1, 1), "02:00", "UTC")
    with pytest.raises(ValueError, match="unknown timezone 'Mars/Base'"):
        next_local_time(utc(2025, 1, 1), "02:00", "Mars/Base")
    for bad in ("2am", "24:00", "02:60", ""):
        with pytest.raises(ValueError):
            parse_clock(bad)


def test_parse_clock():
    assert parse_clock("2:00") == time(2, 0)
    assert parse_clock(" 02:30:15 ") == time(2, 30, 15)
    with pytest.raises(ValueError, match="without a timezone"):
        parse_clock(time(2, 0, tzinfo=UTC))


class TestFallbackPolicy:
    def test_parse(self):
        assert FallbackPolicy.parse("02:00") == FallbackPolicy("at", time(2, 0))
        assert FallbackPolicy.parse(" NOW ") == FallbackPolicy("now")
        assert FallbackPolicy.parse("fail") == FallbackPolicy("fail")
        assert str(FallbackPolicy.parse("02:00")) == "02:00" and str(FallbackPolicy.parse("now")) == "now"
        with pytest.raises(ValueError, match="fallback must be a local time like '02:00', 'now' or 'fail'"):
            FallbackPolicy.parse("later")

    def test_start(self):
        after = utc(2025, 6, 1, 22, 0)  # midnight in Berlin
        assert FallbackPolicy.parse("02:00").start(after, "Europe/Berlin") == utc(2025, 6, 2, 0, 0)
        assert FallbackPolicy.parse("now").start(after, "Europe/Berlin") == after
        assert FallbackPolicy.parse("fail").start(after, "Europe/Berlin") is None

    def test_clamped_to_the_deadline(self):
        after = utc(2025, 6, 1, 22, 0)
        deadline = utc(2025, 6, 1, 23, 0)
        assert FallbackPolicy.parse("02:00").start(after, "Europe/Berlin", deadline) == deadline
        # a deadline already past means run now, never earlier than `after`
        assert FallbackPolicy.parse("02:00").start(after, "Europe/Berlin", after - timedelta(hours=1)) == after


def test_fixed_offset_names_resolve():
    """A DAG timezone made from an offset is named "+02:00" by pendulum; the fallback time must still work."""
    from airflow_provider_carbon.core.fallback import resolve_timezone

    assert next_local_time(datetime(2025, 6, 1, 12, tzinfo=timezone.utc), "02:00", "+02:00") == datetime(
        2025, 6, 2, 0, tzinfo=timezone.utc
    )
    assert resolve_timezone("-05:30").utcoffset(None) == -timedelta(hours=5, minutes=30)
    with pytest.raises(ValueError, match="unknown timezone"):
        resolve_timezone("+2")
