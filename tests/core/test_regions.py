from __future__ import annotations

import pytest

from airflow_provider_carbon.core.regions import (
    ZONE_KEY,
    RegionResult,
    cloud_regions,
    parse_regions,
    rank_regions,
    resolve_region,
    static_intensity,
)


class TestMapping:
    def test_every_row_is_a_valid_zone_key_with_a_source(self):
        rows = cloud_regions()
        assert len(rows) >= 90
        for key, row in rows.items():
            assert ZONE_KEY.match(row.zone), (key, row.zone)
            assert row.provider in ("aws", "gcp", "azure")
            assert row.location and row.source.startswith(("EMDC", "LOC")), key

    def test_every_mapped_zone_has_a_static_fallback(self):
        missing = sorted({r.zone for r in cloud_regions().values() if static_intensity(r.zone) is None})
        assert missing == []

    @pytest.mark.parametrize(
        ("name", "zone"),
        [
            ("aws:eu-north-1", "SE-SE3"),
            ("gcp:europe-west4", "NL"),
            ("azure:westeurope", "NL"),
            ("AWS:US-EAST-1", "US-MIDA-PJM"),
            ("azure:southeastasia", "SG"),
        ],
    )
    def test_resolve_cloud_regions(self, name, zone):
        assert resolve_region(name)[0] == zone

    def test_zone_keys_pass_through(self):
        assert resolve_region("SE-SE3") == ("SE-SE3", None)
        assert resolve_region(" DE ") == ("DE", None)

    def test_overrides_win(self):
        assert resolve_region("aws:eu-north-1", {"aws:eu-north-1": "SE-SE4"})[0] == "SE-SE4"
        assert resolve_region("my-datacenter", {"my-datacenter": "FR"})[0] == "FR"

    def test_unknown_cloud_region_lists_the_known_ones(self):
        with pytest.raises(ValueError, match="unknown cloud region 'aws:mars-1'.*eu-north-1"):
            resolve_region("aws:mars-1")

    @pytest.mark.parametrize("bad", ["germany", "de", "US_CAL", ""])
    def test_not_a_zone_key(self, bad):
        with pytest.raises(ValueError):
            resolve_region(bad)

    def test_static_intensity_by_country(self):
        se = static_intensity("SE-SE3")
        assert se.country == "SE" and se.year == 2021 and se.value == 45.8
        assert static_intensity("XX") is None


def results(**intensities):
    return [RegionResult(region=r, zone=r, intensity=v, source="test") for r, v in intensities.items()]


class TestRanking:
    def test_carbon_only_by_default(self):
        ranked = rank_regions(results(DE=380, SE=40, PL=660))
        assert [r.region for r in ranked] == ["SE", "DE", "PL"]
        assert [r.rank for r in ranked] == [1, 2, 3]
        assert ranked[0].score == 0 and ranked[-1].score == 1

    def test_cost_weight_can_overrule_carbon(self):
        regions = results(SE=40, DE=380)
        cost = {"SE": 10.0, "DE": 2.0}
        assert rank_regions(regions, cost_per_hour=cost)[0].region == "SE"
        assert rank_regions(regions, cost_per_hour=cost, weights={"carbon": 1, "cost": 2})[0].region == "DE"

    def test_latency_weight(self):
        ranked = rank_regions(
            results(SE=40, DE=380), latency_ms={"SE": 90, "DE": 10}, weights={"carbon": 1, "latency": 3}
        )
        assert ranked[0].region == "DE" and ranked[0].latency_ms == 10

    def test_carbon_price_turns_grams_into_money(self):
        regions = results(SE=40, PL=660)
        cost = {"SE": 3.00, "PL": 2.50}
        # 10 kW for an hour: PL emits 6.6 kg, SE 0.4 kg; at 100/t that is 0.66 vs 0.04
        ranked = rank_regions(regions, cost_per_hour=cost, carbon_price=100, power_kw=10)
        assert ranked[0].region == "SE"
        assert ranked[1].carbon_cost_per_hour == pytest.approx(0.66)
        cheap_carbon = rank_regions(regions, cost_per_hour=cost, carbon_price=10, power_kw=10)
        assert cheap_carbon[0].region == "PL"  # 2.566 < 3.004

    def test_a_missing_cost_is_not_free_with_a_carbon_price(self):
        """With a carbon price every region has a carbon cost; a region left out of cost_per_hour must not rank
        as if it ran for nothing (the dirtiest grid would win)."""
        with pytest.raises(ValueError, match="no cost_per_hour for region 'PL'"):
            rank_regions(
                results(SE=40, PL=660, DE=370), cost_per_hour={"SE": 3.0, "DE": 3.0}, carbon_price=80, power_kw=10
            )
        # no running costs at all: the carbon price alone is the cost
        ranked = rank_regions(results(SE=40, PL=660), carbon_price=80, power_kw=10)
        assert [r.region for r in ranked] == ["SE", "PL"]

    def test_carbon_price_needs_power(self):
        with pytest.raises(ValueError, match="power_kw"):
            rank_regions(results(SE=40), carbon_price=100)

    def test_missing_criterion_values_are_errors(self):
        with pytest.raises(ValueError, match="no cost_per_hour"):
            rank_regions(results(SE=40, DE=1), cost_per_hour={"SE": 1}, weights={"cost": 1})
        with pytest.raises(ValueError, match="unknown weight 'speed'"):
            rank_regions(results(SE=40), weights={"speed": 1})
        with pytest.raises(ValueError, match="must not be negative"):
            rank_regions(results(SE=40), weights={"carbon": -1})

    def test_ties_keep_the_given_order(self):
        assert [r.region for r in rank_regions(results(B=100, A=100))] == ["B", "A"]

    def test_regions_without_data_come_last_unranked(self):
        ranked = rank_regions(results(A=None, B=50))
        assert [(r.region, r.rank) for r in ranked] == [("B", 1), ("A", None)]


@pytest.mark.parametrize(
    ("value", "expected"),
    [("SE-SE3, DE", ["SE-SE3", "DE"]), ("['aws:eu-north-1', 'DE']", ["aws:eu-north-1", "DE"]), (("A",), ["A"])],
)
def test_parse_regions(value, expected):
    assert parse_regions(value) == expected


def test_parse_regions_rejects_empty_and_duplicates():
    with pytest.raises(ValueError, match="empty"):
        parse_regions(" , ")
    with pytest.raises(ValueError, match="duplicates"):
        parse_regions(["DE", "DE"])
