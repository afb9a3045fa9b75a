"""Sensors of airflow-provider-carbon; import from the submodules (this package imports nothing)."""
