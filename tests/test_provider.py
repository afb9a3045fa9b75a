"""The package as Airflow sees it: entry point, provider info, discovery, and a cheap import."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import distribution, entry_points
from pathlib import Path

import jsonschema
import pytest

import airflow_provider_carbon
from airflow_provider_carbon import get_provider_info
from tests.conftest import REPO_ROOT


def test_provider_info_passes_airflows_schema():
    import airflow

    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    jsonschema.validate(get_provider_info(), schema)


def test_package_name_matches_the_distribution():
    # Airflow refuses to load a provider whose package-name differs from its canonical distribution name.
    assert get_provider_info()["package-name"] == distribution("airflow-provider-carbon").metadata["Name"]
    assert distribution("airflow-provider-carbon").version == airflow_provider_carbon.__version__


def test_entry_point_is_registered():
    (ep,) = [
        ep for ep in entry_points(group="apache_airflow_provider") if ep.value.startswith("airflow_provider_carbon")
    ]
    assert ep.value == "airflow_provider_carbon:get_provider_info"
    assert ep.load() is get_provider_info


def test_declared_classes_import():
    """Every module and class the provider info names must import (Airflow imports them lazily, by string)."""
    import importlib

    info = get_provider_info()
    for kind in ("hooks", "sensors", "operators", "triggers"):
        for entry in info.get(kind, []):
            for module in entry["python-modules"]:
                importlib.import_module(module)
    for conn in info.get("connection-types", []):
        module, _, name = conn["hook-class-name"].rpartition(".")
        hook = getattr(importlib.import_module(module), name)
        assert hook.conn_type == conn["connection-type"]
    for path in info.get("extra-links", []):
        module, _, name = path.rpartition(".")
        getattr(importlib.import_module(module), name)


def _run(code: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, env=os.environ.copy()
    ).stdout


def test_the_package_under_test_is_the_one_asked_for():
    """`make test-floor` tests the installed wheel (it sets CARBON_TESTS_FROM_WHEEL=1), `make test` the checkout
    (an editable install): the package imported here and in the Python processes tests start is that one."""
    from_wheel = os.environ.get("CARBON_TESTS_FROM_WHEEL") == "1"
    for module_file in (
        airflow_provider_carbon.__file__,
        _run("import airflow_provider_carbon as p; print(p.__file__)"),
    ):
        # the checkout's own package folder (a virtualenv inside the checkout is not the checkout)
        in_checkout = Path(module_file.strip()).resolve().parent == REPO_ROOT / "airflow_provider_carbon"
        assert in_checkout is not from_wheel, module_file


def test_top_level_import_loads_nothing_heavy():
    """DAG files import us at every parse: no numpy, pandas, requests or airflow until something is used."""
    out = _run(
        "import sys, airflow_provider_carbon as p; p.get_provider_info();"
        "print([m for m in ('numpy', 'pandas', 'requests', 'airflow') if m in sys.modules])"
    )
    assert out.strip() == "[]"


def test_lazy_public_names():
    out = _run(
        "import airflow_provider_carbon as p; from airflow_provider_carbon import find_best_window, Forecast;"
        "print(find_best_window.__module__, Forecast.__module__, 'rank_windows' in dir(p))"
    )
    assert out.split() == ["airflow_provider_carbon.core.windows", "airflow_provider_carbon.core.forecast", "True"]
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        airflow_provider_carbon.nope  # noqa: B018


@pytest.mark.slow
def test_airflow_providers_list_shows_the_provider():
    airflow = Path(sys.executable).with_name("airflow")
    result = subprocess.run(
        [str(airflow), "providers", "list", "--output", "json"],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    providers = {p["package_name"]: p for p in json.loads(result.stdout)}
    assert providers["airflow-provider-carbon"]["version"] == airflow_provider_carbon.__version__


@pytest.mark.slow
def test_the_built_wheel_is_a_complete_provider(tmp_path):
    """`pip install .` ships a wheel, not this checkout: build it, install it (no deps) into a folder that shadows the
    editable install, and check that Airflow discovers the provider from there and that the package data came along."""
    repo = Path(__file__).resolve().parents[1]
    wheels, target = tmp_path / "wheels", tmp_path / "site"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(wheels), str(repo)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = wheels.glob("airflow_provider_carbon-*.whl")
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(target), str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    # run from tmp_path (not the checkout, which would be on sys.path as the current directory)
    env = {**os.environ, "PYTHONPATH": str(target), "AIRFLOW_HOME": str(tmp_path / "home")}
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import airflow_provider_carbon as p; from airflow_provider_carbon.core.regions import cloud_regions, "
            "static_intensity; print(p.__file__); print(len(cloud_regions()), static_intensity('FR').value)",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert probe.returncode == 0, probe.stderr[-3000:]
    module_file, counts = probe.stdout.split()[0], probe.stdout.split()[1:]
    assert Path(module_file).is_relative_to(target)
    assert int(counts[0]) > 50 and float(counts[1]) > 0
    listed = subprocess.run(
        [
            str(Path(sys.executable).with_name("airflow")),
            "providers",
            "get",
            "airflow-provider-carbon",
            "--full",
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert listed.returncode == 0, listed.stderr[-3000:]
    assert airflow_provider_carbon.__version__ in listed.stdout and "ElectricityMapsHook" in listed.stdout
