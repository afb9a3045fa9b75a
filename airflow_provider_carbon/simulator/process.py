"""Run the simulator in a process of its own, as ``make demo``, ``make stack`` and the end-to-end tests do.

Example::

    from airflow_provider_carbon.simulator.process import SimulatorProcess

    with SimulatorProcess.start("--speed", "720", "--token", "demo-token") as sim:
        print(sim.url)  # http://127.0.0.1:<a free port>
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

__all__ = ["SimulatorNotStarted", "SimulatorProcess"]


class SimulatorNotStarted(RuntimeError):
    """The simulator exited, or printed something else, instead of its "ready" line (a port taken, a bad flag)."""


@dataclass
class SimulatorProcess:
    """A running ``python -m airflow_provider_carbon.simulator`` and the address it serves."""

    proc: subprocess.Popen
    url: str

    @classmethod
    def start(cls, *args: str, port: int = 0) -> SimulatorProcess:
        """Start the simulator with the command-line ``args`` (see ``--help``) on ``port`` (0: a free one, read
        back from its "ready" line, so there is no race for a port picked beforehand) and wait until it serves.

        It runs in a session of its own: a Ctrl-C in the terminal reaches the caller, which stops it in order.
        """
        proc = subprocess.Popen(
            [sys.executable, "-m", "airflow_provider_carbon.simulator", "--port", str(port), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        line = proc.stdout.readline() if proc.stdout else ""
        if "ready on " not in line:
            # what else it says (argparse's error comes after its usage lines), as it exits. Read through the same
            # buffered stream as readline: communicate() with a timeout reads the raw pipe and would lose what
            # readline already buffered (the error line, when the whole usage arrived in one write)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            rest = proc.stdout.read() if proc.stdout else ""
            if proc.stdout:
                proc.stdout.close()
            raise SimulatorNotStarted(f"the carbon simulator did not start: {(line + rest).strip()[:2000]}")
        return cls(proc, line.split("ready on ", 1)[1].split()[0])

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM (the simulator shuts its server down), SIGKILL after ``timeout`` s."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()

    def __enter__(self) -> SimulatorProcess:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
