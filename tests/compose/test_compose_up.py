"""docker-compose.yaml started for real: `docker compose up --build --wait` under the machine's Docker engine, the
example DAGs through the stack's REST API, a triggerer restarted while a sensor waits, and `down -v`.

What runs is the repository's docker-compose.yaml and Dockerfile as users run them, from a copy of the checkout (its
tracked and untracked files, as a clone would hold them) with a `.env` a user would write. The one addition is
tests/compose/docker-compose.standins.yaml: the three registry images replaced by local stand-ins (standins.py) and
the published ports moved to free loopback ports. `make compose-test` runs this module alone; CI runs it in
`make test` with an engine it started (.ci/run).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO_ROOT, require_or_skip
from tests.e2e.test_stack import (
    JOB,
    NIGHTLY,
    REGION_TASKS,
    REGIONS,
    SENSOR,
    SIM_MIDNIGHT,
    check_carbon_api,
    check_note,
    check_region_run,
    compressed_conf,
    task_states,
    wait_until,
    xcom,
)
from tests.test_compose import compose_binary

pytestmark = [pytest.mark.slow, pytest.mark.compose]

ARTIFACTS = REPO_ROOT / "artifacts" / "compose"
OVERRIDE = REPO_ROOT / "tests" / "compose" / "docker-compose.standins.yaml"
LONG_RUNNING = [
    "postgres",
    "redis",
    "carbon-simulator",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
]
QUEUE = "carbon_queue_training"
#: the figures the issue asks for, written to artifacts/compose/timings.json by the last test
TIMINGS: dict[str, float] = {}


def docker_reachable() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=30, check=False).returncode == 0


def copy_checkout(target: Path) -> None:
    """What a clone of this checkout holds (tracked files and untracked ones not ignored), as the compose project."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, (n.decode() for n in listed)):
        source = REPO_ROOT / name
        if source.is_file():  # a file deleted but not yet staged is listed too
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


class ComposeStack:
    """One compose project: the compose CLI on it, and the REST API of its api-server (FAB login airflow/airflow)."""

    def __init__(self, project: Path, name: str) -> None:
        self.home = project  # logs/ is bind-mounted there: trigger logs are read from it as in tests/e2e
        self.name = name
        self.base_url = ""
        self.sim_url = ""
        self._token = ""

    def compose(self, *args: str, timeout: float = 900, check: bool = True) -> subprocess.CompletedProcess:
        command = [str(compose_binary()), "-p", self.name, "-f", "docker-compose.yaml", "-f", str(OVERRIDE), *args]
        result = subprocess.run(command, cwd=self.home, capture_output=True, text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise AssertionError(
                f"docker compose {' '.join(args)} exited {result.returncode}:\n{result.stderr[-4000:]}"
            )
        return result

    def published(self, service: str, port: int) -> str:
        return self.compose("port", service, str(port)).stdout.strip()  # e.g. 127.0.0.1:49154

    def container(self, service: str) -> dict[str, Any]:
        ids = self.compose("ps", "-a", "-q", service).stdout.split()
        assert len(ids) == 1, f"{service}: {ids}"
        return json.loads(subprocess.run(["docker", "inspect", ids[0]], capture_output=True, check=True).stdout)[0]

    def hostname(self, service: str) -> str:
        return self.container(service)["Config"]["Hostname"]

    def services(self) -> dict[str, dict[str, Any]]:
        out = self.compose("ps", "-a", "--format", "json").stdout
        rows = [json.loads(line) for line in out.splitlines() if line.strip()]
        if len(rows) == 1 and isinstance(rows[0], list):  # older Compose printed one array
            rows = rows[0]
        return {row["Service"]: row for row in rows}

    def request(self, method: str, path: str, body: Any = None, *, auth: bool = True) -> Any:
        headers = {"Content-Type": "application/json"}
        if auth:
            if not self._token:
                login = {"username": "airflow", "password": "airflow"}
                self._token = self.request("POST", "/auth/token", login, auth=False)["access_token"]
            headers["Authorization"] = f"Bearer {self._token}"
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base_url + path, data=data, method=method, headers=headers)
        with urllib.request.urlopen(req, timeout=30) as response:
            return json.loads(response.read() or b"null")

    def save_logs(self) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        logs = self.compose("logs", "--no-color", "--timestamps", check=False, timeout=120)
        (ARTIFACTS / "compose.log").write_text(logs.stdout + logs.stderr)


def sim_request(sim_url: str, path: str, body: dict) -> dict:
    request = urllib.request.Request(f"{sim_url}{path}", data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def night_starts_now(sim_url: str, speed: float) -> datetime:
    """Simulated midnight of the demo's June night one second from now, at ``speed`` (tests/e2e does the same)."""
    midnight = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=1)
    sim_request(
        sim_url,
        "/sim/clock",
        {"sim_start": SIM_MIDNIGHT.isoformat(), "real_start": midnight.isoformat(), "speed": speed},
    )
    return midnight


def trigger(stack: ComposeStack, dag_id: str, conf: dict) -> str:
    return stack.request("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf})["dag_run_id"]


def finished(stack: ComposeStack, dag_id: str, run_id: str, timeout: float = 300) -> dict:
    quoted = urllib.parse.quote(run_id, safe="")
    run: dict = {}

    def done() -> bool:
        run.update(stack.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{quoted}"))
        return run["state"] in ("success", "failed")

    wait_until(done, timeout, f"{dag_id} run {run_id} to finish")
    return run


def task_instance(stack: ComposeStack, dag_id: str, run_id: str, task_id: str) -> dict:
    quoted = urllib.parse.quote(run_id, safe="")
    return stack.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{quoted}/taskInstances/{task_id}")


def deferred(stack: ComposeStack, run_id: str, timeout: float = 120) -> dict:
    """The sensor's task instance once it waits in a triggerer (state deferred, its triggerer job known)."""
    seen: dict = {}

    def waiting() -> bool:
        seen.clear()
        seen.update(task_instance(stack, NIGHTLY, run_id, SENSOR))
        assert seen["state"] not in ("success", "failed", "up_for_retry"), f"the sensor did not defer: {seen}"
        return seen["state"] == "deferred" and bool((seen.get("triggerer_job") or {}).get("hostname"))

    wait_until(waiting, timeout, f"{SENSOR} of {run_id} to defer")
    return seen


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    require_or_skip(docker_reachable(), "a Docker engine (`docker info`; .ci/run installs and starts one)")
    require_or_skip(
        os.geteuid() == 0 and shutil.which("debootstrap") is not None,
        "root and debootstrap, to build the stand-in images (apt-get install -y debootstrap)",
    )
    from tests.compose import standins

    began = TIMINGS["_began"] = time.monotonic()
    standins.build_all()
    TIMINGS["standins_s"] = round(time.monotonic() - began, 1)
    project = tmp_path_factory.mktemp("compose-project")
    copy_checkout(project)
    # what the README's compose section has a user put in .env: their uid (not root: the official image's user),
    # the compressed clock; plus the connection with the cache off, as the native e2e stack has it: the tests
    # re-anchor the simulator's clock between runs, which a cached forecast would not know
    (project / ".env").write_text(
        f"AIRFLOW_UID={os.getuid() or 50000}\n"
        "SIMULATOR_SPEED=720\n"
        "AIRFLOW_IMAGE_NAME=airflow-provider-carbon:compose-test\n"
        "AIRFLOW_CONN_ELECTRICITYMAPS_DEFAULT='"
        + json.dumps(
            {
                "conn_type": "electricitymaps",
                "host": "http://carbon-simulator:8765/v3",
                "password": "simulator-token",
                "extra": {"zone": "DE", "cache_ttl": 0, "timeout": 3, "max_attempts": 2, "max_retry_wait": 2},
            }
        )
        + "'\n"
    )
    stack = ComposeStack(project, f"carbon-compose-{uuid.uuid4().hex[:6]}")
    up = time.monotonic()
    try:
        stack.compose("up", "--build", "--detach", "--wait", "--wait-timeout", "600", timeout=1200)
        TIMINGS["up_to_healthy_s"] = round(time.monotonic() - up, 1)
        stack.base_url = "http://" + stack.published("airflow-apiserver", 8080)
        stack.sim_url = "http://" + stack.published("carbon-simulator", 8765)
        for dag_id in (NIGHTLY, REGIONS, QUEUE):
            wait_until(lambda d=dag_id: dag_parsed(stack, d), 180, f"{dag_id} parsed")
            stack.request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
        # the unpause catch-up pitfall (README): last midnight's scheduled run starts at once with the DAG's real
        # hours and, with max_active_runs=1, would hold the triggered runs back for hours. Fail it, as a user would.
        for dag_id in (NIGHTLY, QUEUE):
            wait_until(
                lambda d=dag_id: catch_up_runs(stack, d), 120, f"the scheduler to create {dag_id}'s catch-up run"
            )
            for run_id in catch_up_runs(stack, dag_id):
                quoted = urllib.parse.quote(run_id, safe="")
                stack.request("PATCH", f"/api/v2/dags/{dag_id}/dagRuns/{quoted}", {"state": "failed"})
        yield stack
    finally:
        if stack.compose("ps", "-a", "-q", check=False).stdout.strip():  # the last test saved them and went down
            stack.save_logs()
        stack.compose("down", "--volumes", "--remove-orphans", "--timeout", "30", check=False)
        subprocess.run(["docker", "image", "rm", "-f", "airflow-provider-carbon:compose-test"], capture_output=True)


def dag_parsed(stack: ComposeStack, dag_id: str) -> bool:
    try:
        stack.request("GET", f"/api/v2/dags/{dag_id}")
        return True
    except urllib.error.HTTPError:
        return False


def catch_up_runs(stack: ComposeStack, dag_id: str = NIGHTLY) -> list[str]:
    runs = stack.request("GET", f"/api/v2/dags/{dag_id}/dagRuns?run_type=scheduled")["dag_runs"]
    return [r["dag_run_id"] for r in runs if r["state"] not in ("failed", "success")]


def test_every_service_is_healthy_and_init_ran_once(stack):
    services = stack.services()
    for name in LONG_RUNNING:
        assert services[name]["State"] == "running" and services[name]["Health"] == "healthy", services[name]
    init = services["airflow-init"]
    assert init["State"] == "exited" and init["ExitCode"] == 0, init
    assert "airflow-worker-se" not in services  # profile "regions" only
    health = stack.request("GET", "/api/v2/monitor/health", auth=False)
    assert {part: health[part]["status"] for part in ("metadatabase", "scheduler", "triggerer", "dag_processor")} == {
        "metadatabase": "healthy",
        "scheduler": "healthy",
        "triggerer": "healthy",
        "dag_processor": "healthy",
    }
    # the image is the project's Dockerfile on the stand-in base, with this checkout's provider in it
    providers = stack.compose("exec", "-T", "airflow-worker", "airflow", "providers", "list", "-o", "json").stdout
    assert any(p["package_name"] == "airflow-provider-carbon" for p in json.loads(providers))


def test_nightly_dag_waits_in_the_triggerer_and_trains_on_the_celery_worker(stack):
    began = time.monotonic()
    midnight = night_starts_now(stack.sim_url, 720)
    run_id = trigger(stack, NIGHTLY, compressed_conf(midnight + timedelta(seconds=20)))
    waiting = deferred(stack, run_id)
    assert waiting["triggerer_job"]["hostname"] == stack.hostname("airflow-triggerer")
    run = finished(stack, NIGHTLY, run_id)
    TIMINGS["nightly_run_s"] = round(time.monotonic() - began, 1)
    assert run["state"] == "success", task_states(stack, NIGHTLY, run_id)
    decision = xcom(stack, NIGHTLY, run_id, SENSOR, "carbon_decision")
    assert decision["used_fallback"] is False and decision["source"] == "electricitymaps", decision
    planned, released = (datetime.fromisoformat(decision[k]) for k in ("planned_start", "released_at"))
    assert planned <= released <= datetime.fromisoformat(decision["latest_start"])
    assert planned > midnight  # the optimum of this night is later than its start: a real wait
    job = task_instance(stack, NIGHTLY, run_id, JOB)
    assert job["hostname"] == stack.hostname("airflow-worker") and job["queue"] == "default"
    assert datetime.fromisoformat(job["start_date"]) >= released
    # the accounting, the Carbon page's endpoints and the run's note, as in the native stack
    decision, accounting = check_carbon_api(stack, run_id)
    check_note(run, decision, [accounting])
    page = urllib.request.Request(stack.base_url + "/carbon/", headers={"Authorization": f"Bearer {stack._token}"})
    with urllib.request.urlopen(page, timeout=30) as response:
        assert run_id in response.read().decode()
    trigger_log = sorted(
        (stack.home / "logs" / f"dag_id={NIGHTLY}" / f"run_id={run_id}" / f"task_id={SENSOR}").glob("*.log.trigger.*")
    )
    assert trigger_log and "carbon trigger: releasing" in trigger_log[-1].read_text()


def test_greenest_region_batch_runs_on_its_region_queue(stack):
    began = time.monotonic()
    run_id = trigger(stack, REGIONS, {})
    run = finished(stack, REGIONS, run_id)
    TIMINGS["region_run_s"] = round(time.monotonic() - began, 1)
    task_id = check_region_run(stack, run)
    region = next(r for r, t in REGION_TASKS.items() if t == task_id)
    ran = task_instance(stack, REGIONS, run_id, task_id)
    assert ran["queue"] == region.lower() and ran["hostname"] == stack.hostname("airflow-worker"), ran


def test_a_queue_of_five_jobs_runs_two_at_a_time_each_at_its_planned_start(stack):
    """carbon_queue_training on the 720x clock: the queue's plan (SciPy in the image: the extra queue), five mapped
    sensors deferred together in the triggerer, each released at its own start, no more than two jobs planned at
    once, every train task on the Celery worker."""
    began = time.monotonic()
    midnight = night_starts_now(stack.sim_url, 720)
    conf = {
        "job_duration": 2 * 3600 / 720,
        "max_delay": 8 * 3600 / 720,
        "fallback": (midnight + timedelta(seconds=10)).strftime("%H:%M:%S"),
        "fallback_timezone": "UTC",
    }
    run_id = trigger(stack, QUEUE, conf)
    run = finished(stack, QUEUE, run_id)
    TIMINGS["queue_run_s"] = round(time.monotonic() - began, 1)
    quoted = urllib.parse.quote(run_id, safe="")
    instances = stack.request("GET", f"/api/v2/dags/{QUEUE}/dagRuns/{quoted}/taskInstances?limit=100")
    states = {(ti["task_id"], ti["map_index"]): ti for ti in instances["task_instances"]}
    assert run["state"] == "success", {k: v["state"] for k, v in states.items()}
    plan = xcom(stack, QUEUE, run_id, "plan_queue", "carbon_queue_plan")
    assert plan["optimal"] is True and plan["independent_peak"] == 5 and plan["capacity"] == 2
    starts = sorted(datetime.fromisoformat(s) for s in plan["starts"].values())
    duration = timedelta(hours=2) / 720
    assert all(sum(1 for b in starts if b <= a < b + duration) <= 2 for a in starts), starts
    for index in range(5):
        wait = states[("job.wait", index)]
        train = states[("job.train", index)]
        assert wait["state"] == train["state"] == "success"
        record = stack.request(
            "GET",
            f"/api/v2/dags/{QUEUE}/dagRuns/{quoted}/taskInstances/job.wait/xcomEntries/carbon_decision"
            f"?map_index={index}",
        )["value"]
        record = json.loads(record) if isinstance(record, str) else record
        planned, released = (datetime.fromisoformat(record[k]) for k in ("planned_start", "released_at"))
        assert planned <= released <= planned + timedelta(seconds=5), record
        assert train["hostname"] == stack.hostname("airflow-worker")
        assert datetime.fromisoformat(train["start_date"]) >= released


def trigger_logs_by_job(stack: ComposeStack, run_id: str) -> dict[int, str]:
    """The sensor's trigger log files (logs/ is bind-mounted), by the id of the triggerer job that ran it: Airflow
    writes one file per triggerer job, `attempt=1.log.trigger.<job id>.log`."""
    folder = stack.home / "logs" / f"dag_id={NIGHTLY}" / f"run_id={run_id}" / f"task_id={SENSOR}"
    return {int(p.name.rsplit(".", 2)[-2]): p.read_text(errors="replace") for p in folder.glob("*.log.trigger.*.log")}


def test_a_restarted_triggerer_still_releases_the_sensor_on_time_once(stack):
    """docker compose restart airflow-triggerer while the trigger waits in it: a new triggerer job picks the trigger
    up from the database and releases it at the planned time; the job runs once. The clock runs at 240x here (15 s
    per simulated hour), so the night's optimum (05:00) lies about 75 s ahead, after the restart."""
    midnight = night_starts_now(stack.sim_url, 240)
    conf = {
        "expected_duration": 2 * 3600 / 240,
        "max_delay": 6 * 3600 / 240,
        "fallback": (midnight + timedelta(seconds=30)).strftime("%H:%M:%S"),
        "fallback_timezone": "UTC",
        "training_rounds": 50,
    }
    run_id = trigger(stack, NIGHTLY, conf)
    deferred(stack, run_id)
    # the trigger runs (not only assigned): its first triggerer job has logged the wait
    wait_until(
        lambda: any("carbon trigger: waiting" in text for text in trigger_logs_by_job(stack, run_id).values()),
        60,
        "the trigger to run in the triggerer",
    )
    (first_job,) = trigger_logs_by_job(stack, run_id)
    restart = time.monotonic()
    stack.compose("restart", "airflow-triggerer", timeout=180)
    resumed: dict[str, datetime] = {}

    def picked_up_again() -> bool:
        again = {job: text for job, text in trigger_logs_by_job(stack, run_id).items() if job != first_job}
        if any("carbon trigger: waiting" in text for text in again.values()):
            resumed["at"] = datetime.now(timezone.utc)
            return True
        return False

    wait_until(picked_up_again, 120, "a new triggerer job to run the trigger again")
    TIMINGS["triggerer_restart_to_resumed_s"] = round(time.monotonic() - restart, 1)
    run = finished(stack, NIGHTLY, run_id)
    assert run["state"] == "success", task_states(stack, NIGHTLY, run_id)
    decision = xcom(stack, NIGHTLY, run_id, SENSOR, "carbon_decision")
    assert decision["used_fallback"] is False, decision
    planned, released = (datetime.fromisoformat(decision[k]) for k in ("planned_start", "released_at"))
    assert planned > resumed["at"], "the optimum came before the trigger resumed: nothing was tested"
    # the trigger's re-check sleeps toward the planned start, so it wakes there, not a poll interval later
    assert planned <= released <= planned + timedelta(seconds=5), decision
    logs = trigger_logs_by_job(stack, run_id)
    assert len(logs) == 2 and "carbon trigger: releasing" not in logs[first_job]
    assert "carbon trigger: releasing" in next(text for job, text in logs.items() if job != first_job)
    assert task_instance(stack, NIGHTLY, run_id, JOB)["try_number"] == 1
    assert task_instance(stack, NIGHTLY, run_id, SENSOR)["try_number"] == 1


def test_down_removes_every_container_network_and_volume(stack):
    stack.save_logs()  # while there are containers to read them from
    stack.compose("down", "--volumes", "--remove-orphans", "--timeout", "30", timeout=300)
    label = f"label=com.docker.compose.project={stack.name}"
    left = {
        kind: subprocess.run(
            ["docker", kind, "ls", *(["-a"] if kind == "container" else []), "-q", "--filter", label],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        for kind in ("container", "network", "volume")
    }
    assert left == {"container": [], "network": [], "volume": []}
    TIMINGS["total_s"] = round(time.monotonic() - TIMINGS.pop("_began"), 1)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "timings.json").write_text(json.dumps(TIMINGS, indent=2) + "\n")
    print(f"compose figures: {json.dumps(TIMINGS)}")
