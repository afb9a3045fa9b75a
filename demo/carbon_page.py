"""Part of `make demo`: the Carbon page of the demo's runs, written to an HTML file (the demo has no api-server).

Run in the demo's Airflow environment (``AIRFLOW_HOME``): it reads the runs' carbon XComs from the metadata database
with the plugin's own query and renders them with the plugin's own renderer, so the file is what the Carbon page of
the Airflow UI shows for these runs (without the UI's frame around it).
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(out: str) -> int:
    from airflow.utils.session import create_session

    from airflow_provider_carbon.core.report import build_overview, render_overview
    from airflow_provider_carbon.plugins import URL_PREFIX
    from airflow_provider_carbon.plugins.records import read_records

    with create_session() as session:
        records = read_records(session, {"nightly_low_carbon_training"})
    model = build_overview(records)
    Path(out).write_text(render_overview(model, base=URL_PREFIX))
    print(f"{model.total_rows} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
