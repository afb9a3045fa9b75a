"""CarbonWindowTrigger: waits in the triggerer for a planned low-carbon start, re-checking as it goes.

While waiting it re-fetches the forecast every ``recheck_interval`` (through the hook's cache) and moves the start
when the optimum moves; at the planned start it reads the current intensity and, if it is more than
``deviation_pct`` above what the forecast said for that interval and the deadline leaves room, re-plans once.

It releases no later than the plan's latest start whatever the API does: every API call is bounded by the time left
to the deadline, a failed call keeps the current plan, and the release itself needs no API. All I/O goes through the
hooks' async methods, so the event loop is never blocked. It carries only primitives (connection id, zone, the plan
as JSON) and rebuilds its hook in the triggerer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_carbon.core.decision import Decision, PlanSpec, plan

__all__ = ["CarbonWindowTrigger"]

#: longest single sleep: short enough to notice a wall-clock jump (as Airflow's DateTimeTrigger does)
MAX_SLEEP = 60.0
#: the shortest time any API call may take before the deadline cuts it off
MIN_CALL_BUDGET = 1.0


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


async def _sleep(seconds: float) -> None:
    # One indirection so tests can drive the loop with a controlled clock (time is the only thing they mock).
    await asyncio.sleep(seconds)


class CarbonWindowTrigger(BaseTrigger):
    """Fire when the planned low-carbon start arrives (or the deadline, whichever is first).

    :param carbon_conn_id: the carbon connection.
    :param hook_class: dotted path of the hook class for that connection's type.
    :param zone: zone / region / location key.
    :param lat: latitude instead of a zone.
    :param lon: longitude instead of a zone.
    :param spec: :meth:`PlanSpec.to_dict` of what the user asked for.
    :param decision: :meth:`Decision.to_dict` of the current plan.
    :param recheck_interval: seconds between forecast re-checks.
    :param deviation_pct: re-plan at the start if the observed intensity is this much above the forecast.
    :param deviation_checked: whether that one check was already made.
    """

    def __init__(
        self,
        *,
        carbon_conn_id: str,
        hook_class: str,
        spec: dict[str, Any],
        decision: dict[str, Any],
        zone: str | None = None,
        lat: float | None = None,
        lon: float | None = None,
        recheck_interval: float = 3600.0,
        deviation_pct: float = 20.0,
        deviation_checked: bool = False,
    ) -> None:
        super().__init__()
        self.carbon_conn_id = carbon_conn_id
        self.hook_class = hook_class
        self.spec = spec
        self.decision = decision
        self.zone = zone
        self.lat = lat
        self.lon = lon
        self.recheck_interval = float(recheck_interval)
        self.deviation_pct = float(deviation_pct)
        self.deviation_checked = deviation_checked

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "carbon_conn_id": self.carbon_conn_id,
                "hook_class": self.hook_class,
                "spec": self.spec,
                "decision": self.decision,
                "zone": self.zone,
                "lat": self.lat,
                "lon": self.lon,
                "recheck_interval": self.recheck_interval,
                "deviation_pct": self.deviation_pct,
                "deviation_checked": self.deviation_checked,
            },
        )

    # -- I/O, always bounded and never raising ----------------------------------------------------------------

    def _hook(self) -> Any:
        if not self.hook_class:
            raise RuntimeError(f"connection {self.carbon_conn_id!r} was unusable when the wait began")
        if getattr(self, "_hook_instance", None) is None:
            from airflow.sdk.module_loading import import_string

            self._hook_instance = import_string(self.hook_class)(carbon_conn_id=self.carbon_conn_id)
        return self._hook_instance

    async def _bounded(self, call: str, deadline: datetime, **kwargs: Any) -> tuple[Any, BaseException | None]:
        """Run an async hook method, giving up when the deadline comes; return ``(result, error)``."""
        budget = max((deadline - utcnow()).total_seconds(), MIN_CALL_BUDGET)
        try:
            method = getattr(self._hook(), call)
            return await asyncio.wait_for(method(zone=self.zone, lat=self.lat, lon=self.lon, **kwargs), budget), None
        except asyncio.TimeoutError:
            return None, TimeoutError(f"{call} did not answer before the deadline ({budget:.0f} s)")
        except Exception as err:  # any failure keeps the current plan: the deadline must not depend on the API
            self.log.warning("carbon trigger: %s failed: %s", call, err)
            return None, err

    async def _forecast(self, spec: PlanSpec, now: datetime, *, use_cache: bool) -> tuple[Any, BaseException | None]:
        return await self._bounded(
            "aget_forecast", spec.latest_start, **spec.forecast_request(now), use_cache=use_cache
        )

    # -- the wait ---------------------------------------------------------------------------------------------

    async def run(self) -> AsyncIterator[TriggerEvent]:
        spec = PlanSpec.from_dict(self.spec)
        decision = Decision.from_dict(self.decision)
        deviation_checked = self.deviation_checked
        last_check = utcnow()
        self.log.info("carbon trigger: waiting; %s; latest start %s", decision.summary(), spec.latest_start)
        while True:
            now = utcnow()
            if now >= decision.planned_start:
                observed = None
                if not deviation_checked and decision.intensity_at_start and now < spec.latest_start:
                    deviation_checked = True
                    decision, observed, moved = await self._check_deviation(spec, decision, now)
                    if moved:
                        continue
                released = decision.released(now, _release_reason(decision, now), observed)
                self.log.info("carbon trigger: releasing at %s (%s)", now.isoformat(), released.release_reason)
                yield TriggerEvent({"status": "release", "decision": released.to_dict()})
                return
            if now - last_check >= timedelta(seconds=self.recheck_interval):
                last_check = now
                decision = await self._recheck(spec, decision, now)
                continue
            wake = min(decision.planned_start, last_check + timedelta(seconds=self.recheck_interval))
            await _sleep(min(max((wake - now).total_seconds(), 0.0), MAX_SLEEP))

    async def _recheck(self, spec: PlanSpec, decision: Decision, now: datetime) -> Decision:
        forecast, error = await self._forecast(spec, now, use_cache=True)
        if forecast is None:
            self.log.warning("carbon trigger: re-check failed (%s); keeping the plan for %s", error,
                             decision.planned_start)
            return decision
        new = plan(spec, forecast, now=now)
        if new.used_fallback:  # the fresh forecast is unusable: a fallback never replaces a plan
            return decision
        if decision.used_fallback:
            cause = "re-check: forecast available again"
        elif new.planned_start != decision.planned_start:
            cause = "re-check: the optimum moved"
        else:
            return decision
        self.log.info("carbon trigger: %s: %s -> %s", cause, decision.planned_start, new.planned_start)
        return decision.replanned(new, cause, now)

    async def _check_deviation(
        self, spec: PlanSpec, decision: Decision, now: datetime
    ) -> tuple[Decision, float | None, bool]:
        latest, error = await self._bounded("aget_latest", spec.latest_start)
        if latest is None:
            self.log.warning("carbon trigger: could not read the current intensity (%s); starting as planned", error)
            return decision, None, False
        observed = float(latest.values[-1])
        expected = float(decision.intensity_at_start or 0)
        if observed <= expected * (1 + self.deviation_pct / 100):
            return decision, observed, False
        self.log.warning(
            "carbon trigger: intensity now %.0f is more than %.0f %% above the forecast %.0f; re-planning",
            observed, self.deviation_pct, expected,
        )
        forecast, error = await self._forecast(spec, utcnow(), use_cache=False)
        if forecast is None:
            return decision, observed, False
        new = plan(spec, forecast, now=utcnow())
        if new.used_fallback or new.planned_start <= utcnow():
            return decision, observed, False
        cause = f"deviation: observed {observed:.0f} > forecast {expected:.0f} + {self.deviation_pct:.0f} %"
        return decision.replanned(new, cause, now), observed, True

    async def cleanup(self) -> None:
        hook = getattr(self, "_hook_instance", None)
        if hook is not None:
            hook.close()


def _release_reason(decision: Decision, now: datetime) -> str:
    if decision.used_fallback:
        return f"fallback time ({decision.fallback})"
    if decision.reason == "deadline":
        return "deadline"
    return f"planned start ({decision.reason})"
