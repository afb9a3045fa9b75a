"""The example DAGs themselves (dags/, not test copies) in `airflow dags test` against the offline simulator: what
a user runs first. The floor job (make test-floor) runs this on Airflow 3.1 with the provider installed from its
wheel; tests/e2e runs the same DAGs in a full stack on 3.3.2."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import urllib.request
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from airflow_provider_carbon.simulator.process import SimulatorProcess
from tests.airflow_stack import AirflowStack
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow
SPEED = 720  # one simulated hour per 5 real seconds
SIM_MIDNIGHT = datetime(2025, 6, 2, tzinfo=timezone(timedelta(hours=2)))  # the demo's June night in Berlin
TOKEN = "example-token"
ZONES = ["SE-SE3", "FR", "ES", "DE", "PL"]
REGION_TASKS = {"SE-SE3": "run_in_sweden", "FR": "run_in_france", "ES": "run_in_spain", "DE": "run_in_germany"}
REGION_TASKS["PL"] = "run_in_poland"


@pytest.fixture(scope="module")
def simulator():
    with SimulatorProcess.start("--speed", str(SPEED), "--token", TOKEN, "--zones", ",".join(ZONES)) as sim:
        yield sim.url


@pytest.fixture(scope="module")
def stack(simulator, tmp_path_factory):
    connection = {
        "conn_type": "electricitymaps",
        "host": f"{simulator}/v3",
        "password": TOKEN,
        "extra": {"zone": "DE", "max_attempts": 2, "max_retry_wait": 2, "timeout": 3, "cache_ttl": 0},
    }
    stack = AirflowStack(
        tmp_path_factory.mktemp("airflow-home-examples"),
        extra_env={
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
            "AIRFLOW_CONN_ELECTRICITYMAPS_DEFAULT": json.dumps(connection),
        },
    )
    stack.migrate()
    return stack


def night_starts_now(url: str) -> datetime:
    """Simulated midnight is one second from now, so the sensor meets the start of the night (and defers)."""
    midnight = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=1)
    body = {"sim_start": SIM_MIDNIGHT.isoformat(), "real_start": midnight.isoformat()}
    request = urllib.request.Request(f"{url}/sim/clock", data=json.dumps(body).encode(), method="POST")
    urllib.request.urlopen(request, timeout=5).close()
    return midnight


def run_nightly(stack: AirflowStack, simulator: str, tmp_path) -> tuple[dict, str, datetime]:
    """The nightly DAG with its own hours on the simulator's clock; returns its report, the log and when the
    simulated night began."""
    midnight = night_starts_now(simulator)
    report = tmp_path / "report.json"
    # the DAG's own hours (a 2 h job done within 8 h, 02:00 fallback) on the simulator's clock
    fallback_at = midnight + timedelta(hours=2) / SPEED
    conf = {
        "expected_duration": 2 * 3600 / SPEED,
        "max_delay": 6 * 3600 / SPEED,
        "fallback": fallback_at.strftime("%H:%M:%S"),
        "fallback_timezone": "UTC",
        "training_rounds": 50,
        "report_file": str(report),
    }
    result = stack.run("dags", "test", "nightly_low_carbon_training", "-c", json.dumps(conf), timeout=300)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-5000:]
    return json.loads(report.read_text()), log, midnight


def check_nightly(summary: dict, log: str, midnight: datetime) -> None:
    assert "running trigger in line" in log  # the sensor deferred through the inline triggerer
    assert summary["used_fallback"] is False and summary["zone"] == "DE", summary
    planned, released = datetime.fromisoformat(summary["planned_start"]), datetime.fromisoformat(summary["released_at"])
    assert midnight <= planned <= datetime.fromisoformat(summary["decision"]["latest_start"])
    assert planned <= released <= planned + timedelta(seconds=3)
    # the optimum over the night is no worse than the 02:00 default, which was one of the candidates
    assert summary["saving_vs_fallback_time_pct"] >= 0
    assert summary["training"]["loss"] < 1
    # the accounting listener accounted the job the sensor released (power_kw=0.3 in the DAG)
    accounting = summary["accounting"]
    assert accounting and accounting["intensity_source"] in ("history", "forecast"), summary
    assert accounting["energy_kwh"] == pytest.approx(0.3 * accounting["runtime_s"] / 3600, rel=1e-4)
    assert accounting["emissions_g"] == pytest.approx(accounting["energy_kwh"] * accounting["experienced_intensity"])
    assert accounting["delay_s"] > 0 and accounting["started_at"] >= summary["released_at"]
    # once: the report task reads the sensor's XCom (so it is a direct downstream too) but comes after the job
    assert log.count("carbon accounting: ran") == 1, log[-5000:]


def test_nightly_dag_waits_for_the_low_carbon_window(stack, simulator, tmp_path):
    summary, log, midnight = run_nightly(stack, simulator, tmp_path)
    check_nightly(summary, log, midnight)
    # `airflow dags test` schedules in-process, so the DAG-run listener wrote the plan and outcome into the run's
    # note there too, in the DAG's timezone (Europe/Berlin), as its author
    with sqlite3.connect(stack.home / "airflow.db") as db:
        content, author = db.execute(
            "SELECT n.content, n.user_id FROM dag_run d JOIN dag_run_note n ON n.dag_run_id = d.id "
            "WHERE d.dag_id = 'nightly_low_carbon_training' ORDER BY d.id DESC LIMIT 1"
        ).fetchone()
    planned = datetime.fromisoformat(summary["planned_start"]).astimezone(ZoneInfo("Europe/Berlin"))
    assert content.startswith(f"{planned:%H:%M} {planned:%Z} optimum, ") and "; ran " in content, content
    assert author == "airflow-provider-carbon"


def test_nightly_dag_runs_from_the_built_wheel(stack, simulator, tmp_path):
    """What `pip install airflow-provider-carbon` gives a user: the wheel, not this checkout, runs the nightly DAG
    (on the Airflow of this virtualenv; the floor job runs the whole module from the wheel on 3.1)."""
    if os.environ.get("CARBON_TESTS_FROM_WHEEL") == "1":
        pytest.skip("this whole run already uses the installed wheel")
    wheels, target = tmp_path / "wheels", tmp_path / "site"

    def pip(*args: str) -> None:
        done = subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]

    pip("wheel", "--no-deps", "--quiet", "--wheel-dir", str(wheels), str(REPO_ROOT))
    (wheel,) = wheels.glob("airflow_provider_carbon-*.whl")
    pip("install", "--no-deps", "--quiet", "--target", str(target), str(wheel))
    # PYTHONPATH comes before site-packages (where the editable install's path entry is), and the airflow script
    # puts its own folder first, not the checkout: every Airflow process of the run imports the wheel
    saved = stack.env.get("PYTHONPATH")
    stack.env["PYTHONPATH"] = str(target)
    try:
        where = subprocess.run(
            [sys.executable, "-c", "import airflow_provider_carbon as p; print(p.__file__)"],
            env=stack.env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert where.stdout.strip().startswith(str(target)), where.stdout + where.stderr
        check_nightly(*run_nightly(stack, simulator, tmp_path))
    finally:
        if saved is None:
            stack.env.pop("PYTHONPATH", None)
        else:
            stack.env["PYTHONPATH"] = saved


def test_region_dag_runs_only_the_chosen_regions_task(stack):
    result = stack.run("dags", "test", "greenest_region_batch", timeout=300)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-5000:]
    (chosen,) = re.findall(r"greenest region: (\S+) \(", log)
    ran = set(re.findall(r"running task <TaskInstance: greenest_region_batch\.(run_in_\w+)", log))
    assert ran == {REGION_TASKS[chosen]}


def test_queue_dag_plans_five_jobs_two_at_a_time_and_each_waits_for_its_start(stack, simulator):
    """carbon_queue_training with its own hours on the simulator's clock: the queue's plan (at most two at once),
    then each mapped sensor defers until its job's start and the job runs after it."""
    pytest.importorskip("scipy")
    midnight = night_starts_now(simulator)
    conf = {
        "job_duration": 2 * 3600 / SPEED,
        "max_delay": 8 * 3600 / SPEED,
        "fallback": (midnight + timedelta(hours=2) / SPEED).strftime("%H:%M:%S"),
        "fallback_timezone": "UTC",
    }
    result = stack.run("dags", "test", "carbon_queue_training", "-c", json.dumps(conf), timeout=400)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-5000:]
    starts = dict(re.findall(r"carbon queue: (\S+) starts at (\S+)", log))
    assert len(starts) == 5 and "independent" not in starts
    planned = sorted(datetime.fromisoformat(s) for s in starts.values())
    duration = timedelta(seconds=2 * 3600 / SPEED)
    assert all(sum(1 for b in planned if b <= a < b + duration) <= 2 for a in planned), planned
    assert "optimal" in next(line for line in log.splitlines() if "carbon queue: 5 jobs, capacity 2" in line)
    # `dags test` runs one task at a time: the first sensor defers (inline triggerer) until its job's start; a
    # later one whose start has passed meanwhile releases at once. Each job's train ran, after the plan.
    assert "running trigger in line" in log and "carbon trigger: releasing at" in log
    assert "state=success" in log
    assert len(re.findall(r"running task <TaskInstance: carbon_queue_training\.job\.train ", log)) == 5, log[-3000:]
