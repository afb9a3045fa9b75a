"""Plan a whole queue of jobs at once under a capacity: the midnight pattern for several training jobs.

Nothing heavy is imported at module level (DAG files import this at every parse): the core, SciPy and the hooks are
imported inside ``execute()``.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow_provider_carbon.operators.base import DECISION_XCOM_KEY, CarbonPlanningBase, as_datetime, as_timedelta
from airflow_provider_carbon.operators.links import CARBON_LINKS

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_carbon.core.decision import Decision, PlanSpec
    from airflow_provider_carbon.core.forecast import Forecast
    from airflow_provider_carbon.core.queue import QueueJob

__all__ = ["QUEUE_XCOM_KEY", "CarbonQueuePlanOperator"]

#: the whole plan (every start, the totals, the herd's plan for comparison) in XCom
QUEUE_XCOM_KEY = "carbon_queue_plan"


class CarbonQueuePlanOperator(CarbonPlanningBase):
    """Plan the start of every job of a queue at once, at most ``capacity`` running together, least emissions.

    Jobs planned one by one all pick the cleanest hours and then queue behind the pool; planned together
    (:func:`~airflow_provider_carbon.plan_queue`, exact) they share them. Returns one decision record per job, in
    the order given, for mapped sensors: ``CarbonWindowSensor.partial(...).expand(plan=queue.output)`` waits for
    each job's own start. XCom ``carbon_queue_plan`` holds the whole plan with the herd's (each job at its own
    optimum) for comparison. Without a usable forecast every job gets the fallback, staggered so that no more than
    ``capacity`` start together: each starts when a slot frees, in the order given (``priority`` first).

    Needs the extra ``queue`` (SciPy) where the task runs.

    :param jobs: the queue (templated): dicts with ``name``, ``duration`` (timedelta, seconds or ``"PT2H"``),
        ``energy_kwh`` or ``power_kw``, optionally ``finish_by`` (tz-aware or ISO), ``finish_within`` (a duration
        from the run's start) and ``priority`` (ties go to earlier starts for higher priority). A job without a
        deadline of its own must finish by the operator's ``finish_by``, or within ``max_delay`` plus its duration.
    :param capacity: how many jobs may run at once; use the slots of the pool the jobs run in (and set ``pool=``
        on the job tasks, so that Airflow enforces it too).

    .. code-block:: python

        queue = CarbonQueuePlanOperator(
            task_id="plan_queue",
            zone="DE",
            capacity=2,
            max_delay=timedelta(hours=8),
            jobs=[{"name": f"train-{i}", "duration": timedelta(hours=2), "energy_kwh": 3.0} for i in range(5)],
        )
        wait = CarbonWindowSensor.partial(
            task_id="wait", expected_duration=timedelta(hours=2), max_delay=timedelta(hours=8), deferrable=True
        ).expand(plan=queue.output)
    """

    template_fields: Sequence[str] = (*CarbonPlanningBase.planning_template_fields, "jobs")
    operator_extra_links = CARBON_LINKS
    ui_color = "#b7e4c7"

    def __init__(self, *, jobs: Sequence[dict[str, Any]] | str, capacity: int, **kwargs: Any) -> None:
        # the spec's duration is the longest job's, set in execute() once the (maybe templated) jobs are known: the
        # base gets a placeholder of one second, which only bounds the run's window (latest start) meanwhile
        kwargs.setdefault("expected_duration", 1)
        super().__init__(**kwargs)
        if not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"capacity must be a positive integer, got {capacity!r}")
        self.jobs = jobs
        self.capacity = capacity

    def queue_jobs(self, spec: PlanSpec) -> list[QueueJob]:
        """The jobs, with their deadlines resolved for this run."""
        from airflow_provider_carbon.core.queue import QueueJob
        from airflow_provider_carbon.operators.base import parse_plan

        raw = parse_plan(self.jobs) if isinstance(self.jobs, str) else self.jobs
        if not isinstance(raw, (list, tuple)) or not raw:
            raise ValueError("jobs must be a non-empty list of dicts")
        out = []
        for item in raw:
            data = dict(item)
            name = str(data.get("name") or "")
            duration = as_timedelta(data.get("duration"), f"jobs[{name}].duration")
            if duration is None:
                raise ValueError(f"job {name!r} needs a duration")
            finish_by = as_datetime(data.get("finish_by"), f"jobs[{name}].finish_by")
            within = as_timedelta(data.get("finish_within"), f"jobs[{name}].finish_within")
            candidates = [t for t in (finish_by, spec.anchor + within if within else None) if t is not None]
            default = self.default_finish(spec, duration)
            out.append(
                QueueJob(
                    name=name,
                    duration=duration,
                    energy_kwh=data.get("energy_kwh"),
                    power_kw=data.get("power_kw"),
                    finish_by=min(candidates) if candidates else default,
                    priority=float(data.get("priority") or 0.0),
                )
            )
        return out

    def default_finish(self, spec: PlanSpec, duration: timedelta) -> datetime:
        """A job without its own deadline: the operator's ``finish_by``, or its latest start plus the job."""
        given = as_datetime(self.finish_by, "finish_by")
        return given if given is not None else spec.latest_start + duration

    def execute(self, context: Context) -> list[dict[str, Any]]:
        from airflow_provider_carbon.core.decision import FallbackReason
        from airflow_provider_carbon.operators.base import utcnow

        base = self.plan_spec(context)
        jobs = self.queue_jobs(base)
        # the forecast must cover every job's window: the spec spans to the latest deadline
        longest = max(job.duration for job in jobs)
        latest = max(job.finish_by for job in jobs if job.finish_by is not None) - longest
        spec = replace(base, duration=longest, latest_start=max(latest, base.anchor))
        hook, hook_error = self.usable_hook(spec)
        forecast, error = (None, hook_error) if hook is None else self.fetch_forecast(hook, spec, utcnow())
        now = utcnow()
        plan_dict: dict[str, Any]
        if forecast is not None:
            from airflow_provider_carbon.core.queue import plan_queue
            from airflow_provider_carbon.exceptions import QueueInfeasibleError

            try:
                plan = plan_queue(forecast, jobs, capacity=self.capacity, earliest=max(now, forecast.start))
            except QueueInfeasibleError as err:
                if spec.fallback.kind == "fail":
                    raise
                self.log.warning("carbon queue: %s; applying the fallback", err)
                forecast, error = None, err
            else:
                decisions = [self.job_decision(spec, job, plan.starts[job.name], forecast, now) for job in jobs]
                plan_dict = plan.to_dict()
                self.log.info(
                    "carbon queue: %d jobs, capacity %d: %.0f g expected (each at its own optimum: %.0f g, %d at "
                    "once); %s",
                    len(jobs),
                    self.capacity,
                    plan.total_emissions_g,
                    plan.independent_emissions_g,
                    plan.independent_peak,
                    "optimal" if plan.optimal else f"gap {plan.gap_pct:.2f} %",
                )
        if forecast is None:
            reason = FallbackReason.CONNECTION if hook is None else None
            decisions = self.fallback_decisions(spec, jobs, now, error, reason)
            plan_dict = {
                "used_fallback": True,
                "starts": {job.name: d.planned_start.isoformat() for job, d in zip(jobs, decisions, strict=True)},
                "capacity": self.capacity,
            }
        records = [d.to_dict() for d in decisions]
        ti = context.get("ti") if context else None
        if ti is not None:
            ti.xcom_push(key=QUEUE_XCOM_KEY, value=plan_dict)
            ti.xcom_push(key=DECISION_XCOM_KEY, value=records)
        for job, record in zip(jobs, records, strict=True):
            self.log.info("carbon queue: %s starts at %s", job.name, record["planned_start"])
        return records

    @staticmethod
    def job_spec(spec: PlanSpec, job: QueueJob) -> PlanSpec:
        """The queue's spec for one of its jobs: its duration, and its own latest start."""
        return replace(spec, duration=job.duration, latest_start=job.finish_by - job.duration)

    def job_decision(
        self, spec: PlanSpec, job: QueueJob, start: datetime, forecast: Forecast, now: datetime
    ) -> Decision:
        """The record of one job of the plan: what the sensor that waits for it reads (``plan=``)."""
        from airflow_provider_carbon.core.decision import plan

        job_spec = self.job_spec(spec, job)
        # the record of its own optimum (baseline, intensities), moved to the start the queue gave it
        own = plan(job_spec, forecast, now=now)
        if own.planned_start == start:
            return own
        moved = own.moved_to(start, f"queue of {self.capacity} slot(s): the cleanest hours are shared")
        expected = forecast.mean(start, start + job.duration)
        baseline = own.intensity_if_started_at_decision
        return replace(
            moved,
            expected_intensity=expected,
            forecast_intensity_at_start=forecast.value_at(start),
            expected_saving_pct=100 * (1 - expected / baseline) if baseline else None,
        )

    def fallback_decisions(
        self,
        spec: PlanSpec,
        jobs: list[QueueJob],
        now: datetime,
        error: BaseException | None,
        reason: Any,
    ) -> list[Decision]:
        """Every job at the fallback, staggered: each starts when one of ``capacity`` slots frees (priority first,
        then the order given), never after its own latest start."""
        from airflow_provider_carbon.core.decision import plan

        order = sorted(range(len(jobs)), key=lambda i: (-jobs[i].priority, i))
        slots: list[datetime] = []  # a heap of when each busy slot frees
        out: dict[int, Decision] = {}
        for i in order:
            job = jobs[i]
            job_spec = self.job_spec(spec, job)
            decision = plan(job_spec, None, now=now, error=error, fallback_reason=reason)
            start = decision.planned_start
            if len(slots) >= self.capacity:
                start = max(start, heapq.heappop(slots))
            start = min(start, job_spec.latest_start)
            if start != decision.planned_start:
                decision = decision.moved_to(start, f"fallback staggered for a capacity of {self.capacity}")
            heapq.heappush(slots, start + job.duration)
            out[i] = decision
        return [out[i] for i in range(len(jobs))]
