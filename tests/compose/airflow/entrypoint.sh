#!/usr/bin/env bash
# The parts of the official apache/airflow image's /entrypoint that docker-compose.yaml relies on:
#   _AIRFLOW_DB_MIGRATE=true       airflow db migrate before the command (airflow-init)
#   _AIRFLOW_WWW_USER_CREATE=true  airflow users create with _AIRFLOW_WWW_USER_USERNAME / _PASSWORD, role Admin
#   a command "airflow X" or "X" runs airflow X; "bash ..." and "python ..." run as given.
# Not reproduced: the official wait-for-database/broker loops (compose's depends_on covers them here), the
# _PIP_ADDITIONAL_REQUIREMENTS install, and the arbitrary-uid passwd entry.
set -euo pipefail
umask 0002
if [[ "${1:-}" == airflow ]]; then
  shift
fi
if [[ "${_AIRFLOW_DB_MIGRATE:-}" == true || "${_AIRFLOW_DB_UPGRADE:-}" == true ]]; then
  airflow db migrate
fi
if [[ "${_AIRFLOW_WWW_USER_CREATE:-}" == true ]]; then
  airflow users create \
    --username "${_AIRFLOW_WWW_USER_USERNAME:-admin}" \
    --firstname "${_AIRFLOW_WWW_USER_FIRSTNAME:-Airflow}" \
    --lastname "${_AIRFLOW_WWW_USER_LASTNAME:-Admin}" \
    --email "${_AIRFLOW_WWW_USER_EMAIL:-airflowadmin@example.com}" \
    --role "${_AIRFLOW_WWW_USER_ROLE:-Admin}" \
    --password "${_AIRFLOW_WWW_USER_PASSWORD:?_AIRFLOW_WWW_USER_PASSWORD must be set}" || true
fi
case "${1:-}" in
  "" | bash)
    shift || true
    exec /bin/bash "$@"
    ;;
  python)
    shift
    exec python "$@"
    ;;
esac
exec airflow "$@"
