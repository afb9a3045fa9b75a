"""Plan a whole queue of jobs under a capacity: every start, at most ``capacity`` running at once, least emissions.

Why: when every job of a nightly queue asks for the cleanest window on its own, they all pick the same hours (the
herd) and then queue behind the pool until the clean hours are gone. Planned together, the jobs share the clean
hours as the capacity allows.

The problem is solved exactly as a time-indexed 0-1 program with SciPy's HiGHS (``scipy.optimize.milp``; the extra
``queue``: ``pip install 'airflow-provider-carbon[queue]'``, imported only when a queue is planned):

* each job's candidate starts are the forecast's step boundaries between its earliest and latest start, the starts
  that make it *end* on one, and the two ends of its range. For one job these hold its optimum (the emissions of a
  window are piecewise linear in its start, with breakpoints exactly there), and the plan is exact over them;
* one variable per (job, candidate) with the job's emissions there as cost; each job starts once; and at every
  candidate instant at most ``capacity`` jobs run (the number running can only rise at a start, so those instants
  are enough).

Small instances are solved to proven optimality (``gap_pct == 0``); large ones stop at ``time_limit`` with the best
plan found and HiGHS's proven gap (``optimal=False``, ``gap_pct``). Ties go to earlier starts, first for jobs of
higher ``priority``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from airflow_provider_carbon.core.forecast import Forecast, to_utc_us
from airflow_provider_carbon.core.windows import as_forecast, candidate_starts
from airflow_provider_carbon.exceptions import QueueInfeasibleError

__all__ = ["QueueJob", "QueuePlan", "max_concurrency", "plan_queue"]

#: all tie-break terms together weigh less than this many grams, below the centigram the objective's emissions are
#: rounded to: a tie-break never trades emissions, and it stays above HiGHS's absolute tolerance (1e-6)
_TIE_GRAMS = 0.004


@dataclass(frozen=True)
class QueueJob:
    """One job of the queue.

    :param name: unique in the queue.
    :param duration: how long it runs.
    :param energy_kwh: the energy it uses in all (its power is ``energy_kwh / duration``); or give ``power_kw``.
    :param power_kw: its mean power, instead of ``energy_kwh``.
    :param finish_by: it must end by then (tz-aware); default: the end of the forecast.
    :param priority: among plans of equal emissions, jobs of higher priority start earlier.
    """

    name: str
    duration: timedelta
    energy_kwh: float | None = None
    power_kw: float | None = None
    finish_by: datetime | None = None
    priority: float = 0.0

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a queue job needs a name")
        if not isinstance(self.duration, timedelta) or self.duration <= timedelta(0):
            raise ValueError(f"job {self.name!r}: duration must be a positive timedelta, got {self.duration!r}")
        if (self.energy_kwh is None) == (self.power_kw is None):
            raise ValueError(f"job {self.name!r}: give energy_kwh or power_kw (one of them)")
        value = self.energy_kwh if self.energy_kwh is not None else self.power_kw
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"job {self.name!r}: energy and power must be finite numbers >= 0, got {value!r}")
        if self.finish_by is not None:
            to_utc_us(self.finish_by)  # refuses a naive deadline

    @property
    def power(self) -> float:
        """kW."""
        if self.power_kw is not None:
            return float(self.power_kw)
        return float(self.energy_kwh or 0.0) / (self.duration / timedelta(hours=1))

    @classmethod
    def of(cls, job: QueueJob | Mapping[str, Any]) -> QueueJob:
        """A job from itself or from a dict with the same keys (``duration`` as a timedelta or seconds)."""
        if isinstance(job, QueueJob):
            return job
        data = dict(job)
        if isinstance(data.get("duration"), (int, float)):
            data["duration"] = timedelta(seconds=data["duration"])
        return cls(**data)


@dataclass(frozen=True)
class QueuePlan:
    """The starts of a queue and what they are expected to emit (grams of CO2eq, on the forecast)."""

    starts: dict[str, datetime]
    emissions_g: dict[str, float]
    total_emissions_g: float
    #: each job at its own optimum, ignoring the capacity (the herd's plan): a lower bound of ``total_emissions_g``
    independent_emissions_g: float
    #: how many of the herd's jobs would run at once at its busiest
    independent_peak: int
    capacity: int
    optimal: bool
    gap_pct: float
    seconds: float
    candidates: int = field(default=0)

    def ends(self, durations: Mapping[str, timedelta]) -> dict[str, datetime]:
        return {name: start + durations[name] for name, start in self.starts.items()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "starts": {name: start.isoformat() for name, start in self.starts.items()},
            "emissions_g": dict(self.emissions_g),
            "total_emissions_g": self.total_emissions_g,
            "independent_emissions_g": self.independent_emissions_g,
            "independent_peak": self.independent_peak,
            "capacity": self.capacity,
            "optimal": self.optimal,
            "gap_pct": self.gap_pct,
            "seconds": round(self.seconds, 4),
            "candidates": self.candidates,
        }


def max_concurrency(intervals: Iterable[tuple[float, float]]) -> int:
    """The largest number of half-open intervals ``[start, end)`` that overlap at one instant."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda ev: (ev[0], ev[1]))
    running = peak = 0
    for _, step in events:  # an end sorts before a start at the same instant: [a, b) and [b, c) do not overlap
        running += step
        peak = max(peak, running)
    return peak


def _integral(fc: Forecast, offsets: np.ndarray) -> np.ndarray:
    """Intensity x hours from the forecast's start to each offset (us)."""
    return np.interp(offsets, fc.offsets_us, fc.cumulative) / 3.6e9


def _candidates(fc: Forecast, duration_us: int, lo: int, hi: int) -> np.ndarray:
    """The optimizer's candidate starts in ``[lo, hi]``, sorted and once each (one 0-1 variable per start)."""
    return np.unique(candidate_starts(fc, duration_us, lo, hi))


def plan_queue(
    forecast: Forecast | Any,
    jobs: Iterable[QueueJob | Mapping[str, Any]],
    *,
    capacity: int,
    earliest: datetime | None = None,
    time_limit: float = 10.0,
) -> QueuePlan:
    """The start of every job so that at most ``capacity`` run at once and the total emissions are least.

    .. code-block:: python

        from datetime import timedelta
        from airflow_provider_carbon import plan_queue

        jobs = [{"name": f"train-{i}", "duration": timedelta(hours=2), "energy_kwh": 3.0,
                 "finish_by": forecast.start + timedelta(hours=12)} for i in range(5)]
        plan = plan_queue(forecast, jobs, capacity=2)
        plan.starts["train-0"], plan.total_emissions_g, plan.independent_peak  # the herd would run 5 at once

    :param forecast: a :class:`Forecast` (or a pandas Series) covering the jobs' windows.
    :param jobs: :class:`QueueJob` objects or dicts with ``name``, ``duration``, ``energy_kwh`` (or ``power_kw``),
        ``finish_by`` and ``priority``.
    :param capacity: how many jobs may run at once (e.g. an Airflow pool's slots).
    :param earliest: no job starts before (default: the forecast's start).
    :param time_limit: seconds HiGHS may search; then the best plan found, with its proven gap.
    :raises QueueInfeasibleError: a job cannot meet its deadline inside the forecast (it is named), or the jobs do
        not fit under the capacity before their deadlines.
    :raises ImportError: without SciPy (the extra ``queue``).
    """
    began = time.perf_counter()
    fc = as_forecast(forecast)
    queue = [QueueJob.of(job) for job in jobs]
    names = [job.name for job in queue]
    if len(set(names)) != len(names):
        raise ValueError(f"job names must be unique: {sorted({n for n in names if names.count(n) > 1})}")
    if not isinstance(capacity, int) or capacity < 1:
        raise ValueError(f"capacity must be a positive integer, got {capacity!r}")
    if not queue:
        return QueuePlan({}, {}, 0.0, 0.0, 0, capacity, True, 0.0, time.perf_counter() - began)
    start_us = fc.offset_us(earliest) if earliest is not None else 0
    start_us = max(start_us, 0)
    end_us = int(fc.offsets_us[-1])

    # per job: candidate starts (offsets, us) and the grams each would emit
    cands: list[np.ndarray] = []
    costs: list[np.ndarray] = []
    for job in queue:
        d = int(job.duration / timedelta(microseconds=1))
        deadline = end_us if job.finish_by is None else min(end_us, fc.offset_us(job.finish_by))
        latest = deadline - d
        if latest < start_us:
            raise QueueInfeasibleError(
                f"job {job.name!r} ({job.duration}) cannot start at or after {fc.at_offset(start_us).isoformat()} "
                f"and end by {fc.at_offset(deadline).isoformat()}"
                + (
                    ""
                    if job.finish_by is None or fc.offset_us(job.finish_by) <= end_us
                    else " (where the forecast ends)"
                ),
                job=job.name,
            )
        c = _candidates(fc, d, start_us, latest)
        cands.append(c)
        costs.append(job.power * (_integral(fc, c + d) - _integral(fc, c)))  # kW x g/kWh x h = g
    independent = [int(np.argmin(cost)) for cost in costs]  # ties: the earliest (argmin's first)
    herd = [
        (float(cands[j][i]), float(cands[j][i]) + queue[j].duration / timedelta(microseconds=1))
        for j, i in enumerate(independent)
    ]
    herd_total = float(sum(costs[j][i] for j, i in enumerate(independent)))
    herd_peak = max_concurrency(herd)

    if herd_peak <= capacity:  # the herd fits: each job's own optimum is the plan
        choice = independent
        optimal, gap = True, 0.0
    else:
        choice, optimal, gap = _solve(queue, cands, costs, capacity, time_limit)
    starts = {job.name: fc.at_offset(float(cands[j][choice[j]])) for j, job in enumerate(queue)}
    emissions = {job.name: float(costs[j][choice[j]]) for j, job in enumerate(queue)}
    return QueuePlan(
        starts=starts,
        emissions_g=emissions,
        total_emissions_g=float(sum(emissions.values())),
        independent_emissions_g=herd_total,
        independent_peak=herd_peak,
        capacity=capacity,
        optimal=optimal,
        gap_pct=gap,
        seconds=time.perf_counter() - began,
        candidates=int(sum(len(c) for c in cands)),
    )


def _solve(
    queue: list[QueueJob], cands: list[np.ndarray], costs: list[np.ndarray], capacity: int, time_limit: float
) -> tuple[list[int], bool, float]:
    try:
        from scipy.optimize import Bounds, LinearConstraint, milp
        from scipy.sparse import coo_array
    except ImportError:  # pragma: no cover - the extra is installed wherever the queue is planned
        raise ImportError(
            "planning a queue under a capacity needs SciPy: pip install 'airflow-provider-carbon[queue]'"
        ) from None
    durations = [q.duration / timedelta(microseconds=1) for q in queue]
    offsets = np.cumsum([0] + [len(c) for c in cands])
    n = int(offsets[-1])
    origin = min(float(c[0]) for c in cands)
    span = max(float(c[-1]) for c in cands) - origin or 1.0
    # the tie-break: a later start costs a hair more, and more for jobs of higher priority (rank 1 = lowest)
    ranks = {p: i + 1 for i, p in enumerate(sorted({q.priority for q in queue}))}
    weight = _TIE_GRAMS / (len(queue) * len(ranks))
    objective = np.concatenate(
        [
            np.round(cost, 2) + weight * ranks[q.priority] * (c - origin) / span
            for q, c, cost in zip(queue, cands, costs, strict=True)
        ]
    )
    # each job starts once
    rows, cols = [], []
    for j in range(len(queue)):
        rows.extend([j] * len(cands[j]))
        cols.extend(range(offsets[j], offsets[j + 1]))
    assign = coo_array((np.ones(n), (rows, cols)), shape=(len(queue), n)).tocsr()
    # at every candidate start instant, the jobs running there (started at or before it, not yet ended) <= capacity
    instants = np.unique(np.concatenate(cands))
    r, c = [], []
    for j, cand in enumerate(cands):
        first = np.searchsorted(instants, cand, side="left")
        last = np.searchsorted(instants, cand + durations[j], side="left")  # instants < end
        for k, (a, b) in enumerate(zip(first, last, strict=True)):
            r.extend(range(a, b))
            c.extend([offsets[j] + k] * (b - a))
    running = coo_array((np.ones(len(r)), (r, c)), shape=(len(instants), n)).tocsr()
    result = milp(
        objective,
        constraints=[
            LinearConstraint(assign, lb=1, ub=1),
            LinearConstraint(running, lb=0, ub=capacity),
        ],
        integrality=np.ones(n),
        bounds=Bounds(0, 1),
        options={"time_limit": time_limit, "mip_rel_gap": 0.0, "disp": False},
    )
    if result.x is None:
        if result.status == 2:
            raise QueueInfeasibleError(
                f"the {len(queue)} jobs do not fit under a capacity of {capacity} before their deadlines",
                job=None,
            )
        raise QueueInfeasibleError(f"no plan found within {time_limit:g} s ({result.message})", job=None)
    x = result.x
    choice = [int(np.argmax(x[offsets[j] : offsets[j + 1]])) for j in range(len(queue))]
    gap = float(getattr(result, "mip_gap", 0.0) or 0.0)
    return choice, result.status == 0, round(100 * gap, 4)
