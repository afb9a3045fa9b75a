"""Where to run: cloud regions as grid zones, a static fallback table, and a tunable carbon/cost/latency score.

Pure (no Airflow, no I/O beyond reading the package's own data files), so the ranking a task logs is the ranking a
test or notebook reproduces.

Scoring. Each candidate region has up to three criteria, all "lower is better": carbon intensity (gCO2eq/kWh, now or
over the best window), cost per hour (plus, with a ``carbon_price``, the price of the job's emissions per hour:
intensity x ``power_kw`` / 1e6 tonnes x price), and latency. Each criterion is min-max normalised across the
candidates and the score is the weighted sum; the lowest score wins (ties: the order the regions were given).
Default weights: carbon only; with a carbon price, money only (carbon is then inside the cost).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from importlib import resources
from typing import Any

__all__ = [
    "CloudRegion",
    "RegionResult",
    "StaticIntensity",
    "ZONE_KEY",
    "cloud_regions",
    "rank_regions",
    "resolve_region",
    "static_intensity",
]

#: Electricity Maps zone keys: an ISO 3166-1 alpha-2 country code, then hyphenated sub-zone parts
#: (``DE``, ``SE-SE3``, ``US-MIDA-PJM``, ``CL-SEN``).
ZONE_KEY = re.compile(r"^[A-Z]{2}(-[A-Z0-9]{1,6}){0,2}$")
CRITERIA = ("carbon", "cost", "latency")


@dataclass(frozen=True)
class CloudRegion:
    """One row of the shipped mapping (``data/cloud_regions.csv``)."""

    provider: str
    region: str
    zone: str
    location: str
    source: str

    @property
    def key(self) -> str:
        return f"{self.provider}:{self.region}"


@dataclass(frozen=True)
class StaticIntensity:
    """An annual-average intensity used when live data fails (``data/static_intensity.csv``)."""

    country: str
    value: float
    year: int
    source: str


def _rows(name: str) -> list[dict[str, str]]:
    text = resources.files("airflow_provider_carbon.data").joinpath(name).read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    return list(csv.DictReader(io.StringIO("\n".join(lines))))


@lru_cache(maxsize=1)
def cloud_regions() -> dict[str, CloudRegion]:
    """The shipped cloud-region mapping, keyed ``"provider:region"`` (lower case)."""
    out = {}
    for row in _rows("cloud_regions.csv"):
        region = CloudRegion(**{k: row[k].strip() for k in ("provider", "region", "zone", "location", "source")})
        out[region.key] = region
    return out


@lru_cache(maxsize=1)
def _static_table() -> dict[str, StaticIntensity]:
    return {
        row["country_code"]: StaticIntensity(
            country=row["country_code"],
            value=float(row["g_co2eq_per_kwh"]),
            year=int(row["year"]),
            source=row["source"],
        )
        for row in _rows("static_intensity.csv")
    }


def static_intensity(zone: str) -> StaticIntensity | None:
    """The annual national average for a zone's country (``SE-SE3`` -> ``SE``), or ``None`` if not tabulated.

    Coarse on purpose: it only has to rank regions sensibly while live data is missing.
    """
    return _static_table().get(zone.split("-")[0].upper())


def resolve_region(name: str, overrides: Mapping[str, str] | None = None) -> tuple[str, CloudRegion | None]:
    """Turn what a user wrote into a zone key: ``"aws:eu-north-1"`` -> ``"SE-SE3"``; a zone key passes through.

    :param overrides: ``{"aws:eu-north-1": "SE-SE3", "my-dc": "FR"}``: wins over the shipped mapping.
    :raises ValueError: for an unknown cloud region or something that is not a zone key.
    """
    text = name.strip()
    key = text.lower()
    for candidate in (text, key):
        if overrides and candidate in overrides:
            return overrides[candidate], cloud_regions().get(key)
    if ":" in text:
        row = cloud_regions().get(key)
        if row is None:
            provider = key.split(":", 1)[0]
            known = sorted(r.region for r in cloud_regions().values() if r.provider == provider)
            raise ValueError(
                f"unknown cloud region {text!r}; known {provider} regions: {', '.join(known) or 'none'}; "
                "pass region_zones={...} to map it yourself"
            )
        return row.zone, row
    if not ZONE_KEY.match(text):
        raise ValueError(f"{text!r} is neither a grid zone key (e.g. 'SE-SE3') nor a cloud region ('aws:eu-north-1')")
    return text, None


@dataclass(frozen=True)
class RegionResult:
    """One candidate region: what was measured or assumed, and how it scored."""

    region: str
    zone: str
    intensity: float | None
    source: str
    fallback: bool = False
    error: str | None = None
    window_start: str | None = None
    window_end: str | None = None
    cost_per_hour: float | None = None
    carbon_cost_per_hour: float | None = None
    latency_ms: float | None = None
    score: float | None = None
    rank: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def rank_regions(
    results: Sequence[RegionResult],
    *,
    cost_per_hour: Mapping[str, float] | None = None,
    latency_ms: Mapping[str, float] | None = None,
    weights: Mapping[str, float] | None = None,
    carbon_price: float | None = None,
    power_kw: float | None = None,
) -> list[RegionResult]:
    """Score and rank regions, best first; regions without any intensity come last, unranked.

    :param cost_per_hour: region -> cost of running there for an hour (any currency).
    :param latency_ms: region -> latency to where it matters.
    :param weights: ``{"carbon": w, "cost": w, "latency": w}``; missing keys keep their defaults (carbon 1, or
        with ``carbon_price`` cost 1; the others 0): ``{"carbon": 1}`` with a carbon price weighs both.
    :param carbon_price: price per tonne CO2e (same currency as the cost), folded into the cost.
    :param power_kw: the job's average power draw; required with ``carbon_price`` to turn grams into money.
    :raises ValueError: for unknown criteria, negative weights, or a weighted criterion missing for a region.
    """
    cost_per_hour = dict(cost_per_hour or {})
    latency_ms = dict(latency_ms or {})
    if carbon_price is not None and (power_kw is None or power_kw <= 0):
        raise ValueError("carbon_price needs power_kw (the job's average draw) to turn grams into money")
    chosen = (
        {"carbon": 1.0, "cost": 0.0, "latency": 0.0}
        if carbon_price is None
        else {"carbon": 0.0, "cost": 1.0, "latency": 0.0}
    )
    for name, value in (weights or {}).items():
        if name not in CRITERIA:
            raise ValueError(f"unknown weight {name!r}; use {', '.join(CRITERIA)}")
        if value < 0:
            raise ValueError(f"weight {name} must not be negative")
        chosen[name] = float(value)

    live = [r for r in results if r.intensity is not None]
    priced = []
    for r in live:
        carbon_cost = None
        if carbon_price is not None:
            carbon_cost = carbon_price * float(r.intensity) * float(power_kw or 0) / 1e6  # type: ignore[arg-type]
        priced.append(
            replace(
                r,
                cost_per_hour=cost_per_hour.get(r.region),
                carbon_cost_per_hour=carbon_cost,
                latency_ms=latency_ms.get(r.region),
            )
        )

    def criterion(r: RegionResult, name: str) -> float:
        if name == "carbon":
            return float(r.intensity)  # type: ignore[arg-type]
        if name == "cost":
            # once any region has a running cost, every region needs one: a missing one would count as free
            if r.cost_per_hour is None and (cost_per_hour or r.carbon_cost_per_hour is None):
                raise ValueError(
                    f"weight on cost but no cost_per_hour{'' if cost_per_hour else ' (or carbon_price)'}"
                    f" for region {r.region!r}"
                )
            return (r.cost_per_hour or 0.0) + (r.carbon_cost_per_hour or 0.0)
        if r.latency_ms is None:
            raise ValueError(f"weight on latency but no latency_ms for region {r.region!r}")
        return float(r.latency_ms)

    scores = [0.0] * len(priced)
    for name, weight in chosen.items():
        if weight == 0 or not priced:
            continue
        values = [criterion(r, name) for r in priced]
        low, high = min(values), max(values)
        for i, value in enumerate(values):
            scores[i] += weight * ((value - low) / (high - low) if high > low else 0.0)
    order = sorted(range(len(priced)), key=lambda i: (scores[i], i))
    ranked = [replace(priced[i], score=scores[i], rank=n + 1) for n, i in enumerate(order)]
    return ranked + [r for r in results if r.intensity is None]


def parse_regions(value: str | Iterable[str]) -> list[str]:
    """A templated ``"a, b"`` string, a JSON/Python list rendered by Jinja, or a list, as a list of names."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            import ast

            items = ast.literal_eval(text)
        else:
            items = text.split(",")
    else:
        items = list(value)
    names = [str(item).strip() for item in items if str(item).strip()]
    if not names:
        raise ValueError("regions is empty")
    if len(set(names)) != len(names):
        raise ValueError(f"regions has duplicates: {names}")
    return names
