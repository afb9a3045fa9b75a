"""`make bench`: how fast the Carbon page's overview is for 10,000 carbon-aware runs, against a reference timed in the
same run.

The records are real: 10,000 decisions made by :func:`~airflow_provider_carbon.core.decision.plan` on varied 10-hour
forecasts at 15-minute steps (the record keeps the 40 values its plan used), each with the accounting record of its
job, spread over a year and five DAGs: 20,000 XCom values, stored as the metadata database holds them (a JSON text).
What is timed is everything the page does after its one query: decoding every value
(:func:`~airflow_provider_carbon.core.report.decode_stored`: msgspec, which Airflow installs, instead of the
``json.loads`` of Airflow's ``XComModel.deserialize_value``), loading every decision through its own loader, pairing
runs, totals per DAG and per month, the savings chart, and the HTML of the first page (50 rows).

The reference is the decoding alone (``json.loads`` of the same 20,000 texts), the floor any page built from these
records pays; the ratio says how much the page costs on top of reading its data. The database query itself is not
in the figure (it is one indexed ``SELECT``; its time depends on the database server, not on this code).
"""

from __future__ import annotations

import json
import random
import sys
import timeit
from datetime import datetime, timedelta, timezone

from airflow_provider_carbon.core.decision import PlanSpec, plan
from airflow_provider_carbon.core.fallback import FallbackPolicy
from airflow_provider_carbon.core.forecast import Forecast
from airflow_provider_carbon.core.report import XComRecord, build_overview, decode_stored, render_overview

RUNS = 10_000
#: the issue's target for the whole overview of 10,000 records
TARGET_S = 1.0
STEP = timedelta(minutes=15)


def stored_records(runs: int = RUNS, seed: int = 12) -> list[tuple[str, str, str, str, str]]:
    """(dag_id, run_id, task_id, key, JSON text) rows as the page's query returns them."""
    rng = random.Random(seed)
    t0 = datetime(2025, 1, 1, 22, tzinfo=timezone.utc)
    rows = []
    for i in range(runs):
        start = t0 + timedelta(hours=i * 365 * 24 // runs)
        values = [max(20.0, 300 + 120 * rng.uniform(-1, 1) - 8 * abs(k - 20)) for k in range(40)]
        forecast = Forecast.from_points([(start + k * STEP, v) for k, v in enumerate(values)], zone="DE")
        spec = PlanSpec(
            duration=timedelta(hours=2),
            latest_start=start + timedelta(hours=8),
            fallback=FallbackPolicy.parse("02:00"),
            timezone="Europe/Berlin",
            anchor=start,
            zone="DE",
        )
        decision = plan(spec, forecast, now=start).to_dict()
        started = datetime.fromisoformat(decision["planned_start"])
        emissions = 0.6 * decision["expected_intensity"]
        baseline = 0.6 * decision["intensity_if_started_at_decision"]
        accounting = {
            "started_at": started.isoformat(),
            "ended_at": (started + timedelta(hours=2)).isoformat(),
            "runtime_s": 7200.0,
            "energy_kwh": 0.6,
            "intensity_source": "history",
            "signal": "average",
            "unit": "gCO2eq/kWh",
            "zone": "DE",
            "experienced_intensity": decision["expected_intensity"],
            "emissions_g": emissions,
            "emissions_if_started_at_baseline_g": baseline,
            "saving_vs_baseline_g": baseline - emissions,
            "saving_vs_baseline_pct": 100 * (baseline - emissions) / baseline,
            "delay_s": (started - start).total_seconds(),
            "schema_version": 1,
        }
        dag, run = f"dag_{i % 5}", f"scheduled__{start.isoformat()}"
        rows.append((dag, run, "wait", "carbon_decision", json.dumps(decision)))
        rows.append((dag, run, "train", "carbon_accounting", json.dumps(accounting)))
    return rows


def overview_page(rows: list[tuple[str, str, str, str, str]]) -> str:
    records = [XComRecord(d, r, t, -1, k, decode_stored(text)) for d, r, t, k, text in rows]
    return render_overview(build_overview(records), base="/carbon")


def decode_only(rows: list[tuple[str, str, str, str, str]]) -> list:
    return [json.loads(text) for *_, text in rows]


def best_of(fn, repeat: int = 5) -> float:
    return min(timeit.repeat(fn, number=1, repeat=repeat))


def main() -> int:
    rows = stored_records()
    size = sum(len(r[4]) for r in rows)
    page = overview_page(rows)
    assert f"Jobs: {RUNS}," in page and page.count("<tr>") > 50  # every run counted, the first page drawn
    ours, ref = best_of(lambda: overview_page(rows)), best_of(lambda: decode_only(rows))
    print(
        f"Carbon overview benchmark: python {sys.version.split()[0]}; {RUNS} runs, {len(rows)} XCom values "
        f"({size / 1e6:.1f} MB of JSON)"
    )
    print(f"  overview (decode, load, totals, chart, first page of HTML): {ours * 1e3:8.1f} ms")
    print(f"  reference: json.loads of the same values alone:            {ref * 1e3:8.1f} ms")
    print(f"  ratio overview / decoding: {ours / ref:.1f}x (best of 5 each)")
    ok = ours <= TARGET_S
    print(f"  [{'ok' if ok else 'MISSED'}] overview of {RUNS} runs <= {TARGET_S:.0f} s: {ours:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
