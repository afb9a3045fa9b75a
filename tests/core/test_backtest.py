"""The backtest on series whose optimum is known: each policy's start and saving, exactly."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from airflow_provider_carbon import Forecast
from airflow_provider_carbon.core.backtest import backtest, parse_forecast_mode

T0 = datetime(2025, 1, 1, tzinfo=timezone.utc)
H = timedelta(hours=1)


def valley(days: int = 40, clean_from: int = 5, clean_to: int = 7) -> Forecast:
    """100 g/kWh all day but 10 between clean_from and clean_to UTC: a 2 h job released at 00:00 with a 12 h
    deadline is best at 05:00, experiencing 10 instead of 100 (a 90 % saving); 02:00 experiences 100."""
    index = pd.date_range(T0, periods=24 * days, freq="h")
    values = np.where((index.hour >= clean_from) & (index.hour < clean_to), 10.0, 100.0)
    return Forecast.from_series(pd.Series(values, index=index), zone="XX")


@pytest.mark.parametrize("mode", ["perfect", "persistence", "history"])
def test_a_known_optimum_is_found_and_its_saving_reported_exactly(mode):
    result = backtest(valley(), duration=2 * H, deadline=12 * H, forecast=mode)
    provider, perfect = result.summary("provider"), result.summary("perfect")
    release, fixed = result.summary("release"), result.summary("fixed")
    assert perfect.mean_intensity == 10.0 and release.mean_intensity == 100.0 and fixed.mean_intensity == 100.0
    assert perfect.saving_vs_release_pct == 90.0 and perfect.saving_vs_fixed_pct == 90.0
    assert provider.capture_pct == 100.0 and provider.saving_vs_release_pct == 90.0
    assert provider.delay_median_h == provider.delay_max_h == 5.0 and fixed.delay_max_h == 2.0
    assert all(s.deadline_misses == 0 for s in result.summaries)
    # the first days have no history for persistence (1) or the model (2): skipped, not guessed
    assert result.skipped == {"perfect": 0, "persistence": 1, "history": 2}[mode]
    assert result.runs + result.skipped == 40  # every day's release, its deadline inside the data


def test_release_time_and_timezone_are_local_and_dst_is_kept():
    """Released at 01:00 Europe/Berlin: 00:00 UTC in winter, 23:00 UTC the day before in summer."""
    index = pd.date_range(datetime(2025, 3, 20, tzinfo=timezone.utc), periods=24 * 20, freq="h")
    observed = Forecast.from_series(pd.Series(np.linspace(100, 200, len(index)), index=index), zone="XX")
    result = backtest(observed, duration=H, deadline=6 * H, release="01:00", timezone="Europe/Berlin")
    offsets = {d.release.astimezone(timezone.utc).hour for d in result.days}
    assert offsets == {0, 23}
    assert all(d.release.astimezone(ZoneInfo("Europe/Berlin")).hour == 1 for d in result.days)
    # a rising series: starting at once is best, and every policy but fixed starts at the release
    assert result.summary("provider").delay_max_h == 0.0 and result.summary("fixed").delay_max_h == 1.0


def test_a_fallback_later_than_the_latest_start_is_clamped():
    result = backtest(valley(), duration=4 * H, deadline=6 * H, fallback="05:00")
    assert result.summary("fixed").delay_max_h == 2.0 and result.summary("fixed").deadline_misses == 0


def test_noisy_forecasts_are_seeded_and_worse_than_perfect():
    index = pd.date_range(T0, periods=24 * 30, freq="h")
    rng = np.random.default_rng(3)
    observed = Forecast.from_series(pd.Series(300 + 100 * rng.random(len(index)), index=index), zone="XX")
    a = backtest(observed, duration=2 * H, deadline=12 * H, forecast="noisy:0.3", seed=1)
    b = backtest(observed, duration=2 * H, deadline=12 * H, forecast="noisy:0.3", seed=1)
    c = backtest(observed, duration=2 * H, deadline=12 * H, forecast="noisy:0.3", seed=2)
    assert a.to_dict()["policies"] == b.to_dict()["policies"] != c.to_dict()["policies"]
    assert a.summary("provider").capture_pct < 100.0


@pytest.mark.parametrize("mode", ["noisy", "noisy:x", "noisy:-1", "noisy:nan", "oracle", ""])
def test_bad_modes_are_refused(mode):
    with pytest.raises(ValueError):
        parse_forecast_mode(mode)


def test_a_duration_longer_than_the_deadline_is_refused():
    with pytest.raises(ValueError, match="duration"):
        backtest(valley(), duration=5 * H, deadline=4 * H)
