"""The validated carbon-intensity series that every hook returns and every decision is made from.

Model: a step function. Point ``i`` says the intensity is ``values[i]`` from ``timestamps[i]`` until
``timestamps[i + 1]``; the last value holds until :attr:`Forecast.end`, which is given explicitly (an API that states
each period's ``to``) or taken as the median step (an API that sends only period starts). That is how every
service we wrap publishes its data ("the intensity of the period starting at"), and it makes the window maths
exact rather than interpolated.

Inside, time is integer microseconds since the Unix epoch in UTC, kept in float64 arrays: every value is an integer
below 2**53, so sums and differences of instants are exact and comparisons never suffer from rounding.

Nothing here imports Airflow; pandas is imported only by :meth:`Forecast.from_series` and
:meth:`Forecast.to_series`, so building forecasts from plain pairs stays cheap.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import TYPE_CHECKING, Any

import numpy as np

from airflow_provider_carbon.exceptions import InvalidForecastError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["DEFAULT_MAX_GAP", "DEFAULT_UNIT", "Forecast", "Signal", "from_utc_us", "timedelta_us", "to_utc_us"]

DEFAULT_UNIT = "gCO2eq/kWh"
#: A value is trusted to hold for at most this long before the next point. Longer silences are outages or dropped
#: estimations (Electricity Maps with ``disableEstimations``), not a flat grid.
DEFAULT_MAX_GAP = timedelta(hours=3)

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ONE_US = timedelta(microseconds=1)


class Signal(str, Enum):
    """Which carbon signal a series holds.

    ``average`` is the emission rate of the grid mix (Electricity Maps, UK Carbon Intensity); ``marginal`` is the
    rate of the plant that answers extra demand (WattTime MOER). The two are not comparable with each other.
    """

    AVERAGE = "average"
    MARGINAL = "marginal"


def to_utc_us(moment: datetime) -> int:
    """Return a tz-aware instant as integer microseconds since the Unix epoch.

    :raises ValueError: if ``moment`` is naive; a naive time means different instants on different machines.
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"naive datetime {moment.isoformat()} is ambiguous: give a timezone-aware datetime")
    return (moment - _EPOCH) // _ONE_US


def from_utc_us(us: float) -> datetime:
    """Inverse of :func:`to_utc_us`: a UTC ``datetime``."""
    return _EPOCH + timedelta(microseconds=int(us))


def timedelta_us(value: timedelta, name: str = "duration") -> int:
    """Exact microseconds of a timedelta (also of subclasses such as pendulum's Duration, whose ``//`` breaks)."""
    if not isinstance(value, timedelta):
        raise TypeError(f"{name} must be a datetime.timedelta, got {type(value).__name__}")
    return (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds


class Forecast:
    """A validated, piecewise-constant carbon-intensity series with its metadata.

    Build one with :meth:`from_points` or :meth:`from_series`; both validate and raise
    :class:`~airflow_provider_carbon.exceptions.InvalidForecastError` naming the first bad point.

    .. code-block:: python

        from datetime import datetime, timedelta, timezone
        from airflow_provider_carbon import Forecast

        t0 = datetime(2025, 3, 1, tzinfo=timezone.utc)
        fc = Forecast.from_points([(t0, 320.0), (t0 + timedelta(hours=1), 180.0)], zone="DE")
        fc.end  # 2025-03-01T02:00Z: the last value holds for the median step (1 h)

    :ivar zone: grid zone key (``"DE"``, ``"US-CAL-CISO"``) or a service's region name.
    :ivar signal: :class:`Signal` average or marginal.
    :ivar unit: always ``gCO2eq/kWh`` after a hook's conversion.
    :ivar source: which service produced the data (``"electricitymaps"``, ``"simulator"`` ...).
    :ivar generated_at: when the service computed the forecast, if it says.
    """

    __slots__ = (
        "_bounds",
        "_cum",
        "_estimated",
        "_offset_list",
        "_offsets",
        "_origin",
        "_values",
        "_widths",
        "generated_at",
        "signal",
        "source",
        "unit",
        "zone",
    )

    def __init__(
        self,
        bounds_us: np.ndarray,
        values: np.ndarray,
        estimated: np.ndarray,
        *,
        zone: str | None,
        signal: Signal,
        unit: str,
        source: str | None,
        generated_at: datetime | None,
    ) -> None:
        # Private: callers use from_points/from_series, which validate. bounds_us has len(values) + 1 entries,
        # the last being the end of the last step.
        self._bounds = bounds_us
        self._values = values
        self._estimated = estimated
        self.zone = zone
        self.signal = signal
        self.unit = unit
        self.source = source
        self.generated_at = generated_at
        self._origin = from_utc_us(bounds_us[0])
        # Offsets from the first timestamp, in microseconds; exact integers stored as floats.
        self._offsets = bounds_us - bounds_us[0]
        self._offset_list = self._offsets.tolist()  # for bisect in the optimizer's hot path
        self._widths = np.diff(self._offsets)
        # Integral of intensity over time from the start to each boundary: with it the emissions of any window
        # are two interpolations (the cumulative integral of a step function is piecewise linear).
        self._cum = np.concatenate(([0.0], np.cumsum(values * self._widths)))
        for arr in (self._bounds, self._values, self._estimated, self._offsets, self._widths, self._cum):
            arr.flags.writeable = False

    # -- construction -------------------------------------------------------------------------------------------

    @classmethod
    def from_points(
        cls,
        points: Iterable[Sequence[Any]],
        *,
        end: datetime | None = None,
        zone: str | None = None,
        signal: Signal | str = Signal.AVERAGE,
        unit: str = DEFAULT_UNIT,
        source: str | None = None,
        generated_at: datetime | None = None,
        estimated: Sequence[bool] | None = None,
        max_gap: timedelta | None = DEFAULT_MAX_GAP,
    ) -> Forecast:
        """Build a forecast from ``(timestamp, value)`` or ``(timestamp, value, is_estimated)`` pairs.

        :param points: tz-aware timestamps (any timezone; stored as UTC) with intensities in ``unit``.
        :param end: when the last value stops holding; default: last timestamp plus the median step.
        :param zone: grid zone the series describes.
        :param signal: ``"average"`` or ``"marginal"``.
        :param unit: unit of the values.
        :param source: the service that produced them.
        :param generated_at: when the service generated the forecast.
        :param estimated: one flag per point (overrides a third element in ``points``).
        :param max_gap: longest allowed step between consecutive timestamps; ``None`` allows any.
        :raises InvalidForecastError: naming the first bad point.
        """
        stamps: list[int] = []
        vals: list[float] = []
        flags: list[bool] = []
        for i, point in enumerate(points):
            if len(point) not in (2, 3):
                raise InvalidForecastError(
                    "bad_shape", f"expected (timestamp, value[, estimated]), got {point!r}", index=i, zone=zone
                )
            moment = point[0]
            if not isinstance(moment, datetime):
                raise InvalidForecastError("bad_shape", f"timestamp {moment!r} is not a datetime", index=i, zone=zone)
            if moment.tzinfo is None or moment.utcoffset() is None:
                raise InvalidForecastError(
                    "naive_timestamp",
                    "timestamp has no timezone; give tz-aware timestamps (UTC inside)",
                    index=i,
                    timestamp=moment,
                    zone=zone,
                )
            stamps.append(to_utc_us(moment))
            try:
                vals.append(float(point[1]))
            except (TypeError, ValueError):
                raise InvalidForecastError(
                    "not_finite", f"value {point[1]!r} is not a number", index=i, timestamp=moment, zone=zone
                ) from None
            flags.append(bool(point[2]) if len(point) == 3 else False)
        return cls._build(
            np.array(stamps, dtype=np.int64),
            np.array(vals, dtype=np.float64),
            np.array(estimated if estimated is not None else flags, dtype=bool),
            end=end,
            zone=zone,
            signal=signal,
            unit=unit,
            source=source,
            generated_at=generated_at,
            max_gap=max_gap,
        )

    @classmethod
    def from_series(
        cls,
        series: pd.Series,
        *,
        end: datetime | None = None,
        zone: str | None = None,
        signal: Signal | str = Signal.AVERAGE,
        unit: str = DEFAULT_UNIT,
        source: str | None = None,
        generated_at: datetime | None = None,
        estimated: Sequence[bool] | None = None,
        max_gap: timedelta | None = DEFAULT_MAX_GAP,
    ) -> Forecast:
        """Build a forecast from a pandas Series indexed by tz-aware timestamps.

        Parameters as in :meth:`from_points`; ``zone`` defaults to the series' name when that is a string.

        :raises InvalidForecastError: naming the first bad point.
        """
        import pandas as pd  # heavy: only when a caller actually hands us pandas data

        if zone is None and isinstance(series.name, str) and series.name != "carbon_intensity":
            zone = series.name
        index = series.index
        if len(series) and not isinstance(index, pd.DatetimeIndex):
            raise InvalidForecastError(
                "bad_shape", f"the index must be a DatetimeIndex, got {type(index).__name__}", zone=zone
            )
        if len(series) and index.tz is None:
            raise InvalidForecastError(
                "naive_timestamp",
                "timestamp has no timezone; localize the index (e.g. series.tz_localize('UTC'))",
                index=0,
                timestamp=index[0].to_pydatetime(),
                zone=zone,
            )
        if len(series):
            stamps = np.asarray(index.tz_convert("UTC").as_unit("us").asi8, dtype=np.int64)
        else:
            stamps = np.array([], dtype=np.int64)
        try:
            vals = series.to_numpy(dtype=np.float64, na_value=np.nan)
        except (TypeError, ValueError) as err:
            raise InvalidForecastError("not_finite", f"values are not numbers ({err})", zone=zone) from None
        flags = np.zeros(len(vals), dtype=bool) if estimated is None else np.array(estimated, dtype=bool)
        return cls._build(
            stamps,
            vals,
            flags,
            end=end,
            zone=zone,
            signal=signal,
            unit=unit,
            source=source,
            generated_at=generated_at,
            max_gap=max_gap,
        )

    @classmethod
    def _build(
        cls,
        stamps: np.ndarray,
        vals: np.ndarray,
        flags: np.ndarray,
        *,
        end: datetime | None,
        zone: str | None,
        signal: Signal | str,
        unit: str,
        source: str | None,
        generated_at: datetime | None,
        max_gap: timedelta | None,
    ) -> Forecast:
        n = len(vals)
        if n == 0:
            raise InvalidForecastError("empty", "the series has no points", zone=zone)
        if len(flags) != n:
            raise InvalidForecastError("bad_shape", f"{len(flags)} estimated flags for {n} points", zone=zone)
        if generated_at is not None:
            to_utc_us(generated_at)  # refuses a naive generated_at
        max_gap_us = None if max_gap is None else timedelta_us(max_gap, "max_gap")
        _check_points(stamps, vals, max_gap_us, zone)
        if not np.any(vals > 0):
            raise InvalidForecastError(
                "all_zero",
                f"all {n} values are 0; carbon APIs send zeros during outages, so this series cannot be trusted",
                zone=zone,
            )
        last = int(stamps[-1])
        if end is not None:
            try:
                end_us = to_utc_us(end)
            except ValueError:
                raise InvalidForecastError("bad_end", "end has no timezone", zone=zone) from None
            if end_us <= last:
                raise InvalidForecastError(
                    "bad_end",
                    f"end {end.isoformat()} is not after the last timestamp",
                    index=n - 1,
                    timestamp=from_utc_us(last),
                    zone=zone,
                )
            if max_gap_us is not None and end_us - last > max_gap_us:
                raise InvalidForecastError(
                    "gap",
                    f"the last value would hold {timedelta(microseconds=end_us - last)} until end, "
                    f"longer than the allowed {max_gap}",
                    index=n - 1,
                    timestamp=from_utc_us(last),
                    value=float(vals[-1]),
                    zone=zone,
                )
        elif n >= 2:
            end_us = last + int(np.median(np.diff(stamps)))
        else:
            raise InvalidForecastError(
                "bad_end",
                "a single point needs an explicit end (how long its value holds)",
                index=0,
                timestamp=from_utc_us(last),
                zone=zone,
            )
        bounds = np.append(stamps, end_us).astype(np.float64)
        return cls(
            bounds,
            vals.astype(np.float64, copy=True),
            flags.astype(bool, copy=True),
            zone=zone,
            signal=Signal(signal),
            unit=unit,
            source=source,
            generated_at=generated_at,
        )

    # -- reading --------------------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return (
            f"Forecast(zone={self.zone!r}, source={self.source!r}, signal={self.signal.value!r}, "
            f"points={len(self)}, start={self.start.isoformat()}, end={self.end.isoformat()})"
        )

    @property
    def start(self) -> datetime:
        """First instant the series covers (UTC)."""
        return self._origin

    @property
    def end(self) -> datetime:
        """Instant the last value stops holding (UTC)."""
        return from_utc_us(self._bounds[-1])

    @property
    def timestamps(self) -> list[datetime]:
        """Start of each step, as UTC datetimes."""
        return [from_utc_us(us) for us in self._bounds[:-1]]

    @property
    def values(self) -> np.ndarray:
        """Intensities, read-only."""
        return self._values

    @property
    def estimated(self) -> np.ndarray:
        """One flag per point: ``True`` where the service marked the value as estimated, read-only."""
        return self._estimated

    def to_points(self) -> list[tuple[datetime, float]]:
        """The series as ``(timestamp, value)`` pairs."""
        return list(zip(self.timestamps, self._values.tolist(), strict=True))

    def to_series(self) -> pd.Series:
        """The series as a pandas Series indexed by UTC timestamps."""
        import pandas as pd

        index = pd.DatetimeIndex(self._bounds[:-1].astype("int64").astype("datetime64[us]"), tz="UTC")
        return pd.Series(self._values, index=index, name=self.zone or "carbon_intensity")

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (for caches, XCom and triggers); :meth:`from_dict` reverses it."""
        return {
            "zone": self.zone,
            "signal": self.signal.value,
            "unit": self.unit,
            "source": self.source,
            "generated_at": self.generated_at.isoformat() if self.generated_at else None,
            "timestamps": [t.isoformat() for t in self.timestamps],
            "values": self._values.tolist(),
            "estimated": self._estimated.tolist(),
            "end": self.end.isoformat(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Forecast:
        """Rebuild a forecast from :meth:`to_dict` output (validated again; gaps were checked when it was built)."""
        return cls.from_points(
            list(zip((datetime.fromisoformat(t) for t in data["timestamps"]), data["values"], strict=True)),
            estimated=data.get("estimated"),
            **_stored_metadata(data),
        )

    def window(self, start: datetime, end: datetime) -> Forecast:
        """The steps that overlap ``[start, end)``, whole (so means inside the window are unchanged).

        :raises ValueError: if no step overlaps.
        """
        a, b = self.offset_us(start), self.offset_us(end)
        first = max(int(np.searchsorted(self._offsets, a, side="right")) - 1, 0)
        last = min(int(np.searchsorted(self._offsets, b, side="left")), len(self._values))
        if not a < b or first >= last or b <= 0 or a >= self._offsets[-1]:
            raise ValueError(f"[{start.isoformat()}, {end.isoformat()}) does not overlap the forecast")
        return Forecast(
            self._bounds[first : last + 1].copy(),
            self._values[first:last].copy(),
            self._estimated[first:last].copy(),
            zone=self.zone,
            signal=self.signal,
            unit=self.unit,
            source=self.source,
            generated_at=self.generated_at,
        )

    def to_compact(self, digits: int = 1) -> dict[str, Any]:
        """A small JSON form for records (the decision keeps the forecast its plan used): a start, one step when
        the steps are regular (else every offset), values rounded to ``digits``. :meth:`from_compact` reverses it."""
        widths = np.diff(self._offsets)
        data: dict[str, Any] = {
            "zone": self.zone,
            "signal": self.signal.value,
            "unit": self.unit,
            "source": self.source,
            "generated_at": self.generated_at.isoformat() if self.generated_at else None,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "values": [round(v, digits) for v in self._values.tolist()],
        }
        if np.all(widths == widths[0]):
            data["step_s"] = float(widths[0]) / 1e6
        else:
            data["offsets_s"] = [float(o) / 1e6 for o in self._offsets[:-1].tolist()]
        return data

    @classmethod
    def from_compact(cls, data: dict[str, Any]) -> Forecast:
        """Rebuild a forecast from :meth:`to_compact` output (validated again)."""
        start = datetime.fromisoformat(data["start"])
        values = data["values"]
        if "step_s" in data:
            offsets = [i * float(data["step_s"]) for i in range(len(values))]
        else:
            offsets = [float(o) for o in data["offsets_s"]]
        return cls.from_points(
            [(start + timedelta(seconds=o), v) for o, v in zip(offsets, values, strict=True)], **_stored_metadata(data)
        )

    @property
    def offsets_us(self) -> np.ndarray:
        """Step boundaries as microseconds from :attr:`start`: ``len(self) + 1`` read-only values, the last being
        the offset of :attr:`end`."""
        return self._offsets

    @property
    def offsets_list(self) -> list[float]:
        """:attr:`offsets_us` as a list, for :mod:`bisect` (faster than numpy for one scalar)."""
        return self._offset_list

    @property
    def cumulative(self) -> np.ndarray:
        """Integral of intensity over time from :attr:`start` to each boundary of :attr:`offsets_us` (intensity x
        microseconds, read-only). The integral of a step function is piecewise linear, so the emissions of any
        window are two interpolations in it."""
        return self._cum

    def offset_us(self, moment: datetime) -> int:
        """Microseconds from :attr:`start` to ``moment`` (negative before it)."""
        return to_utc_us(moment) - int(self._bounds[0])

    def at_offset(self, offset_us: float) -> datetime:
        """Inverse of :meth:`offset_us`."""
        return self._origin + timedelta(microseconds=int(offset_us))

    def value_at(self, moment: datetime) -> float:
        """Intensity in force at ``moment``.

        :raises ValueError: if ``moment`` is outside ``[start, end)``.
        """
        x = self.offset_us(moment)
        if not 0 <= x < self._offsets[-1]:
            raise ValueError(f"{moment.isoformat()} is outside the forecast [{self.start}, {self.end})")
        return float(self._values[int(np.searchsorted(self._offsets, x, side="right")) - 1])

    def mean(self, start: datetime, end: datetime) -> float:
        """Time-weighted mean intensity over ``[start, end)`` under the step model.

        :raises ValueError: if the interval is empty or not inside the forecast.
        """
        a, b = self.offset_us(start), self.offset_us(end)
        if not 0 <= a < b <= self._offsets[-1]:
            raise ValueError(
                f"[{start.isoformat()}, {end.isoformat()}) is empty or outside the forecast "
                f"[{self.start.isoformat()}, {self.end.isoformat()})"
            )
        return float(self._integral(a, b) / (b - a))

    def _integral(self, a: float, b: float) -> float:
        """Exact integral over offsets ``[a, b)`` (0 <= a < b <= end), summed segment by segment.

        Slower than differencing ``_cum`` but free of its cancellation error, so the figures we report are as exact
        as float64 allows even deep into a year-long series.
        """
        off, vals = self._offsets, self._values
        i = int(np.searchsorted(off, a, side="right")) - 1
        j = int(np.searchsorted(off, b, side="left")) - 1
        if i == j:
            return float(vals[i]) * (b - a)
        middle = float(np.dot(vals[i + 1 : j], self._widths[i + 1 : j])) if j > i + 1 else 0.0
        return float(vals[i] * (off[i + 1] - a) + middle + vals[j] * (b - off[j]))


def _stored_metadata(data: dict[str, Any]) -> dict[str, Any]:
    """The :meth:`Forecast.from_points` arguments besides the points, from :meth:`Forecast.to_dict` or
    :meth:`Forecast.to_compact` output (gaps were checked when the forecast was first built)."""
    generated = data.get("generated_at")
    return {
        "end": datetime.fromisoformat(data["end"]),
        "zone": data.get("zone"),
        "signal": data.get("signal", Signal.AVERAGE),
        "unit": data.get("unit", DEFAULT_UNIT),
        "source": data.get("source"),
        "generated_at": datetime.fromisoformat(generated) if generated else None,
        "max_gap": None,
    }


def _check_points(stamps: np.ndarray, vals: np.ndarray, max_gap_us: int | None, zone: str | None) -> None:
    """Raise for the first point that is bad in any way; at one point the earlier check in this list wins."""
    diffs = np.diff(stamps)
    checks: list[tuple[str, np.ndarray, int]] = [
        ("not_finite", ~np.isfinite(vals), 0),
        ("negative", vals < 0, 0),
        ("duplicate", diffs == 0, 1),
        ("unsorted", diffs < 0, 1),
    ]
    if max_gap_us is not None:
        checks.append(("gap", diffs > max_gap_us, 1))
    first: tuple[int, int] | None = None  # (index, check number)
    for order, (_, mask, shift) in enumerate(checks):
        hits = np.flatnonzero(mask)
        if hits.size and (first is None or hits[0] + shift < first[0]):
            first = (int(hits[0]) + shift, order)
    if first is None:
        return
    index, order = first
    reason = checks[order][0]
    value = float(vals[index])
    moment = from_utc_us(stamps[index])
    if reason == "not_finite":
        detail = f"value {value} is not finite"
    elif reason == "negative":
        detail = f"value {value} is negative"
    elif reason == "duplicate":
        detail = "timestamp repeats the previous point's"
    elif reason == "unsorted":
        detail = f"timestamp is before the previous point's ({from_utc_us(stamps[index - 1]).isoformat()})"
    else:
        step = timedelta(microseconds=int(diffs[index - 1]))
        allowed = timedelta(microseconds=max_gap_us or 0)
        detail = f"{step} after the previous point, longer than the allowed gap of {allowed}"
    raise InvalidForecastError(reason, detail, index=index, timestamp=moment, value=value, zone=zone)
