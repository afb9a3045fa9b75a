"""plan_queue against brute force on small instances, and what a plan must always be: within capacity, every
deadline kept, never worse than any other feasible plan."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_carbon import Forecast, QueueInfeasibleError, QueueJob, plan_queue
from airflow_provider_carbon.core.queue import _candidates, _integral, max_concurrency

pytest.importorskip("scipy")

T0 = datetime(2025, 6, 1, tzinfo=timezone.utc)
H = timedelta(hours=1)
US = timedelta(microseconds=1)


def forecast(values, step=H) -> Forecast:
    return Forecast.from_points([(T0 + i * step, v) for i, v in enumerate(values)], zone="XX")


def brute_force(fc: Forecast, jobs: list[QueueJob], capacity: int) -> float | None:
    """The least total emissions over every combination of candidate starts that fits the capacity."""
    end = int(fc.offsets_us[-1])
    options = []
    for job in jobs:
        d = int(job.duration / US)
        deadline = end if job.finish_by is None else min(end, fc.offset_us(job.finish_by))
        c = _candidates(fc, d, 0, deadline - d)
        grams = job.power * (_integral(fc, c + d) - _integral(fc, c))
        options.append([(float(s), float(s) + d, float(g)) for s, g in zip(c, grams, strict=True)])
    best = None
    for combo in itertools.product(*options):
        if max_concurrency([(a, b) for a, b, _ in combo]) <= capacity:
            total = sum(g for _, _, g in combo)
            best = total if best is None else min(best, total)
    return best


def check(plan, fc, jobs, capacity):
    spans = [(plan.starts[j.name], plan.starts[j.name] + j.duration) for j in jobs]
    assert max_concurrency([(fc.offset_us(a), fc.offset_us(b)) for a, b in spans]) <= capacity
    for job, (start, end) in zip(jobs, spans, strict=True):
        assert start >= fc.start and end <= (job.finish_by or fc.end) and end <= fc.end
        assert plan.emissions_g[job.name] == pytest.approx(job.power * fc.mean(start, end) * job.duration / H)
    assert plan.total_emissions_g >= plan.independent_emissions_g - 1e-6


def test_five_jobs_two_slots_share_the_valley():
    """A 3-hour valley and five 1-hour jobs, two at a time: six job-hours of valley, so all five run in it;
    independently, all five would pick the same first valley hour."""
    fc = forecast([400, 400, 100, 100, 100, 400, 400, 400])
    jobs = [QueueJob(f"j{i}", H, energy_kwh=1.0) for i in range(5)]
    plan = plan_queue(fc, jobs, capacity=2)
    check(plan, fc, jobs, 2)
    assert plan.total_emissions_g == pytest.approx(500.0) and plan.optimal and plan.gap_pct == 0
    assert plan.independent_peak == 5 and plan.independent_emissions_g == pytest.approx(500.0)
    assert sorted(s.hour for s in plan.starts.values()) == [2, 2, 3, 3, 4]


def test_a_capacity_the_herd_fits_keeps_each_jobs_own_optimum():
    fc = forecast([300, 200, 100, 200, 300, 50, 300])
    jobs = [QueueJob("a", H, energy_kwh=1), QueueJob("b", 2 * H, energy_kwh=1, finish_by=T0 + 4 * H)]
    plan = plan_queue(fc, jobs, capacity=2)
    # b: 01:00 and 02:00 both emit 300 g; ties go to the earlier start
    assert plan.starts == {"a": T0 + 5 * H, "b": T0 + 1 * H} and plan.independent_peak == 1


def test_priority_breaks_ties_toward_earlier_starts():
    fc = forecast([100] * 6)  # flat: every plan emits the same
    jobs = [QueueJob("low", H, energy_kwh=1, priority=0), QueueJob("high", H, energy_kwh=1, priority=5)]
    plan = plan_queue(fc, jobs, capacity=1)
    assert plan.starts["high"] < plan.starts["low"] and plan.starts["high"] == T0


def test_durations_off_the_grid_and_fractional_optima():
    """A 90-minute job on an hourly forecast: its best start ends on a boundary (a candidate the grid alone lacks)."""
    fc = forecast([500, 500, 100, 500, 500])
    jobs = [QueueJob("a", timedelta(minutes=90), power_kw=1.0), QueueJob("b", timedelta(minutes=90), power_kw=1.0)]
    plan = plan_queue(fc, jobs, capacity=1)
    check(plan, fc, jobs, 1)
    assert plan.total_emissions_g == pytest.approx(brute_force(fc, jobs, 1))


def test_an_infeasible_deadline_names_the_job():
    fc = forecast([100] * 6)
    with pytest.raises(QueueInfeasibleError) as raised:
        plan_queue(fc, [QueueJob("ok", H, energy_kwh=1), QueueJob("late", 3 * H, energy_kwh=1, finish_by=T0 + 2 * H)],
                   capacity=1)  # fmt: skip
    assert raised.value.job == "late" and "'late'" in str(raised.value)


def test_too_many_jobs_for_the_capacity_is_infeasible():
    fc = forecast([100] * 4)
    jobs = [QueueJob(f"j{i}", 2 * H, energy_kwh=1, finish_by=T0 + 3 * H) for i in range(3)]
    with pytest.raises(QueueInfeasibleError, match="do not fit under a capacity of 1"):
        plan_queue(fc, jobs, capacity=1)


def test_jobs_as_dicts_and_bad_input():
    fc = forecast([100, 50, 100])
    plan = plan_queue(fc, [{"name": "a", "duration": 3600, "energy_kwh": 2.0}], capacity=1)
    assert plan.starts == {"a": T0 + H} and plan.emissions_g == {"a": pytest.approx(100.0)}
    with pytest.raises(ValueError, match="unique"):
        plan_queue(fc, [{"name": "a", "duration": 3600, "energy_kwh": 1}] * 2, capacity=1)
    with pytest.raises(ValueError, match="capacity"):
        plan_queue(fc, [], capacity=0)
    with pytest.raises(ValueError, match="energy_kwh or power_kw"):
        QueueJob("x", H)
    assert plan_queue(fc, [], capacity=1).starts == {}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    values=st.lists(st.integers(10, 500), min_size=4, max_size=8),
    jobs=st.lists(
        st.tuples(st.integers(1, 3), st.floats(0.1, 5.0), st.one_of(st.none(), st.integers(2, 8))),
        min_size=1,
        max_size=4,
    ),
    capacity=st.integers(1, 3),
)
def test_equals_brute_force_on_random_small_instances(values, jobs, capacity):
    fc = forecast(values)
    queue = [
        QueueJob(f"j{i}", d * H, energy_kwh=e, finish_by=None if f is None else T0 + min(max(f, d), len(values)) * H)
        for i, (d, e, f) in enumerate(jobs)
        if d <= len(values)
    ]
    if not queue:
        return
    best = brute_force(fc, queue, capacity)
    if best is None:
        with pytest.raises(QueueInfeasibleError):
            plan_queue(fc, queue, capacity=capacity)
        return
    plan = plan_queue(fc, queue, capacity=capacity)
    check(plan, fc, queue, capacity)
    assert plan.optimal and plan.total_emissions_g == pytest.approx(best, abs=1e-2)


def test_max_concurrency_counts_touching_intervals_apart():
    assert max_concurrency([(0, 1), (1, 2)]) == 1
    assert max_concurrency([(0, 2), (1, 3), (1.5, 1.7)]) == 3
    assert max_concurrency([]) == 0
    assert np.isfinite(max_concurrency([(0, 1)]))
