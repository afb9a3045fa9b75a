"""Test-wide setup: an isolated AIRFLOW_HOME so tests never touch a user's Airflow, and clean caches per test."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Set before anything imports airflow: its configuration is read once, at import.
_HOME = Path(tempfile.mkdtemp(prefix="carbon-tests-airflow-home-"))
os.environ["AIRFLOW_HOME"] = str(_HOME)
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

REPO_ROOT = Path(__file__).resolve().parent.parent
# Real grid data lives beside the checkout for benchmarks and backtests; tests use it when present and fall back
# to seeded synthetic data otherwise, so the suite passes on a user's clone without it.
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


import pytest  # noqa: E402 - after AIRFLOW_HOME is set


@pytest.fixture(autouse=True)
def _clean_process_state():
    """Forecasts, WattTime tokens and looked-up regions are process-wide caches: no test sees another's."""
    from airflow_provider_carbon.hooks.cache import forecast_cache
    from airflow_provider_carbon.hooks.watttime import WattTimeHook

    forecast_cache.clear()
    WattTimeHook._tokens.clear()
    WattTimeHook._regions.clear()
    yield
    forecast_cache.clear()


def require_or_skip(available: bool, what: str) -> None:
    """Skip a test whose machine-level dependency is missing on a user's machine; fail it in CI.

    CI (``.ci/run``) sets ``CARBON_TESTS_REQUIRE_ALL=1``: there, PostgreSQL, Redis and chromium are part of the
    machine, so a missing one is a failure, not a reason to skip.
    """
    if available:
        return
    if os.environ.get("CARBON_TESTS_REQUIRE_ALL") == "1":
        pytest.fail(f"{what} is required in CI (CARBON_TESTS_REQUIRE_ALL=1)")
    pytest.skip(f"{what} is not available on this machine")
