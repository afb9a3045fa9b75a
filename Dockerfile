# The Airflow image this project tests against, with airflow-provider-carbon installed from this checkout at build
# time (not _PIP_ADDITIONAL_REQUIREMENTS, which reinstalls at every container start).
#
# Pinned to what the image already holds: the official image is built with Airflow's own constraints for this
# version; pip adds what the provider needs and the image lacks, and changes no package the image has (it fails
# the build instead, should a requirement conflict). Our constraints.txt is a newer resolution for a virtualenv (e.g.
# SQLAlchemy 2.1, pandas 3); forcing it here would replace packages the image's FAB auth manager was built with.
ARG AIRFLOW_VERSION=3.3.2
ARG PYTHON_VERSION=3.11
# What the image builds on: the official image. tests/compose builds a stand-in of it where no registry is reachable
# (make compose-test) and passes it here; anything else should keep the default.
ARG AIRFLOW_BASE_IMAGE=apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION}
FROM ${AIRFLOW_BASE_IMAGE}
ARG AIRFLOW_VERSION

COPY --chown=airflow:0 pyproject.toml README.md LICENSE /opt/airflow-provider-carbon/
COPY --chown=airflow:0 airflow_provider_carbon /opt/airflow-provider-carbon/airflow_provider_carbon
RUN pip freeze > /tmp/image-constraints.txt \
    && pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" "/opt/airflow-provider-carbon[queue]" \
        --constraint /tmp/image-constraints.txt \
    && python -c "import airflow_provider_carbon, airflow_provider_carbon.simulator"
