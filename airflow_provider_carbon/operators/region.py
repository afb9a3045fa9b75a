"""Pick the greenest region among candidates (and when to start there), and a branching variant.

Nothing heavy is imported at module level: DAG files import this module at every parse.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.providers.standard.operators.branch import BaseBranchOperator

from airflow_provider_carbon.operators.base import CarbonBaseOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_carbon.core.decision import PlanSpec
    from airflow_provider_carbon.core.regions import RegionResult
    from airflow_provider_carbon.hooks.base import CarbonIntensityHook

__all__ = ["GreenestRegionBase", "GreenestRegionBranchOperator", "GreenestRegionOperator"]

REGIONS_XCOM_KEY = "carbon_regions"
CHOICE_XCOM_KEY = "carbon_region"
MODES = ("now", "window")


class GreenestRegionBase(CarbonBaseOperator):
    """Fetch every candidate concurrently, fall back per region to the static table, score, choose.

    One region's data failing does not fail the task: its value comes from a static annual-average table and is
    marked. The window arguments (``expected_duration``, ``latest_start``, ``finish_by``, ``max_delay``) apply to
    ``mode="window"`` only.

    :param regions: candidates (templated): grid zone keys (``"SE-SE3"``, ``"DE"``) or cloud regions
        (``"aws:eu-north-1"``, ``"gcp:europe-west4"``, ``"azure:westeurope"``), as a list or a comma-separated string.
    :param mode: ``"now"`` compares current intensities; ``"window"`` compares each region's best window of
        ``expected_duration`` (default 1 hour) before the deadline, so the answer is a region and a start time
        (templated).
    :param cost_per_hour: region -> cost of running the job there for an hour.
    :param latency_ms: region -> latency that matters to you.
    :param weights: ``{"carbon": .., "cost": .., "latency": ..}``: each criterion is min-max normalised across the
        candidates and the weighted sum is the score (lowest wins). Default: carbon only (with ``carbon_price``:
        cost only, carbon included in it); criteria you leave out keep these defaults. Once you weigh cost, every
        region needs a ``cost_per_hour`` (a missing one would count as free).
    :param carbon_price: price per tonne CO2e in the cost's currency; adds intensity x ``power_kw`` / 1e6 x price
        to each region's hourly cost.
    :param power_kw: the job's average power draw in kW (required with ``carbon_price``).
    :param region_zones: overrides of the shipped cloud-region mapping, e.g. ``{"aws:eu-north-1": "SE-SE3"}``.
    :param if_all_fail: when every region's live data fails: ``"static"`` ranks by the static annual averages, or
        a region name that is then chosen.
    :param max_workers: regions fetched at the same time.
    """

    region_template_fields: ClassVar[Sequence[str]] = (
        "regions",
        "mode",
        *CarbonBaseOperator.window_template_fields,
        "if_all_fail",
    )
    template_fields: Sequence[str] = region_template_fields
    default_duration = timedelta(hours=1)
    ui_color = "#74c69d"

    def __init__(
        self,
        *,
        regions: str | Iterable[str],
        mode: str = "now",
        cost_per_hour: Mapping[str, float] | None = None,
        latency_ms: Mapping[str, float] | None = None,
        weights: Mapping[str, float] | None = None,
        carbon_price: float | None = None,
        power_kw: float | None = None,
        region_zones: Mapping[str, str] | None = None,
        if_all_fail: str = "static",
        max_workers: int = 8,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.regions = regions
        self.mode = mode
        self.cost_per_hour = dict(cost_per_hour or {})
        self.latency_ms = dict(latency_ms or {})
        self.weights = dict(weights or {})
        self.carbon_price = carbon_price
        self.power_kw = power_kw
        self.region_zones = dict(region_zones or {})
        self.if_all_fail = if_all_fail
        self.max_workers = max_workers
        if mode not in MODES and "{{" not in str(mode):
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")

    # -- one region ---------------------------------------------------------------------------------------------

    def _measure(
        self,
        hook: CarbonIntensityHook | None,
        name: str,
        zone: str,
        location: str,
        spec: PlanSpec | None,
        now: datetime,
    ) -> RegionResult:
        from airflow_provider_carbon.core.regions import RegionResult, static_intensity
        from airflow_provider_carbon.core.windows import find_best_window

        try:
            if hook is None:
                raise RuntimeError(f"connection {self.carbon_conn_id!r} is unusable")
            if spec is None:
                latest = hook.get_latest(location)
                return RegionResult(
                    region=name, zone=zone, intensity=float(latest.values[-1]), source=latest.source or hook.service
                )
            forecast = hook.get_forecast(location, **spec.forecast_request(now))
            window = find_best_window(
                forecast, spec.duration, earliest=max(now, forecast.start), latest_start=spec.latest_start
            )
            return RegionResult(
                region=name,
                zone=zone,
                intensity=window.mean_intensity,
                source=forecast.source or hook.service,
                window_start=window.start.isoformat(),
                window_end=window.end.isoformat(),
            )
        except Exception as err:  # one region's data failing must not fail the task
            static = static_intensity(zone)
            self.log.warning(
                "region %s (%s): live data failed (%s: %s); %s",
                name,
                zone,
                type(err).__name__,
                err,
                f"using the {static.year} annual average" if static else "no static value either",
            )
            # no forecast: a region chosen on its static value would start now
            return RegionResult(
                region=name,
                zone=zone,
                intensity=static.value if static else None,
                source=f"static annual average {static.year}: {static.source}" if static else "none",
                fallback=True,
                error=f"{type(err).__name__}: {err}",
                window_start=now.isoformat() if spec is not None else None,
                window_end=(now + spec.duration).isoformat() if spec is not None else None,
            )

    # -- all regions ----------------------------------------------------------------------------------------------

    def select_region(self, context: Context) -> str:
        from airflow_provider_carbon.core.regions import parse_regions, rank_regions, resolve_region

        names = parse_regions(self.regions)
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.if_all_fail != "static" and self.if_all_fail not in names:
            raise ValueError(f"if_all_fail must be 'static' or one of the regions {names}, got {self.if_all_fail!r}")
        resolved = [(name, *resolve_region(name, self.region_zones)) for name in names]
        spec = self.plan_spec(context) if self.mode == "window" else None
        now = datetime.now(timezone.utc)
        if spec is not None and spec.latest_start <= now:
            # a late or retried run: no window is left to choose, so compare what starting now would emit instead
            # of letting every region fail over to the static table
            self.log.warning(
                "the deadline %s has passed: comparing regions for a start now",
                spec.latest_start.isoformat(),
            )
            spec = replace(spec, latest_start=now)
        hook, _ = self.usable_hook()  # unusable: every region fails over to its static value

        def measure(item: tuple[str, str, Any]) -> RegionResult:
            name, zone, row = item
            location = zone
            if hook is not None and row is not None:
                location = hook.cloud_location(row.provider, row.region) or zone
            return self._measure(hook, name, zone, location, spec, now)

        with ThreadPoolExecutor(max_workers=max(1, min(self.max_workers, len(resolved)))) as pool:
            results = list(pool.map(measure, resolved))
        ranked = rank_regions(
            results,
            cost_per_hour=self.cost_per_hour,
            latency_ms=self.latency_ms,
            weights=self.weights,
            carbon_price=self.carbon_price,
            power_kw=self.power_kw,
        )
        all_failed = all(r.fallback for r in results)
        if all_failed and self.if_all_fail != "static":
            choice = next(r for r in ranked if r.region == self.if_all_fail)
            why = f"every region failed: the configured default {self.if_all_fail!r}"
        elif ranked and ranked[0].rank is not None:
            choice = ranked[0]
            why = "every region failed: the static annual averages decide" if all_failed else "lowest score"
        else:
            raise RuntimeError(f"no live or static intensity for any of {names}; set if_all_fail to a region")
        table = [r.to_dict() for r in ranked]
        for row in table:
            self.log.info(
                "rank %s: %s (%s) %s gCO2eq/kWh%s, score %s, source %s",
                row["rank"],
                row["region"],
                row["zone"],
                "n/a" if row["intensity"] is None else f"{row['intensity']:.0f}",
                f", window from {row['window_start']}" if row["window_start"] else "",
                row["score"],
                row["source"],
            )
        chosen = {**choice.to_dict(), "reason": why, "mode": self.mode, "decided_at": now.isoformat()}
        self.log.info("greenest region: %s (%s): %s", choice.region, choice.zone, why)
        ti = context.get("ti") if context else None
        if ti is not None:
            ti.xcom_push(key=REGIONS_XCOM_KEY, value=table)
            ti.xcom_push(key=CHOICE_XCOM_KEY, value=chosen)
        self.resolved_zone = choice.zone
        return choice.region


class GreenestRegionOperator(GreenestRegionBase):
    """Choose the region (and, in window mode, the start) with the lowest carbon score.

    Returns the chosen region's name (XCom ``return_value``, exactly as given in ``regions``); pushes the per-region
    table (intensity, window, cost, latency, score, source, whether it was a fallback value) to XCom
    ``carbon_regions`` and the choice with its zone, window and reason to ``carbon_region``. One region's data
    failing does not fail the task: its value comes from a static annual-average table and is marked.

    .. code-block:: python

        pick = GreenestRegionOperator(
            task_id="pick_region",
            regions=["aws:eu-north-1", "aws:eu-central-1", "aws:us-east-1"],
            mode="window",
            expected_duration=timedelta(hours=2),
            max_delay=timedelta(hours=12),
            cost_per_hour={"aws:eu-north-1": 3.1, "aws:eu-central-1": 3.4, "aws:us-east-1": 2.9},
            carbon_price=80,
            power_kw=2.5,
        )
        # downstream: "{{ ti.xcom_pull(task_ids='pick_region') }}" is the region,
        # "{{ ti.xcom_pull(task_ids='pick_region', key='carbon_region')['window_start'] }}" the start
    """

    def execute(self, context: Context) -> str:
        return self.select_region(context)


class GreenestRegionBranchOperator(GreenestRegionBase, BaseBranchOperator):
    """Follow only the downstream task(s) of the greenest region; Airflow skips the others.

    Same choice, XComs and fallbacks as :class:`GreenestRegionOperator`: XCom ``return_value`` is the chosen region
    (the followed task ids are in the log), ``carbon_region`` and ``carbon_regions`` as there.

    :param branches: region (as written in ``regions``) -> downstream task id, or list of task ids.
    :param regions: candidates (templated), as for :class:`GreenestRegionOperator`; default: the keys of
        ``branches``.

    .. code-block:: python

        pick = GreenestRegionBranchOperator(
            task_id="pick_region",
            regions=["SE-SE3", "DE", "PL"],
            branches={"SE-SE3": "train_se", "DE": "train_de", "PL": "train_pl"},
        )
        # route the work to per-region workers: train_se = ...(queue="se-se3"), one Celery queue per region
        pick >> [train_se, train_de, train_pl]
    """

    def __init__(
        self,
        *,
        branches: Mapping[str, str | list[str]],
        regions: str | Iterable[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(regions=regions if regions is not None else list(branches), **kwargs)
        self.branches = dict(branches)

    def execute(self, context: Context) -> str:
        # BaseBranchOperator would return the task ids; the region is what downstream tasks want to know
        region = self.select_region(context)
        self.do_branch(context, self.branches[region])
        return region

    def choose_branch(self, context: Context) -> str | list[str]:
        return self.branches[self.select_region(context)]

    def select_region(self, context: Context) -> str:
        from airflow_provider_carbon.core.regions import parse_regions

        # before any request: a region without a branch is a DAG bug, not something to find after the fetches
        missing = [name for name in parse_regions(self.regions) if name not in self.branches]
        if missing:
            raise KeyError(f"no branch for region(s) {missing}; branches has {sorted(self.branches)}")
        return super().select_region(context)
