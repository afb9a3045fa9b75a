"""Everything that differs between the Airflow 3 releases the provider supports (3.1, 3.2, 3.3), in one place.

Other modules import these names from here instead of choosing between Airflow's import paths themselves, so
that dropping a release later means editing this file only. Each name tries the newest location first: on the
newest Airflow the old paths are deprecated (or gone), and a provider must not print deprecation warnings into
every DAG parse.

Only modules that import Airflow anyway import this one (``import airflow_provider_carbon`` stays free of it).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from airflow import __version__ as _airflow_version

#: the running Airflow's release as numbers, without pre-release or local suffixes (``3.1.8rc1`` gives (3, 1, 8));
#: parsed here rather than with ``packaging``, which the provider does not declare
AIRFLOW_VERSION: tuple[int, ...] = tuple(
    int(part) for part in re.match(r"\d+(?:\.\d+)*", _airflow_version)[0].split(".")
)
#: 3.2 added the declarative connection form (``conn-fields`` / ``ui-field-behaviour`` in the provider info) and
#: deprecated the hook methods ``get_connection_form_widgets`` / ``get_ui_field_behaviour`` that 3.1 still reads
AIRFLOW_V_3_2_PLUS = AIRFLOW_VERSION >= (3, 2)

if TYPE_CHECKING:
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk import conf
    from airflow.sdk.bases.skipmixin import SkipMixin
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException, TaskDeferred
else:
    # Airflow's configuration: the Task SDK exports it from 3.2 on; 3.1 has only core's
    try:
        from airflow.sdk import conf
    except ImportError:
        from airflow.configuration import conf

    # raised by BaseOperator.defer(): the Task SDK's own class from 3.2 on, core's in 3.1
    try:
        from airflow.sdk.exceptions import TaskDeferred
    except ImportError:
        from airflow.exceptions import TaskDeferred

    # skip a task / fail it without retries: the Task SDK's classes where it has them (3.3 does; its task runner
    # catches those), core's in 3.1
    try:
        from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
    except ImportError:
        from airflow.exceptions import AirflowFailException, AirflowSkipException


def _skip_mixin() -> type:
    # the base of branch operators (GreenestRegionBranchOperator is one): in the Task SDK from 3.2 on, in the
    # standard provider for 3.1 (whose BaseBranchOperator picks the same class through common.compat)
    try:
        from airflow.sdk.bases.skipmixin import SkipMixin
    except ImportError:
        from airflow.providers.standard.utils.skipmixin import SkipMixin
    return SkipMixin


def _dagbag() -> type:
    # moved out of airflow.models in 3.2 (the old path still works there, with a deprecation warning)
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:
        from airflow.models.dagbag import DagBag
    return DagBag


# Imported on first use only: DAG files import the sensor (and so this module) at every parse, and neither class
# is needed there; `from airflow_provider_carbon._compat import DagBag` still works through __getattr__.
_LAZY: dict[str, Callable[[], type]] = {"DagBag": _dagbag, "SkipMixin": _skip_mixin}


def __getattr__(name: str) -> Any:
    load = _LAZY.get(name)
    if load is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = globals()[name] = load()
    return value


__all__ = [
    "AIRFLOW_VERSION",
    "AIRFLOW_V_3_2_PLUS",
    "AirflowFailException",
    "AirflowSkipException",
    "DagBag",
    "SkipMixin",
    "TaskDeferred",
    "conf",
]


def stats() -> Any:
    """Airflow's metrics client inside a task: the Task SDK's from 3.3 on, core's before. Airflow sends nothing
    unless ``[metrics] statsd_on`` (or OpenTelemetry) is configured and its client library is installed."""
    try:
        from airflow.sdk.observability.stats import Stats
    except ImportError:
        from airflow.stats import Stats
    return Stats
