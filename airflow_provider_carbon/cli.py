"""``airflow-carbon``: the provider's console script.

``airflow-carbon backtest`` replays a daily job over observed history (:mod:`airflow_provider_carbon.core.backtest`)
and prints, per policy, the intensity it experienced, its savings, the share of the perfect-foresight saving it
captured, its delays and its deadline misses:

.. code-block:: bash

    airflow-carbon backtest --data de_2021.csv --duration 2h --deadline 12h --forecast history --plot out.png
    airflow-carbon backtest --conn-id electricitymaps_default --zone DE --days 60 --duration 1h --deadline 8h

Input errors (a missing column, naive or unsorted timestamps, a bad flag value) are one line on stderr and exit
code 2, never a traceback. Airflow is imported only for ``--conn-id`` (the history then comes through the
connection's hook).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_carbon.core.backtest import BacktestResult
    from airflow_provider_carbon.core.forecast import Forecast

__all__ = ["main"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d)?\s*$", re.I)
_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}
POLICY_LABELS = {
    "release": "start at release",
    "fixed": "fixed {fallback}",
    "provider": "provider ({forecast})",
    "perfect": "perfect foresight",
}


class UsageError(Exception):
    """A problem with what the user gave: printed as one line, exit code 2."""


def parse_duration(text: str, what: str) -> timedelta:
    """``2h``, ``90m``, ``1.5h``, ``3600`` (seconds), ``1d`` or ISO 8601 ``PT2H``."""
    match = _DURATION.match(text)
    if match:
        seconds = float(match[1]) * _UNITS[(match[2] or "s").lower()]
    else:
        # ISO 8601 through pendulum, as the operators read durations (operators.base.as_timedelta)
        import pendulum

        try:
            parsed = pendulum.parse(text.strip())
        except Exception:  # pendulum's ParserError and its ValueErrors: not a duration either way
            parsed = None
        if not isinstance(parsed, timedelta):
            raise UsageError(f"{what}: {text!r} is not a duration like 2h, 90m or PT2H")
        seconds = parsed.total_seconds()
    if seconds <= 0:
        raise UsageError(f"{what}: {text!r} must be positive")
    return timedelta(seconds=seconds)


def read_csv(path: Path) -> Forecast:
    """Observed history from a CSV with ``timestamp`` (tz-aware ISO 8601) and ``carbon_intensity`` columns."""
    import pandas as pd

    from airflow_provider_carbon.core.forecast import Forecast
    from airflow_provider_carbon.exceptions import InvalidForecastError

    try:
        frame = pd.read_csv(path)
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise UsageError(
            f"{path}: not a readable CSV ({str(err).splitlines()[0] if str(err) else type(err).__name__})"
        ) from None
    missing = [c for c in ("timestamp", "carbon_intensity") if c not in frame.columns]
    if missing:
        raise UsageError(
            f"{path}: missing column(s) {', '.join(missing)} (found: {', '.join(map(str, frame.columns))})"
        )
    if frame.empty:
        raise UsageError(f"{path}: no rows")
    try:
        stamps = pd.to_datetime(frame["timestamp"], format="ISO8601")
    except (ValueError, TypeError) as err:
        raise UsageError(f"{path}: timestamps are not ISO 8601 ({str(err).splitlines()[0]})") from None
    if getattr(stamps.dt, "tz", None) is None:
        raise UsageError(
            f"{path}: timestamps have no timezone (e.g. {frame['timestamp'].iloc[0]}); write them with Z or +00:00"
        )
    values = pd.to_numeric(frame["carbon_intensity"], errors="coerce")
    if values.isna().any():
        row = int(values.isna().to_numpy().argmax())
        raise UsageError(
            f"{path}: row {row + 2}: carbon_intensity {frame['carbon_intensity'].iloc[row]!r} is not a number"
        )
    diffs = stamps.diff().dropna()
    if (diffs < pd.Timedelta(0)).any():
        row = int((diffs < pd.Timedelta(0)).to_numpy().argmax()) + 1
        raise UsageError(
            f"{path}: timestamps are not sorted (row {row + 2}, {frame['timestamp'].iloc[row]}, is earlier than the "
            "row before)"
        )
    series = pd.Series(values.to_numpy(dtype=float), index=pd.DatetimeIndex(stamps).tz_convert("UTC"))
    try:
        return Forecast.from_series(series, zone=path.stem, source=f"csv:{path.name}", max_gap=None)
    except InvalidForecastError as err:
        raise UsageError(f"{path}: {err}") from None


def fetch_history(conn_id: str, zone: str | None, days: int) -> Forecast:
    """The last ``days`` days of observed intensities through the connection's hook (imports Airflow).

    Airflow configures its log output on import, to standard output: imported here under a redirect, its lines
    (and the hook's) go to standard error, so that ``--json`` output stays one JSON document a pipe can read."""
    with contextlib.redirect_stdout(sys.stderr):
        return _fetch_history(conn_id, zone, days)


def _fetch_history(conn_id: str, zone: str | None, days: int) -> Forecast:
    from airflow.sdk import BaseHook

    from airflow_provider_carbon.exceptions import CarbonError
    from airflow_provider_carbon.hooks.base import CarbonIntensityHook

    try:
        hook = BaseHook.get_hook(conn_id)
    except Exception as err:  # a missing connection is a user's problem: one line
        raise UsageError(f"--conn-id {conn_id}: {err}") from None
    if not isinstance(hook, CarbonIntensityHook):
        raise UsageError(f"--conn-id {conn_id}: connection type {hook.conn_type!r} is not a carbon-intensity service")
    end = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    try:
        return hook.get_history(zone, start=end - timedelta(days=days), end=end)
    except CarbonError as err:
        raise UsageError(f"--conn-id {conn_id}: {err}") from None


def render_table(result: BacktestResult) -> str:
    labels = {
        p: label.format(fallback=result.fallback, forecast=result.forecast_mode) for p, label in POLICY_LABELS.items()
    }
    header = (
        f"{'policy':<26} {'mean g/kWh':>10} {'vs release':>10} {f'vs {result.fallback}':>9} {'captured':>9} "
        f"{'delay p50':>9} {'p90':>6} {'max':>6} {'misses':>6}"
    )
    lines = [
        f"{result.zone or 'zone ?'}: {result.runs} daily runs released at {result.release} {result.timezone}, "
        f"{result.duration_h:g} h job, done within {result.deadline_h:g} h; provider forecast: {result.forecast_mode}"
        + (f" ({result.skipped} first days skipped: no history yet)" if result.skipped else ""),
        header,
        "-" * len(header),
    ]
    for s in result.summaries:
        captured = "" if s.capture_pct is None else f"{s.capture_pct:.1f} %"
        lines.append(
            f"{labels[s.policy]:<26} {s.mean_intensity:>10.1f} {s.saving_vs_release_pct:>8.1f} % "
            f"{s.saving_vs_fixed_pct:>7.1f} % {captured:>9} {s.delay_median_h:>7.1f} h {s.delay_p90_h:>4.1f} h "
            f"{s.delay_max_h:>4.1f} h {s.deadline_misses:>6}"
        )
    return "\n".join(lines)


def plot(result: BacktestResult, observed: Forecast, path: Path) -> None:
    """A sample week with the chosen windows, the delay histogram, and baseline-versus-scheduled emissions."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("--plot needs matplotlib: pip install 'airflow-provider-carbon[plot]'") from None
    import numpy as np

    days = result.days
    fig, (week, hist, total) = plt.subplots(3, 1, figsize=(11, 11))
    sample = days[len(days) // 2 : len(days) // 2 + 7] or days[:7]
    if sample:
        span = observed.window(sample[0].release, sample[-1].release + timedelta(days=1))
        week.step(span.timestamps, span.values, where="post", color="#555", lw=1, label="observed intensity")
        duration = timedelta(hours=result.duration_h)
        for i, day in enumerate(sample):
            for policy, colour in (("release", "#c44"), ("provider", "#2a7")):
                start = day.starts[policy]
                week.axvspan(start, start + duration, color=colour, alpha=0.3, label=policy if i == 0 else None)
        week.set_title(f"{result.zone}: a sample week, the job's window at release (red) and the provider's (green)")
        week.set_ylabel("gCO2eq/kWh")
        week.legend(loc="upper right")
    delays = [(d.starts["provider"] - d.release) / timedelta(hours=1) for d in days]
    hist.hist(delays, bins=np.arange(0, result.deadline_h - result.duration_h + 1.5) - 0.5, color="#2a7")
    hist.set_title(f"delay of the provider's start after release ({result.forecast_mode} forecast)")
    hist.set_xlabel("hours after release")
    hist.set_ylabel("runs")
    stamps = [d.release for d in days]
    for policy, colour in (("release", "#c44"), ("fixed", "#888"), ("provider", "#2a7")):
        cumulative = np.cumsum([d.intensity[policy] * result.duration_h / 1000 for d in days])
        total.plot(
            stamps,
            cumulative,
            color=colour,
            label=POLICY_LABELS[policy].format(fallback=result.fallback, forecast=result.forecast_mode),
        )
    total.set_title("cumulative emissions per kW of load (kg CO2eq)")
    total.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="airflow-carbon", description="airflow-provider-carbon tools")
    commands = parser.add_subparsers(dest="command", required=True)
    bt = commands.add_parser(
        "backtest",
        help="replay a daily job over observed history: what carbon-aware scheduling saves",
        description="Replay a daily job over observed history with four policies (start at release, a fixed local "
        "time, the provider's optimizer on a forecast, perfect foresight).",
    )
    source = bt.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", type=Path, help="CSV with timestamp (tz-aware ISO 8601) and carbon_intensity")
    source.add_argument("--conn-id", help="an Airflow connection of a carbon service: fetch its history")
    bt.add_argument("--zone", help="zone for --conn-id (default: the connection's)")
    bt.add_argument("--days", type=int, default=30, help="days of history to fetch with --conn-id (default 30)")
    bt.add_argument("--release", default="00:00", help="local release time every day, HH:MM (default 00:00)")
    bt.add_argument("--timezone", default="UTC", help="IANA timezone of --release and --fallback (default UTC)")
    bt.add_argument("--duration", required=True, help="job duration: 2h, 90m, PT2H")
    bt.add_argument("--deadline", required=True, help="the job finishes within this long of its release: 12h")
    bt.add_argument("--fallback", default="02:00", help="the fixed policy's local start time (default 02:00)")
    bt.add_argument(
        "--forecast",
        default="perfect",
        help="what the provider plans on: perfect, persistence, history or noisy:<sigma> (default perfect)",
    )
    bt.add_argument("--seed", type=int, default=0, help="seed of noisy:<sigma> (default 0)")
    bt.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    bt.add_argument("--plot", type=Path, metavar="FILE.png", help="draw a week, the delays and the emissions")
    return parser


def run_backtest(args: argparse.Namespace) -> int:
    from airflow_provider_carbon.core.backtest import backtest
    from airflow_provider_carbon.exceptions import InsufficientHistoryError

    duration = parse_duration(args.duration, "--duration")
    deadline = parse_duration(args.deadline, "--deadline")
    if args.days <= 0:
        raise UsageError("--days must be positive")
    observed = read_csv(args.data) if args.data else fetch_history(args.conn_id, args.zone, args.days)
    try:
        result = backtest(
            observed,
            duration=duration,
            deadline=deadline,
            release=args.release,
            timezone=args.timezone,
            fallback=args.fallback,
            forecast=args.forecast,
            seed=args.seed,
        )
    except (ValueError, InsufficientHistoryError) as err:
        raise UsageError(str(err)) from None
    if not result.runs:
        raise UsageError(
            f"no complete run fits in the data ({observed.start:%Y-%m-%d %H:%M} to {observed.end:%Y-%m-%d %H:%M} "
            f"UTC; {result.skipped} skipped for lack of history)"
        )
    if args.plot:
        plot(result, observed, args.plot)
    if args.json:
        out: dict[str, Any] = result.to_dict()
        if args.plot:
            out["plot"] = str(args.plot)
        print(json.dumps(out))
    else:
        print(render_table(result))
        print(f"({result.seconds:.1f} s" + (f"; plot: {args.plot})" if args.plot else ")"))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # argparse itself exits 2 with one usage line on a bad flag
    try:
        return run_backtest(args)
    except UsageError as err:
        print(f"airflow-carbon {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
