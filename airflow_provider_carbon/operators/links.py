"""Operator extra links: from a carbon task to its zone's public page, where the service has one.

Airflow 3 computes a link on the worker when the task finishes and stores it in XCom; an empty link is stored as
``None`` and the UI shows no button. So each link answers only for its own service (the one the task actually
used, ``resolved_service``) and a WattTime or Carbon Aware SDK task shows no dead button: those services have no
public page per zone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar
from urllib.parse import quote

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.models.taskinstancekey import TaskInstanceKey
    from airflow.sdk import BaseOperator

__all__ = ["CARBON_LINKS", "CarbonZoneLink", "ElectricityMapsZoneLink", "UkCarbonIntensityLink"]


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


#: the links every planning task carries
CARBON_LINKS = (ElectricityMapsZoneLink(), UkCarbonIntensityLink())
