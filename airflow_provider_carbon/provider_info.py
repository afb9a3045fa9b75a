"""The provider's self-description for Airflow, kept declarative so that discovery imports no hook.

Airflow 3.2+ builds the connection form in its UI from ``conn-fields`` (extras, with JSON-schema types and
defaults) and ``ui-field-behaviour`` (hidden, relabelled and placeholder standard fields) without importing hook
classes; the deprecated ``get_connection_form_widgets`` route would need wtforms, which Airflow 3 does not install.
"""

from __future__ import annotations

from typing import Any

INTEGRATION = "Carbon-aware scheduling"


def _number(label: str, description: str, default: float, minimum: float = 0) -> dict[str, Any]:
    return {
        "label": label,
        "description": description,
        "schema": {"type": ["number", "null"], "default": default, "minimum": minimum},
    }


#: settings every carbon connection accepts (see hooks/base.py DEFAULTS)
_COMMON_FIELDS: dict[str, Any] = {
    "timeout": _number("Read timeout (s)", "Seconds to wait for an answer before retrying.", 10, 1),
    "max_attempts": {
        "label": "Attempts per call",
        "description": "Requests per call at most, the first included. Only connection errors, timeouts, 5xx "
        "and 429 are retried.",
        "schema": {"type": ["integer", "null"], "default": 4, "minimum": 1},
    },
    "max_retry_wait": _number("Total retry wait (s)", "Seconds of waiting between attempts per call at most.", 30),
    "cache_ttl": _number("Forecast cache TTL (s)", "How long a forecast is reused; 0 disables the cache.", 900),
    "request_budget": _number(
        "Time per request (s)",
        "Seconds one request may take in all, connect and whole body; a body still arriving then is a timeout.",
        30,
        1,
    ),
    "max_response_bytes": {
        "label": "Largest answer (bytes)",
        "description": "Bytes an answer may have once decompressed; a larger one is refused as bad data.",
        "schema": {"type": ["integer", "null"], "default": 4 * 1024 * 1024, "minimum": 1024},
    },
    "allow_redirects": {
        "label": "Follow same-host redirects",
        "description": "Follow redirects to the same scheme, host and port; never to another server.",
        "schema": {"type": ["boolean", "null"], "default": False},
    },
    "cache_dir": {
        "label": "Shared cache directory",
        "description": "Optional directory where processes of one machine share cached forecasts.",
        "schema": {"type": ["string", "null"]},
    },
}


def _connection(
    conn_type: str,
    hook: str,
    name: str,
    *,
    hidden: list[str],
    relabeling: dict[str, str],
    placeholders: dict[str, str],
    fields: dict[str, Any],
) -> dict[str, Any]:
    return {
        "connection-type": conn_type,
        "hook-class-name": f"airflow_provider_carbon.hooks.{hook}",
        "hook-name": name,
        "ui-field-behaviour": {"hidden-fields": hidden, "relabeling": relabeling, "placeholders": placeholders},
        "conn-fields": {**fields, **_COMMON_FIELDS},
    }


CONNECTION_TYPES = [
    _connection(
        "electricitymaps",
        "electricitymaps.ElectricityMapsHook",
        "Electricity Maps",
        hidden=["schema", "port", "login"],
        relabeling={"password": "API token", "host": "API base URL"},
        placeholders={
            "host": "https://api.electricitymaps.com/v3 (default)",
            "password": "your Electricity Maps token",
        },
        fields={
            "zone": {
                "label": "Default zone",
                "description": "Zone key used when a task gives none, e.g. DE or US-CAL-CISO.",
                "schema": {"type": ["string", "null"]},
            },
            "emission_factor_type": {
                "label": "Emission factors",
                "description": "lifecycle (default) or direct (combustion only).",
                "schema": {"type": ["string", "null"], "default": "lifecycle", "enum": ["lifecycle", "direct"]},
            },
            "granularity": {
                "label": "Granularity",
                "description": "Step of the data asked for (finer steps need a plan that offers them).",
                "schema": {
                    "type": ["string", "null"],
                    "default": "hourly",
                    "enum": ["hourly", "15_minutes", "5_minutes"],
                },
            },
            "disable_estimations": {
                "label": "Disable estimations",
                "description": "Leave out estimated values (may leave gaps).",
                "schema": {"type": ["boolean", "null"], "default": False},
            },
        },
    ),
    _connection(
        "carbon_aware_sdk",
        "carbon_aware_sdk.CarbonAwareSdkHook",
        "Carbon Aware SDK (WebAPI)",
        hidden=["schema", "port", "login"],
        relabeling={"host": "WebAPI URL", "password": "Gateway bearer token (optional)"},
        placeholders={"host": "http://carbon-aware-sdk:8080", "password": "only if a gateway requires one"},
        fields={
            "location": {
                "label": "Default location",
                "description": "Location name the deployment knows (GET /locations), e.g. westeurope.",
                "schema": {"type": ["string", "null"]},
            },
        },
    ),
    _connection(
        "watttime",
        "watttime.WattTimeHook",
        "WattTime",
        hidden=["schema", "port"],
        relabeling={"login": "Username", "host": "API base URL"},
        placeholders={"host": "https://api.watttime.org (default)", "login": "WattTime username"},
        fields={
            "region": {
                "label": "Default region",
                "description": "WattTime region, e.g. CAISO_NORTH.",
                "schema": {"type": ["string", "null"]},
            },
            "signal_type": {
                "label": "Signal",
                "description": "co2_moer: marginal (default); co2_aoer: average.",
                "schema": {"type": ["string", "null"], "default": "co2_moer", "enum": ["co2_moer", "co2_aoer"]},
            },
        },
    ),
    _connection(
        "uk_carbon_intensity",
        "uk_carbon_intensity.UkCarbonIntensityHook",
        "UK Carbon Intensity (NESO)",
        hidden=["schema", "port", "login", "password"],
        relabeling={"host": "API base URL"},
        placeholders={"host": "https://api.carbonintensity.org.uk (default)"},
        fields={
            "zone": {
                "label": "Default zone",
                "description": "national, a region id 1-17, or a postcode outward code such as RG41.",
                "schema": {"type": ["string", "null"], "default": "national"},
            },
        },
    ),
]


def provider_info(version: str) -> dict[str, Any]:
    return {
        "package-name": "airflow-provider-carbon",
        "name": INTEGRATION,
        "description": (
            "Run flexible work when and where the electricity grid is cleanest: carbon-intensity hooks, "
            "an exact low-carbon window optimizer, a deferrable window sensor and region selection."
        ),
        "versions": [version],
        "integrations": [
            {
                "integration-name": INTEGRATION,
                "external-doc-url": "https://github.com/airflow-provider-carbon/airflow-provider-carbon",
                "tags": ["software"],
            }
        ],
        "hooks": [
            {
                "integration-name": INTEGRATION,
                "python-modules": [
                    "airflow_provider_carbon.hooks.electricitymaps",
                    "airflow_provider_carbon.hooks.carbon_aware_sdk",
                    "airflow_provider_carbon.hooks.watttime",
                    "airflow_provider_carbon.hooks.uk_carbon_intensity",
                ],
            }
        ],
        "sensors": [
            {"integration-name": INTEGRATION, "python-modules": ["airflow_provider_carbon.sensors.carbon_window"]}
        ],
        "operators": [
            {
                "integration-name": INTEGRATION,
                "python-modules": [
                    "airflow_provider_carbon.operators.base",
                    "airflow_provider_carbon.operators.plan",
                    "airflow_provider_carbon.operators.queue",
                    "airflow_provider_carbon.operators.region",
                ],
            }
        ],
        "triggers": [
            {"integration-name": INTEGRATION, "python-modules": ["airflow_provider_carbon.triggers.carbon_window"]}
        ],
        "extra-links": [
            "airflow_provider_carbon.operators.links.ElectricityMapsZoneLink",
            "airflow_provider_carbon.operators.links.UkCarbonIntensityLink",
            "airflow_provider_carbon.operators.links.CarbonViewLink",
        ],
        "config": {
            "carbon": {
                "description": "Defaults for every carbon connection; a connection's extras override them.",
                "options": {
                    "cache_dir": {
                        "description": "Directory where the processes of one machine share cached forecasts "
                        "(one request per zone and TTL for all of them). Empty: each process caches alone.",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "/tmp/carbon-cache",
                        "default": "",
                    },
                },
            }
        },
        "connection-types": CONNECTION_TYPES,
    }
