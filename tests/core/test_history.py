"""forecast_from_history: the model on series whose answer is known, and on the history real users have (gaps,
spikes, DST, too little of it)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_carbon import Forecast, InsufficientHistoryError, forecast_from_history
from airflow_provider_carbon.core.history import HISTORY_SOURCE

T0 = datetime(2025, 3, 1, tzinfo=timezone.utc)


def daily(days: int, step: timedelta = timedelta(hours=1), start: datetime = T0, noise: float = 0.0, seed: int = 0):
    """A series that repeats every day: 300 + 150 sin(time of day)."""
    per_day = int(timedelta(days=1) / step)
    index = pd.date_range(start, periods=days * per_day, freq=step)
    phase = (index.hour * 3600 + index.minute * 60) / 86400
    values = 300 + 150 * np.sin(2 * np.pi * phase)
    if noise:
        values = values + np.random.default_rng(seed).normal(0, noise, len(values))
    return pd.Series(values, index=index)


def expected_at(stamps) -> np.ndarray:
    phase = np.array([(t.hour * 3600 + t.minute * 60) / 86400 for t in stamps])
    return 300 + 150 * np.sin(2 * np.pi * phase)


@pytest.mark.parametrize("step", [timedelta(hours=1), timedelta(minutes=15), timedelta(minutes=5)])
@pytest.mark.parametrize("start_hour", [0, 13])
def test_a_series_that_repeats_daily_is_forecast_exactly(step, start_hour):
    history = daily(30, step)
    start = T0 + timedelta(days=30)
    start = start.replace(hour=start_hour)
    fc = forecast_from_history(history[history.index < start], start=start, horizon=timedelta(hours=30))
    assert fc.start == start and fc.end == start + timedelta(hours=30)
    assert np.allclose(fc.values, expected_at(fc.timestamps), rtol=0, atol=1e-9)
    assert fc.source == HISTORY_SOURCE and fc.model["days"] == 14 and fc.model["step_s"] == step.total_seconds()


def test_points_at_or_after_the_start_are_not_read():
    """A history that runs on past the start (a backtest's whole year) gives the forecast it would have had."""
    history = daily(30)
    start = T0 + timedelta(days=20)
    future_changed = history.copy()
    future_changed[future_changed.index >= start] = 9999.0
    a = forecast_from_history(history[history.index < start], start=start, horizon=timedelta(hours=24))
    b = forecast_from_history(future_changed, start=start, horizon=timedelta(hours=24))
    assert a.values.tolist() == b.values.tolist()


def test_a_deviation_of_the_last_hours_is_carried_forward_and_fades():
    """A level shift in the last hours (a windless evening) raises the next hours more than the far ones."""
    history = daily(40)
    start = T0 + timedelta(days=40)
    shifted = history.copy()
    shifted.iloc[-3:] += 120
    plain = forecast_from_history(history, start=start, horizon=timedelta(hours=24))
    raised = forecast_from_history(shifted, start=start, horizon=timedelta(hours=24))
    lift = raised.values - plain.values
    # the shifted hours are also one of the 14 days the profile averages: 13/14 of the shift is a deviation
    assert raised.model["level_offset"] == pytest.approx(120 * 13 / 14, abs=1e-3)
    assert lift[0] > 0 and lift[0] >= lift[-1]


def test_missing_days_a_spike_and_a_dst_change_still_give_a_valid_forecast():
    """History with three missing days, a value 20 x the rest, an outage of zeros, indexed in Europe/Berlin across
    the March DST change: a valid forecast, and the spike does not pull the profile."""
    history = daily(35, start=datetime(2025, 3, 10, tzinfo=timezone.utc), noise=10)
    history = history.tz_convert("Europe/Berlin")  # the index a user in Berlin hands us; 2025-03-30 is the change
    history = history.drop(history.index[24 * 5 : 24 * 8])  # three days missing
    history.iloc[24 * 20 + 3] = 6000.0  # a spike
    history.iloc[24 * 25 : 24 * 25 + 4] = 0.0  # an outage reported as zeros
    start = history.index[-1].to_pydatetime() + timedelta(hours=1)
    fc = forecast_from_history(history, start=start, horizon=timedelta(hours=24))
    assert isinstance(fc, Forecast) and len(fc) == 24 and fc.start == start.astimezone(timezone.utc)
    assert np.all(np.isfinite(fc.values)) and np.all(fc.values >= 0)
    assert fc.values.max() < 500  # the profile's peak is 450 (+ noise); the spike is clipped away
    assert np.allclose(fc.values, expected_at(fc.timestamps), atol=40)


def test_a_forecast_as_history_and_a_series_with_gaps_give_the_same_answer():
    history = daily(30, noise=5)
    history.iloc[100:110] = np.nan  # NaN values are gaps, like missing timestamps
    start = T0 + timedelta(days=30)
    from_series = forecast_from_history(history, start=start, horizon=timedelta(hours=12))
    as_forecast = Forecast.from_series(history.dropna(), max_gap=None)
    from_forecast = forecast_from_history(as_forecast, start=start, horizon=timedelta(hours=12))
    assert from_series.values.tolist() == from_forecast.values.tolist()


def test_too_little_history_raises_the_typed_error():
    history = daily(2)[:36]  # a day and a half
    with pytest.raises(InsufficientHistoryError) as raised:
        forecast_from_history(history, start=T0 + timedelta(days=2), horizon=timedelta(hours=12))
    assert raised.value.days_available == pytest.approx(1.5) and raised.value.days_needed == 2
    with pytest.raises(InsufficientHistoryError):
        forecast_from_history(daily(5), start=T0, horizon=timedelta(hours=12))  # all of it after the start


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="naive"):
        forecast_from_history(daily(5), start=datetime(2025, 3, 9), horizon=timedelta(hours=1))
    with pytest.raises(ValueError, match="positive"):
        forecast_from_history(daily(5), start=T0 + timedelta(days=5), horizon=timedelta(0))
    odd = daily(5, step=timedelta(minutes=7))
    with pytest.raises(ValueError, match="divide a day"):
        forecast_from_history(odd, start=T0 + timedelta(days=5), horizon=timedelta(hours=1))


@settings(max_examples=40, deadline=None)
@given(
    days=st.integers(2, 40),
    drop=st.lists(st.integers(0, 24 * 40), max_size=60),
    horizon_h=st.integers(1, 72),
    seed=st.integers(0, 2**16),
)
def test_any_history_of_two_days_or_more_gives_a_valid_forecast(days, drop, horizon_h, seed):
    history = daily(days, noise=30, seed=seed).clip(lower=0)
    history = history.drop(history.index[[i for i in set(drop) if i < len(history)]])
    start = T0 + timedelta(days=days)
    try:
        fc = forecast_from_history(history, start=start, horizon=timedelta(hours=horizon_h))
    except InsufficientHistoryError as err:
        assert err.days_available < 2
        return
    assert len(fc) == horizon_h and fc.start == start
    assert np.all(np.isfinite(fc.values)) and np.all(fc.values >= 0) and fc.values.max() < 1000


def test_a_weekend_is_forecast_from_weekends():
    """Weekdays peak at noon, weekends are flat: the forecast for a Saturday is the weekend's shape, not the
    weekday's (the 14-day profile alone would be five sevenths weekday)."""
    index = pd.date_range(datetime(2025, 1, 6, tzinfo=timezone.utc), periods=24 * 63, freq="h")  # Monday, 9 weeks
    weekend = index.day_of_week >= 5
    values = np.where(weekend, 300.0, 300.0 + 200.0 * np.exp(-(((index.hour - 12) / 3.0) ** 2)))
    history = pd.Series(values, index=index)
    saturday = datetime(2025, 3, 8, tzinfo=timezone.utc)  # eight weeks and five weekdays in
    fc = forecast_from_history(history[history.index < saturday], start=saturday, horizon=timedelta(hours=24))
    noon = fc.value_at(saturday + timedelta(hours=12))
    assert abs(noon - 300.0) < 30, noon  # weekday noon is 500
    monday = datetime(2025, 3, 3, tzinfo=timezone.utc)
    fc = forecast_from_history(history[history.index < monday], start=monday, horizon=timedelta(hours=24))
    assert abs(fc.value_at(monday + timedelta(hours=12)) - 500.0) < 30
