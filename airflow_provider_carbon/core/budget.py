"""Carbon budgets: a limit in kilograms per day, week, month or year for a DAG (or every DAG with a tag), and what
to do once the jobs accounted in the period have used it up.

Pure: no Airflow, no I/O. The ledger of a scope is a plain JSON-ready dict (``{"version": 1, "entries": [...]}``,
one entry per accounted job: ``id``, ``ended_at``, ``grams``, ``signal``); where it is stored and how concurrent
writers are handled is the Airflow adapter's business (:mod:`airflow_provider_carbon.operators.budget`).

The semantics, in full:

* **The period** is the calendar day, ISO week (from Monday 00:00), month or year containing "now", in the budget's
  timezone (the sensor's fallback timezone, i.e. the DAG's unless given). Boundaries are local midnights, so a day
  is 23 or 25 hours long when the clocks change, and a day whose midnight does not exist starts at the first local
  instant of that date.
* **Usage** is the sum of the entries that ended within ``[period_start, period_end)`` and have the budget's signal.
  Average and marginal emissions are different quantities and are never added: with no signal given, the signal of
  the newest entry is the one counted (what this DAG's jobs are accounted in now), and entries of other signals are
  reported apart (``other_signal_kg``), never added.
* **The check** happens before a job waits: "already over" (``used >= limit``) acts; the job about to run is not
  counted in advance. So a budget that the first runs exhaust stops the next one; a run that starts just under the
  limit may end over it, by at most one job.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from enum import Enum
from typing import Any

from airflow_provider_carbon.core.fallback import resolve_timezone

__all__ = [
    "LEDGER_RETENTION",
    "Budget",
    "BudgetCheck",
    "Outcome",
    "Period",
    "Policy",
    "add_entry",
    "check",
    "period_bounds",
    "prune",
    "usage",
]

#: ledger entries older than this are dropped when the ledger is written: the longest period (a leap year, in any
#: timezone) plus a day
LEDGER_RETENTION = timedelta(days=367)
LEDGER_VERSION = 1


class Period(str, Enum):
    """The calendar period a budget's limit applies to."""

    DAY = "day"
    #: ISO week: Monday 00:00 to the next Monday 00:00
    WEEK = "week"
    MONTH = "month"
    YEAR = "year"


class Policy(str, Enum):
    """What the check does once the period's usage has reached the limit."""

    #: log a warning and let the job run
    WARN = "warn"
    #: skip the sensor, and so the job and everything downstream by the default trigger rule; the run stays green
    SKIP = "skip"
    #: fail the sensor without retries
    FAIL = "fail"


class Outcome(str, Enum):
    """What the check decided (the record's ``budget.outcome``)."""

    #: under the limit: the job runs
    WITHIN = "within"
    #: over, policy ``warn``: the job runs
    WARNED = "warned"
    #: over, policy ``skip``: the job does not run
    SKIPPED = "skipped"
    #: over, policy ``fail``: the task fails
    FAILED = "failed"
    #: the ledger could not be read: the job runs (a budget never breaks the pipeline), ``error`` says why
    UNKNOWN = "unknown"


_OVER = {Policy.WARN: Outcome.WARNED, Policy.SKIP: Outcome.SKIPPED, Policy.FAIL: Outcome.FAILED}


@dataclass(frozen=True)
class Budget:
    """A carbon budget: at most ``limit_kg`` kilograms CO2eq per ``period`` for a DAG or a tag.

    :param limit_kg: the limit in kilograms CO2eq (of ``signal``) per period; positive.
    :param period: ``day``, ``week`` (ISO, from Monday), ``month`` or ``year``, in the DAG's timezone.
    :param policy: once the limit is reached: ``warn`` (log, run), ``skip`` (skip the job, the run stays green) or
        ``fail`` (fail the sensor, no retries).
    :param scope: ``"dag"`` (the DAG's own jobs; default) or ``"tag:<tag>"`` (every DAG with that tag).
    :param signal: the emissions counted: ``average`` or ``marginal``; ``None`` (default): the signal of the newest
        accounted job.

    .. code-block:: python

        from airflow_provider_carbon.core.budget import Budget

        Budget(limit_kg=5, period="month", policy="skip")  # 5 kg a month for this DAG, then skip
        Budget.parse({"kg": 20, "per": "week", "policy": "warn", "scope": "tag:ml"})
    """

    limit_kg: float
    period: Period = Period.MONTH
    policy: Policy = Policy.WARN
    scope: str = "dag"
    signal: str | None = None

    def __post_init__(self) -> None:
        try:
            limit = float(self.limit_kg)
        except (TypeError, ValueError):
            raise ValueError(f"budget limit must be a number of kilograms, got {self.limit_kg!r}") from None
        if not (math.isfinite(limit) and limit > 0):
            raise ValueError(f"budget limit must be a positive number of kilograms, got {self.limit_kg!r}")
        object.__setattr__(self, "limit_kg", limit)
        object.__setattr__(self, "period", _enum(Period, self.period, "period"))
        object.__setattr__(self, "policy", _enum(Policy, self.policy, "policy"))
        scope = str(self.scope).strip()
        if scope != "dag" and not (scope.startswith("tag:") and scope[4:].strip()):
            raise ValueError(f"budget scope must be 'dag' or 'tag:<tag>', got {self.scope!r}")
        object.__setattr__(self, "scope", scope)
        if self.signal in ("", None):
            object.__setattr__(self, "signal", None)

    @classmethod
    def parse(cls, value: Budget | Mapping[str, Any] | str) -> Budget:
        """A budget from itself, a dict (``kg`` or ``limit_kg``, ``per`` or ``period``, ``policy``, ``scope``,
        ``signal``; values may be strings, as Jinja renders them) or that dict as JSON.

        :raises ValueError: for a missing limit, an unknown key, period, policy or scope.
        """
        if isinstance(value, Budget):
            return value
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                raise ValueError(f"budget must be a dict or its JSON, got {value!r}") from None
        if not isinstance(value, Mapping):
            raise ValueError(f"budget must be a Budget, a dict or its JSON, got {type(value).__name__}")
        aliases = {"kg": "limit_kg", "per": "period"}
        values = {aliases.get(k, k): v for k, v in value.items()}
        unknown = set(values) - {"limit_kg", "period", "policy", "scope", "signal"}
        if unknown:
            raise ValueError(f"unknown budget keys {sorted(unknown)}: use kg, per, policy, scope, signal")
        if "limit_kg" not in values:
            raise ValueError("a budget needs a limit: give kg (kilograms CO2eq per period)")
        return cls(**values)

    def scope_key(self, dag_id: str) -> str:
        """The scope as the record writes it: ``dag:<dag_id>`` or ``tag:<tag>``."""
        return f"dag:{dag_id}" if self.scope == "dag" else f"tag:{self.scope[4:].strip()}"


def _enum(kind: type[Enum], value: Any, name: str) -> Any:
    try:
        return kind(str(getattr(value, "value", value)).strip().lower())
    except ValueError:
        choices = ", ".join(member.value for member in kind)  # type: ignore[attr-defined]
        raise ValueError(f"budget {name} must be one of {choices}; got {value!r}") from None


def _local_midnight(day: date, tz: Any) -> datetime:
    """The first instant of ``day`` in ``tz``. A midnight skipped by a clock change (fold=0 takes the offset in force
    before the gap) lands on the first local instant after it, which is where that day begins."""
    return datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(timezone.utc)


def period_bounds(period: Period | str, now: datetime, tz: str | Any) -> tuple[datetime, datetime]:
    """``[start, end)`` in UTC of the calendar ``period`` containing ``now`` in timezone ``tz``.

    :raises ValueError: for a naive ``now`` or an unknown timezone.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"now={now.isoformat()} has no timezone")
    zone = resolve_timezone(tz)
    today = now.astimezone(zone).date()
    kind = Period(period)
    if kind is Period.DAY:
        first, after = today, today + timedelta(days=1)
    elif kind is Period.WEEK:
        first = today - timedelta(days=today.weekday())
        after = first + timedelta(days=7)
    elif kind is Period.MONTH:
        first = today.replace(day=1)
        after = date(first.year + (first.month == 12), first.month % 12 + 1, 1)
    else:
        first, after = date(today.year, 1, 1), date(today.year + 1, 1, 1)
    return _local_midnight(first, zone), _local_midnight(after, zone)


def _entries(ledger: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    if not ledger:
        return []
    entries = ledger.get("entries")
    if not isinstance(entries, list):
        raise ValueError(f"a budget ledger holds a list of entries, got {type(entries).__name__}")
    return [e for e in entries if isinstance(e, dict)]


def _ended(entry: Mapping[str, Any]) -> datetime:
    return datetime.fromisoformat(str(entry["ended_at"]))


def usage(
    ledger: Mapping[str, Any] | None, start: datetime, end: datetime, signal: str | None
) -> tuple[float, float, int, str | None]:
    """``(grams of signal, grams of other signals, entries counted, signal counted)`` for entries that ended in
    ``[start, end)``. ``signal=None`` counts the signal of the newest entry of the ledger."""
    entries = _entries(ledger)
    if signal is None and entries:
        signal = str(max(entries, key=_ended).get("signal"))
    grams = other = 0.0
    counted = 0
    for entry in entries:
        if not start <= _ended(entry) < end:
            continue
        if entry.get("signal") == signal:
            grams += float(entry["grams"])
            counted += 1
        else:
            other += float(entry["grams"])
    return grams, other, counted, signal


@dataclass(frozen=True)
class BudgetCheck:
    """What a budget check found and decided; :meth:`to_dict` is the decision record's ``budget``.

    :param budget: the budget checked.
    :param scope: ``dag:<dag_id>`` or ``tag:<tag>``.
    :param period_start: the period's first instant (UTC).
    :param period_end: the next period's first instant (UTC).
    :param timezone: the timezone of the period's boundaries.
    :param used_kg: kilograms of ``signal`` accounted in the period; ``None`` when the ledger was unreadable.
    :param outcome: what the check decided.
    :param signal: the signal counted (``None``: nothing accounted yet).
    :param other_signal_kg: kilograms of other signals in the period, reported, never added.
    :param jobs: how many accounted jobs ``used_kg`` sums.
    :param error: why the ledger could not be read (outcome ``unknown``).
    """

    budget: Budget
    scope: str
    period_start: datetime
    period_end: datetime
    timezone: str
    used_kg: float | None
    outcome: Outcome
    signal: str | None = None
    other_signal_kg: float = 0.0
    jobs: int = 0
    error: str | None = None

    @property
    def remaining_kg(self) -> float | None:
        return None if self.used_kg is None else max(self.budget.limit_kg - self.used_kg, 0.0)

    @property
    def over(self) -> bool:
        return self.outcome in (Outcome.WARNED, Outcome.SKIPPED, Outcome.FAILED)

    def to_dict(self) -> dict[str, Any]:
        return {
            "scope": self.scope,
            "period": self.budget.period.value,
            "period_start": self.period_start.isoformat(),
            "period_end": self.period_end.isoformat(),
            "timezone": self.timezone,
            "limit_kg": self.budget.limit_kg,
            "used_kg": self.used_kg,
            "remaining_kg": self.remaining_kg,
            "policy": self.budget.policy.value,
            "outcome": self.outcome.value,
            "signal": self.signal,
            "other_signal_kg": self.other_signal_kg,
            "jobs": self.jobs,
            "error": self.error,
        }

    def summary(self) -> str:
        """One line for the task log."""
        head = f"carbon budget {self.scope} {self.budget.limit_kg:g} kg/{self.budget.period.value}"
        if self.used_kg is None:
            return f"{head}: usage unknown ({self.error}); the job runs"
        return (
            f"{head} from {self.period_start.isoformat()}: {self.used_kg:.3g} kg used by {self.jobs} job(s) "
            f"({self.signal or 'nothing accounted'}), {self.remaining_kg:.3g} kg left: {self.outcome.value}"
        )


def check(
    budget: Budget,
    ledger: Mapping[str, Any] | None,
    *,
    dag_id: str,
    now: datetime,
    tz: str,
    error: BaseException | None = None,
) -> BudgetCheck:
    """Check ``budget`` against the ``ledger`` of its scope at ``now``: ``used >= limit`` applies the policy.

    ``error`` (the ledger could not be read) gives outcome ``unknown``: the job runs.
    """
    start, end = period_bounds(budget.period, now, tz)
    common = {"budget": budget, "scope": budget.scope_key(dag_id), "period_start": start, "period_end": end}
    if error is not None:
        text = f"{type(error).__name__}: {error}"
        return BudgetCheck(**common, timezone=tz, used_kg=None, outcome=Outcome.UNKNOWN, error=text)
    grams, other, jobs, signal = usage(ledger, start, end, budget.signal)
    used = grams / 1000.0
    outcome = _OVER[budget.policy] if used >= budget.limit_kg else Outcome.WITHIN
    return BudgetCheck(
        **common,
        timezone=tz,
        used_kg=used,
        outcome=outcome,
        signal=signal,
        other_signal_kg=other / 1000.0,
        jobs=jobs,
    )


def prune(entries: Iterable[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    """The entries no period can still count (older than :data:`LEDGER_RETENTION`) dropped, oldest first."""
    cutoff = now - LEDGER_RETENTION
    return sorted((e for e in entries if _ended(e) >= cutoff), key=_ended)


def add_entry(ledger: Mapping[str, Any] | None, entry: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """A new ledger: ``ledger`` with ``entry`` added (replacing one of the same ``id``: a repeated write of one job
    counts once) and pruned."""
    for key in ("id", "ended_at", "grams", "signal"):
        if key not in entry:
            raise ValueError(f"a ledger entry needs {key!r}: {dict(entry)!r}")
    kept = [e for e in _entries(ledger) if e.get("id") != entry["id"]]
    return {"version": LEDGER_VERSION, "entries": prune([*kept, dict(entry)], now)}
