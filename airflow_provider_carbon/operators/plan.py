"""Plan a low-carbon start without waiting for it, and the planning logic the sensor shares.

Nothing heavy is imported at module level: DAG files import this module at every parse. The core (numpy) and the
hooks (requests, tenacity) are imported inside ``execute()``.
"""

from __future__ import annotations

import ast
import json
import threading
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook, BaseOperator

from airflow_provider_carbon.operators.links import ElectricityMapsZoneLink

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_carbon.core.decision import Decision, PlanSpec
    from airflow_provider_carbon.core.forecast import Forecast
    from airflow_provider_carbon.hooks.base import CarbonIntensityHook

__all__ = ["CarbonPlanOperator", "CarbonPlanningMixin"]

DECISION_XCOM_KEY = "carbon_decision"
#: the wait a sensor or plan allows when the user gives no deadline at all
DEFAULT_MAX_DELAY = timedelta(hours=24)


def _as_datetime(value: Any, name: str) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime or an ISO 8601 string, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name}={value.isoformat()} has no timezone; give a tz-aware time (e.g. with +02:00)")
    return value.astimezone(timezone.utc)


def _as_timedelta(value: Any, name: str) -> timedelta | None:
    if value in (None, ""):
        return None
    if isinstance(value, timedelta):
        return value
    if isinstance(value, (int, float)):
        return timedelta(seconds=value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return timedelta(seconds=float(text))
        except ValueError:
            pass
        import pendulum  # Airflow's own duration parser; already imported by Airflow

        parsed = pendulum.parse(text)
        if isinstance(parsed, timedelta):
            return timedelta(days=parsed.days, seconds=parsed.seconds, microseconds=parsed.microseconds)
    raise ValueError(f"{name} must be a timedelta, seconds, or an ISO 8601 duration such as 'PT2H'; got {value!r}")


class CarbonPlanningMixin:
    """Turns the user's arguments and the run's context into a :class:`PlanSpec` and a :class:`Decision`.

    Shared by :class:`CarbonPlanOperator` and
    :class:`~airflow_provider_carbon.sensors.carbon_window.CarbonWindowSensor`; expects the attributes set by
    :meth:`_init_planning`.
    """

    planning_template_fields: Sequence[str] = (
        "zone",
        "lat",
        "lon",
        "expected_duration",
        "latest_start",
        "finish_by",
        "max_delay",
        "fallback",
        "fallback_timezone",
        "threshold",
        "min_saving_pct",
    )

    def _init_planning(
        self,
        *,
        carbon_conn_id: str,
        zone: str | None,
        lat: float | None,
        lon: float | None,
        expected_duration: timedelta | float | str,
        latest_start: datetime | str | None,
        finish_by: datetime | str | None,
        max_delay: timedelta | float | str | None,
        fallback: str,
        fallback_timezone: str | None,
        threshold: float | None,
        min_saving_pct: float | None,
    ) -> None:
        # Only stored here: nothing is parsed, fetched or validated against the outside world at DAG-parse time.
        self.carbon_conn_id = carbon_conn_id
        self.zone = zone
        self.lat = lat
        self.lon = lon
        self.expected_duration = expected_duration
        self.latest_start = latest_start
        self.finish_by = finish_by
        self.max_delay = max_delay
        self.fallback = fallback
        self.fallback_timezone = fallback_timezone
        self.threshold = threshold
        self.min_saving_pct = min_saving_pct
        self.resolved_zone: str | None = None

    # -- at execute time --------------------------------------------------------------------------------------

    def _anchor(self, context: Context) -> datetime:
        """The run's start: fallback times and ``max_delay`` count from here, so re-executions agree."""
        dag_run = context.get("dag_run") if context else None
        start = getattr(dag_run, "start_date", None) if dag_run is not None else None
        return (start or datetime.now(timezone.utc)).astimezone(timezone.utc)

    def _timezone_name(self) -> str:
        if self.fallback_timezone:
            return str(self.fallback_timezone)
        dag = getattr(self, "dag", None) if getattr(self, "has_dag", lambda: False)() else None
        tz = getattr(dag, "timezone", None)
        return getattr(tz, "name", None) or (str(tz) if tz is not None else "UTC")

    def plan_spec(self, context: Context) -> PlanSpec:
        from airflow_provider_carbon.core.decision import PlanSpec
        from airflow_provider_carbon.core.fallback import FallbackPolicy, resolve_timezone

        duration = _as_timedelta(self.expected_duration, "expected_duration")
        if duration is None or duration <= timedelta(0):
            raise ValueError(f"expected_duration must be positive, got {self.expected_duration!r}")
        anchor = self._anchor(context)
        latest = _as_datetime(self.latest_start, "latest_start")
        finish_by = _as_datetime(self.finish_by, "finish_by")
        max_delay = _as_timedelta(self.max_delay, "max_delay")
        candidates = [t for t in (latest, finish_by - duration if finish_by else None) if t is not None]
        if max_delay is not None or not candidates:
            candidates.append(anchor + (max_delay if max_delay is not None else DEFAULT_MAX_DELAY))
        tz = self._timezone_name()
        resolve_timezone(tz)  # a typo in the timezone must fail loudly, not at 02:00
        return PlanSpec(
            duration=duration,
            latest_start=min(candidates),
            fallback=FallbackPolicy.parse(self.fallback),
            timezone=tz,
            anchor=anchor,
            threshold=float(self.threshold) if self.threshold not in (None, "") else None,
            min_saving_pct=float(self.min_saving_pct) if self.min_saving_pct not in (None, "") else None,
        )

    def carbon_hook(self) -> CarbonIntensityHook:
        """The hook of the connection's type: switching vendor is a connection change, not a code change."""
        from airflow_provider_carbon.hooks.base import CarbonIntensityHook

        hook = BaseHook.get_hook(self.carbon_conn_id)
        if not isinstance(hook, CarbonIntensityHook):
            raise TypeError(
                f"connection {self.carbon_conn_id!r} has type {hook.conn_type!r}, which is not a carbon-intensity "
                "service; use electricitymaps, carbon_aware_sdk, watttime or uk_carbon_intensity"
            )
        return hook

    def fetch_forecast(
        self, hook: CarbonIntensityHook, spec: PlanSpec, now: datetime, *, until: datetime | None = None
    ) -> tuple[Forecast | None, BaseException | None]:
        """The forecast for the wait ahead, or the error that stands in for it (never raises).

        The call is given up at ``until`` (default: the deadline): with the hook's default timeouts and retries a
        dead API could otherwise hold the task for minutes past the latest start.
        """
        from airflow_provider_carbon.exceptions import ServiceUnavailableError

        until = min(until or spec.latest_start, spec.latest_start)
        budget = (until - now).total_seconds()
        # keep a moment for planning and the XCom push, so that a release at the deadline is not a little late
        budget -= min(FETCH_MARGIN_S, budget / 4)
        if budget <= 0:
            return None, ServiceUnavailableError(
                f"no time left to ask before {until.isoformat()}", service=hook.service
            )
        deadline = datetime.now(timezone.utc) + timedelta(seconds=budget)
        outcome: dict[str, Any] = {}

        def call() -> None:
            try:
                outcome["forecast"] = hook.get_forecast(
                    self.zone, lat=self.lat, lon=self.lon, **spec.forecast_request(now), deadline=deadline
                )
            except Exception as err:  # carbon data must never break the pipeline: the fallback policy decides
                outcome["error"] = err

        # a daemon thread, joined for the time left: a call that hangs past it is abandoned, not waited for
        worker = threading.Thread(target=call, name="carbon-forecast", daemon=True)
        worker.start()
        worker.join(budget)
        if worker.is_alive():
            outcome["error"] = ServiceUnavailableError(
                f"no forecast within the {budget:.0f} s left before {until.isoformat()}", service=hook.service
            )
        if "forecast" in outcome:
            return outcome["forecast"], None
        err = outcome["error"]
        self.log.warning("carbon forecast unavailable (%s): %s", type(err).__name__, err)  # type: ignore[attr-defined]
        return None, err

    def decide(self, context: Context, spec: PlanSpec, *, hook: CarbonIntensityHook | None = None) -> Decision:
        from airflow_provider_carbon.core.decision import plan

        now = datetime.now(timezone.utc)
        try:
            hook = hook or self.carbon_hook()
        except Exception as err:  # a missing or wrong connection is a configuration error: say so loudly
            if spec.fallback.kind == "fail":
                raise
            self.log.error("carbon connection %r unusable: %s", self.carbon_conn_id, err)  # type: ignore[attr-defined]
            return plan(spec, None, now=now, error=err)
        forecast, error = self.fetch_forecast(hook, spec, now)
        # plan from the time the answer came, not the time the question went out
        decision = plan(spec, forecast, now=datetime.now(timezone.utc), error=error)
        self.resolved_zone = decision.zone or self.zone
        return decision

    def record(self, context: Context, decision: Decision) -> dict[str, Any]:
        """Log the decision and push it to XCom under ``carbon_decision``; return it as JSON-ready dict."""
        data = decision.to_dict()
        self.log.info("carbon decision: %s", decision.summary())  # type: ignore[attr-defined]
        ti = context.get("ti") if context else None
        if ti is not None:
            ti.xcom_push(key=DECISION_XCOM_KEY, value=data)
        self.resolved_zone = decision.zone or self.zone
        return data


#: seconds before its deadline a forecast request is given up, to plan and record in time
FETCH_MARGIN_S = 0.5


def parse_plan(value: Any) -> dict[str, Any] | None:
    """A decision from a plan task's XCom, rendered as a dict, JSON, or a Python literal by Jinja."""
    if value in (None, ""):
        return None
    if isinstance(value, dict):
        return value
    text = str(value)
    try:
        return json.loads(text)
    except ValueError:
        return ast.literal_eval(text)


class CarbonPlanOperator(CarbonPlanningMixin, BaseOperator):
    """Decide now when a job should start, without waiting: for the "plan at midnight, start later" pattern.

    Pushes the decision record (XCom ``return_value`` and ``carbon_decision``); ``planned_start`` in it is an
    ISO 8601 UTC time that a ``DateTimeSensor`` (or :class:`CarbonWindowSensor` with ``plan=``) can wait for.

    :param carbon_conn_id: carbon connection; its type picks the service (default ``electricitymaps_default``).
    :param zone: zone / region / location key (templated); default: the connection's.
    :param lat: latitude instead of a zone (templated).
    :param lon: longitude instead of a zone (templated).
    :param expected_duration: how long the job runs: timedelta, seconds, or ISO 8601 (``"PT2H"``) (templated).
    :param latest_start: the job must start by then (tz-aware, templated).
    :param finish_by: the job must finish by then (tz-aware, templated); the tighter deadline binds.
    :param max_delay: the job must start within this long of the run's start (templated); 24 h if no deadline
        is given at all.
    :param fallback: without a usable forecast: a local time such as ``"02:00"`` (default), ``"now"`` or
        ``"fail"`` (templated).
    :param fallback_timezone: timezone of the fallback time (default: the DAG's timezone) (templated).
    :param threshold: start as soon as the forecast intensity is at or below this, in gCO2eq/kWh (templated).
    :param min_saving_pct: start now unless waiting saves at least this many percent (templated).

    .. code-block:: python

        plan = CarbonPlanOperator(
            task_id="plan_window", zone="DE", expected_duration=timedelta(hours=2), max_delay=timedelta(hours=8)
        )
        wait = DateTimeSensorAsync(
            task_id="wait", target_time="{{ ti.xcom_pull(task_ids='plan_window')['planned_start'] }}"
        )
        plan >> wait >> train
    """

    template_fields: Sequence[str] = CarbonPlanningMixin.planning_template_fields
    operator_extra_links = (ElectricityMapsZoneLink(),)
    ui_color = "#b7e4c7"

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
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
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

    def execute(self, context: Context) -> dict[str, Any]:
        spec = self.plan_spec(context)
        return self.record(context, self.decide(context, spec))
