"""The simulator speaks the formats our hooks read, compresses time honestly, and fails on demand."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone

import pytest

from airflow_provider_carbon.core.windows import find_best_window
from airflow_provider_carbon.exceptions import (
    AuthenticationError,
    BadPayloadError,
    InvalidRequestError,
    NotEntitledError,
    RateLimitedError,
    ServiceUnavailableError,
)
from airflow_provider_carbon.hooks.carbon_aware_sdk import CarbonAwareSdkHook
from airflow_provider_carbon.hooks.electricitymaps import ElectricityMapsHook
from airflow_provider_carbon.simulator.grid import CsvGrid, SyntheticGrid
from airflow_provider_carbon.simulator.server import SimClock, Simulator, serve

SIM_MIDNIGHT = datetime(2025, 6, 2, tzinfo=timezone(timedelta(hours=2)))


@pytest.fixture
def simulator(monkeypatch):
    """Five zones, one simulated hour per 5 real seconds, served on a free port."""
    clock = SimClock(speed=720, real_anchor=datetime.now(timezone.utc), sim_anchor=SIM_MIDNIGHT)
    sim = Simulator.synthetic(["SE-SE3", "FR", "DE", "PL", "ES"], seed=7, clock=clock, token="sim-token")
    server = serve(sim)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    fast = {"retry_backoff": 0.01, "max_retry_wait": 1, "timeout": 2, "max_attempts": 2, "cache_ttl": 0}
    monkeypatch.setenv(
        "AIRFLOW_CONN_SIM_EM",
        json.dumps({"conn_type": "electricitymaps", "host": url + "/v3", "password": "sim-token", "extra": fast}),
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_SIM_SDK", json.dumps({"conn_type": "carbon_aware_sdk", "host": url, "extra": fast})
    )
    sim.url = url
    yield sim
    server.shutdown()


def test_electricity_maps_forecast_is_time_compressed(simulator):
    fc = ElectricityMapsHook("sim_em").get_forecast("DE", min_horizon=timedelta(seconds=60))
    assert len(fc) == 25 and fc.source == "electricitymaps" and fc.zone == "DE"
    steps = {b - a for a, b in zip(fc.timestamps, fc.timestamps[1:], strict=False)}
    assert steps == {timedelta(seconds=5)}  # one simulated hour per 5 real seconds
    # each point carries the model's forecast for the simulated hour it stands for
    grid = simulator.grids["DE"]
    for t, v in fc.to_points():
        sim_time = simulator.clock.sim(t + timedelta(seconds=2.5))  # mid-step: timestamps are rounded to ms
        assert v == grid.forecast(sim_time, sim_time)


def test_latest_history_and_zones(simulator):
    hook = ElectricityMapsHook("sim_em")
    latest = hook.get_latest("FR")
    assert latest.values[0] == simulator.grids["FR"].value(simulator.clock.sim(latest.start + timedelta(seconds=2.5)))
    now = datetime.now(timezone.utc)
    past = hook.get_history("FR", start=now - timedelta(seconds=60), end=now)
    assert 11 <= len(past) <= 13  # twelve simulated hours
    assert set(hook.list_zones()) == {"SE-SE3", "FR", "DE", "PL", "ES"}


def test_optimizer_finds_the_cleanest_simulated_hours(simulator):
    fc = ElectricityMapsHook("sim_em").get_forecast("ES", min_horizon=timedelta(seconds=60))
    best = find_best_window(fc, timedelta(seconds=10))  # a 2-hour job
    hour = int(simulator.clock.sim(best.start).astimezone(SIM_MIDNIGHT.tzinfo).hour)
    assert 10 <= hour <= 17  # Spain's sun makes the middle of the day cleanest


def test_carbon_aware_sdk_formats(simulator):
    hook = CarbonAwareSdkHook("sim_sdk")
    fc = hook.get_forecast("germanywestcentral", min_horizon=timedelta(seconds=60))
    assert len(fc) == 25 and fc.end - fc.timestamps[-1] == timedelta(seconds=5)
    many = hook.get_latest_many(["swedencentral", "polandcentral", "FR"])
    assert set(many) == {"swedencentral", "polandcentral", "FR"}
    assert many["swedencentral"].values[0] < many["polandcentral"].values[0]
    (best,) = hook.get_best_location(["swedencentral", "polandcentral"])
    assert best.location == "swedencentral"
    with pytest.raises(InvalidRequestError, match="Unknown Location"):
        hook.get_forecast("mars")


def test_carbon_aware_sdk_window_size(monkeypatch):
    """With windowSize the SDK answers rolling averages and every window tied at the minimum."""
    clock = SimClock(speed=60, sim_anchor=SIM_MIDNIGHT)  # one simulated hour per real minute
    server = serve(Simulator.synthetic(["ES"], clock=clock))
    try:
        monkeypatch.setenv(
            "AIRFLOW_CONN_SIM_SDK60",
            json.dumps({"conn_type": "carbon_aware_sdk", "host": f"http://127.0.0.1:{server.server_address[1]}"}),
        )
        (result,) = CarbonAwareSdkHook("sim_sdk60").get_current_forecasts(["ES"], window_size=timedelta(minutes=2))
    finally:
        server.shutdown()
    assert result.window_size == 2 and result.optimal
    assert {p.value for p in result.optimal} == {min(result.forecast.values)}
    assert result.optimal[0].duration == timedelta(minutes=2)


@pytest.mark.parametrize(
    ("mode", "error", "match"),
    [
        ("down", ServiceUnavailableError, "could not connect"),
        ("500", ServiceUnavailableError, "Internal Server Error"),
        ("503", ServiceUnavailableError, "503"),
        ("429", RateLimitedError, "Too Many Requests"),
        ("empty", BadPayloadError, "empty body"),
        ("garbage", BadPayloadError, "malformed JSON"),
        ("zeros", BadPayloadError, "values are 0"),
        ("not_entitled", NotEntitledError, "Request unauthorized for zoneKey=DE"),
        ("bad_token", AuthenticationError, "Invalid auth-token"),
    ],
)
def test_failure_modes_reach_the_hook_as_typed_errors(simulator, mode, error, match):
    simulator.set_failure(mode, retry_after=60)
    with pytest.raises(error, match=match):
        ElectricityMapsHook("sim_em").get_forecast("DE")


def test_slow_mode(simulator):
    simulator.set_failure("slow", delay=1.0)
    hook = ElectricityMapsHook("sim_em", timeout=0.3, max_attempts=1)
    with pytest.raises(ServiceUnavailableError, match="no answer"):
        hook.get_forecast("DE")


def test_failures_per_zone_and_switched_at_run_time(simulator):
    hook = ElectricityMapsHook("sim_em")
    body = json.dumps({"mode": "500", "zones": ["DE"]}).encode()
    request = urllib.request.Request(simulator.url + "/sim/failure", data=body, method="POST")
    with urllib.request.urlopen(request) as response:
        assert json.loads(response.read())["zones"] == ["DE"]
    with pytest.raises(ServiceUnavailableError):
        hook.get_latest("DE")
    assert hook.get_latest("FR").values[0] > 0
    request = urllib.request.Request(simulator.url + "/sim/failure", data=b'{"mode": "ok"}', method="POST")
    urllib.request.urlopen(request).close()
    assert hook.get_latest("DE").values[0] > 0
    with urllib.request.urlopen(simulator.url + "/sim/state") as response:
        state = json.loads(response.read())
    assert state["speed"] == 720 and state["failure"]["mode"] == "ok"


def test_zeros_apply_only_to_the_chosen_zones_and_to_windowed_answers(monkeypatch):
    clock = SimClock(speed=60, sim_anchor=SIM_MIDNIGHT)
    sim = Simulator.synthetic(["ES", "FR"], clock=clock)
    server = serve(sim)
    try:
        monkeypatch.setenv(
            "AIRFLOW_CONN_SIM_SDK_Z",
            json.dumps(
                {
                    "conn_type": "carbon_aware_sdk",
                    "host": f"http://127.0.0.1:{server.server_address[1]}",
                    "extra": {"cache_ttl": 0},
                }
            ),
        )
        sim.set_failure("zeros", zones=["ES"])
        hook = CarbonAwareSdkHook("sim_sdk_z")
        assert hook.get_latest("FR").values[0] > 0
        with pytest.raises(BadPayloadError, match="values are 0"):
            hook.get_latest("ES")
        with pytest.raises(BadPayloadError, match="values are 0"):  # the rolling averages are zeros too
            hook.get_current_forecasts(["ES"], window_size=timedelta(minutes=2))
        assert hook.get_current_forecasts(["FR"], window_size=timedelta(minutes=2))[0].forecast.values[0] > 0
    finally:
        server.shutdown()


def test_the_clock_is_re_anchored_at_run_time(simulator):
    """POST /sim/clock: "simulated midnight is now", so a run can start at a known simulated hour."""
    now = datetime.now(timezone.utc)
    body = json.dumps({"sim_start": "2025-12-24T00:00:00+01:00", "real_start": now.isoformat()}).encode()
    request = urllib.request.Request(simulator.url + "/sim/clock", data=body, method="POST")
    with urllib.request.urlopen(request) as response:
        assert json.loads(response.read())["speed"] == 720
    with urllib.request.urlopen(simulator.url + "/sim/state") as response:
        sim_now = datetime.fromisoformat(json.loads(response.read())["sim_now"])
    midnight = datetime(2025, 12, 24, tzinfo=timezone(timedelta(hours=1)))
    assert midnight <= sim_now <= midnight + (datetime.now(timezone.utc) - now) * 720 + timedelta(seconds=1)
    bad = urllib.request.Request(simulator.url + "/sim/clock", data=b'{"sim_start": "soon"}', method="POST")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(bad)
    assert info.value.code == 400


def test_wrong_token_and_unknown_zone(simulator, monkeypatch):
    with pytest.raises(InvalidRequestError, match="No recent data"):
        ElectricityMapsHook("sim_em").get_latest("XX")
    conn = json.loads(__import__("os").environ["AIRFLOW_CONN_SIM_EM"])
    monkeypatch.setenv("AIRFLOW_CONN_SIM_BAD", json.dumps({**conn, "password": "nope"}))
    with pytest.raises(AuthenticationError):
        ElectricityMapsHook("sim_bad").get_latest("DE")


def test_synthetic_grid_is_seeded_and_shaped():
    noon = datetime(2025, 6, 2, 11, tzinfo=timezone.utc)
    night = datetime(2025, 6, 2, 2, tzinfo=timezone.utc)
    es = SyntheticGrid("ES", seed=1)
    assert es.value(noon) == SyntheticGrid("ES", seed=1).value(noon)
    assert es.value(noon) != SyntheticGrid("ES", seed=2).value(noon)
    assert es.value(noon) < es.value(night)  # the solar dip
    week = [SyntheticGrid("PL").value(noon + timedelta(hours=h)) for h in range(24 * 7)]
    assert 500 < sum(week) / len(week) < 800 and min(week) > 0


def test_csv_replay(tmp_path):
    path = tmp_path / "de.csv"
    path.write_text(
        "timestamp,carbon_intensity\n2021-01-01T00:00:00Z,533.4\n2021-01-01T01:00:00Z,540.2\n"
        "2021-01-01T02:00:00Z,120.0\n"
    )
    grid = CsvGrid("DE", path)
    t0 = datetime(2021, 1, 1, tzinfo=timezone.utc)
    assert grid.value(t0 + timedelta(minutes=90)) == 540.2
    assert grid.value(t0 + timedelta(hours=3)) == 533.4  # wraps around
    assert grid.forecast(t0, t0) == 533.4


def test_command_line_starts_and_stops(tmp_path):
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow_provider_carbon.simulator",
            "--port",
            "0",
            "--zones",
            "DE,FR",
            "--failure",
            "not_entitled",
            "--failure-zones",
            "DE",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert "carbon simulator ready on http://127.0.0.1:" in line and "failure not_entitled" in line
        url = line.split(" on ")[1].split()[0]
        with urllib.request.urlopen(url + "/sim/state") as response:
            state = json.loads(response.read())
        assert state["zones"] == ["DE", "FR"] and state["failure"]["zones"] == ["DE"]
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
