"""Shared fixtures for hook tests: connections from environment variables and a clean cache per test."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pytest

TOKEN = "em-secret-token-5f0c2b"
#: quick retries so error-mode tests take milliseconds, not the production back-off
FAST = {"retry_backoff": 0.01, "max_retry_wait": 5, "timeout": 2, "connect_timeout": 1}


@pytest.fixture
def connection(monkeypatch) -> Callable[..., str]:
    """Define an Airflow connection the way deployments do: an AIRFLOW_CONN_<ID> JSON environment variable."""

    def define(conn_id: str, conn_type: str, host: str, *, password=None, login=None, extra=None) -> str:
        body = {"conn_type": conn_type, "host": host, "extra": {**FAST, **(extra or {})}}
        if password is not None:
            body["password"] = password
        if login is not None:
            body["login"] = login
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(body))
        return conn_id

    return define


def this_hour() -> datetime:
    return datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)


def iso_z(moment: datetime) -> str:
    """Electricity Maps' timestamp format: milliseconds and a Z."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def em_forecast(zone: str, values, *, start: datetime | None = None, step=timedelta(hours=1)) -> dict:
    start = start or this_hour()
    return {
        "zone": zone,
        "updatedAt": iso_z(start - timedelta(minutes=13)),
        "forecast": [{"carbonIntensity": v, "datetime": iso_z(start + i * step)} for i, v in enumerate(values)],
    }


def requests_to(httpserver, path: str) -> list:
    return [req for req, _ in httpserver.log if req.path == path]


@pytest.fixture
def logs(caplog, capfd):
    """Everything logged so far: stdlib records (caplog) and Airflow's structlog output (stdout/stderr)."""
    caplog.set_level("DEBUG")

    def text() -> str:
        out, err = capfd.readouterr()
        text.seen += out + err  # type: ignore[attr-defined]
        return caplog.text + text.seen  # type: ignore[attr-defined]

    text.seen = ""  # type: ignore[attr-defined]
    return text
