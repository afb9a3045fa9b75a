"""Operator extra links: from a carbon task to its zone's public page, where the service has one, and to the task's
page in the provider's Carbon view (the plugin's ``/carbon`` app in the api-server).

Airflow 3 computes a link on the worker when the task finishes and stores it in XCom; an empty link is stored as
``None`` and the UI shows no button. So each link answers only for its own service (the one the task actually
used, ``resolved_service``) and a WattTime or Carbon Aware SDK task shows no dead button: those services have no
public page per zone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar
from urllib.parse import quote

from airflow.sdk import BaseOperatorLink

from airflow_provider_carbon.core.report import task_view_path

if TYPE_CHECKING:
    from airflow.models.taskinstancekey import TaskInstanceKey
    from airflow.sdk import BaseOperator

__all__ = ["CARBON_LINKS", "CarbonViewLink", "CarbonZoneLink", "ElectricityMapsZoneLink", "UkCarbonIntensityLink"]

#: where the api-server mounts the Carbon view (``airflow_provider_carbon.plugins.URL_PREFIX``; that module is the
#: plugin, which a DAG file has no reason to import)
CARBON_VIEW_PREFIX = "/carbon"


class CarbonZoneLink(BaseOperatorLink):
    """A service's public page for the zone the task planned for (``resolved_zone``, else the ``zone``
    argument); empty unless the task's service is :attr:`service`."""

    name: ClassVar[str]
    #: the service id (``Forecast.source`` / connection type) this link is for
    service: ClassVar[str]
    #: the page, with ``{zone}`` for the URL-quoted zone key
    url: ClassVar[str]

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        if getattr(operator, "resolved_service", None) != self.service:
            return ""
        zone = getattr(operator, "resolved_zone", None) or getattr(operator, "zone", None)
        if not zone or not isinstance(zone, str) or "{{" in zone:
            return ""
        return self.url.format(zone=quote(zone, safe=""))


class ElectricityMapsZoneLink(CarbonZoneLink):
    """ "Electricity Maps" button: the live map of the zone."""

    name = "Electricity Maps"
    service = "electricitymaps"
    url = "https://app.electricitymaps.com/zone/{zone}"


class UkCarbonIntensityLink(CarbonZoneLink):
    """ "Carbon Intensity (GB)" button: the UK Carbon Intensity site, whose map shows the national figure and every
    region (the site has no separate page per region)."""

    name = "Carbon Intensity (GB)"
    service = "uk_carbon_intensity"
    url = "https://carbonintensity.org.uk/"


class CarbonViewLink(BaseOperatorLink):
    """ "Carbon view" button: this task instance's page in the provider's Carbon view (the forecast its plan used,
    the chosen window and the actual run, the alternatives, every re-plan), whatever the service."""

    name = "Carbon view"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        from airflow_provider_carbon._compat import conf

        # absolute when the deployment says where its api-server is (a link is stored once, on the worker, and
        # opened from the UI of that api-server); relative to the UI's host otherwise
        base = (conf.get("api", "base_url", fallback="") or "").rstrip("/")
        return task_view_path(
            base + CARBON_VIEW_PREFIX, ti_key.dag_id, ti_key.run_id, ti_key.task_id, getattr(ti_key, "map_index", -1)
        )


#: the links every planning task carries
CARBON_LINKS = (ElectricityMapsZoneLink(), UkCarbonIntensityLink(), CarbonViewLink())
