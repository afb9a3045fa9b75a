"""Plan a low-carbon start without waiting for it: the "plan at midnight, start later" pattern.

Nothing heavy is imported at module level: DAG files import this module at every parse. The core (numpy) and the
hooks (requests, tenacity) are imported inside ``execute()``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow_provider_carbon.operators.base import DECISION_XCOM_KEY, CarbonPlanningBase, parse_plan
from airflow_provider_carbon.operators.links import CARBON_LINKS

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["DECISION_XCOM_KEY", "CarbonPlanOperator", "parse_plan"]


class CarbonPlanOperator(CarbonPlanningBase):
    """Decide now when a job should start, without waiting: for the "plan at midnight, start later" pattern.

    Pushes the decision record (XCom ``return_value`` and ``carbon_decision``); ``planned_start`` in it is an
    ISO 8601 UTC time that a ``DateTimeSensor`` (or :class:`CarbonWindowSensor` with ``plan=``) can wait for.
    Takes the planning arguments of :class:`~airflow_provider_carbon.operators.base.CarbonPlanningBase`, listed
    below.

    .. code-block:: python

        plan = CarbonPlanOperator(
            task_id="plan_window", zone="DE", expected_duration=timedelta(hours=2), max_delay=timedelta(hours=8)
        )
        wait = DateTimeSensorAsync(
            task_id="wait", target_time="{{ ti.xcom_pull(task_ids='plan_window')['planned_start'] }}"
        )
        plan >> wait >> train
    """

    template_fields: Sequence[str] = CarbonPlanningBase.planning_template_fields
    operator_extra_links = CARBON_LINKS
    ui_color = "#b7e4c7"

    def execute(self, context: Context) -> dict[str, Any]:
        spec = self.plan_spec(context)
        return self.record(context, self.decide(context, spec))
