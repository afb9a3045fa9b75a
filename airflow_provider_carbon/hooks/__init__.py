"""Hooks for carbon-intensity services, one per service, all returning core ``Forecast`` objects.

Each module is imported on its own (``from airflow_provider_carbon.hooks.electricitymaps import
ElectricityMapsHook``); this package imports nothing so that Airflow's provider discovery stays cheap.
"""
