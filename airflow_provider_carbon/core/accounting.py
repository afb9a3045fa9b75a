"""Carbon accounting of one shifted job: what it really emitted, and what it would have emitted unshifted.

Pure: it gets the job's measured start and end, its energy (or power), and one intensity series, and never does
I/O. The caller (a task after the job, the backtest) fetches the series: the service's history over the run where the
hook has one, else the forecast the plan used, and says which in ``intensity_source``.

The arithmetic, in full:

* ``runtime`` = ``ended_at - started_at`` (measured, not the planned duration).
* ``energy_kwh`` = declared average power (kW) x runtime (h) x PUE, or a declared energy per run x PUE. The power is
  taken as constant over the run, so the run's emissions are energy x the time-weighted mean intensity over
  ``[started_at, ended_at)`` (the step model of :class:`~airflow_provider_carbon.core.forecast.Forecast`, partial
  intervals weighted by the time they overlap the run).
* The counterfactuals run the same energy over the same runtime from another start, on the same series: the run's
  start (no shifting at all) and the fallback time (a fixed 02:00 cron). Where the series does not cover such a
  window the counterfactual is ``None``, never a guess.
* Savings are counterfactual minus actual, in grams and in percent of the counterfactual.

One record holds one signal and one unit: average and marginal intensities (or lifecycle and direct factors) are
different quantities and are never added: :func:`total_emissions` sums per signal and unit.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import Any

from airflow_provider_carbon.core.forecast import Forecast

__all__ = [
    "ACCOUNTING_SCHEMA_VERSION",
    "Accounting",
    "EnergySource",
    "IntensitySource",
    "account",
    "total_emissions",
]

ACCOUNTING_SCHEMA_VERSION = 1


class IntensitySource(str, Enum):
    """Where the experienced intensity came from."""

    #: the service's measured (or best-known) values over the run
    HISTORY = "history"
    #: the forecast the plan used (history was unavailable), so the figures are expectations
    FORECAST = "forecast"


class EnergySource(str, Enum):
    """How the job's energy was obtained."""

    #: declared average power x measured runtime
    DECLARED_POWER = "declared_power"
    #: declared energy per run
    DECLARED_ENERGY = "declared_energy"
    #: measured in the job's process by CodeCarbon (energy only: the intensity is still the grid's at that hour)
    MEASURED = "measured"


@dataclass(frozen=True)
class Accounting:
    """What one carbon-shifted run emitted, against what it would have emitted unshifted.

    Times are UTC; emissions in grams CO2eq (of the series' signal); intensities in ``unit``.
    """

    started_at: datetime
    ended_at: datetime
    runtime_s: float
    energy_kwh: float
    energy_source: EnergySource
    pue: float
    intensity_source: IntensitySource
    signal: str
    unit: str
    zone: str | None
    experienced_intensity: float
    emissions_g: float
    #: when the run (the DAG run, or the sensor's wait) started: the "no shifting" counterfactual's start
    baseline_start: datetime
    baseline_intensity: float | None
    emissions_if_started_at_baseline_g: float | None
    saving_vs_baseline_g: float | None
    saving_vs_baseline_pct: float | None
    fallback_start: datetime | None
    fallback_intensity: float | None
    emissions_if_fallback_g: float | None
    saving_vs_fallback_g: float | None
    saving_vs_fallback_pct: float | None
    #: how long the shift delayed the job: ``started_at - baseline_start``
    delay_s: float
    schema_version: int = ACCOUNTING_SCHEMA_VERSION

    def __post_init__(self) -> None:
        object.__setattr__(self, "energy_source", EnergySource(self.energy_source))
        object.__setattr__(self, "intensity_source", IntensitySource(self.intensity_source))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types (what XCom stores)."""
        data = asdict(self)
        for key, value in data.items():
            if isinstance(value, datetime):
                data[key] = value.astimezone(timezone.utc).isoformat()
            elif isinstance(value, Enum):
                data[key] = value.value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Accounting:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for key in ("started_at", "ended_at", "baseline_start", "fallback_start"):
            if values.get(key):
                values[key] = datetime.fromisoformat(values[key])
        return cls(**values)

    def summary(self) -> str:
        """One line for the task log."""
        # three significant digits: a short test job emits milligrams, a training run kilograms
        text = (
            f"ran {self.runtime_s / 60:.3g} min from {self.started_at.isoformat()}, {self.energy_kwh:.3g} kWh at "
            f"{self.experienced_intensity:.0f} {self.unit} ({self.intensity_source.value}): "
            f"{self.emissions_g:.3g} g CO2eq"
        )
        for label, grams, pct in (
            ("starting at once", self.saving_vs_baseline_g, self.saving_vs_baseline_pct),
            ("the fallback time", self.saving_vs_fallback_g, self.saving_vs_fallback_pct),
        ):
            if grams is not None and pct is not None:
                text += f"; {grams:.3g} g ({pct:.1f} %) saved against {label}"
        return text


def account(
    *,
    started_at: datetime,
    ended_at: datetime,
    intensity: Forecast,
    intensity_source: IntensitySource | str,
    baseline_start: datetime,
    fallback_start: datetime | None = None,
    power_kw: float | None = None,
    energy_kwh: float | None = None,
    energy_source: EnergySource | str | None = None,
    pue: float = 1.0,
) -> Accounting:
    """Account one run: its emissions over ``[started_at, ended_at)`` on ``intensity``, and the counterfactuals.

    :param started_at: when the job really started (tz-aware).
    :param ended_at: when it really ended (tz-aware, after ``started_at``).
    :param intensity: one series covering at least the run (history over the run, or the plan's forecast).
    :param intensity_source: which of the two ``intensity`` is.
    :param baseline_start: when the run would have started without carbon shifting (the run's or wait's start).
    :param fallback_start: when the fixed fallback time (02:00) would have started it; ``None`` for no such policy.
    :param power_kw: the job's declared average power draw (kW); or give ``energy_kwh``.
    :param energy_kwh: the job's energy per run (kWh), declared or measured (then ``energy_source="measured"``).
    :param energy_source: how ``energy_kwh`` was obtained (default: declared).
    :param pue: power usage effectiveness of the data centre (>= 1); multiplies the IT energy.
    :raises ValueError: naive or reversed times, no or both energy figures, a PUE below 1, a negative energy, or a
        series that does not cover the run.
    """
    for name, moment in (("started_at", started_at), ("ended_at", ended_at), ("baseline_start", baseline_start)):
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise ValueError(f"{name}={moment.isoformat()} has no timezone")
    if fallback_start is not None and (fallback_start.tzinfo is None or fallback_start.utcoffset() is None):
        raise ValueError(f"fallback_start={fallback_start.isoformat()} has no timezone")
    if not started_at < ended_at:
        raise ValueError(f"the job must end after it starts ({started_at.isoformat()} .. {ended_at.isoformat()})")
    if (power_kw is None) == (energy_kwh is None):
        raise ValueError("give exactly one of power_kw (average draw) and energy_kwh (energy per run)")
    if not pue >= 1.0:
        raise ValueError(f"pue must be at least 1, got {pue!r}")
    runtime = ended_at - started_at
    if power_kw is not None:
        if not power_kw >= 0:
            raise ValueError(f"power_kw must not be negative, got {power_kw!r}")
        it_energy, source = power_kw * runtime / timedelta(hours=1), EnergySource.DECLARED_POWER
    else:
        assert energy_kwh is not None
        if not energy_kwh >= 0:
            raise ValueError(f"energy_kwh must not be negative, got {energy_kwh!r}")
        it_energy, source = energy_kwh, EnergySource(energy_source or EnergySource.DECLARED_ENERGY)
    energy = it_energy * pue
    if not (intensity.start <= started_at and ended_at <= intensity.end):
        raise ValueError(
            f"the intensity series [{intensity.start.isoformat()}, {intensity.end.isoformat()}) does not cover the "
            f"run [{started_at.isoformat()}, {ended_at.isoformat()})"
        )
    experienced = intensity.mean(started_at, ended_at)
    emissions = energy * experienced
    baseline = _counterfactual(intensity, baseline_start, runtime, energy, emissions)
    fallback = _counterfactual(intensity, fallback_start, runtime, energy, emissions)
    return Accounting(
        started_at=started_at.astimezone(timezone.utc),
        ended_at=ended_at.astimezone(timezone.utc),
        runtime_s=runtime.total_seconds(),
        energy_kwh=energy,
        energy_source=source,
        pue=pue,
        intensity_source=IntensitySource(intensity_source),
        signal=intensity.signal.value,
        unit=intensity.unit,
        zone=intensity.zone,
        experienced_intensity=experienced,
        emissions_g=emissions,
        baseline_start=baseline_start.astimezone(timezone.utc),
        baseline_intensity=baseline[0],
        emissions_if_started_at_baseline_g=baseline[1],
        saving_vs_baseline_g=baseline[2],
        saving_vs_baseline_pct=baseline[3],
        fallback_start=fallback_start.astimezone(timezone.utc) if fallback_start is not None else None,
        fallback_intensity=fallback[0],
        emissions_if_fallback_g=fallback[1],
        saving_vs_fallback_g=fallback[2],
        saving_vs_fallback_pct=fallback[3],
        delay_s=(started_at - baseline_start).total_seconds(),
    )


def _counterfactual(
    intensity: Forecast, start: datetime | None, runtime: timedelta, energy: float, actual: float
) -> tuple[float | None, float | None, float | None, float | None]:
    """(mean intensity, emissions, saving in g, saving in %) of the same run from ``start``; all ``None`` where the
    series does not cover that window."""
    if start is None or start < intensity.start or start + runtime > intensity.end:
        return None, None, None, None
    mean = intensity.mean(start, start + runtime)
    grams = energy * mean
    saving = grams - actual
    return mean, grams, saving, (100.0 * saving / grams if grams > 0 else None)


def total_emissions(records: Iterable[Accounting]) -> dict[tuple[str, str], float]:
    """Grams per ``(signal, unit)``: the sums a budget or a report may add, never across signals or units."""
    totals: dict[tuple[str, str], float] = {}
    for record in records:
        key = (record.signal, record.unit)
        totals[key] = totals.get(key, 0.0) + record.emissions_g
    return totals
