from __future__ import annotations

import csv
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_carbon import find_best_window as top_level_find_best_window
from airflow_provider_carbon.core.forecast import Forecast
from airflow_provider_carbon.core.windows import Window, find_best_window, rank_windows
from airflow_provider_carbon.exceptions import DeadlineTooTightError, ForecastCoverageError
from tests.conftest import SHARED_DATA

T0 = datetime(2025, 1, 1, tzinfo=timezone.utc)
H = timedelta(hours=1)
M = timedelta(minutes=1)


def hourly(values, start=T0, step=H):
    return Forecast.from_points([(start + i * step, v) for i, v in enumerate(values)], zone="XX")


def test_exported_from_package_top_level():
    assert top_level_find_best_window is find_best_window


class TestFindBestWindow:
    def test_picks_the_cleanest_hour(self):
        w = find_best_window(hourly([300, 100, 200]), H)
        assert (w.start, w.end) == (T0 + H, T0 + 2 * H)
        assert w.mean_intensity == 100 and w.baseline_intensity == 300
        assert w.saving_pct == pytest.approx(200 / 3)
        assert w.earliest == T0 and w.latest_start == T0 + 2 * H
        assert w.duration == H and w.delay == H and w.unit == "gCO2eq/kWh"

    def test_rolling_mean_not_lowest_point(self):
        # The single lowest point (5) is at the end, but a 2 h job there does not fit; 10+20 beats 40+5.
        w = find_best_window(hourly([10, 20, 30, 40, 5]), 2 * H)
        assert w.start == T0 and w.mean_intensity == 15

    def test_optimum_where_the_job_end_meets_a_boundary(self):
        # 90 min job: starting at 01:30 ends exactly when the 50 hour ends; no whole-step start reaches it.
        w = find_best_window(hourly([100, 500, 50]), timedelta(minutes=90))
        assert w.start == T0 + timedelta(minutes=90)
        assert w.mean_intensity == pytest.approx((500 * 0.5 + 50 * 1) / 1.5)

    def test_off_grid_earliest_is_a_candidate(self):
        # "now" is 00:07 and the first hour is the cleanest: start now, partial first interval.
        w = find_best_window(hourly([100, 400, 400]), H, earliest=T0 + 7 * M)
        assert w.start == T0 + 7 * M
        assert w.mean_intensity == pytest.approx((100 * 53 + 400 * 7) / 60)
        assert w.baseline_intensity == w.mean_intensity and w.saving_pct == 0

    def test_irregular_steps(self):
        pts = [(T0, 300), (T0 + 15 * M, 80), (T0 + 20 * M, 400), (T0 + H, 90), (T0 + 3 * H, 100)]
        fc = Forecast.from_points(pts, end=T0 + 4 * H)
        w = find_best_window(fc, 2 * H)
        assert w.start == T0 + H and w.mean_intensity == 90

    def test_ties_go_to_the_earliest_start(self):
        assert find_best_window(hourly([200] * 6), H).start == T0
        assert find_best_window(hourly([100, 300, 100, 300]), H).start == T0
        w = find_best_window(hourly([300, 100, 100, 100, 300]), H, earliest=T0 + 30 * M)
        assert w.start == T0 + H

    def test_latest_start_and_finish_by_tighter_one_binds(self):
        fc = hourly([300, 250, 200, 150, 100, 50])
        assert find_best_window(fc, H, latest_start=T0 + 3 * H).start == T0 + 3 * H
        assert find_best_window(fc, H, finish_by=T0 + 3 * H).start == T0 + 2 * H
        w = find_best_window(fc, H, latest_start=T0 + 4 * H, finish_by=T0 + 3 * H)
        assert w.start == T0 + 2 * H and w.latest_start == T0 + 2 * H
        w = find_best_window(fc, H, latest_start=T0 + H, finish_by=T0 + 5 * H)
        assert w.start == T0 + H and w.latest_start == T0 + H

    def test_deadline_beyond_the_forecast_stops_at_the_horizon(self):
        w = find_best_window(hourly([300, 200, 100]), 2 * H, finish_by=T0 + 48 * H)
        assert w.start == T0 + H and w.latest_start == T0 + H

    def test_deadline_too_tight(self):
        with pytest.raises(DeadlineTooTightError) as info:
            find_best_window(hourly([1, 2, 3, 4]), 2 * H, earliest=T0 + H, finish_by=T0 + 2 * H)
        assert "a 2:00:00 job cannot start at or after 2025-01-01T01:00:00+00:00" in str(info.value)
        assert "start by 2025-01-01T00:00:00+00:00" in str(info.value)
        assert info.value.latest_start == T0

    def test_earliest_before_the_forecast(self):
        with pytest.raises(ForecastCoverageError, match="is before the forecast starts"):
            find_best_window(hourly([1, 2, 3]), H, earliest=T0 - M)

    def test_job_longer_than_the_forecast(self):
        with pytest.raises(ForecastCoverageError, match="would end after the forecast ends") as info:
            find_best_window(hourly([1, 2, 3]), 4 * H)
        assert info.value.forecast_end == T0 + 3 * H

    def test_earliest_too_late_for_the_horizon(self):
        with pytest.raises(ForecastCoverageError):
            find_best_window(hourly([1, 2, 3]), H, earliest=T0 + 2 * H + M)

    @pytest.mark.parametrize("duration", [timedelta(0), -H])
    def test_duration_must_be_positive(self, duration):
        with pytest.raises(ValueError, match="duration must be positive"):
            find_best_window(hourly([1, 2]), duration)

    def test_duration_must_be_a_timedelta(self):
        with pytest.raises(TypeError, match="timedelta"):
            find_best_window(hourly([1, 2]), 3600)

    def test_naive_bounds_are_refused(self):
        with pytest.raises(ValueError, match="naive datetime"):
            find_best_window(hourly([1, 2]), H, earliest=datetime(2025, 1, 1))

    def test_accepts_a_pandas_series(self):
        idx = pd.date_range("2025-01-01 01:00", periods=4, freq="h", tz="Europe/Paris")
        w = find_best_window(pd.Series([5.0, 3.0, 1.0, 2.0], index=idx), H)
        assert w.start == T0 + 2 * H

    def test_rejects_other_inputs(self):
        with pytest.raises(TypeError, match="Forecast or a pandas Series"):
            find_best_window([1, 2, 3], H)

    def test_window_dict_round_trip(self):
        w = find_best_window(hourly([300, 100, 200]), H)
        assert Window.from_dict(w.to_dict()) == w
        assert w.to_dict()["start"] == "2025-01-01T01:00:00+00:00"
        assert w.to_dict()["saving_pct"] == pytest.approx(200 / 3)

    def test_zero_baseline_has_zero_saving(self):
        w = find_best_window(hourly([0, 0, 10]), H)
        assert w.saving_pct == 0.0


class TestRankWindows:
    def test_best_k_non_overlapping(self):
        fc = hourly([500, 100, 120, 400, 90, 95, 300, 110, 130, 500])
        ranked = rank_windows(fc, 2 * H, k=3)
        assert ranked[0] == find_best_window(fc, 2 * H)
        assert [w.start for w in ranked] == [T0 + 4 * H, T0 + H, T0 + 7 * H]
        means = [w.mean_intensity for w in ranked]
        assert means == sorted(means)
        for i, w in enumerate(ranked):
            for other in ranked[i + 1 :]:
                assert w.end <= other.start or other.end <= w.start

    def test_fewer_when_the_range_runs_out(self):
        ranked = rank_windows(hourly([1, 2, 3]), 2 * H, k=5)
        assert len(ranked) == 1

    def test_k_must_be_positive(self):
        with pytest.raises(ValueError, match="k must be at least 1"):
            rank_windows(hourly([1, 2]), H, k=0)

    def test_baseline_is_always_earliest(self):
        ranked = rank_windows(hourly([300, 100, 200, 50]), H, k=3)
        assert {w.baseline_intensity for w in ranked} == {300}


# -- property: exact against a brute force on a fine grid ----------------------------------------------------------


def _brute_force(steps_min, values, earliest_min, duration_min, last_start_min):
    """Mean intensity of every whole-minute start in [earliest, last_start], by integrating minute by minute.

    All forecast boundaries, earliest, duration and deadlines are whole minutes, so the true optimum is among
    these starts (the integral is linear between minute marks).
    """
    per_minute = np.repeat(np.asarray(values, dtype=float), steps_min)
    cum = np.concatenate(([0.0], np.cumsum(per_minute)))
    starts = np.arange(earliest_min, last_start_min + 1)
    return starts, (cum[starts + duration_min] - cum[starts]) / duration_min


@st.composite
def problems(draw):
    n = draw(st.integers(1, 40))
    steps = draw(st.lists(st.integers(1, 90), min_size=n, max_size=n))
    values = draw(st.lists(st.floats(0, 1000, allow_nan=False).map(lambda v: round(v, 3)), min_size=n, max_size=n))
    if not any(values):
        values[0] = 1.0
    total = sum(steps)
    earliest = draw(st.integers(0, total - 1))
    duration = draw(st.integers(1, total))
    latest_start = draw(st.none() | st.integers(0, total + 60))
    finish_by = draw(st.none() | st.integers(0, total + 60))
    return steps, values, earliest, duration, latest_start, finish_by


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_matches_fine_grid_brute_force(problem):
    steps, values, earliest, duration, latest_start, finish_by = problem
    bounds = np.concatenate(([0], np.cumsum(steps)))
    fc = Forecast.from_points(
        [(T0 + int(b) * M, v) for b, v in zip(bounds[:-1], values, strict=True)],
        end=T0 + int(bounds[-1]) * M,
        max_gap=None,
    )
    kwargs = {
        "earliest": T0 + earliest * M,
        "latest_start": None if latest_start is None else T0 + latest_start * M,
        "finish_by": None if finish_by is None else T0 + finish_by * M,
    }
    deadline = min(
        latest_start if latest_start is not None else 10**9,
        finish_by - duration if finish_by is not None else 10**9,
    )
    last_start = min(deadline, int(bounds[-1]) - duration)
    if deadline < earliest:
        with pytest.raises(DeadlineTooTightError):
            find_best_window(fc, duration * M, **kwargs)
        return
    if last_start < earliest:
        with pytest.raises(ForecastCoverageError):
            find_best_window(fc, duration * M, **kwargs)
        return

    w = find_best_window(fc, duration * M, **kwargs)
    starts, means = _brute_force(steps, values, earliest, duration, last_start)
    scale = max(values)
    # optimal: equal to the brute-force minimum to 1e-9 of the forecast's scale
    assert w.mean_intensity == pytest.approx(means.min(), rel=1e-9, abs=1e-9 * scale)
    # and the reported mean is the true mean of the reported window
    assert w.mean_intensity == pytest.approx(fc.mean(w.start, w.end), rel=1e-9, abs=1e-9 * scale)
    assert w.baseline_intensity == pytest.approx(means[0], rel=1e-9, abs=1e-9 * scale)
    # never violates a constraint
    assert w.end - w.start == duration * M
    assert kwargs["earliest"] <= w.start
    assert w.end <= fc.end
    if kwargs["latest_start"] is not None:
        assert w.start <= kwargs["latest_start"]
    if kwargs["finish_by"] is not None:
        assert w.end <= kwargs["finish_by"]

    ranked = rank_windows(fc, duration * M, k=4, **kwargs)
    assert ranked[0].start == w.start
    for i, a in enumerate(ranked):
        assert kwargs["earliest"] <= a.start and a.end <= fc.end
        for b in ranked[i + 1 :]:
            assert a.end <= b.start or b.end <= a.start
            assert a.mean_intensity <= b.mean_intensity + 1e-9 * scale


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(0, 50), min_size=2, max_size=30).filter(any),
    st.integers(1, 6),
)
def test_ties_resolve_to_the_earliest_optimal_grid_start(values, duration_h):
    """With integer values and whole-hour jobs, exact ties are common; the earliest optimal start must win."""
    fc = hourly(values)
    if duration_h > len(values):
        return
    sums = [sum(values[i : i + duration_h]) for i in range(len(values) - duration_h + 1)]
    assert find_best_window(fc, duration_h * H).start == T0 + sums.index(min(sums)) * H


# -- real data: every day of a year ---------------------------------------------------------------------------------


def _year_series():
    """(name, timestamps, values) for each real 2021 series beside the checkout, plus one synthetic year."""
    out = []
    for path in sorted(SHARED_DATA.glob("em2021_*.csv")) if SHARED_DATA.is_dir() else []:
        with path.open() as fh:
            rows = list(csv.DictReader(fh))
        stamps = [datetime.fromisoformat(r["timestamp"].replace("Z", "+00:00")) for r in rows]
        out.append((path.stem, stamps, [float(r["carbon_intensity"]) for r in rows]))
    rng = np.random.default_rng(2021)
    hours = np.arange(365 * 24)
    synthetic = 300 + 120 * np.sin(2 * np.pi * hours / 24) + rng.normal(0, 40, hours.size).cumsum() % 150
    out.append(("synthetic", [datetime(2021, 1, 1, tzinfo=timezone.utc) + int(h) * H for h in hours], synthetic))
    return out


@pytest.mark.parametrize(("name", "stamps", "values"), _year_series(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_day_of_a_year_2h_job_12h_deadline(name, stamps, values):
    fc = Forecast.from_points(list(zip(stamps, values, strict=True)), zone=name)
    index = {t: i for i, t in enumerate(stamps)}
    days = sorted({t.replace(hour=0) for t in stamps})
    checked = 0
    for day in days:
        if day + 12 * H > fc.end:
            continue
        w = find_best_window(fc, 2 * H, earliest=day, finish_by=day + 12 * H)
        i0 = index[day]
        means = [(values[i0 + h] + values[i0 + h + 1]) / 2 for h in range(11)]
        best_h = min(range(11), key=lambda h: (means[h], h))
        assert w.start == day + best_h * H, day
        assert w.mean_intensity == pytest.approx(means[best_h], rel=1e-12)
        checked += 1
    assert checked >= 364
