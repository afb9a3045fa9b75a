"""Operator extra link: from a carbon task to its zone's page on the Electricity Maps map."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.models.taskinstancekey import TaskInstanceKey
    from airflow.sdk import BaseOperator

__all__ = ["ElectricityMapsZoneLink"]

MAP_URL = "https://app.electricitymaps.com/zone/{zone}"


class ElectricityMapsZoneLink(BaseOperatorLink):
    """ "Electricity Maps" button on the task: the live map of the zone the task planned for.

    Airflow 3 computes the link on the worker when the task finishes and stores it in XCom, so it uses the zone
    the task actually resolved (``resolved_zone``), falling back to the ``zone`` argument.
    """

    name = "Electricity Maps"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        zone = getattr(operator, "resolved_zone", None) or getattr(operator, "zone", None)
        if not zone or not isinstance(zone, str) or "{{" in zone:
            return ""
        return MAP_URL.format(zone=quote(zone, safe=""))
