"""The Carbon page's pure part: records to page models, hand-computed totals, escaping, the SVG charts."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest

from airflow_provider_carbon.core.decision import PlanSpec, plan
from airflow_provider_carbon.core.fallback import FallbackPolicy
from airflow_provider_carbon.core.forecast import Forecast
from airflow_provider_carbon.core.report import (
    XComRecord,
    build_overview,
    build_task_view,
    format_budget,
    render_overview,
    render_task_view,
    task_view_path,
)

FIXTURES = Path(__file__).parent / "fixtures"
H = timedelta(hours=1)
BUDGET = {
    "scope": "dag:a",
    "period": "month",
    "period_start": "2025-04-01T00:00:00+00:00",
    "limit_kg": 5.0,
    "used_kg": 3.2,
    "policy": "warn",
    "outcome": "within",
}


def decision(start: datetime, zone: str = "DE", **extra) -> dict:
    """A real plan: the optimizer on an 8-hour forecast from ``start`` (2 h job, deadline 6 h later)."""
    forecast = Forecast.from_points(
        [(start + i * H, v) for i, v in enumerate([420, 390, 310, 180, 150, 210, 380, 450])],
        zone=zone,
        source="electricitymaps",
    )
    spec = PlanSpec(
        duration=2 * H,
        latest_start=start + 6 * H,
        fallback=FallbackPolicy.parse("02:00"),
        timezone="UTC",
        anchor=start,
        zone=zone,
    )
    return {**plan(spec, forecast, now=start).to_dict(), **extra}


def accounting(started: datetime, emissions: float, saving: float, zone: str = "DE", signal: str = "average") -> dict:
    return {
        "started_at": started.isoformat(),
        "ended_at": (started + 2 * H).isoformat(),
        "emissions_g": emissions,
        "saving_vs_baseline_g": saving,
        "saving_vs_baseline_pct": 100 * saving / (emissions + saving),
        "emissions_if_started_at_baseline_g": emissions + saving,
        "experienced_intensity": 165.0,
        "signal": signal,
        "unit": "gCO2eq/kWh",
        "zone": zone,
    }


def rec(dag: str, run: str, task: str, key: str, value, map_index: int = -1) -> XComRecord:
    return XComRecord(dag_id=dag, run_id=run, task_id=task, map_index=map_index, key=key, value=value)


D = "carbon_decision"
A = "carbon_accounting"
T1 = datetime(2025, 3, 10, tzinfo=timezone.utc)
T2 = datetime(2025, 4, 2, tzinfo=timezone.utc)
T3 = datetime(2025, 4, 5, tzinfo=timezone.utc)
T4 = datetime(2025, 4, 6, tzinfo=timezone.utc)
T5 = datetime(2025, 4, 7, tzinfo=timezone.utc)


def records() -> list[XComRecord]:
    """Five runs in two DAGs: DE runs in March and April, a fallback run with a negative saving, a plan without an
    accounted job, and a marginal-signal run (never added to the average ones)."""
    fallback = decision(T3, "FR", used_fallback=True, fallback_reason="unavailable", fallback_error="Boom: down")
    return [
        rec("a", "r1", "wait", D, decision(T1)),
        rec("a", "r1", "job", A, accounting(T1 + 4 * H, 100.0, 50.0)),
        rec("a", "r2", "wait", D, decision(T2, budget=BUDGET)),
        rec("a", "r2", "job", A, accounting(T2 + 4 * H, 200.0, 100.0)),
        rec("b", "r3", "wait", D, fallback),
        rec("b", "r3", "job", A, accounting(T3 + 2 * H, 30.0, -10.0, zone="FR")),
        rec("b", "r4", "plan", D, decision(T4)),
        rec("a", "r5", "wait", D, decision(T5, signal="marginal")),
        rec("a", "r5", "job", A, accounting(T5 + 3 * H, 5.0, 1.0, signal="marginal")),
        rec("a", "r5", "job", "return_value", {"not": "carbon"}),  # other keys are not the page's business
    ]


def test_totals_per_dag_and_month_by_hand():
    model = build_overview(records())
    assert model.total_rows == 5
    a = model.per_dag[("a", "average", "gCO2eq/kWh")]
    assert (a.runs, a.emissions_g, a.saving_g, a.baseline_g, a.fallbacks) == (2, 300.0, 150.0, 450.0, 0)
    assert a.saving_pct == pytest.approx(100 * 150 / 450)  # of the unshifted emissions, not a mean of percentages
    b = model.per_dag[("b", "average", "gCO2eq/kWh")]
    assert (b.runs, b.emissions_g, b.saving_g, b.baseline_g, b.fallbacks) == (2, 30.0, -10.0, 20.0, 1)
    assert b.saving_pct == pytest.approx(-50.0)
    marginal = model.per_dag[("a", "marginal", "gCO2eq/kWh")]
    assert (marginal.runs, marginal.emissions_g, marginal.saving_g) == (1, 5.0, 1.0)
    april = model.per_month[("2025-04", "average", "gCO2eq/kWh")]
    assert (april.runs, april.emissions_g, april.saving_g, april.baseline_g) == (3, 230.0, 90.0, 320.0)
    assert april.saving_pct == pytest.approx(28.125)
    march = model.per_month[("2025-03", "average", "gCO2eq/kWh")]
    assert (march.runs, march.emissions_g, march.saving_pct) == (1, 100.0, pytest.approx(100 / 3))
    assert list(model.per_month)[0][0] == "2025-04"  # newest month first
    # the chart follows the signal with most accounted jobs (average: 3), cumulative at each job's start
    assert model.savings_signal == ("average", "gCO2eq/kWh")
    assert model.savings == [(T1 + 4 * H, 50.0), (T2 + 4 * H, 150.0), (T3 + 2 * H, 140.0)]


def test_a_long_history_is_charted_per_day(monkeypatch):
    import airflow_provider_carbon.core.report as report

    monkeypatch.setattr(report, "CHART_POINTS", 2)
    extra = rec("a", "r6", "job", A, accounting(T3 + 5 * H, 10.0, 5.0))  # same day as r3's job
    model = build_overview([*records(), rec("a", "r6", "wait", D, decision(T3)), extra])
    assert [(d.date().isoformat(), v) for d, v in model.savings] == [
        ("2025-03-10", 50.0),
        ("2025-04-02", 150.0),
        ("2025-04-05", 145.0),
    ]


def test_rows_carry_the_records_numbers_newest_first():
    rows = build_overview(records()).rows
    assert [r.run_id for r in rows] == ["r5", "r4", "r3", "r2", "r1"]
    r2 = next(r for r in rows if r.run_id == "r2")
    plan_r2 = decision(T2)
    assert r2.planned_start == datetime.fromisoformat(plan_r2["planned_start"])
    assert r2.actual_start == T2 + 4 * H and r2.emissions_g == 200.0 and r2.saving_g == 100.0
    assert r2.expected_intensity == plan_r2["expected_intensity"] and r2.budget == BUDGET
    r3 = next(r for r in rows if r.run_id == "r3")
    assert r3.used_fallback and r3.fallback_reason == "unavailable" and r3.fallback_error == "Boom: down"
    assert (r2.task_id, r2.decision_task_id) == ("job", "wait")  # the row links to the job's page
    r4 = next(r for r in rows if r.run_id == "r4")
    assert r4.emissions_g is None and r4.budget is None and r4.task_id == "plan"


def test_pages_slice_the_runs_and_keep_totals_over_all():
    model = build_overview(records(), page=2, per_page=2)
    assert (model.pages, model.page, [r.run_id for r in model.rows]) == (3, 2, ["r3", "r2"])
    assert model.per_dag[("a", "average", "gCO2eq/kWh")].runs == 2  # not just this page's
    assert build_overview(records(), page=99, per_page=2).page == 3
    html = render_overview(model, base="/carbon")
    assert 'href="/carbon/?page=1&amp;per_page=2"' in html and 'href="/carbon/?page=3&amp;per_page=2"' in html


def test_a_schema_1_record_loads_through_the_decision_loader():
    old = json.loads((FIXTURES / "decision_v1.json").read_text())["fallback"]
    (row,) = build_overview([rec("old", "r", "wait", D, old)]).rows
    assert row.used_fallback and row.fallback_reason == "unavailable"  # mapped from 0.1.0's free text
    assert row.fallback_error == old["fallback_reason"]


def test_records_that_are_not_decisions_are_left_out():
    model = build_overview([rec("x", "r", "wait", D, "text"), rec("x", "r", "wait", D, {"zone": "DE"})])
    assert model.total_rows == 0 and "No carbon decisions" in render_overview(model, base="/carbon")


HOSTILE = '<script>alert("x")</script>'


def test_everything_from_a_record_is_escaped():
    value = decision(T1, HOSTILE, used_fallback=True, fallback_reason="error", fallback_error=f'E: "{HOSTILE}"')
    recs = [
        rec("a", '"><img src=x onerror=alert(1)>', "wait", D, value),
        rec("a", '"><img src=x onerror=alert(1)>', "job", A, accounting(T1 + 4 * H, 1.0, 1.0, zone=HOSTILE)),
    ]
    page = render_overview(build_overview(recs), base="/carbon")
    view = build_task_view(recs, dag_id="a", run_id='"><img src=x onerror=alert(1)>', task_id="wait")
    task_page = render_task_view(view, base="/carbon")
    for html in (page, task_page):
        assert "<script>" not in html and "<img" not in html
        assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert "onerror" in page  # shown, as text
    assert '<svg xmlns="http://www.w3.org/2000/svg"' in task_page  # the chart's title holds the zone, escaped


def test_budget_use():
    assert format_budget(BUDGET) == "3.2 / 5 kg (64 %)"
    assert format_budget({**BUDGET, "used_kg": 6.0, "outcome": "skipped"}) == "6 / 5 kg (120 %), skipped"
    assert format_budget(None) == "" and format_budget({"scope": "dag:a"}) == ""
    page = render_overview(build_overview(records()), base="/carbon")
    assert "3.2 / 5 kg (64 %)" in page


def test_task_view_draws_forecast_window_run_and_alternatives():
    recs = records()
    view = build_task_view(recs, dag_id="a", run_id="r2", task_id="wait")
    assert view.decision is not None and view.forecast is not None
    assert [(j.task_id, j.value["emissions_g"]) for j in view.accountings] == [("job", 200.0)]
    assert view.budget == BUDGET
    html = render_task_view(view, base="/carbon")
    svg = html[html.index("<svg") : html.index("</svg>")]
    assert svg.count('class="planned"') == 1 and svg.count('class="actual"') == 1
    assert svg.count('class="alternative"') == len(view.decision.alternatives) == 3
    assert 'class="forecast"' in svg
    # the forecast is a step per value: a vertical and a horizontal move for each of the 8 hours
    path = re.search(r'class="forecast" d="([^"]+)"', svg).group(1)
    assert path.count("V") == path.count("H") == 8
    assert "dag:a: 3.2 / 5 kg (64 %)" in html


def test_the_jobs_page_shows_the_sensors_plan_and_its_own_accounting():
    view = build_task_view(records(), dag_id="a", run_id="r1", task_id="job")
    assert view.decision_task_id == "wait" and [j.value["emissions_g"] for j in view.accountings] == [100.0]
    assert "Released by <strong>wait</strong>" in render_task_view(view, base="/carbon")


def test_re_plans_are_listed_and_drawn():
    value = decision(T1)
    value["replans"] = [
        {
            "at": (T1 + H).isoformat(),
            "cause": "re-check: the optimum moved",
            "previous_start": (T1 + 4 * H).isoformat(),
            "new_start": value["planned_start"],
            "expected_intensity": 165.0,
            "used_fallback": False,
        }
    ]
    html = render_task_view(
        build_task_view([rec("a", "r", "w", D, value)], dag_id="a", run_id="r", task_id="w"), base=""
    )
    assert "re-check: the optimum moved" in html and "re-plan: re-check" in html
    assert "None: the first plan held." not in html


def test_a_fallback_without_forecast_says_so():
    value = decision(T1, used_fallback=True, fallback_reason="unavailable", forecast=None)
    html = render_task_view(
        build_task_view([rec("a", "r", "w", D, value)], dag_id="a", run_id="r", task_id="w"), base=""
    )
    assert "holds no forecast" in html and "<svg" not in html


def test_task_view_path_quotes_and_keeps_the_map_index():
    assert task_view_path("/carbon", "d", "manual__2025-01-01T00:00:00+00:00", "t") == (
        "/carbon/dags/d/runs/manual__2025-01-01T00%3A00%3A00%2B00%3A00/tasks/t"
    )
    assert task_view_path("/carbon/", "d", "r/1", "t", 3) == "/carbon/dags/d/runs/r%2F1/tasks/t?map_index=3"


def test_the_carbon_view_link_points_at_the_plugins_task_page(monkeypatch):
    from airflow_provider_carbon.operators.links import CARBON_LINKS, CarbonViewLink

    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "http://airflow.example:8080/")
    key = SimpleNamespace(dag_id="d", run_id="r 1", task_id="wait", map_index=-1, try_number=1)
    assert (
        CarbonViewLink().get_link(None, ti_key=key) == "http://airflow.example:8080/carbon/dags/d/runs/r%201/tasks/wait"
    )
    assert any(isinstance(link, CarbonViewLink) for link in CARBON_LINKS)


def test_the_report_module_imports_only_the_standard_library():
    code = (
        "import sys; before = set(sys.modules); import airflow_provider_carbon.core.report; "
        "print(sorted(m for m in set(sys.modules) - before if not m.startswith('airflow_provider_carbon')))"
    )
    new = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert not any(name in new for name in ("'airflow", "'numpy", "'fastapi", "'sqlalchemy")), new


def test_the_keys_are_the_ones_the_writers_use():
    from airflow_provider_carbon.core.report import ACCOUNTING_KEY, DECISION_KEY
    from airflow_provider_carbon.listeners.accounting import ACCOUNTING_XCOM_KEY
    from airflow_provider_carbon.operators.base import DECISION_XCOM_KEY

    assert (DECISION_KEY, ACCOUNTING_KEY) == (DECISION_XCOM_KEY, ACCOUNTING_XCOM_KEY)


def test_every_job_a_sensor_released_is_a_row_and_drawn():
    # the nightly DAG's sensor releases train_model and report, and the listener accounts both
    recs = [
        rec("n", "r", "wait", D, decision(T1)),
        rec("n", "r", "train", A, accounting(T1 + 3 * H, 10.0, 4.0)),
        rec("n", "r", "report", A, accounting(T1 + 5 * H, 1.0, 0.5)),
    ]
    model = build_overview(recs)
    assert sorted((r.task_id, r.emissions_g) for r in model.rows) == [("report", 1.0), ("train", 10.0)]
    total = model.per_dag[("n", "average", "gCO2eq/kWh")]
    assert (total.runs, total.emissions_g, total.saving_g) == (2, 11.0, 4.5)
    sensor = build_task_view(recs, dag_id="n", run_id="r", task_id="wait")
    assert sorted(j.task_id for j in sensor.accountings) == ["report", "train"]
    assert render_task_view(sensor, base="").count('class="actual"') == 2
    job = build_task_view(recs, dag_id="n", run_id="r", task_id="report")
    assert [j.task_id for j in job.accountings] == ["report"] and job.decision_task_id == "wait"


def test_stored_values_decode_like_airflows_decoder_and_refuse_what_only_it_can_read():
    import json

    from airflow_provider_carbon.core.report import decode_stored

    record = {"zone": "DE", "expected_intensity": 293.5, "replans": [], "forecast": {"values": [1.0, 2.5]}}
    assert decode_stored(json.dumps(record)) == record
    assert decode_stored(json.dumps(record).encode()) == record
    assert decode_stored(record) is record  # stored undecoded: the driver already made it a dict
    # Airflow's serialized objects (a tuple, a dataclass) and text that is not JSON: the caller uses Airflow's own
    assert decode_stored('{"__classname__": "builtins.tuple", "__version__": 1, "__data__": [1, 2]}') is None
    assert decode_stored("{not json") is None
    assert decode_stored(42) is None
