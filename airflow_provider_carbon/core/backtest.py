"""Replay a recurring job over observed history: what carbon-aware scheduling would have saved.

Every day of the history, the job is released at a local time (its DAG's schedule), must finish within a deadline
of the release, and runs for a fixed duration. Four policies start it:

* ``release``: at the release (what a plain schedule does);
* ``fixed``: at the fallback local time (02:00 by default), or at the latest start if that is later;
* ``provider``: where the same optimizer as the sensor (:func:`~airflow_provider_carbon.core.windows.find_best_window`)
  puts it on a forecast made as the sensor would have one: ``perfect`` (the observed values), ``persistence`` (the
  same hours one day earlier), ``noisy:<sigma>`` (the observed values times ``1 + sigma * N(0, 1)``, seeded) or
  ``history`` (:func:`~airflow_provider_carbon.core.history.forecast_from_history` on what was observed before the
  release);
* ``perfect``: the optimum on the observed values.

Each run is scored on the observed values: the intensity the job experienced, hence its emissions (the energy is
the same for every policy, so savings are ratios of intensities).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import datetime, time, timedelta
from time import perf_counter
from typing import Any

import numpy as np

from airflow_provider_carbon.core.fallback import local_time_on, next_local_time, parse_clock, resolve_timezone
from airflow_provider_carbon.core.forecast import Forecast
from airflow_provider_carbon.core.history import MIN_DAYS, forecast_from_history
from airflow_provider_carbon.core.windows import find_best_window
from airflow_provider_carbon.exceptions import InsufficientHistoryError

__all__ = ["BacktestResult", "DayResult", "PolicySummary", "backtest", "parse_forecast_mode"]

POLICIES = ("release", "fixed", "provider", "perfect")
FORECAST_MODES = ("perfect", "persistence", "history", "noisy:<sigma>")
#: how far back the history mode reads: the model's 56 days of weekday/weekend comparison and a margin
HISTORY_WINDOW = timedelta(days=58)


def parse_forecast_mode(mode: str) -> tuple[str, float]:
    """``"noisy:0.1"`` -> ``("noisy", 0.1)``; the other modes with sigma 0.

    :raises ValueError: for an unknown mode or a bad sigma.
    """
    if mode.startswith("noisy:"):
        try:
            sigma = float(mode.split(":", 1)[1])
        except ValueError:
            raise ValueError(f"bad sigma in {mode!r}: give noisy:<number>, e.g. noisy:0.1") from None
        if not math.isfinite(sigma) or sigma < 0:
            raise ValueError(f"bad sigma in {mode!r}: it must be a finite number >= 0")
        return "noisy", sigma
    if mode in ("perfect", "persistence", "history"):
        return mode, 0.0
    raise ValueError(f"unknown forecast mode {mode!r}; one of {', '.join(FORECAST_MODES)}")


@dataclass(frozen=True)
class DayResult:
    """One replayed release: the start and experienced mean intensity of each policy."""

    release: datetime
    starts: dict[str, datetime]
    intensity: dict[str, float]


@dataclass(frozen=True)
class PolicySummary:
    """One policy over the whole replay."""

    policy: str
    mean_intensity: float
    saving_vs_release_pct: float
    saving_vs_fixed_pct: float
    capture_pct: float | None  # share of the perfect-foresight saving (against release) this policy realised
    delay_median_h: float
    delay_p90_h: float
    delay_max_h: float
    deadline_misses: int


@dataclass(frozen=True)
class BacktestResult:
    """What :func:`backtest` replayed and what each policy achieved; :meth:`to_dict` for ``--json``."""

    zone: str | None
    forecast_mode: str
    duration_h: float
    deadline_h: float
    release: str
    fallback: str
    timezone: str
    runs: int
    skipped: int
    summaries: list[PolicySummary]
    days: list[DayResult] = field(repr=False)
    seconds: float = 0.0

    def summary(self, policy: str) -> PolicySummary:
        return next(s for s in self.summaries if s.policy == policy)

    def to_dict(self) -> dict[str, Any]:
        return {
            "zone": self.zone,
            "forecast_mode": self.forecast_mode,
            "duration_h": self.duration_h,
            "deadline_h": self.deadline_h,
            "release": self.release,
            "fallback": self.fallback,
            "timezone": self.timezone,
            "runs": self.runs,
            "skipped": self.skipped,
            "seconds": round(self.seconds, 3),
            "policies": {s.policy: {k: v for k, v in asdict(s).items() if k != "policy"} for s in self.summaries},
        }


def _releases(observed: Forecast, at: time, tz: Any, deadline: timedelta) -> list[datetime]:
    """Every daily release whose deadline still lies inside the observed data."""
    local_start = observed.start.astimezone(tz).date()
    out = []
    day = local_start
    while True:
        release = local_time_on(day, at, tz)
        if release + deadline > observed.end:
            return out
        if release >= observed.start:
            out.append(release)
        day += timedelta(days=1)


def _forecast_for(
    observed: Forecast, release: datetime, horizon: datetime, mode: str, sigma: float, rng: np.random.Generator
) -> Forecast:
    if mode == "perfect":
        return observed.window(release, horizon)
    if mode == "history":
        # what the model reads (its profile and fitting days), not the whole year before: a replay stays linear
        since = max(observed.start, release - HISTORY_WINDOW)
        if since >= release:
            raise InsufficientHistoryError(
                "no observation before the release", zone=observed.zone, days_available=0, days_needed=MIN_DAYS
            )
        return forecast_from_history(observed.window(since, release), start=release, horizon=horizon - release)
    if mode == "persistence":
        day = timedelta(days=1)
        if release - day < observed.start:
            raise InsufficientHistoryError(
                "persistence needs the day before the release", zone=observed.zone, days_available=0, days_needed=1
            )
        past = observed.window(release - day, horizon - day)
        return Forecast.from_points(
            [(t + day, v) for t, v in past.to_points()], end=past.end + day, zone=observed.zone, source="persistence"
        )
    truth = observed.window(release, horizon)
    noisy = truth.values * (1 + sigma * rng.standard_normal(len(truth)))
    return Forecast.from_points(
        list(zip(truth.timestamps, np.maximum(noisy, 0.0).tolist(), strict=True)),
        end=truth.end,
        zone=observed.zone,
        source=f"noisy:{sigma:g}",
    )


def backtest(
    observed: Forecast,
    *,
    duration: timedelta,
    deadline: timedelta,
    release: str | time = "00:00",
    timezone: str = "UTC",
    fallback: str | time = "02:00",
    forecast: str = "perfect",
    seed: int = 0,
) -> BacktestResult:
    """Replay a daily job over ``observed`` with each policy (module docstring).

    .. code-block:: python

        from datetime import timedelta
        from airflow_provider_carbon.core.backtest import backtest

        result = backtest(observed, duration=timedelta(hours=2), deadline=timedelta(hours=12), forecast="history")
        result.summary("provider").capture_pct  # e.g. 77.0

    :param observed: the observed intensities (a regular series; e.g. a year of hourly data).
    :param duration: how long the job runs.
    :param deadline: it must finish within this long of its release.
    :param release: local release time (``"HH:MM"``), every day.
    :param timezone: IANA timezone of ``release`` and ``fallback``.
    :param fallback: the fixed local time of the ``fixed`` policy.
    :param forecast: what the ``provider`` policy plans on: ``perfect``, ``persistence``, ``history`` or
        ``noisy:<sigma>``.
    :param seed: the noise's seed (``noisy`` only).
    :raises ValueError: for a bad mode, times, or a duration longer than the deadline.
    """
    began = perf_counter()
    mode, sigma = parse_forecast_mode(forecast)
    if duration <= timedelta(0) or deadline < duration:
        raise ValueError(f"need 0 < duration <= deadline, got {duration} and {deadline}")
    tz = resolve_timezone(timezone)
    release_at, fallback_at = parse_clock(release), parse_clock(fallback)
    rng = np.random.default_rng(seed)
    days: list[DayResult] = []
    skipped = 0
    for start in _releases(observed, release_at, tz, deadline):
        finish_by = start + deadline
        latest = finish_by - duration
        try:
            planned_on = _forecast_for(observed, start, finish_by, mode, sigma, rng)
            provider = find_best_window(planned_on, duration, earliest=start, finish_by=finish_by).start
        except InsufficientHistoryError:
            skipped += 1  # the first days of the data: the sensor would have fallen back
            continue
        best = find_best_window(observed, duration, earliest=start, finish_by=finish_by).start
        fixed = min(next_local_time(start, fallback_at, tz), latest)
        starts = {"release": start, "fixed": fixed, "provider": provider, "perfect": best}
        intensity = {name: observed.mean(at, at + duration) for name, at in starts.items()}
        days.append(DayResult(start, starts, intensity))

    summaries = []
    if days:
        totals = {p: float(sum(d.intensity[p] for d in days)) for p in POLICIES}
        possible = totals["release"] - totals["perfect"]
        for policy in POLICIES:
            delays = [(d.starts[policy] - d.release) / timedelta(hours=1) for d in days]
            misses = sum(1 for d in days if d.starts[policy] + duration > d.release + deadline)
            summaries.append(
                PolicySummary(
                    policy=policy,
                    mean_intensity=round(totals[policy] / len(days), 3),
                    saving_vs_release_pct=round(100 * (1 - totals[policy] / totals["release"]), 3),
                    saving_vs_fixed_pct=round(100 * (1 - totals[policy] / totals["fixed"]), 3),
                    capture_pct=round(100 * (totals["release"] - totals[policy]) / possible, 3)
                    if possible > 0
                    else None,
                    delay_median_h=round(float(np.quantile(delays, 0.5)), 3),
                    delay_p90_h=round(float(np.quantile(delays, 0.9)), 3),
                    delay_max_h=round(max(delays), 3),
                    deadline_misses=misses,
                )
            )
    return BacktestResult(
        zone=observed.zone,
        forecast_mode=forecast,
        duration_h=duration / timedelta(hours=1),
        deadline_h=deadline / timedelta(hours=1),
        release=release_at.strftime("%H:%M"),
        fallback=fallback_at.strftime("%H:%M"),
        timezone=timezone,
        runs=len(days),
        skipped=skipped,
        summaries=summaries,
        days=days,
        seconds=perf_counter() - began,
    )
