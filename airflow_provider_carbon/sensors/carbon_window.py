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
from airflow_provider_carbon.operators.base import CarbonPlanningBase, parse_plan
from airflow_provider_carbon.operators.links import CARBON_LINKS

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_carbon.core.budget import Budget
    from airflow_provider_carbon.core.decision import Decision, PlanSpec
    from airflow_provider_carbon.hooks.base import CarbonIntensityHook

__all__ = ["CarbonWindowSensor"]

#: extra time granted to the trigger beyond the deadline before Airflow's own deferral timeout may fire
DEFERRAL_GRACE = timedelta(minutes=10)


class CarbonWindowSensor(CarbonPlanningBase, BaseSensorOperator):
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

    :param recheck_interval: how often the trigger re-checks the forecast while waiting (default 1 hour); ``None``
        never: the plan given stands (a queue's plan, whose jobs share the clean hours, would each move back to
        their own optimum).
    :param deviation_pct: re-plan once at the start if the intensity then is this much above the forecast (20 %).
    :param plan: a decision from :class:`~airflow_provider_carbon.operators.plan.CarbonPlanOperator` (e.g.
        ``"{{ ti.xcom_pull(task_ids='plan_window') }}"``) to wait for instead of planning again (templated).
    :param deferrable: wait in the triggerer; default: ``[operators] default_deferrable``, read when the sensor is
        created (not when this module is imported).
    :param poke_interval: seconds between pokes when not deferrable (default 300).
    :param power_kw: the downstream job's average power draw in kW: with it, each task directly downstream is
        accounted when it succeeds (XCom ``carbon_accounting``: measured runtime, energy, the intensity it met,
        emissions and the grams saved against starting at once and at the fallback time).
    :param energy_kwh: instead of ``power_kw``, the job's energy per run in kWh.
    :param pue: power usage effectiveness of the data centre, multiplying the job's energy (default 1.0).
    :param budget: a carbon budget checked before the wait: a
        :class:`~airflow_provider_carbon.core.budget.Budget`, or a dict such as ``{"kg": 5, "per": "month",
        "policy": "skip"}`` (its values templated; ``"scope": "tag:ml"`` for every DAG tagged ``ml``). Once the
        jobs accounted in the period (``power_kw``/``energy_kwh``) have used it up, ``warn`` logs and runs,
        ``skip`` skips this task and so the job (the run stays green), ``fail`` fails it without retries
        (:class:`~airflow_provider_carbon.exceptions.CarbonBudgetExceeded`). The record's ``budget`` says what the
        check found; an unreadable ledger never stops the job.
    :param measure_energy: measure each downstream job's energy with CodeCarbon in the job's own process (the
        optional extra ``codecarbon``) and account that instead of ``power_kw`` / ``energy_kwh``; the intensity is
        still the grid's at that hour, from the service. Without CodeCarbon, or if it fails, the declared figure is
        used (if given) and the job is never failed.

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

    template_fields: Sequence[str] = (*CarbonPlanningBase.planning_template_fields, "plan", "budget")
    operator_extra_links = CARBON_LINKS
    ui_color = "#95d5b2"

    def __init__(
        self,
        *,
        recheck_interval: timedelta | float | None = timedelta(hours=1),
        deviation_pct: float = 20.0,
        plan: dict[str, Any] | str | None = None,
        deferrable: bool | None = None,
        poke_interval: timedelta | float = 300,
        power_kw: float | None = None,
        energy_kwh: float | None = None,
        pue: float = 1.0,
        budget: Budget | dict[str, Any] | str | None = None,
        measure_energy: bool = False,
        **kwargs: Any,
    ) -> None:
        self._timeout_given = kwargs.get("timeout") is not None
        super().__init__(poke_interval=poke_interval, **kwargs)
        if power_kw is not None and energy_kwh is not None:
            raise ValueError("give power_kw (average draw) or energy_kwh (energy per run), not both")
        self.power_kw = power_kw
        self.energy_kwh = energy_kwh
        self.pue = pue
        self.budget = budget
        #: the budget check of this execution, for the record (``None``: no budget, or not checked here)
        self._budget_check: dict[str, Any] | None = None
        self.measure_energy = measure_energy
        self.recheck_interval = (
            None
            if recheck_interval is None
            else recheck_interval.total_seconds()
            if isinstance(recheck_interval, timedelta)
            else float(recheck_interval)
        )
        self.deviation_pct = deviation_pct
        self.plan = plan
        # read here, when the DAG builds the sensor, so the setting in force applies (a default argument would
        # freeze whatever was configured when this module was first imported)
        self.deferrable = (
            conf.getboolean("operators", "default_deferrable", fallback=False) if deferrable is None else deferrable
        )

    @property
    def accounts_energy(self) -> bool:
        """Whether the jobs this sensor releases are carbon-accounted (it knows or measures their energy)."""
        return self.power_kw is not None or self.energy_kwh is not None or self.measure_energy

    # -- planning -----------------------------------------------------------------------------------------------

    def _initial_decision(
        self,
        context: Context,
        spec: PlanSpec,
        hook: CarbonIntensityHook | None = None,
        hook_error: BaseException | None = None,
    ) -> Decision:
        from airflow_provider_carbon.core.decision import Decision

        given = parse_plan(self.plan)
        if given is None:
            return self.decide(context, spec, hook=hook, hook_error=hook_error)
        decision = Decision.from_dict(given)
        if decision.planned_start > spec.latest_start:  # a plan made elsewhere: this sensor's deadline still binds
            decision = decision.moved_to(spec.latest_start, "the given plan starts after this sensor's deadline")
        return decision

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

    def _check_budget(self, context: Context, spec: PlanSpec) -> None:
        """Check the carbon budget before the wait; over it, apply the policy: ``skip`` and ``fail`` record the
        decision and raise, ``warn`` logs. Later pokes in reschedule mode do not check again: the wait has begun."""
        if self.budget in (None, "", {}) or self._first_reschedule(context) is not None:
            return
        from airflow_provider_carbon._compat import AirflowSkipException
        from airflow_provider_carbon.core.budget import Budget, Outcome
        from airflow_provider_carbon.core.decision import over_budget
        from airflow_provider_carbon.operators.budget import BudgetFailure, check_budget

        budget = Budget.parse(self.budget)  # a budget written wrong fails loudly, as a bad deadline does
        dag_run = context.get("dag_run") if context else None
        dag_id = getattr(dag_run, "dag_id", None) or self.dag_id
        result = check_budget(budget, dag_id=dag_id, tz=spec.timezone)
        self._budget_check = result.to_dict()
        if result.outcome is Outcome.WITHIN or result.outcome is Outcome.UNKNOWN:
            self.log.info("%s", result.summary())
            return
        if result.outcome is Outcome.WARNED:
            self.log.warning("%s; policy warn: the job runs", result.summary())
            return
        self.log.warning("%s", result.summary())
        self.record(context, over_budget(spec, self._budget_check, now=datetime.now(timezone.utc)))
        if result.outcome is Outcome.SKIPPED:
            raise AirflowSkipException(f"{result.summary()}; policy skip: the job and its downstream are skipped")
        assert result.used_kg is not None
        raise BudgetFailure(
            scope=result.scope,
            period=budget.period.value,
            period_start=result.period_start,
            used_kg=result.used_kg,
            limit_kg=budget.limit_kg,
        )

    def _with_budget(self, decision: Decision) -> Decision:
        """The decision with this execution's budget check, if there was one."""
        if self._budget_check is None or decision.budget is not None:
            return decision
        return replace(decision, budget=self._budget_check)

    def execute(self, context: Context) -> Any:
        spec = self.plan_spec(context)
        self._check_budget(context, spec)
        self._check_timeouts(spec, self._wait_started(context))
        if not self.deferrable:
            self._spec = spec
            return super().execute(context)
        hook, hook_error = self.usable_hook(spec)
        spec = self.with_hook_zone(spec, hook)
        decision = self._with_budget(self._initial_decision(context, spec, hook, hook_error))
        self.record(context, decision)
        now = datetime.now(timezone.utc)
        if decision.planned_start <= now:
            return self._complete(context, decision.released(now))
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
        reason = decision.release_reason.value if decision.release_reason else None
        self.log.info("released at %s: %s", decision.released_at, reason)
        return self.record(context, decision)

    def poke(self, context: Context) -> Any:
        """Non-deferrable wait: plan at the first poke, re-check the forecast at later ones, and release at the poke
        nearest the start (or the last poke before the deadline)."""
        from airflow.sdk import PokeReturnValue

        from airflow_provider_carbon.core.decision import ReleaseReason

        spec = getattr(self, "_spec", None) or self.plan_spec(context)
        decision = self._poke_decision(context, spec)
        self._decision = decision
        now = datetime.now(timezone.utc)
        half_poke = timedelta(seconds=self.poke_interval / 2)
        if decision.planned_start <= now + half_poke:
            reason = decision.due_reason()
        elif now + timedelta(seconds=self.poke_interval) >= spec.latest_start:
            reason = ReleaseReason.DEADLINE  # the next poke would be too late
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
                decision = self._with_budget(self._initial_decision(context, spec))
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
        hook, error = self.usable_hook()  # no spec: once a plan exists a broken connection never fails the wait
        forecast = None
        if hook is not None:
            forecast, error = self.fetch_forecast(hook, spec, now, until=previous.planned_start)
        revised = revise(spec, previous, forecast, now=datetime.now(timezone.utc))
        if revised is not previous:
            entry = revised.replans[-1]
            self.log.info("%s: %s -> %s", entry["cause"], entry["previous_start"], entry["new_start"])
        elif forecast is None:
            self.log.warning("re-check failed (%s); keeping the plan for %s", error, previous.planned_start)
        return revised
