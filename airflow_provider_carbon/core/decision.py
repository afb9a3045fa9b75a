"""Planning a start time, and the one record of what was decided and why.

:func:`plan` is the single place where a forecast (or the lack of one) becomes a start time. The sensor, its trigger,
the plan-only operator and the backtest all call it, so what a backtest promises is what runs. It is pure: it gets
"now" and the forecast as arguments and never does I/O.

:class:`Decision` is the JSON-serialisable record pushed to XCom: planned start and end, zone, source, signal, unit,
expected intensity, intensity if started now, expected saving, forecast generated-at, whether the fallback was
used and why, every re-plan with its cause, and when and why the wait ended.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow_provider_carbon.core.fallback import FallbackPolicy
from airflow_provider_carbon.core.forecast import Forecast
from airflow_provider_carbon.core.windows import Window, find_best_window, rank_windows
from airflow_provider_carbon.exceptions import WindowError

__all__ = ["Decision", "PlanSpec", "plan", "revise"]

#: why a start was chosen
REASON_OPTIMUM = "optimum"
REASON_THRESHOLD = "threshold"
REASON_MIN_SAVING = "min_saving"
REASON_FALLBACK = "fallback"
REASON_DEADLINE = "deadline"
#: the longest forecast any wrapped service offers (Electricity Maps and WattTime: 72 h)
MAX_FORECAST_HORIZON = timedelta(hours=72)


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
    """

    duration: timedelta
    latest_start: datetime
    fallback: FallbackPolicy
    timezone: str
    anchor: datetime
    threshold: float | None = None
    min_saving_pct: float | None = None

    def forecast_request(self, now: datetime) -> dict[str, timedelta]:
        """What to ask a hook for at ``now``: enough horizon to cover every start up to the deadline (capped at the
        72 h services offer), and at least the job itself, or the forecast is of no use."""
        horizon = min(self.latest_start - now + self.duration + timedelta(hours=1), MAX_FORECAST_HORIZON)
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
        )


@dataclass(frozen=True)
class Decision:
    """When a job should start and why; JSON-serialisable through :meth:`to_dict`."""

    planned_start: datetime
    planned_end: datetime
    latest_start: datetime
    decided_at: datetime
    reason: str
    zone: str | None = None
    source: str | None = None
    signal: str | None = None
    unit: str | None = None
    expected_intensity: float | None = None
    intensity_if_now: float | None = None
    expected_saving_pct: float | None = None
    intensity_at_start: float | None = None
    intensity_if_fallback: float | None = None
    forecast_generated_at: datetime | None = None
    used_fallback: bool = False
    fallback_reason: str | None = None
    fallback: str | None = None
    timezone: str | None = None
    alternatives: tuple[dict[str, Any], ...] = ()
    replans: tuple[dict[str, Any], ...] = ()
    released_at: datetime | None = None
    release_reason: str | None = None
    observed_intensity_at_start: float | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key, value in data.items():
            if isinstance(value, datetime):
                data[key] = _iso(value)
        data["alternatives"] = list(self.alternatives)
        data["replans"] = list(self.replans)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Decision:
        values = dict(data)
        for key in (
            "planned_start",
            "planned_end",
            "latest_start",
            "decided_at",
            "forecast_generated_at",
            "released_at",
        ):
            values[key] = _dt(values.get(key))
        values["alternatives"] = tuple(values.get("alternatives") or ())
        values["replans"] = tuple(values.get("replans") or ())
        known = set(cls.__dataclass_fields__)
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
        return self.replanned(
            replace(self, planned_start=start, planned_end=start + (self.planned_end - self.planned_start)),
            cause,
            start,
        )

    def released(self, at: datetime, reason: str, observed: float | None = None) -> Decision:
        return replace(self, released_at=at, release_reason=reason, observed_intensity_at_start=observed)

    def summary(self) -> str:
        """One line for the task log."""
        start = self.planned_start.isoformat()
        if self.used_fallback:
            return f"fallback ({self.fallback}): start at {start}; why: {self.fallback_reason}"
        saving = (
            f", {self.expected_saving_pct:.1f} % below starting now" if self.expected_saving_pct is not None else ""
        )
        intensity = f" at {self.expected_intensity:.0f} {self.unit}" if self.expected_intensity is not None else ""
        return f"{self.reason}: start at {start}{intensity}{saving} (zone {self.zone}, {self.source})"


def plan(
    spec: PlanSpec,
    forecast: Forecast | None,
    *,
    now: datetime,
    error: BaseException | None = None,
) -> Decision:
    """Choose the start for ``spec`` given ``forecast`` (``None`` when fetching it failed with ``error``).

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
        "timezone": spec.timezone,
    }
    if now >= spec.latest_start:
        # start now; if there is no forecast either, the record still says why (a failed or too slow request)
        failed = forecast is None and error is not None
        return Decision(
            planned_start=now,
            planned_end=now + duration,
            reason=REASON_DEADLINE,
            used_fallback=failed,
            fallback_reason=_why(error) if failed else None,
            **common,
            **_forecast_meta(forecast),
        )
    if forecast is not None:
        earliest = max(now, forecast.start)
        try:
            best = find_best_window(forecast, duration, earliest=earliest, latest_start=spec.latest_start)
        except WindowError as err:
            error = err
        else:
            return _from_forecast(spec, forecast, best, earliest, common)
    return _fallback(spec, now, error, common, forecast)


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


def _why(error: BaseException) -> str:
    """What the decision record says about the error that stood in for a forecast."""
    return f"{type(error).__name__}: {error}"


def _forecast_meta(forecast: Forecast | None) -> dict[str, Any]:
    if forecast is None:
        return {}
    return {
        "zone": forecast.zone,
        "source": forecast.source,
        "signal": forecast.signal.value,
        "unit": forecast.unit,
        "forecast_generated_at": forecast.generated_at,
    }


def _from_forecast(
    spec: PlanSpec, forecast: Forecast, best: Window, earliest: datetime, common: dict[str, Any]
) -> Decision:
    start, reason, mean = best.start, REASON_OPTIMUM, best.mean_intensity
    if spec.threshold is not None:
        first = _first_at_or_below(forecast, spec.threshold, earliest, best.latest_start)
        if first is not None and first < start:
            start, reason, mean = first, REASON_THRESHOLD, forecast.mean(first, first + spec.duration)
    if reason == REASON_OPTIMUM and spec.min_saving_pct is not None and best.saving_pct < spec.min_saving_pct:
        start, reason, mean = earliest, REASON_MIN_SAVING, best.baseline_intensity
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
        intensity_if_now=baseline,
        expected_saving_pct=100.0 * (baseline - mean) / baseline if baseline > 0 else 0.0,
        intensity_at_start=forecast.value_at(start),
        intensity_if_fallback=at_fallback,
        alternatives=tuple(
            {"start": _iso(w.start), "mean_intensity": w.mean_intensity, "saving_pct": w.saving_pct}
            for w in alternatives
        ),
        **common,
        **_forecast_meta(forecast),
    )


def _first_at_or_below(forecast: Forecast, threshold: float, earliest: datetime, last: datetime) -> datetime | None:
    if forecast.value_at(earliest) <= threshold:
        return earliest
    for moment, value in forecast.to_points():
        if earliest < moment <= last and value <= threshold:
            return moment
    return None


def _fallback(
    spec: PlanSpec, now: datetime, error: BaseException | None, common: dict[str, Any], forecast: Forecast | None
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
        reason=REASON_FALLBACK,
        used_fallback=True,
        fallback_reason=_why(error) if error is not None else "no forecast",
        **common,
        **_forecast_meta(forecast),
    )
