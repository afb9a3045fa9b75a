from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from airflow_provider_carbon.core.forecast import Forecast, Signal
from airflow_provider_carbon.exceptions import CarbonError, InvalidForecastError

T0 = datetime(2025, 3, 1, tzinfo=timezone.utc)
H = timedelta(hours=1)


def hourly(values, start=T0, step=H):
    return [(start + i * step, v) for i, v in enumerate(values)]


class TestBuild:
    def test_from_points_step_model_and_metadata(self):
        gen = datetime(2025, 2, 28, 23, 50, tzinfo=timezone.utc)
        fc = Forecast.from_points(
            hourly([300, 200, 100]), zone="DE", signal="marginal", source="electricitymaps", generated_at=gen
        )
        assert len(fc) == 3
        assert fc.start == T0
        assert fc.end == T0 + 3 * H  # last value holds for the median step
        assert fc.timestamps == [T0, T0 + H, T0 + 2 * H]
        assert fc.values.tolist() == [300.0, 200.0, 100.0]
        assert fc.zone == "DE" and fc.signal is Signal.MARGINAL and fc.source == "electricitymaps"
        assert fc.unit == "gCO2eq/kWh" and fc.generated_at == gen
        assert fc.estimated.tolist() == [False, False, False]
        assert "zone='DE'" in repr(fc) and "points=3" in repr(fc)

    def test_median_step_ignores_one_odd_step(self):
        pts = [(T0, 1.0), (T0 + H, 2.0), (T0 + 2 * H, 3.0), (T0 + 2 * H + 30 * timedelta(minutes=1), 4.0)]
        assert Forecast.from_points(pts).end == T0 + 2 * H + timedelta(minutes=30) + H

    def test_explicit_end(self):
        fc = Forecast.from_points(hourly([5, 6]), end=T0 + H + timedelta(minutes=30))
        assert fc.end == T0 + H + timedelta(minutes=30)

    def test_timestamps_in_any_timezone_are_stored_as_utc(self):
        berlin = ZoneInfo("Europe/Berlin")
        fc = Forecast.from_points(
            [(datetime(2025, 3, 1, 1, 0, tzinfo=berlin), 10), (datetime(2025, 3, 1, 2, 0, tzinfo=berlin), 20)]
        )
        assert fc.start == T0
        assert fc.start.tzinfo is timezone.utc

    def test_estimated_flags_from_triples_or_argument(self):
        fc = Forecast.from_points([(T0, 1, True), (T0 + H, 2, False)])
        assert fc.estimated.tolist() == [True, False]
        fc = Forecast.from_points(hourly([1, 2]), estimated=[False, True])
        assert fc.estimated.tolist() == [False, True]

    def test_from_series_converts_to_utc_and_takes_zone_from_name(self):
        idx = pd.date_range("2025-03-01 01:00", periods=4, freq="15min", tz="Europe/Berlin")
        fc = Forecast.from_series(pd.Series([4.0, 3.0, 2.0, 1.0], index=idx, name="DE"))
        assert fc.zone == "DE"
        assert fc.start == T0 and fc.end == T0 + H
        back = fc.to_series()
        assert str(back.index.tz) == "UTC"
        assert back.tolist() == [4.0, 3.0, 2.0, 1.0]
        assert list(back.index) == [pd.Timestamp(t) for t in fc.timestamps]

    def test_to_points_round_trip(self):
        pts = hourly([3.5, 2.5])
        assert Forecast.from_points(pts).to_points() == pts

    def test_arrays_are_read_only(self):
        fc = Forecast.from_points(hourly([1, 2]))
        with pytest.raises(ValueError):
            fc.values[0] = 99

    def test_value_at_and_mean(self):
        fc = Forecast.from_points(hourly([300, 100, 200]))
        assert fc.value_at(T0 + timedelta(minutes=59)) == 300
        assert fc.value_at(T0 + H) == 100
        # 30 min at 300 and 60 min at 100
        assert fc.mean(T0 + timedelta(minutes=30), T0 + 2 * H) == pytest.approx((150 + 100) / 1.5)
        with pytest.raises(ValueError, match="outside the forecast"):
            fc.value_at(T0 + 3 * H)
        with pytest.raises(ValueError, match="outside the forecast"):
            fc.mean(T0 - H, T0 + H)


def _raises(points, reason, message, **kwargs) -> InvalidForecastError:
    with pytest.raises(InvalidForecastError) as info:
        Forecast.from_points(points, **kwargs)
    err = info.value
    assert err.reason == reason
    assert message in str(err)
    assert isinstance(err, CarbonError) and isinstance(err, ValueError)
    return err


class TestValidation:
    def test_empty(self):
        err = _raises([], "empty", "the series has no points", zone="DE")
        assert str(err) == "invalid carbon-intensity forecast for zone DE: the series has no points"

    def test_empty_series(self):
        with pytest.raises(InvalidForecastError, match="no points") as info:
            Forecast.from_series(pd.Series([], dtype=float))
        assert info.value.reason == "empty"

    def test_naive_timestamp_names_the_point(self):
        pts = hourly([1, 2]) + [(datetime(2025, 3, 1, 2, 0), 3)]
        err = _raises(pts, "naive_timestamp", "point 2 at 2025-03-01T02:00:00: timestamp has no timezone")
        assert err.index == 2

    def test_naive_series_index(self):
        series = pd.Series([1.0, 2.0], index=pd.date_range("2025-03-01", periods=2, freq="h"))
        with pytest.raises(InvalidForecastError, match="point 0 at 2025-03-01T00:00:00: timestamp has no timezone"):
            Forecast.from_series(series)

    @pytest.mark.parametrize(
        ("bad", "message"), [(float("nan"), "value nan is not finite"), (float("inf"), "value inf is not finite")]
    )
    def test_not_finite(self, bad, message):
        err = _raises(hourly([1, bad, 3]), "not_finite", f"point 1 at 2025-03-01T01:00:00+00:00: {message}")
        assert err.index == 1 and err.timestamp == T0 + H

    def test_nan_in_series(self):
        series = pd.Series([1.0, None, 2.0], index=pd.date_range("2025-03-01", periods=3, freq="h", tz="UTC"))
        with pytest.raises(InvalidForecastError, match="point 1 .*value nan is not finite"):
            Forecast.from_series(series)

    def test_not_a_number(self):
        _raises(hourly([1, "abc"]), "not_finite", "point 1 at 2025-03-01T01:00:00+00:00: value 'abc' is not a number")

    def test_negative(self):
        err = _raises(hourly([1, 2, -5]), "negative", "point 2 at 2025-03-01T02:00:00+00:00: value -5.0 is negative")
        assert err.value == -5.0

    def test_all_zeros(self):
        err = _raises(hourly([0, 0, 0]), "all_zero", "all 3 values are 0; carbon APIs send zeros during outages")
        assert err.index is None

    def test_some_zeros_are_fine(self):
        assert Forecast.from_points(hourly([0, 5, 0])).values.tolist() == [0, 5, 0]

    def test_duplicate(self):
        pts = hourly([1, 2]) + [(T0 + H, 3)]
        _raises(pts, "duplicate", "point 2 at 2025-03-01T01:00:00+00:00: timestamp repeats the previous point's")

    def test_unsorted(self):
        pts = [(T0, 1), (T0 + 2 * H, 2), (T0 + H, 3)]
        _raises(
            pts,
            "unsorted",
            "point 2 at 2025-03-01T01:00:00+00:00: timestamp is before the previous point's "
            "(2025-03-01T02:00:00+00:00)",
        )

    def test_gap_longer_than_default_maximum(self):
        pts = hourly([1, 2]) + [(T0 + 5 * H, 3)]
        _raises(
            pts,
            "gap",
            "point 2 at 2025-03-01T05:00:00+00:00: 4:00:00 after the previous point, longer than "
            "the allowed gap of 3:00:00",
        )

    def test_gap_maximum_is_configurable(self):
        pts = [(T0, 1), (T0 + 2 * H, 2)]
        _raises(pts, "gap", "allowed gap of 1:00:00", max_gap=H)
        assert len(Forecast.from_points(pts, max_gap=None)) == 2

    def test_gap_before_explicit_end(self):
        _raises(
            hourly([1, 2]),
            "gap",
            "point 1 at 2025-03-01T01:00:00+00:00: the last value would hold 5:00:00",
            end=T0 + 6 * H,
        )

    def test_end_not_after_last_point(self):
        _raises(hourly([1, 2]), "bad_end", "end 2025-03-01T01:00:00+00:00 is not after the last timestamp", end=T0 + H)

    def test_single_point_needs_end(self):
        _raises([(T0, 5)], "bad_end", "a single point needs an explicit end")
        assert Forecast.from_points([(T0, 5)], end=T0 + H).end == T0 + H

    def test_first_bad_point_wins_whatever_the_check(self):
        pts = [(T0, 1), (T0 + H, -2), (T0 + 2 * H, float("nan"))]
        assert _raises(pts, "negative", "point 1").index == 1
        pts = [(T0, 1), (T0, 2), (T0 + H, 3), (T0 + 2 * H, float("nan"))]
        assert _raises(pts, "duplicate", "point 1").index == 1

    def test_value_checks_come_before_timestamp_checks_at_one_point(self):
        # point 2 is both negative and a duplicate; the value problem is reported
        pts = [(T0, 1), (T0 + H, 2), (T0 + H, -1)]
        err = _raises(pts, "negative", "point 2")
        assert err.value == -1

    def test_bad_shape(self):
        _raises([(T0,)], "bad_shape", "expected (timestamp, value[, estimated])")
        _raises([("2025-03-01", 1)], "bad_shape", "is not a datetime")
        with pytest.raises(InvalidForecastError, match="must be a DatetimeIndex"):
            Forecast.from_series(pd.Series([1.0, 2.0]))

    def test_mismatched_estimated_flags(self):
        _raises(hourly([1, 2]), "bad_shape", "1 estimated flags for 2 points", estimated=[True])

    def test_unknown_signal(self):
        with pytest.raises(ValueError, match="'carbon'"):
            Forecast.from_points(hourly([1, 2]), signal="carbon")


def test_first_bad_point_is_named_in_a_year_long_series():
    idx = pd.date_range("2021-01-01", periods=8760, freq="h", tz="UTC")
    values = np.full(8760, 300.0)
    values[8000] = np.nan
    with pytest.raises(InvalidForecastError, match="point 8000 at 2021-11-30T08:00:00\\+00:00"):
        Forecast.from_series(pd.Series(values, index=idx))


def test_dict_round_trip_keeps_everything():
    gen = datetime(2025, 2, 28, 23, 50, tzinfo=timezone.utc)
    fc = Forecast.from_points(
        [(T0, 300, True), (T0 + 5 * H, 200, False)],
        end=T0 + 6 * H,
        zone="DE",
        signal="marginal",
        source="watttime",
        generated_at=gen,
        max_gap=None,
    )
    back = Forecast.from_dict(fc.to_dict())
    assert back.to_dict() == fc.to_dict()
    assert back.end == T0 + 6 * H and back.estimated.tolist() == [True, False]
    assert back.signal is Signal.MARGINAL and back.generated_at == gen


def test_mean_and_value_are_plain_floats():
    """Figures end up in XCom JSON and in Jinja-rendered reprs: numpy scalars would print as np.float64(...)."""
    fc = Forecast.from_points(hourly([300, 100, 200]))
    assert type(fc.mean(T0 + timedelta(minutes=30), T0 + 2 * H)) is float
    assert type(fc.value_at(T0)) is float


def test_window_keeps_whole_overlapping_steps_and_compact_round_trips():
    t0 = datetime(2025, 6, 1, 22, tzinfo=timezone.utc)
    hour = timedelta(hours=1)
    fc = Forecast.from_points([(t0 + i * hour, v) for i, v in enumerate([400, 300.04, 200, 100])], zone="DE")
    part = fc.window(t0 + 1.5 * hour, t0 + 3 * hour)
    assert part.to_points() == [(t0 + hour, 300.04), (t0 + 2 * hour, 200.0)] and part.end == t0 + 3 * hour
    assert part.mean(t0 + 1.5 * hour, t0 + 3 * hour) == fc.mean(t0 + 1.5 * hour, t0 + 3 * hour)
    with pytest.raises(ValueError, match="does not overlap"):
        fc.window(t0 + 5 * hour, t0 + 6 * hour)
    compact = fc.to_compact()
    assert compact["step_s"] == 3600 and compact["values"] == [400, 300.0, 200, 100]
    back = Forecast.from_compact(json.loads(json.dumps(compact)))
    assert back.end == fc.end and back.zone == "DE" and back.values.tolist() == [400, 300, 200, 100]


def test_compact_form_of_irregular_steps_keeps_every_offset():
    t0 = datetime(2025, 6, 1, tzinfo=timezone.utc)
    fc = Forecast.from_points([(t0, 1.0), (t0 + timedelta(minutes=30), 2.0), (t0 + timedelta(hours=2), 3.0)])
    compact = fc.to_compact()
    assert compact["offsets_s"] == [0, 1800, 7200] and "step_s" not in compact
    assert Forecast.from_compact(compact).to_points() == fc.to_points()
