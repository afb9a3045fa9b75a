"""Carbon-aware scheduling for Apache Airflow: run flexible work when and where the grid is cleanest.

The public names below are imported lazily. Airflow imports this package whenever it discovers providers and
every DAG file that uses our sensor imports it at parse time, so ``import airflow_provider_carbon`` must stay
nearly free: numpy and pandas load only when a forecast is actually built or a window searched.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from airflow_provider_carbon.core.decision import Decision, FallbackReason, ReleaseReason, StartReason
    from airflow_provider_carbon.core.fallback import FallbackPolicy, next_local_time
    from airflow_provider_carbon.core.forecast import Forecast, Signal
    from airflow_provider_carbon.core.history import HistoryForecast, forecast_from_history
    from airflow_provider_carbon.core.queue import QueueJob, QueuePlan, plan_queue
    from airflow_provider_carbon.core.windows import Window, find_best_window, rank_windows
    from airflow_provider_carbon.exceptions import (
        CarbonError,
        DeadlineTooTightError,
        ForecastCoverageError,
        InsufficientHistoryError,
        InvalidForecastError,
        QueueInfeasibleError,
        WindowError,
    )

# public name -> module that defines it
_LAZY = {
    "CarbonError": "airflow_provider_carbon.exceptions",
    "DeadlineTooTightError": "airflow_provider_carbon.exceptions",
    "ForecastCoverageError": "airflow_provider_carbon.exceptions",
    "InsufficientHistoryError": "airflow_provider_carbon.exceptions",
    "InvalidForecastError": "airflow_provider_carbon.exceptions",
    "QueueInfeasibleError": "airflow_provider_carbon.exceptions",
    "WindowError": "airflow_provider_carbon.exceptions",
    "Decision": "airflow_provider_carbon.core.decision",
    "FallbackReason": "airflow_provider_carbon.core.decision",
    "ReleaseReason": "airflow_provider_carbon.core.decision",
    "StartReason": "airflow_provider_carbon.core.decision",
    "FallbackPolicy": "airflow_provider_carbon.core.fallback",
    "next_local_time": "airflow_provider_carbon.core.fallback",
    "Forecast": "airflow_provider_carbon.core.forecast",
    "Signal": "airflow_provider_carbon.core.forecast",
    "HistoryForecast": "airflow_provider_carbon.core.history",
    "forecast_from_history": "airflow_provider_carbon.core.history",
    "QueueJob": "airflow_provider_carbon.core.queue",
    "QueuePlan": "airflow_provider_carbon.core.queue",
    "plan_queue": "airflow_provider_carbon.core.queue",
    "Window": "airflow_provider_carbon.core.windows",
    "find_best_window": "airflow_provider_carbon.core.windows",
    "rank_windows": "airflow_provider_carbon.core.windows",
}

__all__ = ["__version__", "get_provider_info", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


def get_provider_info() -> dict[str, Any]:
    """Describe this provider to Airflow (entry point ``apache_airflow_provider``).

    Airflow validates this against its ``provider_info.schema.json`` and refuses the provider unless
    ``package-name`` equals the distribution name.
    """
    from airflow_provider_carbon.provider_info import provider_info

    return provider_info(__version__)
