"""``python -m airflow_provider_carbon.simulator``: run the offline carbon-intensity API.

Examples::

    # eight synthetic zones, real time, on port 8765
    python -m airflow_provider_carbon.simulator --port 8765

    # a whole night in two minutes: one simulated hour per 5 real seconds, starting at local midnight
    python -m airflow_provider_carbon.simulator --speed 720 --sim-start 2025-06-02T00:00:00+02:00

    # replay real data for DE, start with Germany's API refusing the forecast
    python -m airflow_provider_carbon.simulator --csv DE=de_2021.csv --failure not_entitled --failure-zones DE

    # switch failure modes while it runs
    curl -X POST localhost:8765/sim/failure -d '{"mode": "down"}'
    curl -X POST localhost:8765/sim/failure -d '{"mode": "ok"}'
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from datetime import datetime, timezone

from airflow_provider_carbon.simulator.grid import CsvGrid
from airflow_provider_carbon.simulator.server import FAILURE_MODES, SimClock, Simulator, serve

DEFAULT_ZONES = "SE-SE3,FR,ES,GB,DE,PL,US-CAL-CISO,US-MIDA-PJM"


def build(args: argparse.Namespace) -> Simulator:
    zones = [z.strip() for z in args.zones.split(",") if z.strip()]
    sim_start = datetime.fromisoformat(args.sim_start) if args.sim_start else None
    if sim_start is not None and sim_start.tzinfo is None:
        raise SystemExit("--sim-start needs a timezone, e.g. 2025-06-02T00:00:00+02:00")
    real_start = datetime.fromisoformat(args.real_start) if args.real_start else datetime.now(timezone.utc)
    if real_start.tzinfo is None:
        raise SystemExit("--real-start needs a timezone")
    clock = SimClock(speed=args.speed, real_anchor=real_start, sim_anchor=sim_start)
    simulator = Simulator.synthetic(zones, seed=args.seed, clock=clock, token=args.token)
    for item in args.csv or []:
        zone, _, path = item.partition("=")
        if not path:
            raise SystemExit(f"--csv wants ZONE=path.csv, got {item!r}")
        simulator.grids[zone] = CsvGrid(zone, path)
        simulator.locations.setdefault(zone, zone)
    if args.failure != "ok":
        zones_failing = args.failure_zones.split(",") if args.failure_zones else None
        simulator.set_failure(args.failure, zones_failing, args.delay, args.retry_after)
    return simulator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m airflow_provider_carbon.simulator",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port (printed at start)")
    parser.add_argument("--zones", default=DEFAULT_ZONES, help="comma-separated zone keys (synthetic models)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--speed", type=float, default=1.0, help="simulated seconds per real second (720: 5 s/h)")
    parser.add_argument("--sim-start", help="simulated instant at server start (ISO 8601 with offset)")
    parser.add_argument("--real-start", help="the real instant that --sim-start stands for (default: now)")
    parser.add_argument("--token", default="simulator-token", help="the Electricity Maps token it accepts")
    parser.add_argument("--csv", action="append", metavar="ZONE=PATH", help="replay a CSV of real data for ZONE")
    parser.add_argument("--failure", default="ok", choices=FAILURE_MODES, help="failure mode at start")
    parser.add_argument("--failure-zones", help="comma-separated zones the failure applies to (default: all)")
    parser.add_argument("--delay", type=float, default=None, help="seconds before answering in 'slow' mode")
    parser.add_argument("--retry-after", type=int, default=None, help="Retry-After seconds in '429' mode")
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)

    simulator = build(args)
    server = serve(simulator, args.host, args.port, verbose=args.verbose)
    host, port = server.server_address[:2]
    print(
        f"carbon simulator ready on http://{host}:{port} (Electricity Maps: /v3, Carbon Aware SDK: /emissions; "
        f"zones {', '.join(sorted(simulator.grids))}; speed {args.speed:g}x; failure {simulator.failure.mode})",
        flush=True,
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
