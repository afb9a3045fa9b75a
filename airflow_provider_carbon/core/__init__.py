"""The pure core: forecast model, window optimizer, fallback policy, the plan and its decision record.

Nothing under ``core`` imports Airflow, so the same code runs in a worker, in the triggerer, in the backtest and in
a notebook. Some of it imports numpy, so the names below load lazily: an operator module may import a light
module such as :mod:`~airflow_provider_carbon.core.fallback` at DAG-parse time without paying for numpy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_carbon.core.decision import (
        Decision,
        FallbackReason,
        PlanSpec,
        ReleaseReason,
        StartReason,
        plan,
        revise,
    )
    from airflow_provider_carbon.core.fallback import DEFAULT_FALLBACK, FallbackPolicy, next_local_time
    from airflow_provider_carbon.core.forecast import Forecast, Signal
    from airflow_provider_carbon.core.windows import Window, find_best_window, rank_windows

_LAZY = {
    **dict.fromkeys(
        ("Decision", "FallbackReason", "PlanSpec", "ReleaseReason", "StartReason", "plan", "revise"),
        "airflow_provider_carbon.core.decision",
    ),
    **dict.fromkeys(("DEFAULT_FALLBACK", "FallbackPolicy", "next_local_time"), "airflow_provider_carbon.core.fallback"),
    **dict.fromkeys(("Forecast", "Signal"), "airflow_provider_carbon.core.forecast"),
    **dict.fromkeys(("Window", "find_best_window", "rank_windows"), "airflow_provider_carbon.core.windows"),
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
