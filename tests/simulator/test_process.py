"""SimulatorProcess: the simulator in a process of its own, on a port it picks, stopped cleanly."""

from __future__ import annotations

import json
import urllib.request

import pytest

from airflow_provider_carbon.simulator.process import SimulatorNotStarted, SimulatorProcess


def test_starts_on_a_free_port_serves_and_stops():
    with SimulatorProcess.start("--zones", "DE,FR", "--token", "process-token") as sim:
        assert sim.url.startswith("http://127.0.0.1:") and not sim.url.endswith(":0")
        with urllib.request.urlopen(f"{sim.url}/sim/state", timeout=5) as response:
            assert json.loads(response.read())["zones"] == ["DE", "FR"]
    assert sim.proc.returncode == 0  # SIGTERM: the simulator shut its server down and exited cleanly


def test_a_simulator_that_cannot_start_is_a_typed_error_with_its_output():
    with pytest.raises(SimulatorNotStarted, match="invalid choice"):
        SimulatorProcess.start("--failure", "no-such-mode")
