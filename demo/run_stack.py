"""`make stack`: the docker-compose stack's Airflow, natively on this machine, until Ctrl-C.

Starts the offline carbon-API simulator and ``airflow standalone`` (Airflow's own launcher of the api-server,
scheduler, dag-processor and triggerer, with LocalExecutor, a SQLite database and the simple auth manager) with the
example DAGs and connections to the simulator; prints the UI's address and the admin password Airflow generated;
stops every process it started on Ctrl-C (or SIGTERM).

Why ``airflow standalone`` and not our own process manager: it is Airflow's supported way to run every component on
one machine, it migrates the database and generates the admin password itself. What it lacks, this adds: the
simulator, the connections, a quiet console (the components' output goes to ``standalone.log``), a readiness check
through the REST API, and a printout of the password on every start (``standalone`` prints it only once).

State (database, logs, password) is kept in ``.stack/airflow-home`` between starts; ``make clean`` removes it.

Options: ``--port`` (UI, default 8080), ``--simulator-port`` (default 8765), ``--speed`` (simulated seconds per
real second; 1 = real time, the default, so the example DAGs keep their real hours).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from airflow_provider_carbon.simulator.process import SimulatorNotStarted, SimulatorProcess

ROOT = Path(__file__).resolve().parent.parent
HOME = ROOT / ".stack" / "airflow-home"
BIN = Path(sys.executable).parent
SIMULATOR_TOKEN = "simulator-token"  # the token the simulator accepts; nothing secret: it never leaves this machine
SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"


def stack_env(home: Path, port: int, simulator: str) -> dict[str, str]:
    """The environment of every Airflow process: the compose stack's settings, on loopback, with SQLite."""
    return {
        **os.environ,
        # standalone starts each component as `airflow ...`: it must find this virtualenv's
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        # LocalExecutor starts this many worker processes at once (Airflow's default 32: over 3 GB for a try-out)
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        # four processes share one SQLite file: wait for a lock rather than fail after pysqlite's 5 s
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}?timeout=30",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW_CONN_ELECTRICITYMAPS_DEFAULT": json.dumps(
            {
                "conn_type": "electricitymaps",
                "host": f"{simulator}/v3",
                "password": SIMULATOR_TOKEN,
                "extra": {"zone": "DE"},
            }
        ),
        "AIRFLOW_CONN_CARBON_AWARE_SDK_DEFAULT": json.dumps(
            {"conn_type": "carbon_aware_sdk", "host": simulator, "extra": {"location": "germanywestcentral"}}
        ),
    }


def prepare_database(env: dict[str, str], home: Path) -> None:
    """Migrate (standalone would too), then switch the file to write-ahead logging: readers stop blocking the one
    writer, which is what keeps four processes on one SQLite file responsive."""
    result = subprocess.run([str(BIN / "airflow"), "db", "migrate"], env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"airflow db migrate failed:\n{result.stdout[-2000:]}{result.stderr[-3000:]}")
    with sqlite3.connect(home / "airflow.db") as db:
        db.execute("PRAGMA journal_mode=WAL")


def healthy(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url}/api/v2/monitor/health", timeout=2) as response:
            health = json.loads(response.read())
    except (OSError, ValueError):
        return False
    return all(health.get(part, {}).get("status") == "healthy" for part in ("scheduler", "triggerer", "dag_processor"))


def admin_password(home: Path) -> str | None:
    try:
        return json.loads((home / "simple_auth_manager_passwords.json.generated").read_text()).get("admin")
    except (OSError, ValueError):
        return None


def stop(proc: subprocess.Popen, grace: float = 30) -> None:
    """SIGINT first (standalone then stops its components itself), the whole process group after ``grace`` s."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # what is left of the group: a component that ignored its SIGTERM
    proc.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make stack", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8080, help="the Airflow UI and REST API (default 8080)")
    parser.add_argument("--simulator-port", type=int, default=8765, help="the carbon-API simulator (default 8765)")
    parser.add_argument("--speed", type=float, default=1.0, help="simulated seconds per real second (default 1)")
    parser.add_argument("--home", type=Path, default=HOME, help=f"AIRFLOW_HOME (default {HOME})")
    args = parser.parse_args(argv)

    home = args.home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    base_url = f"http://127.0.0.1:{args.port}"
    try:
        simulator = SimulatorProcess.start(
            "--speed", str(args.speed), "--token", SIMULATOR_TOKEN, port=args.simulator_port
        )
    except SimulatorNotStarted as err:
        raise SystemExit(f"{err} (port {args.simulator_port} taken? --simulator-port picks another)") from None
    simulator_url = simulator.url
    env = stack_env(home, args.port, simulator_url)
    airflow: subprocess.Popen | None = None
    stopping = False

    def on_signal(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        print(f"carbon simulator: {simulator_url} (speed {args.speed:g}x)", flush=True)
        print(f"preparing Airflow in {home} ...", flush=True)
        prepare_database(env, home)
        log_path = home / "standalone.log"
        with open(log_path, "ab") as log:
            airflow = subprocess.Popen(
                [str(BIN / "airflow"), "standalone"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches this script only; it stops the group in order
            )
        started = time.monotonic()
        print(f"starting api-server, scheduler, dag-processor and triggerer (log: {log_path}) ...", flush=True)
        while not stopping and not healthy(base_url):
            if airflow.poll() is not None:
                raise SystemExit(f"airflow standalone exited ({airflow.returncode}); see {log_path}")
            time.sleep(1)
        if not stopping:
            print(
                f"\nAirflow is ready after {time.monotonic() - started:.0f} s: {base_url}\n"
                f"  login: admin / {admin_password(home) or '(see simple_auth_manager_passwords.json.generated)'}\n"
                f"  example DAGs: {ROOT / 'dags'} (paused: unpause one to schedule it, or trigger it)\n"
                "  Ctrl-C stops everything.",
                flush=True,
            )
        while not stopping:
            if airflow.poll() is not None:
                raise SystemExit(f"airflow standalone exited ({airflow.returncode}); see {log_path}")
            if simulator.proc.poll() is not None:
                raise SystemExit("the carbon simulator exited")
            time.sleep(0.5)
        print("\nstopping ...", flush=True)
        return 0
    finally:
        if airflow is not None:
            stop(airflow)
        simulator.stop()
        print("stopped.", flush=True)


if __name__ == "__main__":
    sys.exit(main())
