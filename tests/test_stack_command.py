"""`make stack` (demo/run_stack.py) as a user runs it: it comes up, prints a URL and a password that log in, serves
the example DAGs with the simulator's connection, and Ctrl-C leaves no process behind."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.airflow_stack import free_port
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow


def _live_members(pgids: set[int]) -> list[str]:
    """Processes (not zombies waiting for their parent) in these process groups, as "pid command" lines."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        # the command in field 2 may hold spaces: the fields after its closing parenthesis are fixed
        state, _ppid, pgrp = stat.rsplit(")", 1)[1].split()[:3]
        if int(pgrp) in pgids and state != "Z":
            found.append(f"{pid} {cmdline.strip()}")
    return found


def _airflow_pgids(home: str) -> set[int]:
    """Process groups of processes whose environment names this AIRFLOW_HOME (standalone and its components)."""
    groups = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if f"AIRFLOW_HOME={home}".encode() in environ.split(b"\0"):
            groups.add(os.getpgid(int(pid)))
    return groups


def test_make_stack_starts_logs_in_and_stops_on_ctrl_c(tmp_path):
    port, sim_port = free_port(), free_port()
    home = tmp_path / "home"
    proc = subprocess.Popen(
        [
            sys.executable,
            str(REPO_ROOT / "demo" / "run_stack.py"),
            "--port",
            str(port),
            "--simulator-port",
            str(sim_port),
            "--home",
            str(home),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output: list[str] = []
    groups: set[int] = set()
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, f"make stack exited early:\n{''.join(output)}"
            output.append(line)
            if "Ctrl-C stops everything" in line:
                break
        text = "".join(output)
        assert "Airflow is ready after" in text and f"http://127.0.0.1:{port}" in text, text
        password = re.search(r"login: admin / (\S+)", text).group(1)
        groups = _airflow_pgids(str(home.resolve()))
        assert groups, "no Airflow process found for the stack's AIRFLOW_HOME"

        body = json.dumps({"username": "admin", "password": password}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/auth/token", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            token = json.loads(response.read())["access_token"]
        headers = {"Authorization": f"Bearer {token}"}

        def get(path: str) -> dict:
            request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers)
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.loads(response.read())

        # the example DAGs are parsed (the dag-processor runs) without import errors
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            dags = {d["dag_id"] for d in get("/api/v2/dags")["dags"]}
            if {"nightly_low_carbon_training", "greenest_region_batch"} <= dags:
                break
            time.sleep(2)
        assert {"nightly_low_carbon_training", "greenest_region_batch"} <= dags
        assert get("/api/v2/importErrors")["total_entries"] == 0
        # the simulator answers with the token the stack's connection carries
        sim = urllib.request.Request(
            f"http://127.0.0.1:{sim_port}/v3/carbon-intensity/latest?zone=DE",
            headers={"auth-token": "simulator-token"},
        )
        with urllib.request.urlopen(sim, timeout=5) as response:
            assert json.loads(response.read())["zone"] == "DE"
    finally:
        # Ctrl-C in a terminal: SIGINT to the script
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            rest = proc.communicate(timeout=90)[0]
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            for group in groups:
                os.killpg(group, signal.SIGKILL)
            raise
    assert proc.returncode == 0, rest
    assert "stopped." in rest
    deadline = time.monotonic() + 10  # a killed process may take a moment to go
    while _live_members(groups) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _live_members(groups), f"still running after Ctrl-C: {_live_members(groups)}"
