"""The connection form as Airflow 3's UI receives it: GET /ui/connections/hook_meta from a real api-server."""

from __future__ import annotations

import pytest

from tests.airflow_stack import AirflowStack


@pytest.fixture(scope="module")
def hook_meta(tmp_path_factory):
    stack = AirflowStack(tmp_path_factory.mktemp("airflow-home-form"))
    stack.migrate()
    stack.start("api-server", "api-server", "--port", str(stack.port))
    try:
        stack.wait_for_api()
        yield {item["connection_type"]: item for item in stack.request("GET", "/ui/connections/hook_meta")}
    finally:
        stack.stop()


pytestmark = pytest.mark.slow


def test_every_carbon_connection_type_is_served(hook_meta):
    for conn_type, hook in [
        ("electricitymaps", "ElectricityMapsHook"),
        ("carbon_aware_sdk", "CarbonAwareSdkHook"),
        ("watttime", "WattTimeHook"),
        ("uk_carbon_intensity", "UkCarbonIntensityHook"),
    ]:
        assert hook_meta[conn_type]["hook_class_name"].endswith(hook)


def test_electricity_maps_form(hook_meta):
    form = hook_meta["electricitymaps"]
    fields = form["standard_fields"]
    assert fields["password"]["title"] == "API token"
    assert fields["login"]["hidden"] is True and fields["port"]["hidden"] is True
    assert fields["host"]["placeholder"].startswith("https://api.electricitymaps.com/v3")
    extras = form["extra_fields"]
    assert extras["granularity"]["schema"]["enum"] == ["hourly", "15_minutes", "5_minutes"]
    assert extras["emission_factor_type"]["value"] == "lifecycle"
    assert extras["cache_ttl"]["value"] == 900 and extras["timeout"]["schema"]["minimum"] == 1


def test_uk_form_hides_credentials(hook_meta):
    fields = hook_meta["uk_carbon_intensity"]["standard_fields"]
    assert fields["password"]["hidden"] is True and fields["login"]["hidden"] is True
