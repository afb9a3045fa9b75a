# The Airflow image this project tests against, with airflow-provider-carbon installed from this checkout using the
# project's pinned constraints (not _PIP_ADDITIONAL_REQUIREMENTS, which reinstalls at every container start).
ARG AIRFLOW_VERSION=3.3.2
ARG PYTHON_VERSION=3.11
FROM apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION}

COPY --chown=airflow:0 pyproject.toml README.md constraints.txt /opt/airflow-provider-carbon/
COPY --chown=airflow:0 airflow_provider_carbon /opt/airflow-provider-carbon/airflow_provider_carbon
RUN pip install --no-cache-dir "/opt/airflow-provider-carbon" \
        --constraint /opt/airflow-provider-carbon/constraints.txt \
    && python -c "import airflow_provider_carbon, airflow_provider_carbon.simulator"
