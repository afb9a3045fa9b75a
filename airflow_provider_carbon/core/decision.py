"""Planning a start time, and the one record of what was decided and why.

:func:`plan` is the single place where a forecast (or the lack of one) becomes a start time. The sensor, its trigger,
the plan-only operator and the backtest all call it, so what a backtest promises is what runs. It is pure: it gets
"now" and the forecast as arguments and never does I/O.

:class:`Decision` is the record pushed to XCom (``carbon_decision``, and the sensor's ``return_value``): the
provider's main output. Its fields are documented one by one below, its reasons are the enums
:class:`StartReason`, :class:`FallbackReason` and :class:`ReleaseReason` (whose values are the strings stored in
XCom), and it carries a ``schema_version``. :meth:`Decision.from_dict` still reads records written before the
version existed (schema 1).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import Any

from airflow_provider_carbon import exceptions
from airflow_provider_carbon.core.fallback import FallbackPolicy
from airflow_provider_carbon.core.forecast import Forecast
from airflow_provider_carbon.core.windows import Window, find_best_window, rank_windows
from airflow_provider_carbon.exceptions import (
    AuthenticationError,
    BadPayloadError,
    InvalidRequestError,
    NotEntitledError,
    RateLimitedError,
    ServiceUnavailableError,
    WindowError,
)

__all__ = [
    "DECISION_SCHEMA_VERSION",
    "Decision",
    "FallbackReason",
    "PlanSpec",
    "ReleaseReason",
    "StartReason",
    "over_budget",
    "plan",
    "revise",
]

#: version of the :class:`Decision` shape; 1 is the unversioned record of release 0.1.0
DECISION_SCHEMA_VERSION = 2


class StartReason(str, Enum):
    """Why the planned start was chosen (field ``reason``)."""

    #: the start of the window with the lowest mean forecast intensity before the deadline
    OPTIMUM = "optimum"
    #: the first start at or below the ``threshold`` intensity, which came before the optimum
    THRESHOLD = "threshold"
    #: start at once: waiting would have saved less than ``min_saving_pct``
    MIN_SAVING = "min_saving"
    #: no usable forecast: the fallback policy chose the start (see ``fallback_reason``)
    FALLBACK = "fallback"
    #: the deadline had already passed when deciding: start at once
    DEADLINE = "deadline"
    #: the carbon budget is used up and its policy (``skip`` or ``fail``) stops the job: it does not start
    BUDGET = "budget"


class FallbackReason(str, Enum):
    """Why the fallback policy applied (field ``fallback_reason``); ``fallback_error`` has the error's text."""

    #: the Airflow connection is missing, not a carbon connection, or cannot be read
    CONNECTION = "connection"
    #: the service refused the credentials
    AUTHENTICATION = "authentication"
    #: the token's plan does not cover this zone, endpoint or signal
    NOT_ENTITLED = "not_entitled"
    #: the service said to slow down (HTTP 429) beyond the retry budget
    RATE_LIMITED = "rate_limited"
    #: the service was down, answered 5xx, or did not answer in the time left
    UNAVAILABLE = "unavailable"
    #: the service refused the request itself (unknown zone, bad parameters)
    INVALID_REQUEST = "invalid_request"
    #: the service answered, but with data that cannot be trusted (garbled, zeros, gaps, too short)
    BAD_PAYLOAD = "bad_payload"
    #: a valid forecast that does not cover a window of the job's length before the deadline
    FORECAST_UNUSABLE = "forecast_unusable"
    #: no forecast and no error to blame (nothing was asked)
    NO_FORECAST = "no_forecast"
    #: any other error
    ERROR = "error"

    @classmethod
    def of(cls, error: BaseException | None) -> FallbackReason:
        """The reason that stands for ``error`` (most specific class first)."""
        if error is None:
            return cls.NO_FORECAST
        for kind, reason in _FALLBACK_REASONS:
            if isinstance(error, kind):
                return reason
        return cls.ERROR


_FALLBACK_REASONS: tuple[tuple[type[BaseException], FallbackReason], ...] = (
    (AuthenticationError, FallbackReason.AUTHENTICATION),
    (NotEntitledError, FallbackReason.NOT_ENTITLED),
    (RateLimitedError, FallbackReason.RATE_LIMITED),
    (ServiceUnavailableError, FallbackReason.UNAVAILABLE),
    (InvalidRequestError, FallbackReason.INVALID_REQUEST),
    (BadPayloadError, FallbackReason.BAD_PAYLOAD),
    (WindowError, FallbackReason.FORECAST_UNUSABLE),
)


class ReleaseReason(str, Enum):
    """Why the wait ended (field ``release_reason``)."""

    #: the planned start (optimum, threshold or min-saving start) arrived
    PLANNED_START = "planned_start"
    #: the fallback start arrived (the plan had no usable forecast)
    FALLBACK_TIME = "fallback_time"
    #: the deadline arrived first (or, in poke mode, the next poke would have been too late)
    DEADLINE = "deadline"


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(timezone.utc).isoformat() if moment is not None else None


def _dt(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


@dataclass(frozen=True)
class PlanSpec:
    """What the user asked for, resolved to instants.

    :param duration: how long the job runs.
    :param latest_start: the latest allowed start (from ``latest_start``, ``finish_by - duration`` or
        ``anchor + max_delay``, whichever is tightest): the release is never later than this.
    :param fallback: what to do without a usable forecast.
    :param timezone: IANA name of the fallback time's timezone.
    :param anchor: the run's start: the fallback time is the next one after it.
    :param threshold: start as soon as the forecast intensity is at or below this (gCO2eq/kWh).
    :param min_saving_pct: do not wait for a saving smaller than this.
    :param zone: the zone asked for, if known before any forecast (recorded even when none arrives).
    """

    duration: timedelta
    latest_start: datetime
    fallback: FallbackPolicy
    timezone: str
    anchor: datetime
    threshold: float | None = None
    min_saving_pct: float | None = None
    zone: str | None = None

    def forecast_request(self, now: datetime) -> dict[str, timedelta]:
        """What to ask a hook for at ``now``: a horizon covering every start up to the deadline plus the job (the
        hook caps it at what its service offers), and at least the job itself, or the forecast is of no use."""
        horizon = self.latest_start - now + self.duration + timedelta(hours=1)
        return {"horizon": max(horizon, self.duration), "min_horizon": self.duration}

    def to_dict(self) -> dict[str, Any]:
        return {
            "duration_s": self.duration.total_seconds(),
            "latest_start": _iso(self.latest_start),
            "fallback": str(self.fallback),
            "timezone": self.timezone,
            "anchor": _iso(self.anchor),
            "threshold": self.threshold,
            "min_saving_pct": self.min_saving_pct,
            "zone": self.zone,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PlanSpec:
        return cls(
            duration=timedelta(seconds=data["duration_s"]),
            latest_start=datetime.fromisoformat(data["latest_start"]),
            fallback=FallbackPolicy.parse(data["fallback"]),
            timezone=data["timezone"],
            anchor=datetime.fromisoformat(data["anchor"]),
            threshold=data.get("threshold"),
            min_saving_pct=data.get("min_saving_pct"),
            zone=data.get("zone"),
        )


def _doc(text: str) -> Any:
    """Field metadata: the field's documentation, so the README table and ``help()`` come from one place."""
    return {"doc": text}


@dataclass(frozen=True)
class Decision:
    """When a job should start and why: the record in XCom ``carbon_decision`` (and the sensor's ``return_value``).

    Times are ISO 8601 strings in UTC in XCom (``datetime`` here); intensities are in ``unit`` (gCO2eq/kWh for
    every wrapped service) and are the mean over the job's duration unless the field says otherwise. Read it
    downstream with ``wait.output["planned_start"]`` or ``ti.xcom_pull(task_ids="wait")["expected_saving_pct"]``;
    :meth:`from_dict` turns it back into this class (and reads schema-1 records too). ``Decision.field_docs()``
    lists every field with its meaning.
    """

    planned_start: datetime = field(metadata=_doc("when the job should start (UTC)"))
    planned_end: datetime = field(metadata=_doc("``planned_start`` + the expected duration (UTC)"))
    latest_start: datetime = field(
        metadata=_doc("the latest allowed start, from ``latest_start``/``finish_by``/``max_delay`` (UTC)")
    )
    decided_at: datetime = field(metadata=_doc("when this plan was made (UTC)"))
    reason: StartReason = field(
        metadata=_doc(
            "why this start: ``optimum``, ``threshold``, ``min_saving``, ``fallback``, ``deadline``, or ``budget`` "
            "(over the carbon budget: the job does not start)"
        )
    )
    zone: str | None = field(default=None, metadata=_doc("zone / region / location the plan is for"))
    source: str | None = field(default=None, metadata=_doc("service of the forecast (``electricitymaps``, ...)"))
    signal: str | None = field(default=None, metadata=_doc("``average`` or ``marginal`` emissions"))
    unit: str | None = field(default=None, metadata=_doc("unit of every intensity here (``gCO2eq/kWh``)"))
    expected_intensity: float | None = field(
        default=None, metadata=_doc("forecast mean intensity over [planned_start, planned_end)")
    )
    intensity_if_started_at_decision: float | None = field(
        default=None,
        metadata=_doc(
            "forecast mean intensity had the job started at ``decided_at`` (the baseline of the saving; for a "
            "midnight DAG, about midnight)"
        ),
    )
    expected_saving_pct: float | None = field(
        default=None,
        metadata=_doc("% below ``intensity_if_started_at_decision`` that the planned window is expected to emit"),
    )
    forecast_intensity_at_start: float | None = field(
        default=None,
        metadata=_doc("forecast intensity of the period containing ``planned_start`` (compared at the start)"),
    )
    intensity_if_fallback: float | None = field(
        default=None,
        metadata=_doc("forecast mean intensity had the job started at the fallback time (e.g. 02:00 local)"),
    )
    forecast_generated_at: datetime | None = field(
        default=None, metadata=_doc("when the service made the forecast, if it says (UTC)")
    )
    used_fallback: bool = field(default=False, metadata=_doc("``true`` when no usable forecast chose the start"))
    fallback_reason: FallbackReason | None = field(
        default=None,
        metadata=_doc(
            "why the fallback applied: ``connection``, ``authentication``, ``not_entitled``, ``rate_limited``, "
            "``unavailable``, ``invalid_request``, ``bad_payload``, ``forecast_unusable``, ``no_forecast`` or ``error``"
        ),
    )
    fallback_error: str | None = field(
        default=None, metadata=_doc("the error behind ``fallback_reason``, as ``Type: message`` (no credentials)")
    )
    fallback: str | None = field(default=None, metadata=_doc("the fallback policy: ``02:00``, ``now`` or ``fail``"))
    fallback_start: datetime | None = field(
        default=None,
        metadata=_doc("when the fallback policy would start the job (UTC; the saving's second baseline)"),
    )
    timezone: str | None = field(default=None, metadata=_doc("timezone of the fallback time (IANA name)"))
    # after the fallback's fields: the UI's XCom view shows about 19 lines, used_fallback must be among them
    forecast_source: str | None = field(
        default=None,
        metadata=_doc(
            "what the plan's forecast was: ``service`` (the service's own) or ``history-model`` "
            "(``forecast_from_history`` on the service's observed history, e.g. a plan without forecasts)"
        ),
    )
    history_days: int | None = field(
        default=None, metadata=_doc("with ``history-model``: how many days of history the forecast averaged")
    )
    alternatives: tuple[dict[str, Any], ...] = field(
        default=(), metadata=_doc("the best non-overlapping windows: ``start``, ``mean_intensity``, ``saving_pct``")
    )
    replans: tuple[dict[str, Any], ...] = field(
        default=(),
        metadata=_doc(
            "every change of plan while waiting: ``at``, ``cause``, ``previous_start``, ``new_start``, "
            "``expected_intensity``, ``used_fallback``"
        ),
    )
    released_at: datetime | None = field(default=None, metadata=_doc("when the wait ended (UTC); plans: none"))
    release_reason: ReleaseReason | None = field(
        default=None, metadata=_doc("why the wait ended: ``planned_start``, ``fallback_time`` or ``deadline``")
    )
    observed_intensity_at_start: float | None = field(
        default=None, metadata=_doc("the service's current intensity when the planned start arrived, if read")
    )
    budget: dict[str, Any] | None = field(
        default=None,
        metadata=_doc(
            "the carbon budget check before the wait (none without a budget): ``scope``, ``period``, "
            "``period_start``, ``period_end``, ``timezone``, ``limit_kg``, ``used_kg``, ``remaining_kg``, "
            "``policy``, ``outcome`` (``within``, ``warned``, ``skipped``, ``failed`` or ``unknown``), ``signal``, "
            "``other_signal_kg``, ``jobs``, ``error``"
        ),
    )
    schema_version: int = field(default=DECISION_SCHEMA_VERSION, metadata=_doc("version of this record's shape"))
    # last: the one long field, so that the XCom view shows everything else first
    forecast: dict[str, Any] | None = field(
        default=None,
        metadata=_doc(
            "the part of the forecast the plan used (from the run's start to the deadline plus the job), compact: "
            "``start``, ``end``, ``step_s`` (or ``offsets_s``), ``values``; ``Forecast.from_compact`` reads it"
        ),
    )

    def __post_init__(self) -> None:
        # accept the enums' string values (a record read back from XCom, a user building one by hand)
        object.__setattr__(self, "reason", StartReason(self.reason))
        if self.fallback_reason is not None:
            object.__setattr__(self, "fallback_reason", FallbackReason(self.fallback_reason))
        if self.release_reason is not None:
            object.__setattr__(self, "release_reason", ReleaseReason(self.release_reason))

    @classmethod
    def field_docs(cls) -> dict[str, str]:
        """Every field of the record and what it holds, in order."""
        return {f.name: f.metadata["doc"] for f in fields(cls)}

    def to_dict(self) -> dict[str, Any]:
        """The record as plain JSON types (what XCom stores)."""
        data = asdict(self)
        for key, value in data.items():
            if isinstance(value, datetime):
                data[key] = _iso(value)
            elif isinstance(value, Enum):
                data[key] = value.value
        data["alternatives"] = list(self.alternatives)
        data["replans"] = list(self.replans)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Decision:
        """Read a record from XCom, of this schema or of schema 1 (no ``schema_version``); unknown keys (from a
        newer release) are ignored."""
        values = dict(data)
        if "schema_version" not in values:
            values = _from_schema_1(values)
        for key in (
            "planned_start",
            "planned_end",
            "latest_start",
            "decided_at",
            "forecast_generated_at",
            "fallback_start",
            "released_at",
        ):
            values[key] = _dt(values.get(key))
        values["alternatives"] = tuple(values.get("alternatives") or ())
        values["replans"] = tuple(values.get("replans") or ())
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    def replanned(self, new: Decision, cause: str, at: datetime) -> Decision:
        """``new`` as the current plan, with this plan's history and one more entry saying why it changed."""
        entry = {
            "at": _iso(at),
            "cause": cause,
            "previous_start": _iso(self.planned_start),
            "new_start": _iso(new.planned_start),
            "expected_intensity": new.expected_intensity,
            "used_fallback": new.used_fallback,
        }
        return replace(new, replans=(*self.replans, entry))

    def moved_to(self, start: datetime, cause: str) -> Decision:
        """This plan with its start moved (e.g. clamped to a deadline), recorded as a re-plan."""
        duration = self.planned_end - self.planned_start
        return self.replanned(replace(self, planned_start=start, planned_end=start + duration), cause, start)

    def released(self, at: datetime, reason: ReleaseReason | None = None, observed: float | None = None) -> Decision:
        """This plan as released at ``at``; the reason defaults to what the plan itself implies."""
        return replace(
            self, released_at=at, release_reason=reason or self.due_reason(), observed_intensity_at_start=observed
        )

    def due_reason(self) -> ReleaseReason:
        """Why a wait for this plan ends when its planned start arrives."""
        if self.used_fallback:
            return ReleaseReason.FALLBACK_TIME
        if self.reason is StartReason.DEADLINE:
            return ReleaseReason.DEADLINE
        return ReleaseReason.PLANNED_START

    def summary(self) -> str:
        """One line for the task log."""
        start = self.planned_start.isoformat()
        if self.reason is StartReason.BUDGET:
            budget = self.budget or {}
            used, limit = budget.get("used_kg") or 0.0, budget.get("limit_kg") or 0.0
            return (
                f"over the carbon budget of {budget.get('scope')} ({used:.3g} of {limit:g} kg this "
                f"{budget.get('period')}): {budget.get('outcome')}, the job does not start"
            )
        if self.used_fallback:
            why = self.fallback_reason.value if self.fallback_reason else "no forecast"
            detail = f" ({self.fallback_error})" if self.fallback_error else ""
            return f"fallback ({self.fallback}): start at {start}; why: {why}{detail}"
        saving = (
            f", {self.expected_saving_pct:.1f} % below starting at the decision"
            if self.expected_saving_pct is not None
            else ""
        )
        intensity = f" at {self.expected_intensity:.0f} {self.unit}" if self.expected_intensity is not None else ""
        return f"{self.reason.value}: start at {start}{intensity}{saving} (zone {self.zone}, {self.source})"


_V1_RENAMED = {
    "intensity_if_now": "intensity_if_started_at_decision",
    "intensity_at_start": "forecast_intensity_at_start",
}


def _from_schema_1(values: dict[str, Any]) -> dict[str, Any]:
    """A record of release 0.1.0 in this schema: two fields renamed, free-text reasons mapped onto the enums."""
    out = {_V1_RENAMED.get(k, k): v for k, v in values.items()}
    text = out.get("fallback_reason")
    if text is not None:
        # schema 1 stored "ErrorType: message" (or "no forecast"); the type name says which reason it was
        type_name = str(text).split(":", 1)[0].strip()
        if text == "no forecast":
            out["fallback_error"], out["fallback_reason"] = None, FallbackReason.NO_FORECAST.value
        else:
            out["fallback_error"] = text
            named = getattr(exceptions, type_name, None)  # an error class of ours, or something else
            out["fallback_reason"] = next(
                (
                    reason.value
                    for kind, reason in _FALLBACK_REASONS
                    if isinstance(named, type) and issubclass(named, kind)
                ),
                FallbackReason.ERROR.value,
            )
    release = out.get("release_reason")
    if release is not None:
        # 0.1.0 wrote several texts for one case ("the planned start is now", "planned start" for a fallback plan
        # too): what the plan was says more than the text, as in Decision.due_reason()
        word = str(release).lower()
        if out.get("used_fallback") or word.startswith("fallback"):
            out["release_reason"] = ReleaseReason.FALLBACK_TIME.value
        elif out.get("reason") == StartReason.DEADLINE.value or "deadline" in word:
            out["release_reason"] = ReleaseReason.DEADLINE.value
        else:
            out["release_reason"] = ReleaseReason.PLANNED_START.value
    out["schema_version"] = DECISION_SCHEMA_VERSION  # the shape is now this schema's
    return out


def plan(
    spec: PlanSpec,
    forecast: Forecast | None,
    *,
    now: datetime,
    error: BaseException | None = None,
    fallback_reason: FallbackReason | None = None,
) -> Decision:
    """Choose the start for ``spec`` given ``forecast`` (``None`` when fetching it failed with ``error``).

    ``fallback_reason`` overrides the reason derived from ``error`` (e.g. :attr:`FallbackReason.CONNECTION`, which
    no exception type tells apart).

    Order of precedence: a passed deadline starts now; no usable forecast applies the fallback policy (``fail``
    re-raises ``error``); otherwise the optimal window from ``now`` to the latest start, moved earlier to the first
    start at or below ``threshold`` if that comes first, or to now when the saving is under ``min_saving_pct``.
    """
    duration = spec.duration
    now = now.astimezone(timezone.utc)
    common = {
        "decided_at": now,
        "latest_start": spec.latest_start,
        "fallback": str(spec.fallback),
        "fallback_start": spec.fallback.start(spec.anchor, spec.timezone, spec.latest_start),
        "timezone": spec.timezone,
    }
    if now >= spec.latest_start:
        # start now; if there is no forecast either, the record still says why (a failed or too slow request)
        failed = forecast is None and error is not None
        return Decision(
            planned_start=now,
            planned_end=now + duration,
            reason=StartReason.DEADLINE,
            used_fallback=failed,
            **(_fallback_fields(error, fallback_reason) if failed else {}),
            **common,
            **_forecast_meta(spec, forecast),
        )
    if forecast is not None:
        earliest = max(now, forecast.start)
        try:
            best = find_best_window(forecast, duration, earliest=earliest, latest_start=spec.latest_start)
        except WindowError as err:
            error = err
        else:
            return _from_forecast(spec, forecast, best, earliest, common)
    return _fallback(spec, now, error, fallback_reason, common, forecast)


def over_budget(spec: PlanSpec, budget: dict[str, Any], *, now: datetime) -> Decision:
    """The record of a job that the carbon budget stops before it waits (policy ``skip`` or ``fail``): no forecast
    asked, no start planned; ``planned_start`` is ``now``, when it would otherwise have begun to wait."""
    now = now.astimezone(timezone.utc)
    return Decision(
        planned_start=now,
        planned_end=now + spec.duration,
        latest_start=spec.latest_start,
        decided_at=now,
        reason=StartReason.BUDGET,
        zone=spec.zone,
        fallback=str(spec.fallback),
        timezone=spec.timezone,
        budget=dict(budget),
    )


def revise(spec: PlanSpec, current: Decision, forecast: Forecast | None, *, now: datetime) -> Decision:
    """The plan to follow after a re-check at ``now`` while waiting: ``current``, or a new plan recorded as a
    re-plan when ``forecast`` moves the optimum (or is usable again after a fallback).

    Never raises: once a plan exists, a failed or unusable re-check keeps it, whatever the fallback policy (``fail``
    applies only before the first plan), and a fallback never replaces a plan.
    """
    if forecast is None:
        return current
    try:
        new = plan(spec, forecast, now=now)
    except WindowError:  # unusable forecast under the "fail" policy: keep waiting for the plan we have
        return current
    if new.used_fallback:
        return current
    if current.used_fallback:
        cause = "re-check: forecast available again"
    elif new.planned_start != current.planned_start:
        cause = "re-check: the optimum moved"
    else:
        return current
    return current.replanned(new, cause, now)


def _fallback_fields(error: BaseException | None, reason: FallbackReason | None) -> dict[str, Any]:
    """What the decision record says about the error that stood in for a forecast."""
    return {
        "fallback_reason": reason or FallbackReason.of(error),
        "fallback_error": f"{type(error).__name__}: {error}" if error is not None else None,
    }


def _forecast_meta(spec: PlanSpec, forecast: Forecast | None) -> dict[str, Any]:
    # the zone asked for stays in the record when no forecast came (the link and the UI need it)
    if forecast is None:
        return {"zone": spec.zone}
    # a forecast made from history says so, and names the service the history came from as the record's source
    model = getattr(forecast, "model", None) or {}
    return {
        "forecast": _used_part(spec, forecast),
        "zone": forecast.zone or spec.zone,
        "source": model.get("history_source", forecast.source),
        "signal": forecast.signal.value,
        "unit": forecast.unit,
        "forecast_generated_at": forecast.generated_at,
        "forecast_source": forecast.source if model else "service",
        "history_days": model.get("days"),
    }


def _used_part(spec: PlanSpec, forecast: Forecast) -> dict[str, Any] | None:
    """The forecast from the run's start to the deadline plus the job, compact, for the record (the Carbon view draws
    it; accounting falls back to it when history is unavailable)."""
    try:
        return forecast.window(spec.anchor, max(spec.latest_start + spec.duration, spec.anchor)).to_compact()
    except ValueError:  # nothing of it overlaps: the record needs no copy
        return None


def _from_forecast(
    spec: PlanSpec, forecast: Forecast, best: Window, earliest: datetime, common: dict[str, Any]
) -> Decision:
    start, reason, mean = best.start, StartReason.OPTIMUM, best.mean_intensity
    if spec.threshold is not None:
        first = _first_at_or_below(forecast, spec.threshold, earliest, best.latest_start)
        if first is not None and first < start:
            start, reason, mean = first, StartReason.THRESHOLD, forecast.mean(first, first + spec.duration)
    if reason == StartReason.OPTIMUM and spec.min_saving_pct is not None and best.saving_pct < spec.min_saving_pct:
        start, reason, mean = earliest, StartReason.MIN_SAVING, best.baseline_intensity
    baseline = best.baseline_intensity
    alternatives = rank_windows(forecast, spec.duration, k=3, earliest=earliest, latest_start=spec.latest_start)
    # what the fixed fallback time would have emitted: the saving carbon-awareness adds over a plain 02:00 cron
    at_fallback = None
    fallback_start = spec.fallback.start(spec.anchor, spec.timezone, spec.latest_start)
    if fallback_start is not None:
        fallback_start = max(fallback_start, earliest)
        if forecast.start <= fallback_start and fallback_start + spec.duration <= forecast.end:
            at_fallback = forecast.mean(fallback_start, fallback_start + spec.duration)
    return Decision(
        planned_start=start,
        planned_end=start + spec.duration,
        reason=reason,
        expected_intensity=mean,
        intensity_if_started_at_decision=baseline,
        expected_saving_pct=100.0 * (baseline - mean) / baseline if baseline > 0 else 0.0,
        forecast_intensity_at_start=forecast.value_at(start),
        intensity_if_fallback=at_fallback,
        alternatives=tuple(
            {"start": _iso(w.start), "mean_intensity": w.mean_intensity, "saving_pct": w.saving_pct}
            for w in alternatives
        ),
        **common,
        **_forecast_meta(spec, forecast),
    )


def _first_at_or_below(forecast: Forecast, threshold: float, earliest: datetime, last: datetime) -> datetime | None:
    if forecast.value_at(earliest) <= threshold:
        return earliest
    for moment, value in forecast.to_points():
        if earliest < moment <= last and value <= threshold:
            return moment
    return None


def _fallback(
    spec: PlanSpec,
    now: datetime,
    error: BaseException | None,
    reason: FallbackReason | None,
    common: dict[str, Any],
    forecast: Forecast | None,
) -> Decision:
    if spec.fallback.kind == "fail":
        if error is not None:
            raise error
        raise WindowError("no usable forecast and the fallback policy is 'fail'")
    start = spec.fallback.start(spec.anchor, spec.timezone, spec.latest_start)
    assert start is not None
    start = max(start, now)  # the run started long ago and its fallback time has passed: now
    return Decision(
        planned_start=start,
        planned_end=start + spec.duration,
        reason=StartReason.FALLBACK,
        used_fallback=True,
        **_fallback_fields(error, reason),
        **common,
        **_forecast_meta(spec, forecast),
    )
