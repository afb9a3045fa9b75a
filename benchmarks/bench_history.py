"""`make bench`: how much of the perfect-foresight saving each forecast captures, on real grids.

For every series in ``../shared/data`` (real 2021 hourly intensities of five grids; not shipped, not needed by the
tests), the backtest (:func:`airflow_provider_carbon.core.backtest.backtest`, the optimizer the sensor uses) replays a
daily job released at 00:00 UTC, for 1, 2 and 4 h jobs and 6, 12 and 24 h deadlines, with the provider planning on
``persistence`` (the same hours yesterday), ``history`` (:func:`forecast_from_history`) and ``noisy:0.1`` (the
observed values with 10 % noise, seeded). Capture is the saving against starting at release over the perfect
foresight saving, pooled over all runs (sums of grams, not a mean of percentages); "vs 02:00" is the saving against
the fixed 02:00 start, pooled per zone. The replay time of a year is printed against the ``perfect`` replay of the
same year (the optimizer alone), measured in the same run.

Targets (issue 14): ``history`` pooled capture >= 82 %, and never worse than the fixed 02:00 start in any zone.
"""

from __future__ import annotations

import sys
import time
from datetime import timedelta
from pathlib import Path

import pandas as pd

from airflow_provider_carbon import Forecast
from airflow_provider_carbon.core.backtest import backtest

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data"
MODES = ("persistence", "history", "noisy:0.1")
DURATIONS_H = (1, 2, 4)
DEADLINES_H = (6, 12, 24)
TARGET_CAPTURE_PCT = 82.0


def load(path: Path) -> Forecast:
    frame = pd.read_csv(path)
    index = pd.DatetimeIndex(pd.to_datetime(frame["timestamp"], format="ISO8601"))
    zone = path.stem.split("_")[-1].upper()
    return Forecast.from_series(pd.Series(frame["carbon_intensity"].to_numpy(float), index=index), zone=zone)


def main() -> int:
    files = sorted(DATA.glob("em2021_*.csv"))
    if not files:
        print(f"bench_history: no data in {DATA} (../shared/data); skipped")
        return 0
    # per mode: pooled grams saved (provider, perfect) over all zones and cases; per zone: vs release and vs 02:00
    pooled = {m: [0.0, 0.0] for m in MODES}
    zone_rows: dict[str, dict[str, tuple[float, float]]] = {}
    timings: dict[str, list[float]] = {m: [] for m in (*MODES, "perfect")}
    for path in files:
        observed = load(path)
        zone = observed.zone or path.stem
        zone_rows[zone] = {}
        started = time.perf_counter()
        backtest(observed, duration=timedelta(hours=2), deadline=timedelta(hours=12), forecast="perfect")
        timings["perfect"].append(time.perf_counter() - started)
        for mode in MODES:
            got = possible = vs_fixed = fixed_total = 0.0
            for d in DURATIONS_H:
                for deadline in DEADLINES_H:
                    started = time.perf_counter()
                    r = backtest(
                        observed, duration=timedelta(hours=d), deadline=timedelta(hours=deadline), forecast=mode
                    )
                    if d == 2 and deadline == 12:
                        timings[mode].append(time.perf_counter() - started)
                    s = {p.policy: p for p in r.summaries}
                    # grams per kW of load: mean intensity x runs x hours (the same energy for every policy)
                    scale = r.runs * d
                    got += (s["release"].mean_intensity - s["provider"].mean_intensity) * scale
                    possible += (s["release"].mean_intensity - s["perfect"].mean_intensity) * scale
                    vs_fixed += (s["fixed"].mean_intensity - s["provider"].mean_intensity) * scale
                    fixed_total += s["fixed"].mean_intensity * scale
            pooled[mode][0] += got
            pooled[mode][1] += possible
            zone_rows[zone][mode] = (100 * got / possible, 100 * vs_fixed / fixed_total)
        print(f"  {zone}: done", file=sys.stderr, flush=True)

    print("\nshare of the perfect-foresight saving captured (00:00 UTC release; 1/2/4 h jobs x 6/12/24 h deadlines)")
    print(f"{'zone':<6}" + "".join(f"{m:>24}" for m in MODES))
    print(f"{'':<6}" + "".join(f"{'captured   vs 02:00':>24}" for _ in MODES))
    for zone, row in zone_rows.items():
        print(f"{zone:<6}" + "".join(f"{row[m][0]:>13.1f} % {row[m][1]:>6.1f} %" for m in MODES))
    capture = {m: 100 * pooled[m][0] / pooled[m][1] for m in MODES}
    print(f"{'pooled':<6}" + "".join(f"{capture[m]:>13.1f} %{'':>9}" for m in MODES))
    perfect_s = min(timings["perfect"])
    print("\nreplay of a year (2 h job, 12 h deadline), against the perfect-foresight replay of the same year:")
    for mode in MODES:
        best = min(timings[mode])
        print(f"  {mode:<12} {best:6.2f} s  = {best / perfect_s:6.1f} x perfect ({perfect_s:.2f} s)")
    never_worse = all(row["history"][1] >= 0 for row in zone_rows.values())
    met = capture["history"] >= TARGET_CAPTURE_PCT
    print(
        f"\nhistory target: pooled capture >= {TARGET_CAPTURE_PCT:g} %: {'met' if met else 'NOT met'} "
        f"({capture['history']:.1f} %); never worse than 02:00 in any zone: {'met' if never_worse else 'NOT met'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
