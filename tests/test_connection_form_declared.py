"""The connection form Airflow's UI service builds for our connection types matches provider_info's declaration,
on every supported Airflow: 3.2+ reads the declaration itself, 3.1 calls the hook methods generated from it
(hooks/_form.py). Fast: the service runs in a subprocess (a fresh ProvidersManager), no api-server.

tests/test_connection_form.py checks the same form through a real api-server's HTTP endpoint (slow)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from airflow_provider_carbon._compat import AIRFLOW_V_3_2_PLUS
from airflow_provider_carbon.provider_info import CONNECTION_TYPES

# what GET /ui/connections/hook_meta returns, built the same way, plus the warnings raised on the way
_PROBE = """
import json, warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService
    meta = [m.model_dump(mode="json") for m in HookMetaService.hook_meta_data()]
ours = [m for m in meta if (m["hook_class_name"] or "").startswith("airflow_provider_carbon")]
print(json.dumps({
    "meta": {m["connection_type"]: m for m in ours},
    "warnings": [f"{w.category.__name__}: {w.message}" for w in caught if "airflow_provider_carbon" in str(w.message)],
}))
"""

STANDARD = {"host": "host", "port": "port", "login": "login", "password": "password", "schema": "url_schema"}


@pytest.fixture(scope="module")
def served():
    result = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, env=os.environ.copy(), timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def _types(schema: dict) -> list[str]:
    return schema["type"] if isinstance(schema["type"], list) else [schema["type"]]


def test_no_deprecation_warning_about_our_hooks(served):
    assert served["warnings"] == []


def test_the_hook_methods_exist_only_where_airflow_reads_them():
    """3.1 reads get_connection_form_widgets / get_ui_field_behaviour from the hook class's own __dict__; 3.2+
    deprecates them (a warning per hook), so they must not exist there."""
    import importlib

    for entry in CONNECTION_TYPES:
        module, _, name = entry["hook-class-name"].rpartition(".")
        hook = getattr(importlib.import_module(module), name)
        for method in ("get_connection_form_widgets", "get_ui_field_behaviour"):
            assert (method in hook.__dict__) is not AIRFLOW_V_3_2_PLUS, (name, method)


@pytest.mark.parametrize("entry", CONNECTION_TYPES, ids=lambda e: e["connection-type"])
def test_served_extra_fields_are_the_declared_ones(served, entry):
    extras = served["meta"][entry["connection-type"]]["extra_fields"]
    assert list(extras) == list(entry["conn-fields"])
    for name, field in entry["conn-fields"].items():
        schema, got = field["schema"], extras[name]
        assert got["schema"]["title"] == field["label"], name
        assert got["description"] == field.get("description"), name
        assert got["schema"].get("enum") == schema.get("enum"), name
        default = schema.get("default")
        if AIRFLOW_V_3_2_PLUS:
            assert got["schema"]["type"] == schema["type"] and got["value"] == default, name
        else:
            # 3.1's form has no float field: a number setting is a text field holding its default as text
            expected = ["string", "null"] if "number" in _types(schema) else _types(schema)
            assert got["schema"]["type"] == expected, name
            assert got["value"] == (str(default) if "number" in _types(schema) and default is not None else default)


@pytest.mark.parametrize("entry", CONNECTION_TYPES, ids=lambda e: e["connection-type"])
def test_served_standard_fields_follow_the_declared_behaviour(served, entry):
    fields = served["meta"][entry["connection-type"]]["standard_fields"]
    behaviour = entry["ui-field-behaviour"]
    for declared, served_name in STANDARD.items():
        got = fields[served_name] or {"hidden": False, "title": None, "placeholder": None}
        assert got["hidden"] is (declared in behaviour["hidden-fields"]), declared
        assert got["title"] == behaviour["relabeling"].get(declared), declared
        assert got["placeholder"] == behaviour["placeholders"].get(declared), declared
