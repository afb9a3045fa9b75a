"""`make demo`: the nightly DAG in real Airflow against the offline simulator, a night in about two minutes.

1. starts the carbon-API simulator with time compressed (one simulated hour = 5 real seconds, simulated midnight =
   now) and prints its forecast for the zone from midnight to the deadline;
2. runs `nightly_low_carbon_training` with `airflow dags test` (the real task runner and the in-process triggerer:
   the sensor really defers), with the DAG's hours scaled to the simulator's clock, and prints the chosen start,
   the saving against starting at 00:00 and at 02:00, and the job's accounting (what it emitted and saved);
3. stops the simulator and runs the DAG again: the carbon API is down, so the job starts at the 02:00 fallback;
4. cleans up every process it started.

No API key, no network: everything runs on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOME = ROOT / ".demo" / "airflow-home"
SPEED = 720  # simulated seconds per real second: one simulated hour every 5 s
ZONE = "DE"
TOKEN = "demo-token"
AIRFLOW = str(Path(sys.executable).with_name("airflow"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def sim_hours(real: datetime, midnight_real: datetime) -> str:
    """A real instant as the simulated time of night it stands for (00:00 = the run's start)."""
    seconds = (real - midnight_real).total_seconds() * SPEED
    return f"{int(seconds // 3600):02d}:{int(seconds % 3600 // 60):02d}"


def print_accounting(accounting: dict | None) -> None:
    """What the job really emitted and saved, from the accounting listener (the DAG's sensor declares 0.3 kW)."""
    if not accounting:
        print("  accounting: none (see the log: the job was not accounted)")
        return
    # the job ran for real seconds of the compressed night: grams are small, percentages are what they would be
    line = (
        f"  accounted ({accounting['intensity_source']}): the job ran {accounting['runtime_s']:.1f} s, "
        f"{accounting['energy_kwh'] * 1000:.3g} Wh at {accounting['experienced_intensity']:.0f} gCO2eq/kWh = "
        f"{accounting['emissions_g']:.3g} g CO2eq"
    )
    for label, grams, pct in (
        ("starting at once", accounting.get("saving_vs_baseline_g"), accounting.get("saving_vs_baseline_pct")),
        ("02:00", accounting.get("saving_vs_fallback_g"), accounting.get("saving_vs_fallback_pct")),
    ):
        if grams is not None and pct is not None:
            line += f"; saved {grams:.3g} g ({pct:.1f} %) against {label}"
    print(line)


def real_of(hours: float, midnight_real: datetime) -> datetime:
    return midnight_real + timedelta(hours=hours) / SPEED


def start_simulator(port: int, midnight_real: datetime) -> subprocess.Popen:
    sim_midnight = datetime(2025, 6, 2, tzinfo=timezone(timedelta(hours=2)))  # a June night in Berlin
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow_provider_carbon.simulator",
            "--port",
            str(port),
            "--speed",
            str(SPEED),
            "--sim-start",
            sim_midnight.isoformat(),
            "--real-start",
            midnight_real.isoformat(),
            "--token",
            TOKEN,
            "--zones",
            "DE,FR,SE-SE3,PL,ES",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    line = proc.stdout.readline() if proc.stdout else ""
    if "ready" not in line:
        raise SystemExit(f"simulator did not start: {line}")
    return proc


def fetch_forecast(port: int) -> list[tuple[datetime, float]]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v3/carbon-intensity/forecast?zone={ZONE}&horizonHours=24",
        headers={"auth-token": TOKEN},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        body = json.loads(response.read())
    return [
        (datetime.fromisoformat(p["datetime"].replace("Z", "+00:00")), p["carbonIntensity"]) for p in body["forecast"]
    ]


def print_forecast(points: list[tuple[datetime, float]], midnight_real: datetime) -> None:
    """The hours a 2-hour job that must finish by 08:00 can run in: simulated 00:00 to 07:00."""
    deadline = real_of(8, midnight_real)
    shown = [(when, value) for when, value in points if midnight_real <= when < deadline]
    low, high = min(v for _, v in shown), max(v for _, v in shown)
    print(f"\nforecast for {ZONE} up to the deadline (simulated clock; gCO2eq/kWh):")
    for when, value in shown:
        bar = "#" * int(1 + 40 * (value - low) / max(high - low, 1))
        print(f"  {sim_hours(when, midnight_real)}  {value:6.0f}  {bar}")
    print("  (a 2-hour job that must finish by 08:00 can start from 00:00 to 06:00)")


def window_mean(points: list[tuple[datetime, float]], start: datetime) -> float:
    """Mean forecast intensity of the 2-hour job starting at ``start`` (the same step model the sensor uses)."""
    from airflow_provider_carbon import Forecast

    forecast = Forecast.from_points(points, max_gap=None)
    return forecast.mean(start, start + timedelta(hours=2) / SPEED)


def run_dag(env: dict[str, str], conf: dict, label: str) -> dict:
    report = HOME / f"report-{label}.json"
    report.unlink(missing_ok=True)
    conf = {**conf, "report_file": str(report)}
    print(f"\n$ airflow dags test nightly_low_carbon_training  ({label})", flush=True)
    started = time.monotonic()
    result = subprocess.run(
        [AIRFLOW, "dags", "test", "nightly_low_carbon_training", "-c", json.dumps(conf)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    log = result.stdout + result.stderr
    (HOME / f"dags-test-{label}.log").write_text(log)
    if result.returncode != 0 or not report.exists():
        print(log[-4000:])
        raise SystemExit(f"the DAG run failed ({label}); full log in {HOME / f'dags-test-{label}.log'}")
    deferred = "running trigger in line" in log
    print(f"  finished in {time.monotonic() - started:.0f} s; the sensor deferred to the triggerer: {deferred}")
    return json.loads(report.read_text())


def main() -> int:
    HOME.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(HOME),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{HOME / 'airflow.db'}",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
    }
    print("preparing Airflow (SQLite metadata database in .demo/) ...", flush=True)
    subprocess.run([AIRFLOW, "db", "migrate"], env=env, check=True, capture_output=True)

    port = free_port()
    # whole seconds, so that simulated 02:00 (10 real seconds later) is a wall-clock time the DAG can be given
    midnight_real = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=1)
    sim = start_simulator(port, midnight_real)
    try:
        env["AIRFLOW_CONN_ELECTRICITYMAPS_DEFAULT"] = json.dumps(
            {
                "conn_type": "electricitymaps",
                "host": f"http://127.0.0.1:{port}/v3",
                "password": TOKEN,
                "extra": {"zone": ZONE, "max_attempts": 2, "max_retry_wait": 2, "timeout": 3, "cache_ttl": 0},
            }
        )
        print(f"simulator: http://127.0.0.1:{port} (one simulated hour = {3600 / SPEED:g} s; 00:00 = now)")
        # ask once simulated midnight has come, so the forecast starts at 00:00 rather than in the hour before
        time.sleep(max((midnight_real - datetime.now(timezone.utc)).total_seconds(), 0) + 0.05)
        points = fetch_forecast(port)
        print_forecast(points, midnight_real)
        # the DAG's production values (2 h job, done by 08:00, fallback 02:00) on the simulator's clock
        conf = {
            "zone": ZONE,
            "expected_duration": 2 * 3600 / SPEED,
            "max_delay": 6 * 3600 / SPEED,
            "fallback": real_of(2, midnight_real).strftime("%H:%M:%S"),
            "fallback_timezone": "UTC",
            "training_rounds": 200,
        }
        good = run_dag(env, conf, "optimised")
        start = datetime.fromisoformat(good["planned_start"])
        at_midnight = window_mean(points, midnight_real)
        at_two = window_mean(points, real_of(2, midnight_real))
        expected = good["expected_intensity"]
        print(
            f"\n  chosen start: {sim_hours(start, midnight_real)} (simulated), expected {expected:.0f} gCO2eq/kWh "
            "over the job (the sensor planned when it ran, at "
            f"{sim_hours(datetime.fromisoformat(good['decision']['decided_at']), midnight_real)})"
        )
        print(
            f"  a plain midnight cron (00:00): {at_midnight:.0f} gCO2eq/kWh -> saving "
            f"{100 * (at_midnight - expected) / at_midnight:.1f} %"
        )
        print(
            f"  the fixed 02:00 default:       {at_two:.0f} gCO2eq/kWh -> saving "
            f"{100 * (at_two - expected) / at_two:.1f} %"
        )
        print(
            f"  released at {sim_hours(datetime.fromisoformat(good['released_at']), midnight_real)}; "
            f"re-plans while waiting: {good['replans']}"
        )
        print_accounting(good.get("accounting"))
    finally:
        os.killpg(sim.pid, signal.SIGTERM)
        sim.wait(timeout=10)
    print("\nthe carbon API is now down (simulator stopped) ...")

    midnight_real = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=1)
    conf["fallback"] = real_of(2, midnight_real).strftime("%H:%M:%S")
    down = run_dag(env, conf, "api-down")
    start = datetime.fromisoformat(down["planned_start"])
    print(
        f"\n  used the fallback: {down['used_fallback']} ({down['fallback_reason']}: {down['fallback_error'][:90]}...)"
    )
    print(
        f"  start: {sim_hours(start, midnight_real)} (simulated), released at "
        f"{sim_hours(datetime.fromisoformat(down['released_at']), midnight_real)}: the 02:00 default"
    )
    print(f"\ndone. Logs and reports: {HOME}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
