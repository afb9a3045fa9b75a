"""Airflow listeners of the provider (loaded through :mod:`airflow_provider_carbon.plugins`)."""
