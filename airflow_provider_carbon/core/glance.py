"""The plan and its outcome in one short line, for the places people look first (a DAG run's note, a log's first
line): ``05:00 CEST optimum, 293 g/kWh, -20 % vs 00:00`` or ``FALLBACK 02:00 CEST: API down (unavailable)``.

Pure: it reads a :class:`~airflow_provider_carbon.core.decision.Decision` (and, once the job ran, its
:class:`~airflow_provider_carbon.core.accounting.Accounting` records) and formats times as wall-clock times in the
timezone given (the DAG's), with the zone's abbreviation, so a reader needs neither UTC arithmetic nor the XCom.

Percentages are changes in emissions: ``-20 %`` means 20 % less than starting at once (the decision time), which is
what a plain cron at the run's start would have done.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, tzinfo
from datetime import timezone as dt_timezone
from zoneinfo import ZoneInfo

from airflow_provider_carbon.core.accounting import Accounting, IntensitySource
from airflow_provider_carbon.core.decision import Decision, FallbackReason, ReleaseReason, StartReason

__all__ = ["NOTE_MAX_CHARS", "headline", "outcome", "run_note"]

#: Airflow stores a DAG run's note in a column of 1000 characters
NOTE_MAX_CHARS = 1000

#: what each fallback reason means to someone who has not read the docs (the enum value follows in brackets)
_FALLBACK_WORDS: dict[FallbackReason, str] = {
    FallbackReason.CONNECTION: "no usable connection",
    FallbackReason.AUTHENTICATION: "token refused",
    FallbackReason.NOT_ENTITLED: "token's plan does not cover this",
    FallbackReason.RATE_LIMITED: "rate-limited",
    FallbackReason.UNAVAILABLE: "API down",
    FallbackReason.INVALID_REQUEST: "request refused",
    FallbackReason.BAD_PAYLOAD: "unusable data",
    FallbackReason.FORECAST_UNUSABLE: "forecast too short",
    FallbackReason.NO_FORECAST: "no forecast",
    FallbackReason.ERROR: "error",
}


def _zone(tz: str | tzinfo | None, decision: Decision) -> tzinfo:
    """The timezone to show times in: ``tz``, else the decision's (the fallback time's, by default the DAG's)."""
    if isinstance(tz, tzinfo):
        return tz
    name = tz or decision.timezone
    if not name:
        return dt_timezone.utc
    try:
        return ZoneInfo(name)
    except (ValueError, KeyError):  # an unknown name (KeyError: ZoneInfoNotFoundError) must not cost the headline
        return dt_timezone.utc


class _Clock:
    """Formats instants as local wall-clock times; the abbreviation (and the date) only where they change, so that
    ``05:00 CEST ... vs 00:00`` reads as one night and the night the clocks change says so."""

    def __init__(self, tz: tzinfo, reference: datetime) -> None:
        self.tz = tz
        self.day = reference.astimezone(tz).date()
        self.abbreviation: str | None = None

    def __call__(self, moment: datetime) -> str:
        local = moment.astimezone(self.tz)
        text = f"{local:%H:%M}"
        if local.date() != self.day:
            text = f"{local.day} {local:%b} {text}"
        name = local.tzname() or ""
        if name != self.abbreviation:
            self.abbreviation = name
            text = f"{text} {name}".rstrip()
        return text


def _unit(unit: str | None) -> str:
    return "g/kWh" if unit in (None, "gCO2eq/kWh", "gCO2e/kWh") else unit


def _change(saving_pct: float) -> str:
    """A saving as a change in emissions: a 20 % saving is ``-20 %``, emitting 5 % more is ``+5 %``."""
    change = -saving_pct
    return "±0 %" if round(change) == 0 else f"{change:+.0f} %"


def headline(decision: Decision, tz: str | tzinfo | None = None) -> str:
    """What was planned and why, in one line: the start in ``tz`` (default: the decision's timezone), the reason,
    the expected intensity and the expected change against starting at once; for a fallback, the reason in words
    and its enum value."""
    clock = _Clock(_zone(tz, decision), decision.decided_at)
    start = decision.planned_start
    if decision.used_fallback:
        reason = decision.fallback_reason or FallbackReason.NO_FORECAST
        label = "DEADLINE" if decision.reason is StartReason.DEADLINE else "FALLBACK"
        text = f"{label} {clock(start)}: {_FALLBACK_WORDS[reason]} ({reason.value})"
    elif decision.reason is StartReason.DEADLINE:
        text = f"DEADLINE {clock(start)}: the latest start had passed, started at once"
    elif decision.reason is StartReason.MIN_SAVING:
        best = decision.alternatives[0].get("saving_pct") if decision.alternatives else None
        text = f"{clock(start)} at once: waiting would save " + (
            f"only {best:.0f} %" if best is not None else "too little"
        )
        if decision.expected_intensity is not None:
            text += f", {decision.expected_intensity:.0f} {_unit(decision.unit)}"
    else:
        word = "optimum" if decision.reason is StartReason.OPTIMUM else "under threshold"
        text = f"{clock(start)} {word}"
        if decision.expected_intensity is not None:
            text += f", {decision.expected_intensity:.0f} {_unit(decision.unit)}"
        if decision.expected_saving_pct is not None:
            text += f", {_change(decision.expected_saving_pct)} vs {clock(decision.decided_at)}"
    if decision.replans:
        text += f", re-planned {len(decision.replans)}x"
    if (
        decision.release_reason is ReleaseReason.DEADLINE
        and decision.reason is not StartReason.DEADLINE
        and decision.released_at is not None
    ):
        text += f", released at the deadline {clock(decision.released_at)}"
    return text


def _grams(grams: float) -> str:
    # three significant digits, as the accounting log line: a short job emits milligrams, a training run kilograms
    return f"{grams / 1000:.3g} kg" if abs(grams) >= 1000 else f"{grams:.3g} g"


def outcome(records: Sequence[Accounting], tz: str | tzinfo | None = None, *, decision: Decision) -> str:
    """What the released job(s) really emitted and the change against starting at once (else against the
    fallback time), in one line. Several jobs after one sensor are summed (one signal and unit each; a mix of
    signals is reported per signal rather than added)."""
    if not records:
        return ""
    signals = {(r.signal, r.unit) for r in records}
    if len(signals) > 1:
        return "; ".join(
            outcome([r for r in records if (r.signal, r.unit) == key], tz, decision=decision) for key in sorted(signals)
        )
    clock = _Clock(_zone(tz, decision), decision.decided_at)
    started = min(r.started_at for r in records)
    ended = max(r.ended_at for r in records)
    emitted = sum(r.emissions_g for r in records)
    jobs = f"{len(records)} jobs " if len(records) > 1 else ""
    estimated = " (forecast)" if any(r.intensity_source is IntensitySource.FORECAST for r in records) else ""
    text = f"ran {jobs}{clock(started)}-{clock(ended)}: {_grams(emitted)} CO2eq{estimated}"
    # the first counterfactual the data covers for every job: starting at once, else the fallback time
    for label, counterfactuals, start in (
        ("baseline", [r.emissions_if_started_at_baseline_g for r in records], records[0].baseline_start),
        ("fallback", [r.emissions_if_fallback_g for r in records], records[0].fallback_start),
    ):
        if start is None or any(c is None for c in counterfactuals):
            continue
        total = sum(c for c in counterfactuals if c is not None)
        if total <= 0:
            continue
        what = clock(start) if label == "baseline" else f"{clock(start)} fallback"
        return f"{text}, {_change(100.0 * (total - emitted) / total)} vs {what}"
    return text


def run_note(decisions: Sequence[tuple[Decision, Sequence[Accounting]]], tz: str | tzinfo | None = None) -> str:
    """A DAG run's note: one line per carbon decision (plan, then outcome), within Airflow's note length."""
    lines = []
    for decision, records in decisions:
        line = headline(decision, tz)
        done = outcome(records, tz, decision=decision)
        lines.append(f"{line}; {done}" if done else line)
    text = "\n".join(lines)
    return text if len(text) <= NOTE_MAX_CHARS else text[: NOTE_MAX_CHARS - 1] + "…"
