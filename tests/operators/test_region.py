"""GreenestRegion(Branch)Operator against local servers in the Electricity Maps and Carbon Aware SDK formats."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from werkzeug import Request, Response

from airflow_provider_carbon.operators.region import GreenestRegionBranchOperator, GreenestRegionOperator
from tests.em_server import EmZones
from tests.waiting import Clock, context

T0 = datetime(2025, 6, 1, 22, tzinfo=timezone.utc)
H = timedelta(hours=1)
# five regions, hourly from T0; SE is clean now, FR is cleaner later (a night-time dip), PL and DE are dirty
ZONES = {
    "SE-SE3": [60] * 24,
    "FR": [90, 80, 30, 20, 25, 70] + [90] * 18,
    "DE": [380] * 24,
    "PL": [660] * 24,
    "ES": [200] * 24,
}


@pytest.fixture
def em(httpserver, monkeypatch):
    zones = EmZones(T0, ZONES)
    monkeypatch.setenv("AIRFLOW_CONN_EM", zones.connection(zones.install(httpserver)))
    return zones


def pick(**kwargs):
    args = {"task_id": "pick", "carbon_conn_id": "em", "regions": list(ZONES)}
    args.update(kwargs)
    return GreenestRegionOperator(**args)


def run(task):
    ctx = context(T0)
    with Clock(T0 + timedelta(minutes=5)):
        region = task.execute(ctx)
    return region, ctx["ti"].xcom


def test_now_mode_picks_the_lowest_current_intensity(em):
    region, xcom = run(pick())
    assert region == "SE-SE3"
    table = {row["region"]: row for row in xcom["carbon_regions"]}
    assert table["SE-SE3"]["intensity"] == 60 and table["SE-SE3"]["rank"] == 1
    assert table["PL"]["rank"] == 5 and table["PL"]["score"] == 1.0
    assert all(not row["fallback"] and row["source"] == "electricitymaps" for row in table.values())
    assert xcom["carbon_region"]["zone"] == "SE-SE3" and xcom["carbon_region"]["reason"] == "lowest score"
    assert sorted(z for _, z in em.requests) == sorted(ZONES)  # each region asked once


def test_window_mode_answers_a_region_and_a_start(em):
    region, xcom = run(pick(mode="window", expected_duration=2 * H, max_delay=10 * H))
    assert region == "FR"  # 22.5 g/kWh from 02:00 beats Sweden's steady 60
    choice = xcom["carbon_region"]
    assert choice["window_start"] == (T0 + 3 * H).isoformat() and choice["intensity"] == 22.5
    assert choice["window_end"] == (T0 + 5 * H).isoformat()


def test_cloud_region_names(em):
    region, xcom = run(pick(regions=["aws:eu-north-1", "aws:eu-central-1", "azure:polandcentral"]))
    assert region == "aws:eu-north-1"
    assert [row["zone"] for row in xcom["carbon_regions"]] == ["SE-SE3", "DE", "PL"]


def test_region_zones_override_and_latency_weight(em):
    # a name of the user's own, mapped to a zone; and latency that outweighs carbon
    region, xcom = run(pick(regions=["my-dc", "SE-SE3"], region_zones={"my-dc": "PL"}))
    assert region == "SE-SE3" and xcom["carbon_regions"][1]["zone"] == "PL"
    region, xcom = run(
        pick(
            regions=["my-dc", "SE-SE3"],
            region_zones={"my-dc": "PL"},
            latency_ms={"my-dc": 5, "SE-SE3": 80},
            weights={"carbon": 1, "latency": 2},
        )
    )
    assert region == "my-dc" and xcom["carbon_regions"][0]["latency_ms"] == 5


def test_cost_weights_and_carbon_price(em):
    cost = {"SE-SE3": 9.0, "FR": 8.0, "DE": 3.0, "PL": 2.0, "ES": 4.0}
    assert run(pick(cost_per_hour=cost, weights={"carbon": 1, "cost": 1}))[0] == "ES"
    # at 80/t and 5 kW, Poland's 3.3 kg/h cost 0.26: still cheapest; at 2000/t (6.6 extra) it loses to Spain
    assert run(pick(cost_per_hour=cost, carbon_price=80, power_kw=5))[0] == "PL"
    region, xcom = run(pick(cost_per_hour=cost, carbon_price=2000, power_kw=5))
    assert region == "ES"
    es = next(r for r in xcom["carbon_regions"] if r["region"] == "ES")
    assert es["carbon_cost_per_hour"] == pytest.approx(200 * 5 / 1e6 * 2000)


def test_two_regions_failing_use_the_static_table(em):
    em.broken = {"SE-SE3": "500", "FR": "garbage"}
    region, xcom = run(pick())
    table = {row["region"]: row for row in xcom["carbon_regions"]}
    assert table["SE-SE3"]["fallback"] and table["FR"]["fallback"]
    assert table["SE-SE3"]["intensity"] == 45.8 and "static annual average 2021" in table["SE-SE3"]["source"]
    assert "ServiceUnavailableError" in table["SE-SE3"]["error"]
    assert "BadPayloadError" in table["FR"]["error"]
    assert not table["DE"]["fallback"] and table["DE"]["intensity"] == 380
    assert region == "SE-SE3"  # the static value still ranks it first


def test_every_region_failing_static_ranking(em):
    em.broken = dict.fromkeys(ZONES, "503")
    region, xcom = run(pick())
    assert region == "SE-SE3"
    assert xcom["carbon_region"]["reason"] == "every region failed: the static annual averages decide"


def test_every_region_failing_configured_default(em):
    em.broken = dict.fromkeys(ZONES, "not_entitled")
    region, xcom = run(pick(if_all_fail="DE"))
    assert region == "DE"
    assert xcom["carbon_region"]["reason"] == "every region failed: the configured default 'DE'"


def test_missing_connection_is_a_total_failure():
    region, _ = run(pick(carbon_conn_id="nope", regions=["PL", "FR"]))
    assert region == "FR"


def test_bad_arguments_fail_loudly(em):
    with pytest.raises(ValueError, match="mode must be one of"):
        pick(mode="later")
    with pytest.raises(ValueError, match="if_all_fail"):
        run(pick(if_all_fail="mars"))
    with pytest.raises(ValueError, match="unknown cloud region"):
        run(pick(regions=["aws:mars-1"]))


def test_a_late_window_run_compares_live_data_for_a_start_now(em):
    """Run started 3 h ago with a 2 h deadline: no window is left, so regions are compared for a start now on
    live data, not all marked as failed and ranked on the static table."""
    task = pick(mode="window", expected_duration=2 * H, max_delay=2 * H)
    ctx = context(T0 - 3 * H)
    with Clock(T0 + timedelta(minutes=5)):
        region = task.execute(ctx)
    table = {row["region"]: row for row in ctx["ti"].xcom["carbon_regions"]}
    assert region == "SE-SE3" and not any(row["fallback"] for row in table.values())
    assert table["SE-SE3"]["window_start"] == (T0 + timedelta(minutes=5)).isoformat()


def test_branch_operator_returns_the_region_and_follows_its_tasks(em):
    """execute() follows the region's tasks (Airflow skips the rest) and returns the region, like the plain
    operator: return_value is the region, not the task ids."""
    from airflow_provider_carbon._compat import SkipMixin

    skipped = {}
    task = GreenestRegionBranchOperator(
        task_id="branch", carbon_conn_id="em", branches={"SE-SE3": "train_se", "FR": "train_fr", "DE": "train_de"}
    )
    # the one part of Airflow replaced here: the call that writes the skip decision to the metadata database
    task.skip_all_except = lambda ti, branch_task_ids: skipped.setdefault("followed", branch_task_ids)
    task._expand_task_group_roots = lambda ti, branches: [branches] if isinstance(branches, str) else branches
    ctx = context(T0)
    with Clock(T0):
        assert task.execute(ctx) == "SE-SE3"
    assert skipped["followed"] == ["train_se"] and isinstance(task, SkipMixin)


def test_branch_operator_checks_its_branches_before_any_request(em):
    task = GreenestRegionBranchOperator(
        task_id="branch", carbon_conn_id="em", regions=["SE-SE3", "DE"], branches={"SE-SE3": "train_se"}
    )
    with Clock(T0), pytest.raises(KeyError, match=r"no branch for region\(s\) \['DE'\]"):
        task.choose_branch(context(T0))
    assert em.requests == []


def test_branch_operator_returns_the_regions_task(em):
    task = GreenestRegionBranchOperator(
        task_id="branch",
        carbon_conn_id="em",
        branches={"SE-SE3": "train_se", "FR": ["train_fr", "notify_fr"], "DE": "train_de"},
        mode="window",
        expected_duration=2 * H,
        max_delay=10 * H,
    )
    ctx = context(T0)
    with Clock(T0):
        assert task.choose_branch(ctx) == ["train_fr", "notify_fr"]
    assert [row["region"] for row in ctx["ti"].xcom["carbon_regions"]][0] == "FR"


# -- the Carbon Aware SDK format ------------------------------------------------------------------------------------

AZURE = {"swedencentral": 55.0, "westeurope": 390.0, "francecentral": 70.0}


@pytest.fixture
def casdk(httpserver, monkeypatch):
    def latest(request: Request) -> Response:
        names = request.args.getlist("location")
        body = [{"location": n, "time": T0.isoformat(), "rating": AZURE[n], "duration": "01:00:00"} for n in names]
        return Response(json.dumps(body), content_type="application/json")

    def forecast(request: Request) -> Response:
        (name,) = request.args.getlist("location")
        values = [AZURE[name]] * 3 + ([5.0] * 2 if name == "westeurope" else [AZURE[name]] * 2) + [AZURE[name]] * 7
        data = [
            {"location": name, "timestamp": (T0 + i * H).isoformat(), "duration": 60, "value": v}
            for i, v in enumerate(values)
        ]
        body = [
            {
                "generatedAt": T0.isoformat(),
                "location": name,
                "windowSize": 0,
                "optimalDataPoints": [],
                "forecastData": data,
            }
        ]
        return Response(json.dumps(body), content_type="application/json")

    httpserver.expect_request("/emissions/bylocations").respond_with_handler(latest)
    httpserver.expect_request("/emissions/forecasts/current").respond_with_handler(forecast)
    monkeypatch.setenv(
        "AIRFLOW_CONN_CASDK",
        json.dumps({"conn_type": "carbon_aware_sdk", "host": httpserver.url_for(""), "extra": {"retry_backoff": 0.01}}),
    )
    return httpserver


def test_carbon_aware_sdk_now_with_azure_names(casdk):
    region, xcom = run(pick(carbon_conn_id="casdk", regions=[f"azure:{n}" for n in AZURE]))
    assert region == "azure:swedencentral"
    assert all(row["source"] == "carbon_aware_sdk" for row in xcom["carbon_regions"])
    # the SDK was asked with its own location names, not grid zones
    asked = sorted(r.args.getlist("location")[0] for r, _ in casdk.log)
    assert asked == sorted(AZURE)


def test_carbon_aware_sdk_window(casdk):
    region, xcom = run(
        pick(
            carbon_conn_id="casdk",
            regions=[f"azure:{n}" for n in AZURE],
            mode="window",
            expected_duration=2 * H,
            max_delay=8 * H,
        )
    )
    assert region == "azure:westeurope"
    assert xcom["carbon_region"]["window_start"] == (T0 + 3 * H).isoformat()
