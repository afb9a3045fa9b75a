"""`make demo`: the nightly DAG in real Airflow against the offline simulator, a night in about two minutes.

1. starts the carbon-API simulator with time compressed (one simulated hour = 5 real seconds, simulated midnight =
   now) and prints its forecast for the zone from midnight to the deadline;
2. runs `nightly_low_carbon_training` with `airflow dags test` (the real task runner and the in-process triggerer:
   the sensor really defers), with the DAG's hours scaled to the simulator's clock, and prints the chosen start and
   the saving against starting at 00:00 and at 02:00, and the job's carbon accounting (its measured runtime and
   energy, the intensity it met, its emissions and the grams saved), as the accounting listener logged it;
3. stops the simulator and runs the DAG again: the carbon API is down, so the job starts at the 02:00 fallback;
4. cleans up every process it started.

No API key, no network: everything runs on 127.0.0.1.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

from airflow_provider_carbon.simulator.process import SimulatorProcess
from airflow_provider_carbon.simulator.statsd import StatsdListener

ROOT = Path(__file__).resolve().parent.parent
HOME = ROOT / ".demo" / "airflow-home"
SPEED = 720  # simulated seconds per real second: one simulated hour every 5 s
ZONE = "DE"
TOKEN = "demo-token"
AIRFLOW = str(Path(sys.executable).with_name("airflow"))


def sim_hours(real: datetime, midnight_real: datetime) -> str:
    """A real instant as the simulated time of night it stands for (00:00 = the run's start)."""
    seconds = (real - midnight_real).total_seconds() * SPEED
    return f"{int(seconds // 3600):02d}:{int(seconds % 3600 // 60):02d}"


def real_of(hours: float, midnight_real: datetime) -> datetime:
    return midnight_real + timedelta(hours=hours) / SPEED


def start_simulator(midnight_real: datetime) -> SimulatorProcess:
    """The simulator on a free port, its clock compressed, simulated midnight of a June night in Berlin at
    ``midnight_real``."""
    sim_midnight = datetime(2025, 6, 2, tzinfo=timezone(timedelta(hours=2)))
    return SimulatorProcess.start(
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
    )


def fetch_forecast(url: str) -> list[tuple[datetime, float]]:
    request = urllib.request.Request(
        f"{url}/v3/carbon-intensity/forecast?zone={ZONE}&horizonHours=24",
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
    return {**json.loads(report.read_text()), "log": log}


def print_accounting(report: dict, log: str) -> None:
    """The accounting record of the job (XCom ``carbon_accounting``) and its one log line."""
    record = report.get("accounting")
    # the listener's last word: the record's summary, or why there is none
    lines = [ln[ln.index("carbon accounting:") :] for ln in log.splitlines() if "carbon accounting:" in ln]
    line = re.sub(r"\s+\[airflow_provider_carbon[^\]]*\].*$", "", lines[-1]) if lines else ""
    if not record:
        print(f"  accounting: none. {line or 'The listener left no line.'}")
        return
    print(
        f"  accounting ({record['intensity_source']}): the job ran {record['runtime_s']:.1f} s, "
        f"{record['energy_kwh'] * 1000:.3g} Wh at {record['experienced_intensity']:.0f} {record['unit']} = "
        f"{record['emissions_g']:.3g} g CO2eq"
    )
    for label, key in (("starting at once", "vs_baseline"), ("the 02:00 default", "vs_fallback")):
        grams, pct = record.get(f"saving_{key}_g"), record.get(f"saving_{key}_pct")
        if grams is not None and pct is not None:
            print(f"    saved against {label}: {grams:.3g} g ({pct:.1f} %)")
    if line:
        print(f"  the job's log line: {line}")


def measure_boot(env: dict[str, str]) -> timedelta:
    """How long an Airflow command takes to start here (imports, the database, parsing the DAGs): `airflow dags
    test` spends about that long before its sensor runs, which on the simulator's clock is hours (5 s per hour)."""
    started = time.monotonic()
    subprocess.run([AIRFLOW, "dags", "list", "-o", "plain"], env=env, check=True, capture_output=True)
    return timedelta(seconds=time.monotonic() - started)


def next_midnight(boot: timedelta) -> datetime:
    """Simulated midnight for a run starting now: when its sensor is expected to decide, in whole seconds (so that
    simulated 02:00, 10 real seconds later, is a wall-clock time the DAG can be given). `dags test` starts about a
    third slower than `dags list` (it also creates the run and starts the task runner)."""
    lead = math.ceil(1.3 * boot.total_seconds())
    return datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=1 + lead)


def print_metrics(metrics: StatsdListener) -> None:
    """The carbon gauges the job's accounting sent through Airflow's metrics client (the last run's)."""
    figures = []
    for name in ("emissions_g", "saving_vs_start_g", "saving_vs_start_pct", "saving_vs_fallback_pct"):
        gauges = metrics.gauges(f"airflow.carbon.{name}")
        if gauges:
            figures.append(f"carbon.{name}={gauges[-1][1]:.3g}")
    print(f"  metrics received by StatsD (udp {metrics.port}): {', '.join(figures) or 'none'}")


def write_carbon_page(env: dict[str, str]) -> None:
    """The Carbon page of the demo's runs (the plugin's query and renderer), as a file: the demo has no UI."""
    out = HOME / "carbon.html"
    result = subprocess.run(
        [sys.executable, str(ROOT / "demo" / "carbon_page.py"), str(out)], env=env, capture_output=True, text=True
    )
    if result.returncode != 0:
        print(f"\nthe Carbon page could not be written: {result.stderr[-1500:]}")
        return
    rows = result.stdout.strip().splitlines()[-1]  # the script's own last line (Airflow may warn before it)
    print(f"\nthe Carbon page of the demo's runs so far ({rows}): {out}")
    print("  (open it in a browser; in Airflow's UI it is Carbon in the navigation, as in `make stack`)")


def main() -> int:
    HOME.mkdir(parents=True, exist_ok=True)
    metrics = StatsdListener()
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(HOME),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{HOME / 'airflow.db'}",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        # Airflow's metrics to a StatsD stand-in of the demo's own (the statsd package is in the demo's virtualenv)
        "AIRFLOW__METRICS__STATSD_ON": "True",
        "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
        "AIRFLOW__METRICS__STATSD_PORT": str(metrics.port),
        "AIRFLOW__METRICS__STATSD_PREFIX": "airflow",
        "AIRFLOW__METRICS__STATSD_INFLUXDB_ENABLED": "True",
    }
    print("preparing Airflow (SQLite metadata database in .demo/) ...", flush=True)
    subprocess.run([AIRFLOW, "db", "migrate"], env=env, check=True, capture_output=True)

    boot = measure_boot(env)
    midnight_real = next_midnight(boot)
    sim = start_simulator(midnight_real)
    try:
        env["AIRFLOW_CONN_ELECTRICITYMAPS_DEFAULT"] = json.dumps(
            {
                "conn_type": "electricitymaps",
                "host": f"{sim.url}/v3",
                "password": TOKEN,
                "extra": {"zone": ZONE, "max_attempts": 2, "max_retry_wait": 2, "timeout": 3, "cache_ttl": 0},
            }
        )
        print(
            f"simulator: {sim.url} (one simulated hour = {3600 / SPEED:g} s; 00:00 = in "
            f"{(midnight_real - datetime.now(timezone.utc)).total_seconds():.0f} s, when the sensor should run: "
            f"Airflow takes {boot.total_seconds():.0f} s to start here)"
        )
        points = fetch_forecast(sim.url)
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
        print_accounting(good, good["log"])
        print_metrics(metrics)
    finally:
        sim.stop()
    print("\nthe carbon API is now down (simulator stopped) ...")

    midnight_real = next_midnight(boot)
    conf["fallback"] = real_of(2, midnight_real).strftime("%H:%M:%S")
    down = run_dag(env, conf, "api-down")
    start = datetime.fromisoformat(down["planned_start"])
    decided = datetime.fromisoformat(down["decision"]["decided_at"])
    # the 02:00 default, unless the sensor ran after it (a slow start): then it releases at once
    what = "the 02:00 default" if decided <= real_of(2, midnight_real) else "at once: 02:00 had passed when it ran"
    print(
        f"\n  used the fallback: {down['used_fallback']} ({down['fallback_reason']}: {down['fallback_error'][:90]}...)"
    )
    print(
        f"  start: {sim_hours(start, midnight_real)} (simulated), released at "
        f"{sim_hours(datetime.fromisoformat(down['released_at']), midnight_real)}: {what}"
    )
    print_accounting(down, down["log"])
    write_carbon_page(env)
    metrics.close()
    print(f"\ndone. Logs and reports: {HOME}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
