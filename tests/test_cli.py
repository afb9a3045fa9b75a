"""airflow-carbon backtest: every flag, the --json schema, the plot, history through a connection (a real local
server in Electricity Maps format), and bad input as one error line with exit code 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest
from werkzeug import Response

from airflow_provider_carbon.cli import main
from tests.hooks.conftest import TOKEN, connection, iso_z  # noqa: F401 - the fixture

T0 = datetime(2025, 1, 1, tzinfo=timezone.utc)
POLICIES = {"release", "fixed", "provider", "perfect"}
SUMMARY_KEYS = {
    "mean_intensity",
    "saving_vs_release_pct",
    "saving_vs_fixed_pct",
    "capture_pct",
    "delay_median_h",
    "delay_p90_h",
    "delay_max_h",
    "deadline_misses",
}


def valley_csv(path, days=30, tz="Z"):
    index = pd.date_range(T0, periods=24 * days, freq="h")
    values = np.where((index.hour >= 5) & (index.hour < 7), 10.0, 100.0)
    stamps = [t.strftime("%Y-%m-%dT%H:%M:%S") + tz for t in index]
    pd.DataFrame({"timestamp": stamps, "carbon_intensity": values}).to_csv(path, index=False)
    return path


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_the_table_for_a_known_optimum(tmp_path, capsys):
    csv = valley_csv(tmp_path / "xx.csv")
    code, out, err = run(capsys, "backtest", "--data", str(csv), "--duration", "2h", "--deadline", "12h")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].startswith("xx: 30 daily runs released at 00:00 UTC, 2 h job, done within 12 h")
    perfect = next(line for line in lines if line.startswith("perfect foresight"))
    assert perfect.split()[2:6] == ["10.0", "90.0", "%", "90.0"]
    assert "100.0 %" in next(line for line in lines if line.startswith("provider (perfect)"))


def test_json_with_every_flag(tmp_path, capsys):
    csv = valley_csv(tmp_path / "xx.csv")
    code, out, err = run(
        capsys,
        "backtest",
        "--data", str(csv),
        "--duration", "PT2H",
        "--deadline", "720m",
        "--release", "01:00",
        "--timezone", "Europe/Berlin",
        "--fallback", "03:30",
        "--forecast", "noisy:0.05",
        "--seed", "4",
        "--json",
    )  # fmt: skip
    assert code == 0, err
    body = json.loads(out)
    assert set(body) == {
        "zone", "forecast_mode", "duration_h", "deadline_h", "release", "fallback", "timezone", "runs", "skipped",
        "seconds", "policies",
    }  # fmt: skip
    assert body["forecast_mode"] == "noisy:0.05" and body["release"] == "01:00" and body["fallback"] == "03:30"
    assert body["timezone"] == "Europe/Berlin" and body["duration_h"] == 2 and body["deadline_h"] == 12
    assert set(body["policies"]) == POLICIES
    assert all(set(p) == SUMMARY_KEYS for p in body["policies"].values())
    assert body["policies"]["perfect"]["capture_pct"] == 100.0
    assert all(p["deadline_misses"] == 0 for p in body["policies"].values())


@pytest.mark.parametrize("mode", ["perfect", "persistence", "history"])
def test_forecast_modes(tmp_path, capsys, mode):
    csv = valley_csv(tmp_path / "xx.csv")
    code, out, _ = run(capsys, "backtest", "--data", str(csv), "--duration", "2h", "--deadline", "12h",
                       "--forecast", mode, "--json")  # fmt: skip
    assert code == 0 and json.loads(out)["policies"]["provider"]["capture_pct"] == 100.0


def test_plot_writes_a_png(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    csv = valley_csv(tmp_path / "xx.csv")
    png = tmp_path / "out.png"
    code, out, err = run(capsys, "backtest", "--data", str(csv), "--duration", "2h", "--deadline", "12h",
                         "--forecast", "history", "--plot", str(png))  # fmt: skip
    assert code == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    assert f"plot: {png}" in out


def test_history_through_a_connection(httpserver, connection, tmp_path):  # noqa: F811
    """--conn-id/--zone/--days in a process of its own, as a user runs it: the history comes through the
    connection's hook from a real local server, and Airflow's log lines go to stderr (stdout is the JSON alone)."""

    def past_range(request):
        lo = datetime.fromisoformat(request.args["start"].replace("Z", "+00:00"))
        hi = datetime.fromisoformat(request.args["end"].replace("Z", "+00:00"))
        data, t = [], lo
        while t <= hi:
            value = 10.0 if t.hour in (5, 6) else 100.0
            data.append({"zone": "FR", "carbonIntensity": value, "datetime": iso_z(t), "isEstimated": False})
            t += timedelta(hours=1)
        body = {"zone": request.args["zone"], "data": data, "temporalGranularity": "hourly"}
        return Response(json.dumps(body), content_type="application/json")

    httpserver.expect_request("/v3/carbon-intensity/past-range").respond_with_handler(past_range)
    connection("em_cli", "electricitymaps", httpserver.url_for("/v3"), password=TOKEN, extra={"zone": "DE"})
    result = subprocess.run(
        [sys.executable, "-m", "airflow_provider_carbon.cli", "backtest", "--conn-id", "em_cli", "--zone", "FR",
         "--days", "12", "--duration", "2h", "--deadline", "12h", "--json"],
        capture_output=True, text=True, timeout=180, env={**os.environ, "AIRFLOW_HOME": str(tmp_path)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    body = json.loads(result.stdout)
    # 12 days back from this hour; a midnight release counts when its 12 h deadline lies inside
    hour = datetime.now(timezone.utc).hour
    assert body["zone"] == "FR" and body["runs"] == (12 if hour == 0 or hour >= 12 else 11)
    assert body["policies"]["perfect"]["saving_vs_release_pct"] == 90.0
    assert {r.args["zone"] for r, _ in httpserver.log} == {"FR"}
    assert TOKEN not in result.stdout + result.stderr


def bad(tmp_path, text: str):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("timestamp,value\n2025-01-01T00:00:00Z,1\n", "missing column(s) carbon_intensity"),
        ("carbon_intensity\n1\n", "missing column(s) timestamp"),
        ("timestamp,carbon_intensity\n", "no rows"),
        ("timestamp,carbon_intensity\n2025-01-01T00:00:00,1\n2025-01-01T01:00:00,2\n", "have no timezone"),
        ("timestamp,carbon_intensity\n2025-01-01T01:00:00Z,1\n2025-01-01T00:00:00Z,2\n", "not sorted (row 3"),
        ("timestamp,carbon_intensity\nyesterday,1\n", "not ISO 8601"),
        ("timestamp,carbon_intensity\n2025-01-01T00:00:00Z,abc\n", "row 2: carbon_intensity 'abc' is not a number"),
        ("timestamp,carbon_intensity\n2025-01-01T00:00:00Z,1\n2025-01-01T00:00:00Z,2\n", "repeats the previous"),
        ("timestamp,carbon_intensity\n2025-01-01T00:00:00Z,-5\n2025-01-01T01:00:00Z,2\n", "negative"),
    ],
)
def test_a_bad_csv_is_one_error_line_and_exit_code_2(tmp_path, capsys, text, message):
    code, out, err = run(capsys, "backtest", "--data", str(bad(tmp_path, text)), "--duration", "1h",
                         "--deadline", "6h")  # fmt: skip
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and message in err and "Traceback" not in err, err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--duration", "2 hours"], "--duration: '2 hours' is not a duration"),
        (["--duration", "0h"], "must be positive"),
        (["--deadline", "1h"], "duration <= deadline"),
        (["--forecast", "oracle"], "unknown forecast mode"),
        (["--forecast", "noisy:big"], "bad sigma"),
        (["--release", "25:00"], "not a valid time of day"),
        (["--timezone", "Mars/Olympus"], "Mars/Olympus"),
        (["--days", "0"], "--days must be positive"),
    ],
)
def test_bad_flag_values_are_one_error_line_and_exit_code_2(tmp_path, capsys, flags, message):
    csv = valley_csv(tmp_path / "xx.csv")
    argv = {"--duration": "2h", "--deadline": "12h"}
    extra = []
    for key, value in zip(flags[::2], flags[1::2], strict=True):
        if key in argv:
            argv[key] = value
        else:
            extra += [key, value]
    code, out, err = run(capsys, "backtest", "--data", str(csv), *[x for kv in argv.items() for x in kv], *extra)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and message in err and "Traceback" not in err, err


def test_a_missing_file_and_too_short_data(tmp_path, capsys):
    code, _, err = run(capsys, "backtest", "--data", str(tmp_path / "nope.csv"), "--duration", "1h", "--deadline", "6h")
    assert code == 2 and "no such file" in err
    short = valley_csv(tmp_path / "short.csv", days=1)
    code, _, err = run(capsys, "backtest", "--data", str(short), "--duration", "1h", "--deadline", "6h",
                       "--forecast", "history")  # fmt: skip
    assert code == 2 and "no complete run" in err and len(err.strip().splitlines()) == 1


def test_the_console_script_runs_without_importing_airflow(tmp_path):
    """What `pip install` puts on PATH; a backtest over a CSV needs no Airflow (fast start, no AIRFLOW_HOME)."""
    csv = valley_csv(tmp_path / "xx.csv")
    code = (
        "import sys; from airflow_provider_carbon.cli import main; rc = main(sys.argv[1:]); "
        "assert 'airflow' not in sys.modules, 'airflow imported'; sys.exit(rc)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, "backtest", "--data", str(csv), "--duration", "2h", "--deadline", "12h"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "perfect foresight" in result.stdout
    missing = subprocess.run([sys.executable, "-m", "airflow_provider_carbon.cli", "backtest"], capture_output=True,
                             text=True, timeout=120)  # fmt: skip
    assert missing.returncode == 2 and "the following arguments are required" in missing.stderr
