"""Start real Airflow 3 processes for end-to-end tests: loopback only, an isolated AIRFLOW_HOME, cleaned up after.

Used by the slow tests. Every process gets the same environment (as in a deployment), runs from the virtualenv's
``airflow`` console script, and is stopped with SIGTERM (SIGKILL after a grace period) by the fixture that made it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

AIRFLOW = str(Path(sys.executable).with_name("airflow"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ApiError(urllib.error.HTTPError):
    """An HTTP error from the stack's REST API that carries the response body and, for a 5xx, the server's log."""

    def __init__(self, method: str, path: str, error: urllib.error.HTTPError, server_log: str) -> None:
        self.body = error.read().decode(errors="replace")
        super().__init__(error.url, error.code, error.msg, error.hdrs, None)
        self.summary = f"{method} {path} -> {error.code} {error.msg}: {self.body[:2000]}"
        if server_log:
            self.summary += f"\n--- api-server log ---\n{server_log}"

    def __str__(self) -> str:
        return self.summary


class AirflowStack:
    """An AIRFLOW_HOME with a migrated SQLite database and whichever Airflow processes a test starts."""

    def __init__(self, home: Path, *, extra_env: dict[str, str] | None = None) -> None:
        self.home = home
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        (home / "passwords.json").write_text(json.dumps({"admin": "adminpw"}))
        self.env = {
            **os.environ,
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__AUTH_MANAGER": (
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
            # Four processes write to one SQLite file: wait up to 30 s for a lock instead of pysqlite's 5 s (a CI
            # run once failed a trigger with a 500 while the scheduler held the write lock); see also migrate().
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}?timeout=30",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": self.base_url,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
            "AIRFLOW__API_AUTH__JWT_SECRET": "carbon-tests-jwt-secret-0123456789abcdef",
            **(extra_env or {}),
        }
        self.procs: dict[str, subprocess.Popen] = {}

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run(
            [AIRFLOW, *args], env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )

    def migrate(self) -> None:
        result = self.run("db", "migrate")
        assert result.returncode == 0, result.stderr[-3000:]
        if self.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("sqlite"):
            # Write-ahead logging (stored in the file, so every process gets it): readers no longer block the one
            # writer, which is what makes several Airflow processes on one SQLite file behave under load.
            with sqlite3.connect(self.home / "airflow.db") as db:
                assert db.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"

    def start(self, name: str, *args: str) -> None:
        log = open(self.home / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
        self.procs[name] = subprocess.Popen(
            [AIRFLOW, *args], env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def log(self, name: str) -> str:
        return (self.home / f"{name}.log").read_text(errors="replace")

    # -- REST API ---------------------------------------------------------------------------------------------

    def wait_for_api(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc = self.procs.get("api-server")
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"api-server exited: {self.log('api-server')[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/api/v2/monitor/health", timeout=2):
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.5)
        raise TimeoutError(f"api-server not healthy after {timeout} s: {self.log('api-server')[-3000:]}")

    def token(self) -> str:
        body = self.request("POST", "/auth/token", {"username": "admin", "password": "adminpw"}, auth=False)
        return body["access_token"]

    def request(self, method: str, path: str, body: Any = None, *, auth: bool = True) -> Any:
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self._token()}"
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base_url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            raise ApiError(method, path, error, self._server_traceback() if error.code >= 500 else "") from None

    def _server_traceback(self) -> str:
        """The api-server's last traceback, so a 500 in a test says what went wrong on the server."""
        if "api-server" not in self.procs:
            return ""
        text = self.log("api-server")
        start = text.rfind("Traceback (most recent call last)")
        return text[start:][-4000:] if start >= 0 else text[-2000:]

    def _token(self) -> str:
        if not getattr(self, "_cached_token", None):
            self._cached_token = self.token()
        return self._cached_token
