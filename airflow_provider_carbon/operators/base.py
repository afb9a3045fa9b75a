"""The base classes of every carbon-aware operator: the arguments they share, defined, parsed and validated once.

* :class:`CarbonBaseOperator` owns the carbon connection and the job's window (``expected_duration``,
  ``latest_start``, ``finish_by``, ``max_delay``), turns them and the run's context into a
  :class:`~airflow_provider_carbon.core.decision.PlanSpec`, gets the connection's hook (or, when the connection is
  unusable, says so and lets the fallback policy decide) and records decisions in XCom.
* :class:`CarbonPlanningBase` adds what planning one job in one zone needs (zone or coordinates, fallback, threshold,
  minimum saving) and the one way a forecast is fetched for a plan: bounded by the deadline, never raising.

:class:`~airflow_provider_carbon.sensors.carbon_window.CarbonWindowSensor`,
:class:`~airflow_provider_carbon.operators.plan.CarbonPlanOperator` and the region operators build on these through
``**kwargs`` and ``super().__init__``, as Airflow's ``DateTimeSensorAsync`` builds on ``DateTimeSensor``; each class
documents only its own arguments, and the ``:param`` lines of its bases are appended to its docstring when the class
is created, so ``help()`` and the docs list every argument with one source for each.

Nothing heavy is imported here: DAG files import these modules at every parse. The core (numpy) and the hooks
(requests, tenacity) are imported inside the methods that run in ``execute()``.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseHook, BaseOperator

from airflow_provider_carbon.core.fallback import DEFAULT_FALLBACK

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_carbon.core.decision import Decision, PlanSpec
    from airflow_provider_carbon.core.forecast import Forecast
    from airflow_provider_carbon.hooks.base import CarbonIntensityHook

__all__ = [
    "DECISION_XCOM_KEY",
    "DEFAULT_CONN_ID",
    "DEFAULT_MAX_DELAY",
    "CarbonBaseOperator",
    "CarbonPlanningBase",
    "parse_plan",
]

DECISION_XCOM_KEY = "carbon_decision"
DEFAULT_CONN_ID = "electricitymaps_default"
#: the wait a sensor or plan allows when the user gives no deadline at all
DEFAULT_MAX_DELAY = timedelta(hours=24)
#: seconds before its deadline a forecast request is given up, to plan and record in time
FETCH_MARGIN_S = 0.5
#: forecast_mode values of the planning operators
FORECAST_MODES = ("auto", "forecast", "history")
#: how much history a forecast from history asks for: the model's 56 days of weekday/weekend comparison (its 14
#: profile days and 28 fitting days lie within them), and one more
HISTORY_SPAN = timedelta(days=57)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


# -- parsing what users write (templated values arrive as strings) -------------------------------------------------


def as_datetime(value: Any, name: str) -> datetime | None:
    """A tz-aware datetime (or ISO 8601 string) as UTC; ``None`` for nothing."""
    if value in (None, ""):
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime or an ISO 8601 string, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name}={value.isoformat()} has no timezone; give a tz-aware time (e.g. with +02:00)")
    return value.astimezone(timezone.utc)


def as_timedelta(value: Any, name: str) -> timedelta | None:
    """A timedelta, seconds, or an ISO 8601 duration (``"PT2H"``); ``None`` for nothing."""
    if value in (None, ""):
        return None
    if isinstance(value, timedelta):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
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


def as_number(value: Any, name: str) -> float | None:
    if value in (None, ""):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None


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


# -- docstrings: each class documents its own arguments, its bases' are appended -----------------------------------

_PARAM = re.compile(r"^[ \t]*:param (\w+):")
#: class -> the ``:param`` entries its own docstring writes
_OWN_PARAM_DOCS: dict[type, dict[str, str]] = {}


def _param_blocks(doc: str) -> dict[str, str]:
    """``{name: block}`` for each ``:param name:`` entry of a docstring, continuation lines included."""
    blocks: dict[str, str] = {}
    name: str | None = None
    indent = 0
    for line in doc.splitlines():
        match = _PARAM.match(line)
        if match:
            name, indent = match.group(1), len(line) - len(line.lstrip())
            blocks[name] = line
        elif name is not None and line.strip() and len(line) - len(line.lstrip()) > indent:
            blocks[name] += "\n" + line
        else:
            name = None
    return blocks


def _own_param_docs(cls: type) -> dict[str, str]:
    """The ``:param`` entries a class of this package writes itself (never Airflow's own, which it documents)."""
    if not cls.__module__.startswith("airflow_provider_carbon."):
        return {}
    if cls not in _OWN_PARAM_DOCS:  # read before _complete_param_docs extends the docstring
        _OWN_PARAM_DOCS[cls] = _param_blocks(cls.__dict__.get("__doc__") or "")
    return _OWN_PARAM_DOCS[cls]


def _complete_param_docs(cls: type) -> None:
    """Append to ``cls.__doc__`` the ``:param`` entries of its carbon base classes that it does not document:
    after its own entries, else before its example, else at the end."""
    own_doc = cls.__dict__.get("__doc__")
    if not own_doc:
        return
    own = _own_param_docs(cls)
    missing: dict[str, str] = {}
    for base in cls.__mro__[1:]:
        for name, block in _own_param_docs(base).items():
            if name not in own and name not in missing:
                missing[name] = block
    if not missing:
        return
    added = "\n".join(missing.values()).splitlines()
    lines = own_doc.splitlines()
    starts = [i for i, line in enumerate(lines) if _PARAM.match(line)]
    if starts:
        at = starts[-1] + len(list(own.values())[-1].splitlines())
    else:
        example = next((i for i, line in enumerate(lines) if line.strip().startswith(".. code-block::")), None)
        if example is None:
            at, added = len(lines), ["", *added]
        else:  # the line before the example is blank: the entries go there, followed by a blank line of their own
            at, added = example, [*added, ""]
    lines[at:at] = added
    cls.__doc__ = "\n".join(lines)


class CarbonBaseOperator(BaseOperator):
    """Base of the carbon-aware operators: the carbon connection and the job's window, parsed once.

    :param carbon_conn_id: carbon connection; its type picks the service: ``electricitymaps``,
        ``carbon_aware_sdk``, ``watttime`` or ``uk_carbon_intensity`` (default ``electricitymaps_default``).
    :param expected_duration: how long the job runs: timedelta, seconds, or ISO 8601 ``"PT2H"`` (templated).
    :param latest_start: the job must start by then (tz-aware datetime or ISO string, templated).
    :param finish_by: the job must finish by then (tz-aware, templated); with ``latest_start`` the tighter one
        binds.
    :param max_delay: the job must start within this long after the run started (templated); when no deadline is
        given at all, 24 hours.
    """

    window_template_fields: ClassVar[Sequence[str]] = ("expected_duration", "latest_start", "finish_by", "max_delay")
    template_fields: Sequence[str] = window_template_fields
    #: the duration used when ``expected_duration`` is not given (``None``: it is required)
    default_duration: ClassVar[timedelta | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # only the provider's own classes: a user's subclass documents itself, and its docstring is left as written
        if cls.__module__.startswith("airflow_provider_carbon."):
            _complete_param_docs(cls)

    def __init__(
        self,
        *,
        carbon_conn_id: str = DEFAULT_CONN_ID,
        expected_duration: timedelta | float | str | None = None,
        latest_start: datetime | str | None = None,
        finish_by: datetime | str | None = None,
        max_delay: timedelta | float | str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        # Only stored here: nothing is parsed, fetched or validated against the outside world at DAG-parse time.
        self.carbon_conn_id = carbon_conn_id
        self.expected_duration = expected_duration
        self.latest_start = latest_start
        self.finish_by = finish_by
        self.max_delay = max_delay
        #: what the task actually planned for, set at execute time (the extra links read them)
        self.resolved_zone: str | None = None
        self.resolved_service: str | None = None

    # -- at execute time --------------------------------------------------------------------------------------

    def fallback_setting(self) -> tuple[str, str | None]:
        """The fallback policy as written and its timezone (``None``: the DAG's). Operators without a fallback
        argument start at once when the data fails."""
        return "now", "UTC"

    def _anchor(self, context: Context) -> datetime:
        """The run's start: fallback times and ``max_delay`` count from here, so re-executions agree."""
        dag_run = context.get("dag_run") if context else None
        start = getattr(dag_run, "start_date", None) if dag_run is not None else None
        return (start or utcnow()).astimezone(timezone.utc)

    def _timezone_name(self, given: str | None) -> str:
        if given:
            return str(given)
        dag = self.dag if self.has_dag() else None
        tz = getattr(dag, "timezone", None)
        return getattr(tz, "name", None) or (str(tz) if tz is not None else "UTC")

    def plan_spec(self, context: Context) -> PlanSpec:
        """The window and the fallback policy, resolved to instants for this run.

        :raises ValueError: for a duration, deadline, fallback or timezone that does not parse.
        """
        from airflow_provider_carbon.core.decision import PlanSpec
        from airflow_provider_carbon.core.fallback import FallbackPolicy, resolve_timezone

        duration = as_timedelta(self.expected_duration, "expected_duration") or self.default_duration
        if duration is None or duration <= timedelta(0):
            raise ValueError(f"expected_duration must be positive, got {self.expected_duration!r}")
        anchor = self._anchor(context)
        latest = as_datetime(self.latest_start, "latest_start")
        finish_by = as_datetime(self.finish_by, "finish_by")
        max_delay = as_timedelta(self.max_delay, "max_delay")
        candidates = [t for t in (latest, finish_by - duration if finish_by else None) if t is not None]
        if max_delay is not None or not candidates:
            candidates.append(anchor + (max_delay if max_delay is not None else DEFAULT_MAX_DELAY))
        fallback, tz_given = self.fallback_setting()
        tz = self._timezone_name(tz_given)
        resolve_timezone(tz)  # a typo in the timezone must fail loudly, not at 02:00
        return PlanSpec(
            duration=duration,
            latest_start=min(candidates),
            fallback=FallbackPolicy.parse(fallback),
            timezone=tz,
            anchor=anchor,
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
        # read the connection (token, extras) now, once: an unreadable one is an unusable hook, and threads that
        # share the hook (the region operator's) must not each race to load it
        hook.connection  # noqa: B018
        self.resolved_service = hook.service
        return hook

    def usable_hook(self, spec: PlanSpec | None = None) -> tuple[CarbonIntensityHook | None, BaseException | None]:
        """The carbon hook, or ``(None, error)`` when the connection is unusable (missing, of another type).

        The one rule for a broken connection: with ``spec``'s fallback policy ``fail`` the error is raised (a
        configuration error must fail loudly when the user asked for that); otherwise it is logged and the caller
        applies the fallback. Without ``spec`` (a re-check once a plan exists) it never raises.
        """
        try:
            return self.carbon_hook(), None
        except Exception as err:
            if spec is not None and spec.fallback.kind == "fail":
                raise
            self.log.error("carbon connection %r unusable: %s", self.carbon_conn_id, err)
            return None, err

    def record(self, context: Context, decision: Decision) -> dict[str, Any]:
        """Log the decision and push it to XCom under ``carbon_decision``; return it as JSON-ready dict."""
        from airflow_provider_carbon.core.glance import headline

        data = decision.to_dict()
        # the short line in the DAG's timezone first: a log view cuts long lines at the window's edge
        dag = context.get("dag") if context else None
        self.log.info("carbon plan: %s", headline(decision, getattr(dag, "timezone", None)))
        self.log.info("carbon decision: %s", decision.summary())
        ti = context.get("ti") if context else None
        if ti is not None:
            ti.xcom_push(key=DECISION_XCOM_KEY, value=data)
        self.resolved_zone = decision.zone or self.resolved_zone
        self.resolved_service = decision.source or self.resolved_service or self._connection_service()
        return data

    def _connection_service(self) -> str | None:
        """The service of the connection, from its type (a resumed task has no hook yet; only for the links)."""
        try:
            return BaseHook.get_connection(self.carbon_conn_id).conn_type
        except Exception:
            return None


class CarbonPlanningBase(CarbonBaseOperator):
    """Base of the operators that plan one job in one zone: the sensor and the plan operator.

    :param expected_duration: how long the job runs: timedelta, seconds, or ISO 8601 ``"PT2H"`` (templated). The
        window is chosen for this duration.
    :param zone: zone / region / location key (templated); default: the connection's.
    :param lat: latitude instead of a zone (templated).
    :param lon: longitude instead of a zone (templated).
    :param fallback: without a usable forecast: a local time like ``"02:00"`` (default), ``"now"`` or ``"fail"``
        (templated).
    :param fallback_timezone: IANA timezone of the fallback time (templated); default: the DAG's timezone.
    :param threshold: start as soon as the forecast intensity is at or below this, in gCO2eq/kWh (templated).
    :param min_saving_pct: start now unless waiting saves at least this many percent (templated).
    :param forecast_mode: where the plan's forecast comes from: ``"auto"`` (default) the service's forecast, and
        when the service refuses forecasts for the token's plan (``NotEntitledError``, e.g. Electricity Maps' free
        tier) a forecast made from its observed history (:func:`~airflow_provider_carbon.forecast_from_history`);
        ``"forecast"`` the service's forecast only; ``"history"`` always from history. The decision record says
        which (``forecast_source``) and how many days of history it used (``history_days``).
    """

    planning_template_fields: ClassVar[Sequence[str]] = (
        "zone",
        "lat",
        "lon",
        *CarbonBaseOperator.window_template_fields,
        "fallback",
        "fallback_timezone",
        "threshold",
        "min_saving_pct",
    )
    template_fields: Sequence[str] = planning_template_fields

    def __init__(
        self,
        *,
        expected_duration: timedelta | float | str,
        zone: str | None = None,
        lat: float | None = None,
        lon: float | None = None,
        fallback: str = DEFAULT_FALLBACK,
        fallback_timezone: str | None = None,
        threshold: float | None = None,
        min_saving_pct: float | None = None,
        forecast_mode: str = "auto",
        **kwargs: Any,
    ) -> None:
        super().__init__(expected_duration=expected_duration, **kwargs)
        if forecast_mode not in FORECAST_MODES:  # a constant, checked as the DAG is parsed: a typo fails at once
            raise ValueError(f"forecast_mode={forecast_mode!r}: use one of {', '.join(FORECAST_MODES)}")
        self.forecast_mode = forecast_mode
        self.zone = zone
        self.lat = lat
        self.lon = lon
        self.fallback = fallback
        self.fallback_timezone = fallback_timezone
        self.threshold = threshold
        self.min_saving_pct = min_saving_pct

    def fallback_setting(self) -> tuple[str, str | None]:
        return self.fallback, self.fallback_timezone

    def plan_spec(self, context: Context) -> PlanSpec:
        spec = super().plan_spec(context)
        return replace(
            spec,
            threshold=as_number(self.threshold, "threshold"),
            min_saving_pct=as_number(self.min_saving_pct, "min_saving_pct"),
            zone=str(self.zone) if self.zone not in (None, "") else None,
        )

    def with_hook_zone(self, spec: PlanSpec, hook: CarbonIntensityHook | None) -> PlanSpec:
        """``spec`` with the connection's default zone when the task names none, so that even a fallback record
        says which zone it was for."""
        if spec.zone is not None or hook is None or (self.lat is not None and self.lon is not None):
            return spec
        try:
            default = hook.default_zone
        except Exception:  # the fetch reports an unreadable connection; this is only for the record
            return spec
        return replace(spec, zone=str(default)) if default else spec

    def fetch_forecast(
        self, hook: CarbonIntensityHook, spec: PlanSpec, now: datetime, *, until: datetime | None = None
    ) -> tuple[Forecast | None, BaseException | None]:
        """The forecast for the wait ahead, or the error that stands in for it (never raises).

        The call is given up at ``until`` (default: the deadline) less a moment to plan and record: with the hook's
        default timeouts and retries a dead or slow API could otherwise hold the task past the latest start. The
        hook's per-call ``deadline`` bounds every attempt, back-off wait, connect and body, so no thread is left
        behind and the hook is not changed.
        """
        from airflow_provider_carbon.exceptions import NotEntitledError, ServiceUnavailableError

        until = min(until or spec.latest_start, spec.latest_start)
        budget = (until - now).total_seconds()
        # keep a moment for planning and the XCom push, so that a release at the deadline is not a little late
        budget -= min(FETCH_MARGIN_S, budget / 4)
        if budget <= 0:
            return None, ServiceUnavailableError(
                f"no time left to ask before {until.isoformat()}", service=hook.service, zone=spec.zone
            )
        deadline = now + timedelta(seconds=budget)
        if self.forecast_mode == "history":
            return self.forecast_from_history(hook, spec, now, deadline)
        try:
            forecast = hook.get_forecast(
                self.zone, lat=self.lat, lon=self.lon, **spec.forecast_request(now), deadline=deadline
            )
        except Exception as err:  # carbon data must never break the pipeline: the fallback policy decides
            self.log.warning("carbon forecast unavailable (%s): %s", type(err).__name__, err)
            if self.forecast_mode == "auto" and isinstance(err, NotEntitledError):
                self.log.info("the token's plan has no forecasts: planning from the service's observed history")
                forecast, _ = self.forecast_from_history(hook, spec, utcnow(), deadline)
                # without history either, the record keeps why there was no forecast in the first place
                return (forecast, None) if forecast is not None else (None, err)
            return None, err
        return forecast, None

    def forecast_from_history(
        self, hook: CarbonIntensityHook, spec: PlanSpec, now: datetime, deadline: datetime
    ) -> tuple[Forecast | None, BaseException | None]:
        """A forecast made from the last weeks the service observed (cached), from the current hour to the deadline
        plus the job; or the error that stands in for it (never raises)."""
        from airflow_provider_carbon.core.history import forecast_from_history

        hour = now.replace(minute=0, second=0, microsecond=0)
        try:
            history = hook.get_history(
                self.zone,
                lat=self.lat,
                lon=self.lon,
                start=hour - HISTORY_SPAN,
                end=hour,
                deadline=deadline,
                use_cache=True,
            )
            horizon = spec.forecast_request(now)["horizon"] + (now - hour)
            forecast = forecast_from_history(history, start=hour, horizon=horizon)
        except Exception as err:  # as for a forecast: no history is a fallback, never a broken pipeline
            self.log.warning("carbon forecast from history unavailable (%s): %s", type(err).__name__, err)
            return None, err
        self.log.info(
            "carbon forecast from history: %s days of %s observations (%s), %d values",
            forecast.model["days"],
            hook.service,
            forecast.model["name"],
            len(forecast),
        )
        return forecast, None

    def decide(
        self,
        context: Context,
        spec: PlanSpec,
        *,
        hook: CarbonIntensityHook | None = None,
        hook_error: BaseException | None = None,
    ) -> Decision:
        """Plan ``spec`` now: fetch the forecast through ``hook`` (or the connection's) and choose the start, or
        apply the fallback policy when the connection or the data is unusable."""
        from airflow_provider_carbon.core.decision import FallbackReason, plan

        if hook is None and hook_error is None:
            hook, hook_error = self.usable_hook(spec)
        if hook is None:
            reason = FallbackReason.CONNECTION
            return plan(spec, None, now=utcnow(), error=hook_error, fallback_reason=reason)
        spec = self.with_hook_zone(spec, hook)
        forecast, error = self.fetch_forecast(hook, spec, utcnow())
        # plan from the time the answer came, not the time the question went out
        return plan(spec, forecast, now=utcnow(), error=error)
