"""Grid models for the simulator: a seeded synthetic grid, or a replay of a user's CSV of real data.

Both are pure functions of simulated time, so a forecast asked for twice (by the sensor, then by the demo that
prints it) is the same forecast, and a test can compute the optimum the sensor should have found.
"""

from __future__ import annotations

import csv
import hashlib
import math
from bisect import bisect_right
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

__all__ = ["CsvGrid", "PROFILES", "SyntheticGrid", "ZoneProfile"]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class ZoneProfile:
    """Shape of a zone's intensity (gCO2eq/kWh).

    :param base: the level around which it moves.
    :param daily: amplitude of the demand cycle (cleanest at night, dirtiest in the evening peak).
    :param solar: how much midday sun pulls intensity down.
    :param weather: amplitude of multi-day weather swings (wind).
    :param noise: hour-to-hour noise.
    :param utc_offset_h: local solar time offset, so the sun sets where it should.
    """

    base: float
    daily: float
    solar: float
    weather: float
    noise: float
    utc_offset_h: float


#: Profiles loosely shaped after published annual figures (national averages: SE ~40, FR ~60, ES ~190,
#: GB ~250, DE ~370, PL ~660); they make realistic-looking demos and tests, not data.
PROFILES: dict[str, ZoneProfile] = {
    "SE-SE3": ZoneProfile(base=40, daily=8, solar=3, weather=12, noise=3, utc_offset_h=1),
    "FR": ZoneProfile(base=60, daily=20, solar=10, weather=15, noise=4, utc_offset_h=1),
    "ES": ZoneProfile(base=200, daily=30, solar=110, weather=40, noise=8, utc_offset_h=1),
    "GB": ZoneProfile(base=240, daily=60, solar=40, weather=90, noise=10, utc_offset_h=0),
    "DE": ZoneProfile(base=400, daily=60, solar=150, weather=110, noise=12, utc_offset_h=1),
    "PL": ZoneProfile(base=670, daily=40, solar=60, weather=50, noise=12, utc_offset_h=1),
    "US-CAL-CISO": ZoneProfile(base=260, daily=50, solar=150, weather=30, noise=10, utc_offset_h=-8),
    "US-MIDA-PJM": ZoneProfile(base=380, daily=40, solar=30, weather=40, noise=10, utc_offset_h=-5),
}


def _unit_noise(*parts: object) -> float:
    """A deterministic standard-normal-ish number from the parts (sum of uniforms; no global RNG state)."""
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    uniforms = [int.from_bytes(digest[i : i + 4], "big") / 2**32 for i in range(0, 24, 4)]
    return (sum(uniforms) - 3.0) / math.sqrt(0.5)  # 6 uniforms: mean 3, variance 0.5


class SyntheticGrid:
    """Daily demand cycle, solar dip, multi-day weather and hourly noise, all seeded and deterministic."""

    def __init__(self, zone: str, *, seed: int = 7, profile: ZoneProfile | None = None) -> None:
        self.zone = zone
        self.seed = seed
        self.profile = profile or PROFILES.get(zone) or ZoneProfile(300, 50, 60, 60, 10, 0)
        # weather: three slow waves with seeded phases (periods 2.3, 3.7 and 6.1 days)
        self._waves = [(p, 2 * math.pi * ((_unit_noise(zone, seed, "wave", p) + 3) % 1)) for p in (55.2, 88.8, 146.4)]

    def value(self, moment: datetime) -> float:
        """The actual intensity in force at ``moment`` (held constant within each hour)."""
        p = self.profile
        hour_index = math.floor((moment - _EPOCH).total_seconds() / 3600)
        local_hour = (hour_index + p.utc_offset_h) % 24
        day_of_year = ((hour_index // 24) % 365) + 1
        # demand: low at 04:00, peak near 18:00
        demand = -math.cos(2 * math.pi * (local_hour - 4) / 24) * p.daily
        # sun: a half-sine from 06:00 to 18:00, stronger in summer
        season = 0.6 + 0.4 * math.cos(2 * math.pi * (day_of_year - 172) / 365)
        sun = max(0.0, math.sin(math.pi * (local_hour - 6) / 12)) * p.solar * season
        weather = sum(math.sin(2 * math.pi * hour_index / period + phase) for period, phase in self._waves) / 3
        noise = _unit_noise(self.zone, self.seed, hour_index) * p.noise
        return max(5.0, round(p.base + demand - sun + weather * p.weather + noise, 2))

    def forecast(self, moment: datetime, issued_at: datetime) -> float:
        """What the forecast says for ``moment``: the actual plus a seeded error of its own.

        The error depends on the hour forecast, not on when the forecast was issued, so forecasts fetched at
        different times agree (a demo can print the forecast the sensor planned with).
        """
        hour = math.floor((moment - _EPOCH).total_seconds() / 3600)
        error = _unit_noise(self.zone, self.seed, "fc", hour) * self.profile.noise * 0.5
        return max(5.0, round(self.value(moment) + error, 2))


class CsvGrid:
    """Replay a CSV of real data (columns ``timestamp``, ``carbon_intensity``; each value holds until the next).

    Simulated times before the first row or after the last wrap around the series, so a year of data keeps a demo
    going indefinitely. Forecasts are the actual values (a perfect forecast: the data is history).
    """

    def __init__(self, zone: str, path: str | Path) -> None:
        self.zone = zone
        rows = []
        with open(path, newline="") as fh:
            for row in csv.DictReader(fh):
                stamp = datetime.fromisoformat(row["timestamp"].strip().replace("Z", "+00:00"))
                if stamp.tzinfo is None:
                    stamp = stamp.replace(tzinfo=timezone.utc)
                rows.append((stamp.astimezone(timezone.utc), float(row["carbon_intensity"])))
        if len(rows) < 2:
            raise ValueError(f"{path}: need at least two rows of timestamp,carbon_intensity")
        rows.sort()
        self._times = [t for t, _ in rows]
        self._values = [v for _, v in rows]
        self._span = self._times[-1] - self._times[0] + (self._times[1] - self._times[0])

    def value(self, moment: datetime) -> float:
        offset = (moment - self._times[0]) % self._span
        index = bisect_right(self._times, self._times[0] + offset) - 1
        return self._values[max(index, 0)]

    def forecast(self, moment: datetime, issued_at: datetime) -> float:
        return self.value(moment)


def step_floor(moment: datetime, step: timedelta) -> datetime:
    """``moment`` rounded down to a multiple of ``step`` since the epoch."""
    return _EPOCH + ((moment - _EPOCH) // step) * step
