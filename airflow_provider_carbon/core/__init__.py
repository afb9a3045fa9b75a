"""The pure core: forecast model, window optimizer, fallback policy (and later accounting).

Nothing under ``core`` imports Airflow, so the same code runs in a worker, in the triggerer, in the backtest and in
a notebook. It does import numpy, which is why operator and sensor modules import it inside ``execute()`` only.
"""

from __future__ import annotations

from airflow_provider_carbon.core.fallback import FallbackPolicy, next_local_time
from airflow_provider_carbon.core.forecast import Forecast, Signal
from airflow_provider_carbon.core.windows import Window, find_best_window, rank_windows
from airflow_provider_carbon.exceptions import (
    CarbonError,
    DeadlineTooTightError,
    ForecastCoverageError,
    InvalidForecastError,
    WindowError,
)

__all__ = [
    "CarbonError",
    "DeadlineTooTightError",
    "FallbackPolicy",
    "Forecast",
    "ForecastCoverageError",
    "InvalidForecastError",
    "Signal",
    "Window",
    "WindowError",
    "find_best_window",
    "next_local_time",
    "rank_windows",
]
