"""End to end in the processes a deployment runs: api-server, scheduler, dag-processor and triggerer (LocalExecutor,
SQLite, loopback only) plus the carbon-API simulator in time-compressed mode. The example DAGs are triggered through
the REST API v2 and checked there; one test drives the Airflow UI in headless Chromium."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from airflow_provider_carbon.simulator.process import SimulatorProcess
from airflow_provider_carbon.simulator.statsd import StatsdListener
from tests.airflow_stack import AirflowStack
from tests.conftest import REPO_ROOT, require_or_skip

pytestmark = pytest.mark.slow

SPEED = 720  # one simulated hour per 5 real seconds
SIM_MIDNIGHT = datetime(2025, 6, 2, tzinfo=timezone(timedelta(hours=2)))  # the demo's night: DE is best at 05:00
ARTIFACTS = REPO_ROOT / "artifacts" / "e2e"
NIGHTLY = "nightly_low_carbon_training"
NIGHTLY_TZ = ZoneInfo("Europe/Berlin")  # the nightly DAG's timezone: its run notes show times there
REGIONS = "greenest_region_batch"
BUDGET = "carbon_budget_batch"


def compressed_conf(fallback_at: datetime) -> dict:
    """The nightly DAG's own hours (2 h job, done within 8 h, 02:00 fallback) on the simulator's clock."""
    return {
        "expected_duration": 2 * 3600 / SPEED,
        "max_delay": 6 * 3600 / SPEED,
        "fallback": fallback_at.strftime("%H:%M:%S"),
        "fallback_timezone": "UTC",
        "training_rounds": 50,
    }


@pytest.fixture(scope="module")
def simulator():
    with SimulatorProcess.start("--speed", str(SPEED), "--token", "e2e-token", "--zones", "SE-SE3,FR,ES,DE,PL") as sim:
        yield sim.url


def night_starts_now(url: str) -> datetime:
    """Re-anchor the simulator: simulated midnight of a June night in Berlin is one second from now. Without it a
    run would meet whatever simulated hour the module's clock had reached, sometimes one whose optimum is "now"
    (then the sensor rightly does not defer, and the test could not see the triggerer at work)."""
    midnight = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=1)
    body = {"sim_start": SIM_MIDNIGHT.isoformat(), "real_start": midnight.isoformat()}
    request = urllib.request.Request(f"{url}/sim/clock", data=json.dumps(body).encode(), method="POST")
    urllib.request.urlopen(request, timeout=5).close()
    return midnight


def set_failure(url: str, mode: str) -> None:
    request = urllib.request.Request(f"{url}/sim/failure", data=json.dumps({"mode": mode}).encode(), method="POST")
    urllib.request.urlopen(request, timeout=5).close()


def start_stack(
    home: Path, simulator: str, extra_env: dict[str, str] | None = None, workers: tuple[tuple[str, ...], ...] = ()
):
    """Migrate, start the four Airflow processes (and any Celery workers), wait until healthy and the example DAGs
    are parsed and unpaused; yield the stack; stop everything and keep the logs in artifacts/."""
    stack = AirflowStack(
        home,
        extra_env={
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
            "AIRFLOW_CONN_ELECTRICITYMAPS_DEFAULT": json.dumps(
                {
                    "conn_type": "electricitymaps",
                    "host": f"{simulator}/v3",
                    "password": "e2e-token",
                    "extra": {"zone": "DE", "max_attempts": 2, "max_retry_wait": 2, "timeout": 3, "cache_ttl": 0},
                }
            ),
            **(extra_env or {}),
        },
    )
    stack.migrate()
    stack.start("api-server", "api-server", "--port", str(stack.port))
    stack.start("scheduler", "scheduler", "--skip-serve-logs")
    stack.start("dag-processor", "dag-processor")
    stack.start("triggerer", "triggerer", "--skip-serve-logs")
    for i, args in enumerate(workers):
        stack.start(f"worker-{i}", *args)
    try:
        stack.wait_for_api()
        wait_until(lambda: healthy(stack), 120, "scheduler, triggerer and dag-processor healthy")
        for dag_id in (NIGHTLY, REGIONS, BUDGET):
            wait_until(lambda d=dag_id: exists(stack, d), 120, f"{dag_id} parsed")
            stack.request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
        # Unpausing the nightly DAG makes the scheduler create last midnight's run at once, with the DAG's real
        # hours (a 2 h job) against a simulator that compresses a night into two minutes: it would wait until its
        # 02:00 fallback and, with max_active_runs=1, hold back the runs the tests trigger. Fail it.
        wait_until(lambda: scheduled_runs(stack), 60, "the scheduler to create the catch-up run")
        failed = scheduled_runs(stack)
        for run_id in failed:
            quoted = urllib.parse.quote(run_id, safe="")
            stack.request("PATCH", f"/api/v2/dags/{NIGHTLY}/dagRuns/{quoted}", {"state": "failed"})
        # Its first task may still be running and calling the execution API. Wait until it has stopped: Airflow
        # 3.3's api-server commits its audit log (on every POST/PATCH) from the event loop, so on SQLite a test's
        # POST that meets a task's open write transaction in the same api-server blocks both until the busy timeout
        # (a CI run failed a trigger that way).
        wait_until(lambda: settled(stack, NIGHTLY, failed), 120, "the catch-up run's tasks to stop")
        yield stack
    finally:
        stack.stop()
        logs = ARTIFACTS / "logs" / home.name
        logs.mkdir(parents=True, exist_ok=True)
        for name in stack.procs:
            (logs / f"{name}.log").write_text(stack.log(name))


@pytest.fixture(scope="module")
def statsd():
    listener = StatsdListener()
    yield listener
    listener.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, simulator, statsd):
    metrics = {  # Airflow's [metrics]: StatsD on (the statsd package is installed), tags in the InfluxDB style
        "AIRFLOW__METRICS__STATSD_ON": "True",
        "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
        "AIRFLOW__METRICS__STATSD_PORT": str(statsd.port),
        "AIRFLOW__METRICS__STATSD_PREFIX": "airflow",
        "AIRFLOW__METRICS__STATSD_INFLUXDB_ENABLED": "True",
    }
    yield from start_stack(tmp_path_factory.mktemp("airflow-home-e2e"), simulator, metrics)


def wait_until(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(1)
    raise TimeoutError(f"timed out waiting for: {what}")


def scheduled_runs(stack: AirflowStack) -> list[str]:
    runs = stack.request("GET", f"/api/v2/dags/{NIGHTLY}/dagRuns?run_type=scheduled")["dag_runs"]
    return [r["dag_run_id"] for r in runs if r["state"] not in ("failed", "success")]


def settled(stack: AirflowStack, dag_id: str, run_ids: list[str], quiet: float = 3.0) -> bool:
    """No task instance of these runs is in a worker (a deferred one waits in the triggerer, which writes to the
    database itself), and nothing has called the execution API for ``quiet`` s."""
    for run_id in run_ids:
        if any(state in ("running", "queued", "restarting") for state in task_states(stack, dag_id, run_id).values()):
            return False
    calls = [line for line in stack.log("api-server").splitlines() if "path=/execution/" in line]
    if not calls:
        return True
    last = datetime.fromisoformat(calls[-1].split()[0].replace("Z", "+00:00"))
    return datetime.now(timezone.utc) - last >= timedelta(seconds=quiet)


def healthy(stack: AirflowStack) -> bool:
    health = stack.request("GET", "/api/v2/monitor/health", auth=False)
    return all(health.get(part, {}).get("status") == "healthy" for part in ("scheduler", "triggerer", "dag_processor"))


def exists(stack: AirflowStack, dag_id: str) -> bool:
    try:
        stack.request("GET", f"/api/v2/dags/{dag_id}")
        return True
    except urllib.error.HTTPError:
        return False


def run_dag(stack: AirflowStack, dag_id: str, conf: dict, timeout: float = 240) -> dict:
    run = stack.request("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf})
    run_id = urllib.parse.quote(run["dag_run_id"], safe="")
    state = {}

    def finished() -> bool:
        state.update(stack.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}"))
        return state["state"] in ("success", "failed")

    wait_until(finished, timeout, f"{dag_id} run {run['dag_run_id']} to finish")
    return state


def task_states(stack: AirflowStack, dag_id: str, run_id: str) -> dict[str, str]:
    quoted = urllib.parse.quote(run_id, safe="")
    body = stack.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{quoted}/taskInstances")
    return {ti["task_id"]: ti["state"] for ti in body["task_instances"]}


def xcom(stack: AirflowStack, dag_id: str, run_id: str, task_id: str, key: str) -> object:
    quoted = urllib.parse.quote(run_id, safe="")
    body = stack.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{quoted}/taskInstances/{task_id}/xcomEntries/{key}")
    value = body["value"]
    return json.loads(value) if isinstance(value, str) else value


def trigger_logs(stack: AirflowStack, dag_id: str, run_id: str, task_id: str) -> list[Path]:
    folder = stack.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
    return sorted(folder.glob("*.log.trigger.*.log"))


def test_nightly_dag_plans_waits_in_the_triggerer_and_reports(stack, simulator, statsd):
    set_failure(simulator, "ok")
    started = night_starts_now(simulator)
    run = run_dag(stack, NIGHTLY, compressed_conf(started + timedelta(seconds=20)))
    run_id = run["dag_run_id"]
    assert run["state"] == "success", task_states(stack, NIGHTLY, run_id)
    assert set(task_states(stack, NIGHTLY, run_id).values()) == {"success"}
    decision = xcom(stack, NIGHTLY, run_id, "wait_for_low_carbon_window", "carbon_decision")
    assert decision["used_fallback"] is False and decision["source"] == "electricitymaps"
    assert decision["zone"] == "DE" and decision["expected_intensity"] > 0
    released = datetime.fromisoformat(decision["released_at"])
    assert (
        datetime.fromisoformat(decision["planned_start"])
        <= released
        <= datetime.fromisoformat(decision["latest_start"])
    )
    # the wait ran in the triggerer process: its log file for this task exists and says so
    logs = trigger_logs(stack, NIGHTLY, run_id, "wait_for_low_carbon_window")
    assert logs, "no triggerer log for the sensor"
    assert "carbon trigger: releasing" in logs[-1].read_text()
    report = xcom(stack, NIGHTLY, run_id, "report", "return_value")
    assert report["planned_start"] == decision["planned_start"] and report["training"]["loss"] < 1
    accounting = xcom(stack, NIGHTLY, run_id, "train_model", "carbon_accounting")
    with pytest.raises(urllib.error.HTTPError):  # the report is not a job of the sensor's: not accounted
        xcom(stack, NIGHTLY, run_id, "report", "carbon_accounting")
    # at a glance: the run's note says when (in the DAG's timezone), why, and what the job emitted and saved
    check_note(run, decision, [accounting])
    planned = datetime.fromisoformat(decision["planned_start"]).astimezone(NIGHTLY_TZ)
    assert run["note"].startswith(f"{planned:%H:%M} {planned:%Z} optimum, "), run["note"]
    assert "FALLBACK" not in run["note"] and " CO2eq" in run["note"]
    # the job's emissions and savings reached the StatsD listener, from the job's own process, tagged
    tags = {"dag_id": NIGHTLY, "task_id": "train_model", "zone": "DE", "signal": accounting["signal"]}
    for gauge, field in (
        ("emissions_g", "emissions_g"),
        ("saving_vs_start_g", "saving_vs_baseline_g"),
        ("saving_vs_start_pct", "saving_vs_baseline_pct"),
        ("saving_vs_fallback_g", "saving_vs_fallback_g"),
        ("energy_kwh", "energy_kwh"),
    ):
        if accounting[field] is None:  # a counterfactual the data did not cover is not sent
            continue

        def received(name=f"airflow.carbon.{gauge}", expected=accounting[field]) -> bool:
            return any(t == tags and v == pytest.approx(expected, rel=1e-9, abs=1e-12) for t, v in statsd.gauges(name))

        wait_until(received, 15, f"StatsD gauge carbon.{gauge} = {accounting[field]} with tags {tags}")
    assert accounting["emissions_g"] > 0 and accounting["saving_vs_baseline_g"] is not None


def check_note(run: dict, decision: dict, accountings: list[dict]) -> None:
    """The run's note (REST API v2) is the glance line of its decision and accounting, in the DAG's timezone."""
    from airflow_provider_carbon.core.accounting import Accounting
    from airflow_provider_carbon.core.decision import Decision
    from airflow_provider_carbon.core.glance import run_note

    records = [Accounting.from_dict(a) for a in accountings]
    assert run["note"] == run_note([(Decision.from_dict(decision), records)], NIGHTLY_TZ)


def test_nightly_dag_falls_back_when_the_api_is_down(stack, simulator):
    set_failure(simulator, "down")
    try:
        fallback_at = (datetime.now(timezone.utc) + timedelta(seconds=35)).replace(microsecond=0)
        # a deadline (60 s) comfortably after the fallback time, so a slow start cannot clamp it
        run = run_dag(stack, NIGHTLY, {**compressed_conf(fallback_at), "max_delay": 60})
    finally:
        set_failure(simulator, "ok")
    run_id = run["dag_run_id"]
    assert run["state"] == "success", task_states(stack, NIGHTLY, run_id)
    decision = xcom(stack, NIGHTLY, run_id, "wait_for_low_carbon_window", "carbon_decision")
    assert decision["used_fallback"] is True and "ServiceUnavailableError" in decision["fallback_error"]
    assert datetime.fromisoformat(decision["planned_start"]) == fallback_at
    assert fallback_at <= datetime.fromisoformat(decision["released_at"]) <= fallback_at + timedelta(seconds=5)
    # a fallback run no longer looks like an optimal one: its note starts with FALLBACK, the time and why (and,
    # with the API down, neither history nor a forecast to account the job on: no outcome)
    local = fallback_at.astimezone(NIGHTLY_TZ)
    assert run["note"] == f"FALLBACK {local:%H:%M} {local:%Z}: API down (unavailable)"
    check_note(run, decision, [])


def test_a_note_someone_wrote_is_kept(stack, simulator):
    set_failure(simulator, "down")
    try:  # the API down and fallback "now": the sensor releases at once, a quick run
        conf = {**compressed_conf(datetime.now(timezone.utc)), "fallback": "now"}
        run = stack.request(
            "POST", f"/api/v2/dags/{NIGHTLY}/dagRuns", {"logical_date": None, "conf": conf, "note": "mine"}
        )
        quoted = urllib.parse.quote(run["dag_run_id"], safe="")
        wait_until(
            lambda: stack.request("GET", f"/api/v2/dags/{NIGHTLY}/dagRuns/{quoted}")["state"] in ("success", "failed"),
            120,
            "the run with a note to finish",
        )
    finally:
        set_failure(simulator, "ok")
    run = stack.request("GET", f"/api/v2/dags/{NIGHTLY}/dagRuns/{quoted}")
    assert run["state"] == "success" and run["note"] == "mine"
    assert "already has a note by someone else" in stack.log("scheduler")


REGION_TASKS = {
    "SE-SE3": "run_in_sweden",
    "FR": "run_in_france",
    "ES": "run_in_spain",
    "DE": "run_in_germany",
    "PL": "run_in_poland",
}


def check_region_run(stack: AirflowStack, run: dict) -> str:
    """The chosen region is the one with the lowest live intensity, and only its task ran; return that task id."""
    run_id = run["dag_run_id"]
    states = task_states(stack, REGIONS, run_id)
    assert run["state"] == "success", states
    table = xcom(stack, REGIONS, run_id, "pick_greenest_region", "carbon_regions")
    chosen = xcom(stack, REGIONS, run_id, "pick_greenest_region", "carbon_region")
    assert all(not row["fallback"] and row["source"] == "electricitymaps" for row in table)
    assert chosen["region"] == min(table, key=lambda row: row["intensity"])["region"]
    task_id = REGION_TASKS[chosen["region"]]
    ran = sorted(t for t, s in states.items() if t.startswith("run_in") and s == "success")
    skipped = sorted(t for t, s in states.items() if s == "skipped")
    assert ran == [task_id] and skipped == sorted(set(REGION_TASKS.values()) - {task_id})
    return task_id


def test_greenest_region_dag_runs_only_the_chosen_region(stack, simulator):
    set_failure(simulator, "ok")
    check_region_run(stack, run_dag(stack, REGIONS, {}))


CHROMIUM = "/usr/bin/chromium"


def nightly_run(stack: AirflowStack, simulator: str, *, planned: bool = False) -> str:
    """The id of the newest successful nightly run (with ``planned``, the newest one whose sensor planned from a
    forecast rather than falling back: the nightly test's, not the fallback test's); run alone, a fresh one."""
    runs = stack.request("GET", f"/api/v2/dags/{NIGHTLY}/dagRuns?state=success&limit=20&order_by=-start_date")
    for run in runs["dag_runs"]:
        run_id = run["dag_run_id"]
        if (
            not planned
            or not xcom(stack, NIGHTLY, run_id, "wait_for_low_carbon_window", "carbon_decision")["used_fallback"]
        ):
            return run_id
    set_failure(simulator, "ok")
    return run_dag(stack, NIGHTLY, compressed_conf(datetime.now(timezone.utc) + timedelta(seconds=20)))["dag_run_id"]


def logged_in_page(playwright, stack: AirflowStack):
    """Headless Debian chromium, logged into the stack's UI as admin: (browser, page)."""
    browser = playwright.chromium.launch(
        executable_path=CHROMIUM,
        args=[
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ],
    )
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(stack.base_url + "/", wait_until="networkidle")
    page.fill("input[name='username']", "admin")
    page.fill("input[name='password']", "adminpw")
    page.click("button[type='submit']")
    # the login answers with a redirect: wait until it has left the login page, or a goto right after races the
    # redirect's own navigation and is aborted (net::ERR_ABORTED, seen in CI)
    page.wait_for_url(lambda url: "login" not in url, timeout=30_000)
    page.wait_for_load_state("networkidle")
    return browser, page


def test_airflow_ui_shows_the_grid_and_the_decision(stack, simulator):
    from playwright.sync_api import sync_playwright

    require_or_skip(Path(CHROMIUM).exists(), "Debian's chromium (apt-get install chromium; .ci/run installs it)")
    run_id = nightly_run(stack, simulator)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser, page = logged_in_page(p, stack)
        page.goto(f"{stack.base_url}/dags/{NIGHTLY}", wait_until="networkidle")
        page.get_by_text("wait_for_low_carbon_window").first.wait_for(timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "grid.png"), full_page=True)
        quoted = urllib.parse.quote(run_id, safe="")
        page.goto(
            f"{stack.base_url}/dags/{NIGHTLY}/runs/{quoted}/tasks/wait_for_low_carbon_window/xcom",
            wait_until="networkidle",
        )
        try:
            page.get_by_text("carbon_decision").first.wait_for(timeout=30_000)
            page.get_by_label("Expand all extra JSON").click()  # the values render folded
            page.get_by_text("planned_start").first.wait_for(timeout=30_000)
            page.get_by_text("used_fallback").first.wait_for(timeout=30_000)
        finally:  # what the page showed, also when it did not show what was expected
            page.screenshot(path=str(ARTIFACTS / "xcom.png"), full_page=True)
            browser.close()
    assert (ARTIFACTS / "grid.png").stat().st_size > 10_000


#: PL's simulated intensity stays within about 480..800 gCO2eq/kWh, so one 1-kWh run of the budget DAG emits
#: 0.48..0.80 kg: under this limit alone, over it with a second run
BUDGET_KG = 0.9


def budget_conf(policy: str) -> dict:
    # a 1 h job within 6 h on the simulator's clock; a threshold far above any intensity: the job starts at once
    # (the budget is under test, not the wait)
    return {
        "zone": "PL",
        "expected_duration": 3600 / SPEED,
        "max_delay": 6 * 3600 / SPEED,
        "threshold": 10_000,
        "budget_kg": BUDGET_KG,
        "budget_per": "year",
        "budget_policy": policy,
    }


def test_budget_the_first_two_runs_exhaust_skips_the_third_then_warns_then_fails(stack, simulator):
    set_failure(simulator, "ok")
    emitted = []
    for _ in range(2):
        run = run_dag(stack, BUDGET, budget_conf("skip"))
        run_id = run["dag_run_id"]
        assert run["state"] == "success", task_states(stack, BUDGET, run_id)
        assert set(task_states(stack, BUDGET, run_id).values()) == {"success"}
        decision = xcom(stack, BUDGET, run_id, "wait_for_low_carbon_window", "carbon_decision")
        assert decision["budget"]["outcome"] == "within"
        assert decision["budget"]["used_kg"] == pytest.approx(sum(emitted) / 1000)
        emitted.append(xcom(stack, BUDGET, run_id, "batch_job", "carbon_accounting")["emissions_g"])
    assert emitted[0] / 1000 < BUDGET_KG <= sum(emitted) / 1000
    ledger = stack.request("GET", f"/api/v2/variables/carbon_budget.dag.{BUDGET}")
    assert [e["grams"] for e in json.loads(ledger["value"])["entries"]] == pytest.approx(emitted)

    # the third: skipped before it waits, the run green, and the record says why
    run = run_dag(stack, BUDGET, budget_conf("skip"))
    run_id = run["dag_run_id"]
    states = task_states(stack, BUDGET, run_id)
    assert run["state"] == "success", states
    assert states == {"wait_for_low_carbon_window": "skipped", "batch_job": "skipped", "report": "skipped"}
    decision = xcom(stack, BUDGET, run_id, "wait_for_low_carbon_window", "carbon_decision")
    assert decision["reason"] == "budget" and decision["released_at"] is None
    budget = decision["budget"]
    assert budget["scope"] == f"dag:{BUDGET}" and budget["period"] == "year" and budget["policy"] == "skip"
    assert budget["outcome"] == "skipped" and budget["limit_kg"] == BUDGET_KG and budget["jobs"] == 2
    assert budget["used_kg"] == pytest.approx(sum(emitted) / 1000) and budget["remaining_kg"] == 0
    new_year = datetime(datetime.now(timezone.utc).year, 1, 1, tzinfo=ZoneInfo("Europe/Berlin"))  # the DAG's tz
    assert budget["period_start"] == new_year.astimezone(timezone.utc).isoformat()

    # warn: the job runs, and its usage is added
    run = run_dag(stack, BUDGET, budget_conf("warn"))
    run_id = run["dag_run_id"]
    assert run["state"] == "success" and set(task_states(stack, BUDGET, run_id).values()) == {"success"}
    decision = xcom(stack, BUDGET, run_id, "wait_for_low_carbon_window", "carbon_decision")
    assert decision["budget"]["outcome"] == "warned" and decision["reason"] == "threshold"

    # fail: the sensor fails at once, without its retries (the DAG gives it two), and the run fails
    run = run_dag(stack, BUDGET, budget_conf("fail"))
    run_id = run["dag_run_id"]
    states = task_states(stack, BUDGET, run_id)
    assert run["state"] == "failed" and states["wait_for_low_carbon_window"] == "failed", states
    decision = xcom(stack, BUDGET, run_id, "wait_for_low_carbon_window", "carbon_decision")
    assert decision["budget"]["outcome"] == "failed" and decision["budget"]["jobs"] == 3


SENSOR = "wait_for_low_carbon_window"
JOB = "train_model"


def readable_through(stack: AirflowStack, dag_id: str, run_id: str) -> dict:
    """What the Carbon endpoints answer a user who may read ``dag_id`` only (tests/e2e/restricted_auth.py: Airflow's
    api-server app in-process, on the stack's database, with an auth manager that restricts DAGs)."""
    env = {
        **stack.env,
        "AIRFLOW__CORE__AUTH_MANAGER": "tests.e2e.restricted_auth.OneDagAuthManager",
        "CARBON_READABLE_DAG": dag_id,
        "PYTHONPATH": str(REPO_ROOT),
    }
    result = subprocess.run(
        [sys.executable, "-m", "tests.e2e.restricted_auth", NIGHTLY, run_id, SENSOR],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def check_carbon_api(stack: AirflowStack, run_id: str) -> tuple[dict, dict]:
    """The Carbon endpoints refuse a request without credentials, and with a token the run's row holds the numbers of
    its XComs (read through the REST API); return the run's decision and its training job's accounting."""
    decision = xcom(stack, NIGHTLY, run_id, SENSOR, "carbon_decision")
    accounting = xcom(stack, NIGHTLY, run_id, JOB, "carbon_accounting")
    quoted = urllib.parse.quote(run_id, safe="")
    # no session cookie, no token: Airflow's own dependency refuses
    for path in ("/carbon/", "/carbon/api/runs", f"/carbon/dags/{NIGHTLY}/runs/{quoted}/tasks/{SENSOR}"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(stack.base_url + path, timeout=30).close()
        assert refused.value.code == 401, path
    body = stack.request("GET", "/carbon/api/runs?per_page=500")
    # one row per accounted job: train_model (report, downstream of the sensor too, is accounted as well)
    row = next(r for r in body["runs"] if r["run_id"] == run_id and r["task_id"] == JOB)
    assert row["decision_task_id"] == SENSOR
    assert row["emissions_g"] == accounting["emissions_g"] > 0
    assert row["saving_g"] == accounting["saving_vs_baseline_g"]
    assert row["saving_pct"] == accounting["saving_vs_baseline_pct"]
    assert datetime.fromisoformat(row["planned_start"]) == datetime.fromisoformat(decision["planned_start"])
    assert datetime.fromisoformat(row["actual_start"]) == datetime.fromisoformat(accounting["started_at"])
    assert row["zone"] == decision["zone"] == "DE" and row["used_fallback"] is False
    return decision, accounting


def test_carbon_page_shows_the_run_with_its_xcom_numbers(stack, simulator):
    from playwright.sync_api import sync_playwright

    require_or_skip(Path(CHROMIUM).exists(), "Debian's chromium (apt-get install chromium; .ci/run installs it)")
    run_id = nightly_run(stack, simulator, planned=True)
    decision, accounting = check_carbon_api(stack, run_id)
    quoted = urllib.parse.quote(run_id, safe="")
    task_path = f"/carbon/dags/{NIGHTLY}/runs/{quoted}/tasks/{SENSOR}"

    # the link on the sensor's task instance leads to its Carbon view
    links = stack.request("GET", f"/api/v2/dags/{NIGHTLY}/dagRuns/{quoted}/taskInstances/{SENSOR}/links")
    assert links["extra_links"]["Carbon view"] == stack.base_url + task_path

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    planned = datetime.fromisoformat(decision["planned_start"]).strftime("%Y-%m-%d %H:%M:%S UTC")
    emissions = f"{accounting['emissions_g']:.3g} g"
    with sync_playwright() as p:
        browser, page = logged_in_page(p, stack)
        try:
            page.get_by_role("link", name="Carbon").first.click()  # the navigation's entry
            page.wait_for_url("**/plugin/carbon", timeout=30_000)
            frame = page.frame_locator("iframe[title='Carbon']")
            table_row = frame.locator("tr", has=frame.locator(f"a.run:text-is('{run_id}')")).filter(
                has=frame.locator(f"td:text-is('{JOB}')")
            )
            table_row.wait_for(timeout=30_000)
            cells = table_row.locator("td").all_inner_texts()
            page.screenshot(path=str(ARTIFACTS / "carbon.png"), full_page=True)
            assert cells[3] == planned and cells[5] == "DE" and cells[8] == emissions, cells
            assert frame.locator("svg.carbon-chart").count() == 1  # the savings chart
            table_row.locator("a.run").click()  # the job's task-instance view, in the same frame
            frame.locator("svg.carbon-chart path.forecast").wait_for(timeout=30_000)
            assert frame.locator("svg.carbon-chart rect.planned").count() == 1
            assert frame.locator("svg.carbon-chart rect.actual").count() == 1
            page.screenshot(path=str(ARTIFACTS / "carbon-task.png"), full_page=True)
            # and as the task instance's own "Carbon" tab in Airflow's UI
            page.goto(f"{stack.base_url}/dags/{NIGHTLY}/runs/{quoted}/tasks/{SENSOR}", wait_until="networkidle")
            page.locator("a[href$='/plugin/carbon-task']").click()  # the tab the task_instance view adds
            tab = page.frame_locator("iframe[title='Carbon']")
            tab.locator("svg.carbon-chart path.forecast").wait_for(timeout=30_000)
            page.screenshot(path=str(ARTIFACTS / "carbon-tab.png"), full_page=True)
        finally:
            page.screenshot(path=str(ARTIFACTS / "carbon-last.png"), full_page=True)
            browser.close()

    # rows are filtered by the DAG ids the auth manager lets the user read
    only_regions = readable_through(stack, REGIONS, run_id)
    assert only_regions["runs_status"] == 200 and run_id not in only_regions["run_ids"]
    assert only_regions["dag_ids"] == [] and only_regions["task_status"] == 403
    only_nightly = readable_through(stack, NIGHTLY, run_id)
    assert only_nightly["dag_ids"] == [NIGHTLY] and run_id in only_nightly["run_ids"]
    assert only_nightly["task_status"] == 200
