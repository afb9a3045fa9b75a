"""The provider's Airflow plugin, registered through the ``airflow.plugins`` entry point.

A plugin listed only in ``get_provider_info()`` loads only when ``[core] lazy_discover_providers`` is off, which is
not the default; the entry point loads it in every Airflow process. So this module stays light: it names the
listener module and imports nothing heavy.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from airflow_provider_carbon.listeners import accounting, energy, glance

__all__ = ["CarbonPlugin"]


class CarbonPlugin(AirflowPlugin):
    """Carbon accounting of the jobs that carbon sensors release (a task-instance listener, with CodeCarbon's
    measurement where asked for) and the plan and its outcome in each run's note (a DAG-run listener)."""

    name = "carbon"
    listeners = [accounting, energy, glance]
