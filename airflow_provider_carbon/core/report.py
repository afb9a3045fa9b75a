"""The Carbon page's content: records in, page models, totals, SVG charts and HTML out.

Pure: no Airflow, no I/O, no JavaScript; at import time only the standard library (the operators' "Carbon view"
link imports :func:`task_view_path` from here at every DAG parse). The Airflow plugin
(:mod:`airflow_provider_carbon.plugins.carbon_view`) reads the XCom rows from the metadata database and hands them
here as :class:`XComRecord`; everything after that (pairing a run's decision with its job's accounting, totals per
DAG and per month, the charts, the HTML) happens in this module, so it is tested without a database and benchmarked
on its own (``benchmarks/bench_ui.py``).

Everything that comes from a record is user-influenced (a zone is a templated string, an error message quotes a
server) and is escaped where it enters the HTML or the SVG: :func:`_e` is the one door.

Totals never add different signals or units (average and marginal intensities are different quantities, as in
:func:`~airflow_provider_carbon.core.accounting.total_emissions`): every total is keyed by ``(signal, unit)`` too.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

if TYPE_CHECKING:
    from airflow_provider_carbon.core.decision import Decision

__all__ = [
    "ACCOUNTING_KEY",
    "DECISION_KEY",
    "Overview",
    "RunRow",
    "TaskView",
    "Total",
    "XComRecord",
    "build_overview",
    "decode_stored",
    "build_task_view",
    "format_budget",
    "render_overview",
    "render_task_view",
    "svg_forecast_chart",
    "svg_savings_chart",
    "task_view_path",
]

# the XCom keys the operators and the accounting listener write (operators.base.DECISION_XCOM_KEY,
# listeners.accounting.ACCOUNTING_XCOM_KEY: both modules import Airflow, so they are named here again; a test checks)
DECISION_KEY = "carbon_decision"
ACCOUNTING_KEY = "carbon_accounting"
#: rows per page of the overview's run table (totals and the chart always cover every readable record)
DEFAULT_PER_PAGE = 50
MAX_PER_PAGE = 500
#: the savings chart has a step per accounted job up to this many, one per day beyond
CHART_POINTS = 500


try:  # msgspec (a dependency of Airflow itself) decodes JSON about twice as fast as the standard library
    from msgspec import DecodeError as _DecodeError
    from msgspec.json import Decoder as _Decoder

    _decode_json = _Decoder().decode
except ImportError:  # pragma: no cover - only without Airflow's dependencies
    import json as _json

    _DecodeError = ValueError  # type: ignore[assignment,misc]
    _decode_json = _json.loads


def decode_stored(value: Any) -> Any:
    """A carbon record as the metadata database holds it (the Task SDK stores an XCom's value as JSON text inside
    the JSON column) decoded to plain JSON types; ``None`` for text that is not JSON or a value that needs Airflow's
    own decoder (a serialized object such as a tuple: ``__classname__``), which the caller then uses instead.

    Decoding is most of what the overview costs (10,000 runs are 20,000 values, about 21 MB of JSON), so it is done
    with msgspec rather than ``json.loads`` where Airflow has installed it.
    """
    if isinstance(value, (dict, list)):
        return value  # stored undecoded (values set through the execution API), already decoded by the driver
    if not isinstance(value, (str, bytes)):
        return None
    try:
        decoded = _decode_json(value)
    except (_DecodeError, ValueError):
        return None
    if isinstance(decoded, dict) and "__classname__" in decoded:
        return None
    return decoded


@dataclass(slots=True)  # one per XCom row read: not frozen, which would set each field through object.__setattr__
class XComRecord:
    """One XCom row as the plugin read it: where it belongs and its decoded value."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    key: str
    value: Any
    #: the DAG run's ``run_after`` (when it was due), for ordering runs without an accounting record
    run_after: datetime | None = None


# not frozen: a frozen dataclass sets each of its fields through object.__setattr__, and the overview builds one
# per job (10,000 and more); slots make each smaller and faster to build
@dataclass(slots=True)
class RunRow:
    """One carbon-aware job of the overview: a decision, and the accounting of a job it released if there is one."""

    dag_id: str
    run_id: str
    #: the accounted job's task (the row links to its page), else the decision's
    task_id: str
    map_index: int
    #: the sensor or plan task whose decision this is
    decision_task_id: str
    run_after: datetime | None
    planned_start: datetime | None
    actual_start: datetime | None
    zone: str | None
    signal: str
    unit: str
    expected_intensity: float | None
    experienced_intensity: float | None
    emissions_g: float | None
    saving_g: float | None
    saving_pct: float | None
    #: emissions had the job started at the decision (the saving's baseline), for totals' percentages
    baseline_g: float | None
    used_fallback: bool
    fallback_reason: str | None
    fallback_error: str | None
    budget: Mapping[str, Any] | None

    @property
    def moment(self) -> datetime | None:
        """When the run happened, for ordering and for its month: the job's start, else its plan, else the run."""
        return self.actual_start or self.planned_start or self.run_after


@dataclass
class Total:
    """Sums over a group of runs of one signal and unit."""

    runs: int = 0
    emissions_g: float = 0.0
    saving_g: float = 0.0
    #: emissions of the runs with a saving, had they started at the decision: the denominator of :attr:`saving_pct`
    baseline_g: float = 0.0
    fallbacks: int = 0

    def add(self, row: RunRow) -> None:
        self.runs += 1
        self.fallbacks += row.used_fallback
        if row.emissions_g is not None:
            self.emissions_g += row.emissions_g
        if row.saving_g is not None and row.baseline_g is not None:
            self.saving_g += row.saving_g
            self.baseline_g += row.baseline_g

    @property
    def saving_pct(self) -> float | None:
        """Total saving in % of what the same runs would have emitted unshifted (not a mean of percentages)."""
        return 100.0 * self.saving_g / self.baseline_g if self.baseline_g > 0 else None


@dataclass(frozen=True)
class Overview:
    """The overview page: one page of runs, totals over all of them, and the savings chart's points."""

    rows: list[RunRow]
    total_rows: int
    page: int
    per_page: int
    #: (dag_id, signal, unit) -> total
    per_dag: dict[tuple[str, str, str], Total]
    #: ("YYYY-MM", signal, unit) -> total, newest month first
    per_month: dict[tuple[str, str, str], Total]
    #: (moment, cumulative saving in g) of the most common signal, per job (per day beyond CHART_POINTS jobs), and
    #: that (signal, unit)
    savings: list[tuple[datetime, float]] = field(default_factory=list)
    savings_signal: tuple[str, str] | None = None

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total_rows / self.per_page))


def _dt(text: Any) -> datetime | None:
    if not text or not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def _num(value: Any) -> float | None:
    # bool is an int: a record never means 1 g by ``true``
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _decision(value: Any) -> Decision | None:
    """The record through its own loader (schema-1 records are migrated there); ``None`` if it is not one."""
    # imported here: the extra link imports this module for task_view_path() at every DAG parse, and the
    # decision module brings numpy
    from airflow_provider_carbon.core.decision import Decision

    if not isinstance(value, dict):
        return None
    try:
        return Decision.from_dict(value)
    except (KeyError, TypeError, ValueError):
        return None


def _group(records: Iterable[XComRecord]) -> dict[tuple[str, str], tuple[list[XComRecord], list[XComRecord]]]:
    """(dag_id, run_id) -> (decision records, accounting records), in the order given."""
    runs: dict[tuple[str, str], tuple[list[XComRecord], list[XComRecord]]] = {}
    for record in records:
        if record.key not in (DECISION_KEY, ACCOUNTING_KEY) or not isinstance(record.value, dict):
            continue
        decisions, accountings = runs.setdefault((record.dag_id, record.run_id), ([], []))
        (decisions if record.key == DECISION_KEY else accountings).append(record)
    return runs


def _budget(record: Mapping[str, Any]) -> Mapping[str, Any] | None:
    # the budget check's part of the decision (absent in records written before it existed)
    budget = record.get("budget")
    return budget if isinstance(budget, dict) else None


def _decision_of(zone: Any, decisions: Sequence[tuple[XComRecord, Any]]) -> tuple[XComRecord, Any] | None:
    """Which of a run's decisions released a job accounted in ``zone``: the run's only one, else the one planned for
    that zone (a run with several sensors accounts each job in its sensor's zone); ``None`` when none fits."""
    if len(decisions) == 1:
        return decisions[0]
    return next((pair for pair in decisions if _zone(pair[1]) == zone), None)


def _zone(decision: Any) -> Any:
    return decision.get("zone") if isinstance(decision, dict) else decision.zone


def _current(value: dict[str, Any]) -> dict[str, Any] | None:
    """A decision record in the current schema, or ``None`` if it is not one.

    A current record (it has ``schema_version``) is read as it is: a table row needs a few of its fields, and
    building the dataclass for each of 10,000 records would cost more than decoding them. Older records go through
    :meth:`Decision.from_dict`, the one place that migrates them.
    """
    if "schema_version" not in value:
        decision = _decision(value)
        return decision.to_dict() if decision is not None else None
    return value if _dt(value.get("planned_start")) is not None and value.get("reason") else None


def _row(record: XComRecord, decision: Mapping[str, Any], job: XComRecord | None) -> RunRow:
    acc = job.value if job is not None else {}
    zone = decision.get("zone")
    return RunRow(
        dag_id=record.dag_id,
        run_id=record.run_id,
        task_id=job.task_id if job is not None else record.task_id,
        map_index=job.map_index if job is not None else record.map_index,
        decision_task_id=record.task_id,
        run_after=record.run_after,
        planned_start=_dt(decision.get("planned_start")),
        actual_start=_dt(acc.get("started_at")) or _dt(decision.get("released_at")),
        zone=str(zone) if zone is not None else acc.get("zone"),
        signal=str(acc.get("signal") or decision.get("signal") or "average"),
        unit=str(acc.get("unit") or decision.get("unit") or "gCO2eq/kWh"),
        expected_intensity=_num(decision.get("expected_intensity")),
        experienced_intensity=_num(acc.get("experienced_intensity")),
        emissions_g=_num(acc.get("emissions_g")),
        saving_g=_num(acc.get("saving_vs_baseline_g")),
        saving_pct=_num(acc.get("saving_vs_baseline_pct")),
        baseline_g=_num(acc.get("emissions_if_started_at_baseline_g")),
        used_fallback=decision.get("used_fallback") is True,
        fallback_reason=_text(decision.get("fallback_reason")),
        fallback_error=_text(decision.get("fallback_error")),
        budget=_budget(decision),
    )


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def run_rows(records: Iterable[XComRecord]) -> list[RunRow]:
    """One row per accounted job with the decision that released it, and one per decision that released no
    accounted job (a plan, a job without power_kw, a run still waiting); newest first."""
    rows: list[RunRow] = []
    for decisions, accountings in _group(records).values():
        loaded = [(r, d) for r in decisions if (d := _current(r.value)) is not None]
        released: set[tuple[str, int]] = set()
        for job in accountings:
            pair = _decision_of(job.value.get("zone"), loaded)
            if pair is not None:
                released.add((pair[0].task_id, pair[0].map_index))
                rows.append(_row(pair[0], pair[1], job))
        rows.extend(_row(r, d, None) for r, d in loaded if (r.task_id, r.map_index) not in released)
    epoch = datetime.min.replace(tzinfo=timezone.utc)
    rows.sort(key=lambda r: (r.moment or epoch, r.dag_id, r.run_id, r.task_id), reverse=True)
    return rows


def build_overview(records: Iterable[XComRecord], *, page: int = 1, per_page: int = DEFAULT_PER_PAGE) -> Overview:
    """The overview of ``records`` (already filtered to the DAGs the user may read): page ``page`` of the runs,
    totals per DAG and per month over all of them, and the cumulative savings over time."""
    rows = run_rows(records)
    per_page = min(max(1, per_page), MAX_PER_PAGE)
    pages = max(1, math.ceil(len(rows) / per_page))
    page = min(max(1, page), pages)
    per_dag: dict[tuple[str, str, str], Total] = {}
    per_month: dict[tuple[str, str, str], Total] = {}
    savings_at: dict[tuple[str, str], dict[datetime, float]] = {}
    counts: dict[tuple[str, str], int] = {}
    for row in rows:
        per_dag.setdefault((row.dag_id, row.signal, row.unit), Total()).add(row)
        moment = row.moment
        if moment is not None:
            utc = moment.astimezone(timezone.utc)
            per_month.setdefault((f"{utc:%Y-%m}", row.signal, row.unit), Total()).add(row)
            if row.saving_g is not None:
                series = savings_at.setdefault((row.signal, row.unit), {})
                series[utc] = series.get(utc, 0.0) + row.saving_g
                counts[(row.signal, row.unit)] = counts.get((row.signal, row.unit), 0) + 1
    savings: list[tuple[datetime, float]] = []
    signal = max(counts, key=lambda k: (counts[k], k)) if counts else None
    if signal is not None:
        steps = savings_at[signal]
        if len(steps) > CHART_POINTS:  # a long history: one step per day keeps the SVG small
            by_day: dict[datetime, float] = {}
            for moment, grams in steps.items():
                day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
                by_day[day] = by_day.get(day, 0.0) + grams
            steps = by_day
        running = 0.0
        for moment in sorted(steps):
            running += steps[moment]
            savings.append((moment, running))
    return Overview(
        rows=rows[(page - 1) * per_page : page * per_page],
        total_rows=len(rows),
        page=page,
        per_page=per_page,
        per_dag=dict(sorted(per_dag.items())),
        per_month=dict(sorted(per_month.items(), key=lambda kv: kv[0], reverse=True)),
        savings=savings,
        savings_signal=signal,
    )


@dataclass(frozen=True)
class TaskView:
    """The task-instance page: the decision, the forecast its plan used, and the accounting of its jobs."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    decision: Decision | None
    #: the decision's task, when the page is for its job task (the decision lives on the sensor)
    decision_task_id: str | None
    forecast: Any  # Forecast | None: typed loosely to keep numpy out of this module's import-time needs
    #: the accounting records of the jobs shown: the page's own job, or every job the page's decision released
    accountings: Sequence[XComRecord] = ()
    #: the decision's ``budget`` (the budget check's record), read from the raw record: ``None`` without one
    budget: Mapping[str, Any] | None = None


def build_task_view(
    records: Sequence[XComRecord], *, dag_id: str, run_id: str, task_id: str, map_index: int = -1
) -> TaskView:
    """The page of one task instance from its run's records: its own decision (a sensor or plan task), or, for the
    job a sensor released, that sensor's decision; and the job's accounting."""
    from airflow_provider_carbon.core.forecast import Forecast

    records = [r for r in records if r.dag_id == dag_id and r.run_id == run_id]
    decisions = [r for r in records if r.key == DECISION_KEY and isinstance(r.value, dict)]
    jobs = [r for r in records if r.key == ACCOUNTING_KEY and isinstance(r.value, dict)]
    mine = [r for r in records if r.task_id == task_id and r.map_index == map_index]
    chosen = next((r for r in mine if r.key == DECISION_KEY), None)
    own_job = next((r for r in jobs if r in mine), None)
    if chosen is None and own_job is not None:  # a job's page: the decision that released it
        pair = _decision_of(own_job.value.get("zone"), [(r, r.value) for r in decisions])
        chosen = pair[0] if pair is not None else None
    decision = _decision(chosen.value) if chosen is not None else None
    if own_job is not None:
        accountings = [own_job]
    elif decision is not None:  # a sensor's page: every job it released
        loaded = [(r, r.value) for r in decisions]
        accountings = [j for j in jobs if (p := _decision_of(j.value.get("zone"), loaded)) and p[0] is chosen]
    else:
        accountings = []
    forecast = None
    if decision is not None and decision.forecast:
        try:
            forecast = Forecast.from_compact(decision.forecast)
        except (KeyError, TypeError, ValueError):  # a record edited by hand: show the rest
            forecast = None
    return TaskView(
        dag_id=dag_id,
        run_id=run_id,
        task_id=task_id,
        map_index=map_index,
        decision=decision,
        decision_task_id=chosen.task_id if chosen is not None else None,
        forecast=forecast,
        accountings=accountings,
        budget=_budget(chosen.value) if chosen is not None else None,
    )


# -- formatting ---------------------------------------------------------------------------------------------------


def _e(value: Any) -> str:
    """Escaped text of anything from a record, for HTML text and attribute values alike."""
    return html.escape("" if value is None else str(value), quote=True)


def _fmt_time(moment: datetime | None) -> str:
    return "" if moment is None else moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _fmt_num(value: float | None, digits: int = 0) -> str:
    return "" if value is None else f"{value:,.{digits}f}"


def _unit(text: str, unit: str) -> str:
    """``text`` followed by its unit, or nothing when there is no value to qualify."""
    return f"{text} {unit}" if text else ""


def _fmt_g(value: float | None) -> str:
    """Grams with three significant digits, in kg from 1,000 g (a test job emits milligrams, training kilograms)."""
    if value is None:
        return ""
    if abs(value) >= 1000:
        return f"{value / 1000:.3g} kg"
    return f"{value:.3g} g"


def _saving(grams: Any, pct: Any) -> str:
    """``12.3 g (20.5 %)``; empty when the counterfactual was not covered by the data."""
    text = _fmt_g(_num(grams))
    pct_text = _fmt_num(_num(pct), 1)
    return f"{text} ({pct_text} %)" if text and pct_text else text


def format_budget(budget: Mapping[str, Any] | None) -> str:
    """``3.2 / 5 kg (64 %)``, with the outcome when it is not ``within``; empty without a budget."""
    if not budget:
        return ""
    used, limit = _num(budget.get("used_kg")), _num(budget.get("limit_kg"))
    if used is None or limit is None:
        return ""
    text = f"{used:.3g} / {limit:.3g} kg"
    if limit > 0:
        text += f" ({100.0 * used / limit:.0f} %)"
    outcome = budget.get("outcome")
    if outcome and outcome != "within":
        text += f", {outcome}"
    return text


def task_view_path(base: str, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> str:
    """The plugin's page of one task instance, under ``base`` (the plugin's mount, e.g. ``/carbon``)."""
    dag, run, task = (quote(part, safe="") for part in (dag_id, run_id, task_id))
    path = f"{base.rstrip('/')}/dags/{dag}/runs/{run}/tasks/{task}"
    return path + (f"?{urlencode({'map_index': map_index})}" if map_index != -1 else "")


# -- SVG --------------------------------------------------------------------------------------------------------------

_W, _H, _PAD_L, _PAD_R, _PAD_T, _PAD_B = 900, 300, 70, 50, 30, 40


def _scale(lo: float, hi: float, out_lo: float, out_hi: float) -> Any:
    span = (hi - lo) or 1.0
    return lambda v: out_lo + (v - lo) * (out_hi - out_lo) / span


def _axes(x0: datetime, x1: datetime, y_lo: float, y_hi: float, y_label: str) -> tuple[list[str], Any, Any]:
    sx = _scale(x0.timestamp(), x1.timestamp(), _PAD_L, _W - _PAD_R)
    sy = _scale(y_lo, y_hi, _H - _PAD_B, _PAD_T)
    parts = [
        f'<line x1="{_PAD_L}" y1="{_H - _PAD_B}" x2="{_W - _PAD_R}" y2="{_H - _PAD_B}" stroke="#888"/>',
        f'<line x1="{_PAD_L}" y1="{_PAD_T}" x2="{_PAD_L}" y2="{_H - _PAD_B}" stroke="#888"/>',
        f'<text x="4" y="12" font-size="11">{_e(y_label)}</text>',
    ]
    for i in range(5):
        value = y_lo + (y_hi - y_lo) * i / 4
        y = sy(value)
        parts.append(f'<text x="{_PAD_L - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end">{value:.4g}</text>')
        parts.append(f'<line x1="{_PAD_L}" y1="{y:.1f}" x2="{_W - _PAD_R}" y2="{y:.1f}" stroke="#ddd"/>')
    span = x1.timestamp() - x0.timestamp()
    # as fine as the span needs: a time-compressed test night lasts minutes, a year of savings months
    fmt = "%H:%M:%S" if span < 3600 else "%m-%d %H:%M" if span < 30 * 86400 else "%Y-%m-%d"
    for i in range(5):
        t = x0.timestamp() + span * i / 4
        label = datetime.fromtimestamp(t, timezone.utc).strftime(fmt)
        parts.append(f'<text x="{sx(t):.1f}" y="{_H - _PAD_B + 16}" font-size="11" text-anchor="middle">{label}</text>')
    return parts, sx, sy


def _svg(title: str, parts: list[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_W} {_H}" width="100%" role="img" '
        f'aria-label="{_e(title)}" class="carbon-chart"><title>{_e(title)}</title>{"".join(parts)}</svg>'
    )


def svg_savings_chart(points: Sequence[tuple[datetime, float]], unit_label: str = "g CO2eq saved") -> str:
    """Cumulative savings over time as a step line; a note instead of a chart when there is nothing to draw."""
    if not points:
        return '<p class="empty">No accounted jobs yet: the chart needs a job with power_kw or energy_kwh.</p>'
    x0, x1 = points[0][0], points[-1][0]
    if x0 == x1:  # one step: give it width
        x0 = datetime.fromtimestamp(x0.timestamp() - 3600, timezone.utc)
    values = [v for _, v in points]
    y_lo, y_hi = min(0.0, *values), max(0.0, *values)
    parts, sx, sy = _axes(x0, x1, y_lo, y_hi if y_hi > y_lo else y_lo + 1, f"cumulative {unit_label}")
    path = [f"M{sx(x0.timestamp()):.1f},{sy(0):.1f}"]
    for moment, value in points:
        x = sx(moment.timestamp())
        path.append(f"H{x:.1f}V{sy(value):.1f}")
    parts.append(f'<path d="{"".join(path)}" fill="none" stroke="#2e7d32" stroke-width="2"/>')
    for moment, value in points:
        parts.append(
            f'<circle cx="{sx(moment.timestamp()):.1f}" cy="{sy(value):.1f}" r="2.5" fill="#2e7d32">'
            f"<title>{moment:%Y-%m-%d}: {_e(_fmt_g(value))}</title></circle>"
        )
    return _svg("Cumulative savings over time", parts)


def svg_forecast_chart(view: TaskView) -> str:
    """The forecast the plan used as a step line, the chosen window and the actual run drawn on it, the alternatives
    as markers, and the decision time, the deadline, the fallback time and every re-plan as vertical lines."""
    decision, forecast = view.decision, view.forecast
    if decision is None or forecast is None:
        return '<p class="empty">The decision record holds no forecast (the plan used the fallback).</p>'
    points = forecast.to_points()
    end = forecast.end
    runs = [(job.task_id, _dt(job.value.get("started_at")), _dt(job.value.get("ended_at"))) for job in view.accountings]
    runs = [(task, a, b) for task, a, b in runs if a is not None and b is not None]
    moments = [points[0][0], end, decision.planned_start, decision.planned_end]
    moments += [m for _, a, b in runs for m in (a, b)]
    x0, x1 = min(moments), max(moments)
    values = [v for _, v in points]
    y_hi = max(values) * 1.1 or 1.0
    unit = decision.unit or forecast.unit
    parts, sx, sy = _axes(x0, x1, 0.0, y_hi, unit)

    def band(a: datetime, b: datetime, colour: str, label: str, y: float, height: float) -> None:
        xa, xb = sx(a.timestamp()), sx(b.timestamp())
        parts.append(
            f'<rect class="{label.split()[0]}" x="{xa:.1f}" y="{y:.1f}" width="{max(xb - xa, 1):.1f}" '
            f'height="{height:.1f}" fill="{colour}" fill-opacity="0.25"><title>{_e(label)}: '
            f"{_fmt_time(a)} .. {_fmt_time(b)}</title></rect>"
        )

    plot_h = _H - _PAD_B - _PAD_T
    band(decision.planned_start, decision.planned_end, "#2e7d32", "planned window", _PAD_T, plot_h)
    for i, (task, started, ended) in enumerate(runs):
        # one lane per job at the bottom, so that parallel jobs stay apart
        lane = plot_h * 0.4 / len(runs)
        band(started, ended, "#1565c0", f"actual run of {task}", _PAD_T + plot_h * 0.6 + i * lane, lane)
    path = [f"M{sx(points[0][0].timestamp()):.1f},{sy(points[0][1]):.1f}"]
    for i, (_, value) in enumerate(points):
        nxt = points[i + 1][0] if i + 1 < len(points) else end
        path.append(f"V{sy(value):.1f}H{sx(nxt.timestamp()):.1f}")
    parts.append(f'<path class="forecast" d="{"".join(path)}" fill="none" stroke="#555" stroke-width="2"/>')
    for alt in decision.alternatives:
        moment, mean = _dt(alt.get("start")), _num(alt.get("mean_intensity"))
        if moment is not None and mean is not None:
            parts.append(
                f'<circle class="alternative" cx="{sx(moment.timestamp()):.1f}" cy="{sy(mean):.1f}" r="4" '
                f'fill="#f9a825"><title>alternative: {_e(_fmt_time(moment))}, {mean:.0f} {_e(unit)}</title></circle>'
            )
    marks: list[tuple[datetime | None, str, str]] = [
        (decision.decided_at, "#000", "decided"),
        (decision.latest_start, "#c62828", "latest start"),
        (decision.fallback_start, "#6a1b9a", "fallback time"),
    ]
    marks += [(_dt(r.get("at")), "#ef6c00", f"re-plan: {r.get('cause', '')}") for r in decision.replans]
    for moment, colour, label in marks:
        if moment is not None and x0 <= moment <= x1:
            x = sx(moment.timestamp())
            parts.append(
                f'<line x1="{x:.1f}" y1="{_PAD_T}" x2="{x:.1f}" y2="{_H - _PAD_B}" stroke="{colour}" '
                f'stroke-dasharray="4 3"><title>{_e(label)}: {_fmt_time(moment)}</title></line>'
            )
    return _svg(f"Forecast for {decision.zone or ''} and the chosen window", parts)


# -- HTML -------------------------------------------------------------------------------------------------------------

_STYLE = """
body{font-family:system-ui,sans-serif;margin:16px;color:#222;background:#fff}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.5em}
table{border-collapse:collapse;font-size:13px;margin:.5em 0}
th,td{border:1px solid #ddd;padding:3px 6px;text-align:left;vertical-align:top}
td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}th{background:#f4f4f4}
.t{white-space:nowrap}td small{display:block;max-width:26em;overflow-wrap:anywhere}
.fallback{color:#b71c1c}.empty{color:#666}.legend span{margin-right:1em}
nav.pages a,nav.pages span{margin-right:.6em}
@media (prefers-color-scheme: dark){body{background:#1a1a1a;color:#ddd}th{background:#2a2a2a}
th,td{border-color:#444}a{color:#90caf9}svg text{fill:#ddd}}
"""


def _page(title: str, body: str) -> str:
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
        f"<style>{_STYLE}</style></head><body>{body}</body></html>"
    )


def _table(head: Sequence[str], rows: Iterable[Sequence[tuple[str, bool]]]) -> str:
    """A table; each cell is (already escaped HTML, numeric?)."""
    out = ["<table><thead><tr>", *(f"<th>{_e(h)}</th>" for h in head), "</tr></thead><tbody>"]
    for row in rows:
        out.append("<tr>")
        out.extend(f'<td class="n">{c}</td>' if numeric else f"<td>{c}</td>" for c, numeric in row)
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _fallback_cell(used: bool, reason: str | None, error: str | None) -> str:
    if not used:
        return "no"
    return f'<span class="fallback" title="{_e(error)}">yes: {_e(reason or "")}</span>' + (
        f"<br><small>{_e(error)}</small>" if error else ""
    )


def _totals_table(label: str, totals: Mapping[tuple[str, str, str], Total]) -> str:
    return _table(
        [label, "signal", "jobs", "fallbacks", "emissions", "saved", "saved %"],
        (
            [
                (_e(name), False),
                (_e(f"{signal} ({unit})"), False),
                (str(t.runs), True),
                (str(t.fallbacks), True),
                (_e(_fmt_g(t.emissions_g)), True),
                (_e(_fmt_g(t.saving_g)), True),
                (_e(_fmt_num(t.saving_pct, 1)), True),
            ]
            for (name, signal, unit), t in totals.items()
        ),
    )


def render_overview(model: Overview, *, base: str, airflow_base: str = "") -> str:
    """The overview page as HTML. ``base`` is the plugin's mount (links to the task pages), ``airflow_base`` the
    UI's (links to Airflow's own run pages open in the top window, outside the plugin's frame)."""
    body = ["<h1>Carbon-aware runs</h1>"]
    if not model.total_rows:
        body.append('<p class="empty">No carbon decisions in the DAGs you may read.</p>')
        return _page("Carbon", "".join(body))
    body.append(
        f"<p>Jobs: {model.total_rows}, in the DAGs you may read (one row per accounted job, and per decision with"
        " none). Savings are against starting the job at the "
        "decision (no shifting); percentages of totals are of the unshifted emissions.</p>"
    )
    body.append("<h2>Savings over time</h2>")
    unit = f"g CO2eq saved ({model.savings_signal[0]})" if model.savings_signal else "g CO2eq saved"
    body.append(svg_savings_chart(model.savings, unit))
    body.append("<h2>Runs</h2>")
    head = [
        "DAG",
        "run",
        "task",
        "planned start",
        "actual start",
        "zone",
        "expected",
        "experienced",
        "emissions",
        "saved",
        "saved %",
        "fallback",
        "budget",
    ]
    cells = []
    for row in model.rows:
        link = task_view_path(base, row.dag_id, row.run_id, row.task_id, row.map_index)
        run_link = f"{airflow_base.rstrip('/')}/dags/{quote(row.dag_id, safe='')}/runs/{quote(row.run_id, safe='')}"
        cells.append(
            [
                (f'<a href="{_e(run_link)}" target="_top">{_e(row.dag_id)}</a>', False),
                (f'<a href="{_e(link)}" class="run">{_e(row.run_id)}</a>', False),
                (_e(row.task_id), False),
                (f'<span class="t">{_e(_fmt_time(row.planned_start))}</span>', False),
                (f'<span class="t">{_e(_fmt_time(row.actual_start))}</span>', False),
                (_e(row.zone), False),
                (_e(_fmt_num(row.expected_intensity)), True),
                (_e(_fmt_num(row.experienced_intensity)), True),
                (_e(_fmt_g(row.emissions_g)), True),
                (_e(_fmt_g(row.saving_g)), True),
                (_e(_fmt_num(row.saving_pct, 1)), True),
                (_fallback_cell(row.used_fallback, row.fallback_reason, row.fallback_error), False),
                (_e(format_budget(row.budget)), False),
            ]
        )
    body.append(_table(head, cells))
    body.append(_pager(model, base))
    body.append("<h2>Per DAG</h2>" + _totals_table("DAG", model.per_dag))
    body.append("<h2>Per month (UTC)</h2>" + _totals_table("month", model.per_month))
    body.append('<p class="empty">Intensities in gCO2eq/kWh (mean over the job); times in UTC.</p>')
    return _page("Carbon", "".join(body))


def _pager(model: Overview, base: str) -> str:
    if model.pages == 1:
        return ""
    root = base.rstrip("/") + "/"

    def link(page: int, label: str) -> str:
        return f'<a href="{_e(root + "?" + urlencode({"page": page, "per_page": model.per_page}))}">{label}</a>'

    parts = ['<nav class="pages">']
    if model.page > 1:
        parts.append(link(model.page - 1, "&larr; newer"))
    parts.append(f"<span>page {model.page} of {model.pages}</span>")
    if model.page < model.pages:
        parts.append(link(model.page + 1, "older &rarr;"))
    parts.append("</nav>")
    return "".join(parts)


def render_task_view(view: TaskView, *, base: str) -> str:
    """The task-instance page as HTML."""
    title = f"Carbon: {view.dag_id} / {view.run_id} / {view.task_id}"
    body = [f"<h1>{_e(view.task_id)}</h1><p>{_e(view.dag_id)} &middot; {_e(view.run_id)}</p>"]
    decision = view.decision
    if decision is None:
        body.append('<p class="empty">No carbon decision in this run.</p>')
        return _page(title, "".join(body))
    if view.decision_task_id and view.decision_task_id != view.task_id:
        body.append(f"<p>Released by <strong>{_e(view.decision_task_id)}</strong>, whose plan this is.</p>")
    body.append("<h2>Forecast, chosen window and actual run</h2>")
    body.append(svg_forecast_chart(view))
    body.append(
        '<p class="legend"><span style="color:#2e7d32">&#9632; planned window</span>'
        '<span style="color:#1565c0">&#9632; actual run</span><span style="color:#f9a825">&#9679; alternatives</span>'
        "<span>dashed: decided, latest start (red), fallback time (purple), re-plans (orange)</span></p>"
    )
    unit = decision.unit or "gCO2eq/kWh"
    facts = [
        ("zone", decision.zone),
        ("source / signal", f"{decision.source or ''} / {decision.signal or ''}"),
        ("reason", decision.reason.value),
        ("decided at", _fmt_time(decision.decided_at)),
        ("planned start", _fmt_time(decision.planned_start)),
        ("planned end", _fmt_time(decision.planned_end)),
        ("latest start", _fmt_time(decision.latest_start)),
        ("released at", _fmt_time(decision.released_at)),
        ("release reason", decision.release_reason.value if decision.release_reason else None),
        ("expected intensity", _unit(_fmt_num(decision.expected_intensity), unit)),
        ("intensity had it started at the decision", _unit(_fmt_num(decision.intensity_if_started_at_decision), unit)),
        ("intensity at the fallback time", _unit(_fmt_num(decision.intensity_if_fallback), unit)),
        ("expected saving", _unit(_fmt_num(decision.expected_saving_pct, 1), "%")),
        ("fallback policy", f"{decision.fallback or ''} ({decision.timezone or ''})"),
    ]
    rows = [[(_e(k), False), (_e(v), False)] for k, v in facts]
    rows.append(
        [
            ("used fallback", False),
            (
                _fallback_cell(
                    decision.used_fallback,
                    decision.fallback_reason.value if decision.fallback_reason else None,
                    decision.fallback_error,
                ),
                False,
            ),
        ]
    )
    budget = view.budget
    if budget:
        rows.append([("budget", False), (_e(f"{budget.get('scope', '')}: {format_budget(budget)}"), False)])
    body.append("<h2>Decision</h2>" + _table(["field", "value"], rows))
    for job in view.accountings:
        acc = job.value
        body.append(f"<h2>Accounting of {_e(job.task_id)}</h2>")
        body.append(
            _table(
                ["field", "value"],
                [
                    [(_e(k), False), (_e(v), False)]
                    for k, v in (
                        ("started at", _fmt_time(_dt(acc.get("started_at")))),
                        ("ended at", _fmt_time(_dt(acc.get("ended_at")))),
                        ("energy", _unit(_fmt_num(_num(acc.get("energy_kwh")), 4), "kWh")),
                        ("experienced intensity", _unit(_fmt_num(_num(acc.get("experienced_intensity"))), unit)),
                        ("intensity source", acc.get("intensity_source")),
                        ("emissions", _fmt_g(_num(acc.get("emissions_g")))),
                        (
                            "saved against starting at the decision",
                            _saving(acc.get("saving_vs_baseline_g"), acc.get("saving_vs_baseline_pct")),
                        ),
                        (
                            "saved against the fallback time",
                            _saving(acc.get("saving_vs_fallback_g"), acc.get("saving_vs_fallback_pct")),
                        ),
                        ("delay", _unit(_fmt_num(_num(acc.get("delay_s"))), "s")),
                    )
                ],
            )
        )
    body.append("<h2>Alternatives</h2>")
    body.append(
        _table(
            ["start", "mean intensity", "saving %"],
            (
                [
                    (_e(_fmt_time(_dt(a.get("start")))), False),
                    (_e(_fmt_num(_num(a.get("mean_intensity")))), True),
                    (_e(_fmt_num(_num(a.get("saving_pct")), 1)), True),
                ]
                for a in decision.alternatives
            ),
        )
        if decision.alternatives
        else '<p class="empty">None recorded.</p>'
    )
    body.append("<h2>Re-plans</h2>")
    body.append(
        _table(
            ["at", "cause", "previous start", "new start", "expected intensity", "fallback"],
            (
                [
                    (_e(_fmt_time(_dt(r.get("at")))), False),
                    (_e(r.get("cause")), False),
                    (_e(_fmt_time(_dt(r.get("previous_start")))), False),
                    (_e(_fmt_time(_dt(r.get("new_start")))), False),
                    (_e(_fmt_num(_num(r.get("expected_intensity")))), True),
                    ("yes" if r.get("used_fallback") else "no", False),
                ]
                for r in decision.replans
            ),
        )
        if decision.replans
        else '<p class="empty">None: the first plan held.</p>'
    )
    body.append(f'<p><a href="{_e(base.rstrip("/") + "/")}">&larr; all carbon-aware runs</a></p>')
    return _page(title, "".join(body))
