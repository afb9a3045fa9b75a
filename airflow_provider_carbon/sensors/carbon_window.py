"""CarbonWindowSensor: hold downstream work until the lowest-carbon window, and never past the deadline.

Nothing heavy is imported at module level (DAG files import this at every parse); the plan is made in
``execute()``, never in ``__init__``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator

from airflow_provider_carbon._compat import conf
from airflow_provider_carbon.operators.links import ElectricityMapsZoneLink
from airflow_provider_carbon.operators.plan import CarbonPlanningMixin, parse_plan

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_carbon.core.decision import Decision, PlanSpec

__all__ = ["CarbonWindowSensor"]

#: extra time granted to the trigger beyond the deadline before Airflow's own deferral timeout may fire
DEFERRAL_GRACE = timedelta(minutes=10)


class CarbonWindowSensor(CarbonPlanningMixin, BaseSensorOperator):
    """Wait for the lowest-carbon start of a job, within a deadline; then let downstream tasks run.

    At execute time it fetches the forecast through the connection's hook, picks the optimal start with the
    core optimizer, pushes the decision record to XCom (``carbon_decision``; the final record, with every
    re-plan, becomes ``return_value``), and waits:

    * ``deferrable=True``: in the triggerer, holding no worker slot. The trigger re-checks the forecast every
      ``recheck_interval`` (through the cache) and moves the start when the optimum moves; at the planned start
      it compares the current intensity with the forecast and, if it is more than ``deviation_pct`` higher and the
      deadline leaves room, re-plans once.
    * ``deferrable=False`` (``mode="poke"`` or ``"reschedule"``): the first poke plans, later ones re-check the
      forecast (the hook caches it) and release at the poke nearest the planned start, so the timing is exact to
      ``poke_interval`` / 2. Poke mode keeps its plan when a re-check fails; reschedule mode cannot (each poke is
      a new process), so a later poke that cannot re-plan applies the fallback time, or releases at once.

    **The deadline is a guarantee**: whatever the carbon API does (down, slow, 429, garbage, token revoked
    mid-wait), the sensor succeeds no later than the latest allowed start. Without a usable forecast the
    ``fallback`` applies: the next ``"02:00"`` (by default) in ``fallback_timezone`` after the run started,
    clamped to the deadline; ``"now"`` starts at once; ``"fail"`` fails the task with the typed error (only
    before the first plan: once a plan exists, a failing API never fails the wait).

    **Timeouts.** The sensor's ``timeout`` (default ``[sensors] default_timeout``, 7 days) is raised to cover the
    deadline unless you set it yourself; ``execution_timeout`` counts deferred time too, so a value shorter than
    the wait cuts the wait short. Both are yours to set: the sensor only warns when they would end the wait before
    the deadline.

    :param carbon_conn_id: carbon connection; its type picks the service (default ``electricitymaps_default``).
    :param zone: zone / region / location key (templated); default: the connection's.
    :param lat: latitude instead of a zone (templated).
    :param lon: longitude instead of a zone (templated).
    :param expected_duration: how long the downstream job runs: timedelta, seconds, or ISO 8601 ``"PT2H"``
        (templated). The window is chosen for this duration.
    :param latest_start: the job must start by then (tz-aware datetime or ISO string, templated).
    :param finish_by: the job must finish by then (templated); with ``latest_start`` the tighter one binds.
    :param max_delay: the job must start within this long after the run started (templated); when no deadline is
        given at all, 24 hours.
    :param fallback: without a usable forecast: a local time like ``"02:00"`` (default), ``"now"`` or ``"fail"``.
    :param fallback_timezone: IANA timezone of the fallback time; default: the DAG's timezone.
    :param threshold: start as soon as the forecast intensity is at or below this (gCO2eq/kWh).
    :param min_saving_pct: start now unless waiting saves at least this many percent.
    :param recheck_interval: how often the trigger re-checks the forecast while waiting (default 1 hour).
    :param deviation_pct: re-plan once at the start if the intensity then is this much above the forecast (20 %).
    :param plan: a decision from :class:`~airflow_provider_carbon.operators.plan.CarbonPlanOperator` (e.g.
        ``"{{ ti.xcom_pull(task_ids='plan_window') }}"``) to wait for instead of planning again (templated).
    :param deferrable: wait in the triggerer; default: ``[operators] default_deferrable``, read when the sensor is
        created (not when this module is imported).

    .. code-block:: python

        from datetime import timedelta
        from airflow_provider_carbon.sensors.carbon_window import CarbonWindowSensor

        wait = CarbonWindowSensor(
            task_id="wait_for_clean_power",
            carbon_conn_id="electricitymaps_default",
            zone="DE",
            expected_duration=timedelta(hours=2),
            finish_by="{{ (dag_run.run_after + macros.timedelta(hours=10)).isoformat() }}",
            fallback="02:00",  # the API is down: start at 02:00 in the DAG's timezone
            deferrable=True,
        )
        wait >> train_model
    """

    template_fields: Sequence[str] = (*CarbonPlanningMixin.planning_template_fields, "plan")
    operator_extra_links = (ElectricityMapsZoneLink(),)
    ui_color = "#95d5b2"

    def __init__(
        self,
        *,
        carbon_conn_id: str = "electricitymaps_default",
        zone: str | None = None,
        lat: float | None = None,
        lon: float | None = None,
        expected_duration: timedelta | float | str,
        latest_start: datetime | str | None = None,
        finish_by: datetime | str | None = None,
        max_delay: timedelta | float | str | None = None,
        fallback: str = "02:00",
        fallback_timezone: str | None = None,
        threshold: float | None = None,
        min_saving_pct: float | None = None,
        recheck_interval: timedelta | float = timedelta(hours=1),
        deviation_pct: float = 20.0,
        plan: dict[str, Any] | str | None = None,
        deferrable: bool | None = None,
        poke_interval: timedelta | float = 300,
        **kwargs: Any,
    ) -> None:
        self._timeout_given = kwargs.get("timeout") is not None
        super().__init__(poke_interval=poke_interval, **kwargs)
        self._init_planning(
            carbon_conn_id=carbon_conn_id,
            zone=zone,
            lat=lat,
            lon=lon,
            expected_duration=expected_duration,
            latest_start=latest_start,
            finish_by=finish_by,
            max_delay=max_delay,
            fallback=fallback,
            fallback_timezone=fallback_timezone,
            threshold=threshold,
            min_saving_pct=min_saving_pct,
        )
        self.recheck_interval = (
            recheck_interval.total_seconds() if isinstance(recheck_interval, timedelta) else float(recheck_interval)
        )
        self.deviation_pct = deviation_pct
        self.plan = plan
        # read here, when the DAG builds the sensor, so the setting in force applies (a default argument would
        # freeze whatever was configured when this module was first imported)
        self.deferrable = (
            conf.getboolean("operators", "default_deferrable", fallback=False) if deferrable is None else deferrable
        )

    # -- planning -----------------------------------------------------------------------------------------------

    def _initial_decision(self, context: Context, spec: PlanSpec, hook: Any = None) -> Decision:
        from airflow_provider_carbon.core.decision import Decision

        given = parse_plan(self.plan)
        if given is None:
            return self.decide(context, spec, hook=hook)
        decision = Decision.from_dict(given)
        if decision.planned_start > spec.latest_start:  # a plan made elsewhere: this sensor's deadline still binds
            decision = decision.moved_to(spec.latest_start, "the given plan starts after this sensor's deadline")
        self.resolved_zone = decision.zone or self.zone
        return decision

    def _hook_or_none(self, spec: PlanSpec) -> Any:
        """The carbon hook, or ``None`` when the connection is unusable and the fallback policy covers it."""
        try:
            return self.carbon_hook()
        except Exception:
            if spec.fallback.kind == "fail":
                raise
            return None  # decide() records the connection problem and applies the fallback

    def _first_reschedule(self, context: Context) -> datetime | None:
        """When the first poke of this wait ran, if this is a later poke in reschedule mode."""
        if self.deferrable or not self.reschedule:
            return None
        ti = context.get("ti") if context else None
        first = ti.get_first_reschedule_date(context) if ti is not None else None
        return first.astimezone(timezone.utc) if first is not None else None

    def _wait_started(self, context: Context) -> datetime:
        """When this wait began. In reschedule mode Airflow counts ``timeout`` from the first poke, not from this
        one, so the timeout needed to reach the deadline is measured from there too."""
        now = datetime.now(timezone.utc)
        first = self._first_reschedule(context)
        return min(first, now) if first is not None else now

    def _check_timeouts(self, spec: PlanSpec, now: datetime) -> None:
        wait = spec.latest_start - now
        if wait <= timedelta(0):
            return
        if not self._timeout_given and self.timeout < (wait + DEFERRAL_GRACE).total_seconds():
            self.timeout = (wait + DEFERRAL_GRACE).total_seconds()
        elif self.timeout < wait.total_seconds():
            self.log.warning(
                "timeout=%ss ends the wait before the deadline %s: the sensor will time out instead of running "
                "the job late",
                self.timeout,
                spec.latest_start.isoformat(),
            )
        if self.execution_timeout is not None and self.execution_timeout < wait:
            self.log.warning(
                "execution_timeout=%s counts the time spent waiting and is shorter than the wait to the deadline "
                "(%s): it may fail the task before the low-carbon window",
                self.execution_timeout,
                wait,
            )

    # -- execution ------------------------------------------------------------------------------------------------

    def execute(self, context: Context) -> Any:
        spec = self.plan_spec(context)
        self._check_timeouts(spec, self._wait_started(context))
        if not self.deferrable:
            self._spec = spec
            return super().execute(context)
        hook = self._hook_or_none(spec)
        decision = self._initial_decision(context, spec, hook)
        self.record(context, decision)
        now = datetime.now(timezone.utc)
        if decision.planned_start <= now:
            return self._complete(context, decision.released(now, "the planned start is now"))
        from airflow_provider_carbon.triggers.carbon_window import CarbonWindowTrigger

        hook_class = "" if hook is None else f"{type(hook).__module__}.{type(hook).__qualname__}"
        self.defer(
            trigger=CarbonWindowTrigger(
                carbon_conn_id=self.carbon_conn_id,
                hook_class=hook_class,
                spec=spec.to_dict(),
                decision=decision.to_dict(),
                zone=self.zone,
                lat=self.lat,
                lon=self.lon,
                recheck_interval=self.recheck_interval,
                deviation_pct=self.deviation_pct,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        from airflow_provider_carbon.core.decision import Decision

        if not event or event.get("status") != "release" or "decision" not in event:
            raise RuntimeError(f"unexpected event from the carbon trigger: {event!r}")
        return self._complete(context, Decision.from_dict(event["decision"]))

    def _complete(self, context: Context, decision: Decision) -> dict[str, Any]:
        for entry in decision.replans:
            self.log.info(
                "re-planned at %s (%s): %s -> %s",
                entry["at"],
                entry["cause"],
                entry["previous_start"],
                entry["new_start"],
            )
        self.log.info("released at %s: %s", decision.released_at, decision.release_reason)
        return self.record(context, decision)

    def poke(self, context: Context) -> Any:
        """Non-deferrable wait: plan at the first poke, re-check the forecast at later ones, and release at the poke
        nearest the start (or the last poke before the deadline)."""
        from airflow.sdk import PokeReturnValue

        spec = getattr(self, "_spec", None) or self.plan_spec(context)
        decision = self._poke_decision(context, spec)
        self._decision = decision
        now = datetime.now(timezone.utc)
        half_poke = timedelta(seconds=self.poke_interval / 2)
        if decision.planned_start <= now + half_poke:
            reason = "planned start"
        elif now + timedelta(seconds=self.poke_interval) >= spec.latest_start:
            reason = "deadline: the next poke would be too late"
        else:
            self.log.info("waiting: %s", decision.summary())
            return False
        return PokeReturnValue(True, self._complete(context, decision.released(now, reason)))

    def _poke_decision(self, context: Context, spec: PlanSpec) -> Decision:
        """The plan for this poke. In poke mode the sensor keeps its plan between pokes, so a re-check that fails
        keeps it, whatever the fallback policy, as the trigger does. In reschedule mode every poke is a new process
        and Airflow clears the task's XComs, so a later poke that cannot re-plan falls back to the fallback time
        (or, for ``now`` and ``fail``, releases now): a carbon API that fails mid-wait never fails the task."""
        from airflow_provider_carbon.core.decision import plan, revise
        from airflow_provider_carbon.core.fallback import FallbackPolicy

        previous: Decision | None = getattr(self, "_decision", None)
        if previous is None:
            if self._first_reschedule(context) is None:  # the first poke plans as execute() does
                decision = self._initial_decision(context, spec)
                self.record(context, decision)  # visible while waiting
                return decision
            try:  # a later poke in reschedule mode: the plan went with the XComs, so plan again
                return self._initial_decision(context, spec)
            except Exception as err:  # "fail" only before the first plan: this poke follows one we no longer know
                self.log.warning("re-plan impossible mid-wait (%s); releasing now", err)
                mid_wait = FallbackPolicy.parse("now")
                return plan(replace(spec, fallback=mid_wait), None, now=datetime.now(timezone.utc), error=err)
        now = datetime.now(timezone.utc)
        due = previous.planned_start <= now + timedelta(seconds=self.poke_interval / 2)
        if due or parse_plan(self.plan) is not None:
            return previous  # due, or a plan made elsewhere: release or wait without asking the API again
        try:
            hook = self.carbon_hook()
        except Exception as err:
            forecast, error = None, err
        else:
            forecast, error = self.fetch_forecast(hook, spec, now, until=previous.planned_start)
        revised = revise(spec, previous, forecast, now=datetime.now(timezone.utc))
        if revised is not previous:
            entry = revised.replans[-1]
            self.log.info("%s: %s -> %s", entry["cause"], entry["previous_start"], entry["new_start"])
        elif forecast is None:
            self.log.warning("re-check failed (%s); keeping the plan for %s", error, previous.planned_start)
        return revised
