"""A StatsD server stand-in for demos and tests: it receives what Airflow's metrics client sends, offline.

Example::

    from airflow_provider_carbon.simulator.statsd import StatsdListener

    listener = StatsdListener()
    ...  # run Airflow with [metrics] statsd_port = listener.port
    print(listener.gauges("airflow.carbon.emissions_g"))
    listener.close()
"""

from __future__ import annotations

import socket
import threading

__all__ = ["StatsdListener"]


class StatsdListener:
    """A UDP socket standing in for a StatsD server: every datagram Airflow's processes send, parsed into
    ``(name, tags, value)`` gauges (Airflow's InfluxDB-style tags: ``name,tag=value,...:value|g``).

    Point Airflow at it with ``AIRFLOW__METRICS__STATSD_ON=True``, ``..._STATSD_HOST=127.0.0.1``,
    ``..._STATSD_PORT=<port>`` and ``..._STATSD_INFLUXDB_ENABLED=True`` (the ``statsd`` package must be installed).
    """

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.5)
        self.port = self.sock.getsockname()[1]
        self.lines: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65535)
            except TimeoutError:
                continue
            # the statsd client batches (a negative gauge is sent as "0|g" then the value, in one datagram)
            self.lines.extend(data.decode(errors="replace").splitlines())

    def gauges(self, name: str) -> list[tuple[dict[str, str], float]]:
        found = []
        for line in list(self.lines):
            stat, _, rest = line.rpartition(":")
            value, _, kind = rest.partition("|")
            metric, *tags = stat.split(",")
            if metric == name and kind == "g":
                found.append((dict(tag.split("=", 1) for tag in tags), float(value)))
        return found

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()
