"""Carbon accounting against hand-computed cases."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from airflow_provider_carbon.core.accounting import (
    Accounting,
    EnergySource,
    IntensitySource,
    account,
    total_emissions,
)
from airflow_provider_carbon.core.forecast import Forecast, Signal

T0 = datetime(2025, 6, 1, 22, tzinfo=timezone.utc)  # midnight in Berlin
H = timedelta(hours=1)
M = timedelta(minutes=1)
# 00:00 400, 01:00 300, 02:00 200, 03:00 100, 04:00 300, 05:00 500 (g/kWh), one hour each
SERIES = Forecast.from_points([(T0 + i * H, v) for i, v in enumerate([400, 300, 200, 100, 300, 500])], zone="DE")


def run(**kwargs):
    """A 1-hour job at 03:00 on SERIES, measured from history, baseline 00:00: override what a case changes."""
    args = {
        "started_at": T0 + 3 * H,
        "ended_at": T0 + 4 * H,
        "intensity": SERIES,
        "intensity_source": "history",
        "baseline_start": T0,
        **kwargs,
    }
    return account(**args)


def test_a_whole_hour_job_at_the_cleanest_hour():
    a = run(
        fallback_start=T0 + 2 * H,
        power_kw=2.0,
    )
    assert a.runtime_s == 3600 and a.energy_kwh == 2.0 and a.energy_source is EnergySource.DECLARED_POWER
    assert a.experienced_intensity == 100 and a.emissions_g == 200
    assert a.emissions_if_started_at_baseline_g == 800 and a.saving_vs_baseline_g == 600
    assert a.saving_vs_baseline_pct == pytest.approx(75.0)
    assert a.emissions_if_fallback_g == 400 and a.saving_vs_fallback_g == 200 and a.saving_vs_fallback_pct == 50
    assert a.delay_s == 3 * 3600 and a.intensity_source is IntensitySource.HISTORY
    assert (a.signal, a.unit, a.zone) == ("average", "gCO2eq/kWh", "DE")


def test_partial_intervals_are_weighted_by_their_overlap():
    # 02:30-03:45: 30 min at 200, 45 min at 100 -> mean (200*30 + 100*45) / 75 = 140
    a = run(
        started_at=T0 + 2 * H + 30 * M,
        ended_at=T0 + 3 * H + 45 * M,
        baseline_start=T0 + 10 * M,
        power_kw=4.0,
    )
    assert a.experienced_intensity == pytest.approx(140)
    assert a.energy_kwh == pytest.approx(5.0)  # 4 kW x 1.25 h
    assert a.emissions_g == pytest.approx(700)
    # the same 75 min from 00:10: 50 min at 400, 25 min at 300 -> (400*50 + 300*25) / 75 = 366.67
    assert a.baseline_intensity == pytest.approx(1100 / 3)
    assert a.emissions_if_started_at_baseline_g == pytest.approx(5.0 * 1100 / 3)
    assert a.saving_vs_baseline_pct == pytest.approx(100 * (1100 / 3 - 140) / (1100 / 3))


def test_pue_multiplies_the_energy():
    a = run(
        power_kw=2.0,
        pue=1.5,
    )
    assert a.energy_kwh == 3.0 and a.emissions_g == 300 and a.emissions_if_started_at_baseline_g == 1200


def test_a_job_that_ran_longer_than_planned_is_accounted_for_its_real_runtime():
    # planned 1 h at 03:00, ran 2 h: 03:00-05:00 at 100 then 300
    a = run(
        ended_at=T0 + 5 * H,
        fallback_start=T0 + 2 * H,
        power_kw=1.0,
    )
    assert a.runtime_s == 7200 and a.energy_kwh == 2.0
    assert a.experienced_intensity == 200 and a.emissions_g == 400
    # counterfactuals run as long as the job really did: 00:00-02:00 (350) and 02:00-04:00 (150)
    assert a.emissions_if_started_at_baseline_g == 700 and a.emissions_if_fallback_g == 300
    assert a.saving_vs_fallback_g == -100 and a.saving_vs_fallback_pct == pytest.approx(-100 / 3)


def test_declared_energy_per_run_and_measured_energy():
    a = run(
        ended_at=T0 + 3 * H + 30 * M,
        energy_kwh=0.5,
    )
    assert a.energy_kwh == 0.5 and a.energy_source is EnergySource.DECLARED_ENERGY and a.emissions_g == 50
    measured = run(
        energy_kwh=0.25,
        energy_source="measured",
    )
    assert measured.energy_source is EnergySource.MEASURED and measured.emissions_g == 25


def test_history_missing_uses_the_forecast_and_says_so():
    forecast = Forecast.from_points([(T0 + i * H, 250.0) for i in range(6)], zone="DE", source="electricitymaps")
    a = run(
        intensity=forecast,
        intensity_source=IntensitySource.FORECAST,
        power_kw=1.0,
    )
    assert a.intensity_source is IntensitySource.FORECAST and a.to_dict()["intensity_source"] == "forecast"
    assert a.emissions_g == 250 and "(forecast)" in a.summary()


def test_a_counterfactual_the_series_does_not_cover_is_none_not_a_guess():
    a = run(
        baseline_start=T0 - H,  # before the series
        fallback_start=T0 + 5 * H + 30 * M,  # its hour would end after the series
        power_kw=1.0,
    )
    assert a.emissions_if_started_at_baseline_g is None and a.saving_vs_baseline_pct is None
    assert a.emissions_if_fallback_g is None and a.saving_vs_fallback_g is None
    assert "saved" not in a.summary()


def test_marginal_and_average_are_never_added():
    marginal = Forecast.from_points([(T0 + i * H, 600.0) for i in range(6)], zone="CAISO_NORTH", signal=Signal.MARGINAL)
    common = {"started_at": T0 + 3 * H, "ended_at": T0 + 4 * H, "baseline_start": T0, "power_kw": 1.0}
    records = [
        account(intensity=SERIES, intensity_source="history", **common),
        account(intensity=SERIES, intensity_source="history", **common),
        account(intensity=marginal, intensity_source="history", **common),
    ]
    assert records[2].signal == "marginal"
    assert total_emissions(records) == {("average", "gCO2eq/kWh"): 200.0, ("marginal", "gCO2eq/kWh"): 600.0}


def test_record_round_trips_through_json():
    a = run(
        fallback_start=T0 + 2 * H,
        power_kw=2.0,
    )
    data = json.loads(json.dumps(a.to_dict()))
    assert data["schema_version"] == 1 and data["energy_source"] == "declared_power"
    assert Accounting.from_dict(data) == a


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"power_kw": None}, "exactly one"),
        ({"energy_kwh": 1.0}, "exactly one"),
        ({"pue": 0.9}, "pue"),
        ({"power_kw": -1.0}, "negative"),
        ({"ended_at": T0 + 3 * H}, "end after"),
        ({"started_at": datetime(2025, 6, 2, 1)}, "timezone"),
        ({"ended_at": T0 + 7 * H}, "does not cover"),
    ],
)
def test_refuses_what_cannot_be_accounted(kwargs, message):
    args = {
        "started_at": T0 + 3 * H,
        "ended_at": T0 + 4 * H,
        "intensity": SERIES,
        "intensity_source": "history",
        "baseline_start": T0,
        "power_kw": 1.0,
        **kwargs,
    }
    with pytest.raises(ValueError, match=message):
        account(**args)


def test_the_log_line_keeps_three_significant_digits():
    a = run(ended_at=T0 + 3 * H + 6 * M, power_kw=0.3, fallback_start=T0 + 2 * H)
    # 6 min at 0.3 kW = 0.03 kWh at 100 g/kWh = 3 g; at once (00:00-00:06 at 400): 12 g, 9 g saved
    assert a.summary().startswith("ran 6 min from 2025-06-02T01:00:00+00:00, 0.03 kWh at 100 gCO2eq/kWh (history): 3 g")
    assert "; 9 g (75.0 %) saved against starting at once; 3 g (50.0 %) saved against the fallback time" in a.summary()
