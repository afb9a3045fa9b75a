"""CarbonWindowTrigger: waits in the triggerer for a planned low-carbon start, re-checking as it goes.

While waiting it re-fetches the forecast every ``recheck_interval`` (through the hook's cache) and moves the start
when the optimum moves; at the planned start it reads the current intensity and, if it is more than
``deviation_pct`` above what the forecast said for that interval and the deadline leaves room, re-plans once.

It releases no later than the plan's latest start whatever the API does: a re-check is bounded by the time left to
the planned start (and the deadline), the check at the start by a minute (and the deadline), a failed or unusable
answer keeps the current plan whatever the fallback policy, and the release itself needs no API. All I/O goes
through the hooks' async methods, so the event loop is never blocked. It carries only primitives (connection id,
zone, the plan as JSON) and rebuilds its hook in the triggerer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_carbon.core.decision import Decision, PlanSpec, plan, revise
from airflow_provider_carbon.core.history import HISTORY_SOURCE
from airflow_provider_carbon.exceptions import WindowError

__all__ = ["CarbonWindowTrigger"]

#: longest single sleep: short enough to notice a wall-clock jump (as Airflow's DateTimeTrigger does)
MAX_SLEEP = 60.0
#: the longest the check of the current intensity at the planned start may delay the release
DEVIATION_CHECK_BUDGET = timedelta(seconds=60)


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
    :param recheck_interval: seconds between forecast re-checks; ``None``: none (the plan stands).
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
        recheck_interval: float | None = 3600.0,
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
        self.recheck_interval = None if recheck_interval is None else float(recheck_interval)
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

    async def _bounded(self, call: str, until: datetime, **kwargs: Any) -> tuple[Any, BaseException | None]:
        """Run an async hook method, giving up at ``until``; return ``(result, error)``.

        The hook's own ``deadline`` ends the call's thread (attempts, waits, body) by then; ``wait_for`` is the
        event loop's side of the same bound, so the release never waits for a thread that overran it.
        """
        budget = (until - utcnow()).total_seconds()
        if budget <= 0:  # no time left: skipping the call is what keeps the release on time
            return None, TimeoutError(f"no time left for {call} before {until.isoformat()}")
        try:
            method = getattr(self._hook(), call)
            answer = method(zone=self.zone, lat=self.lat, lon=self.lon, deadline=until, **kwargs)
            return await asyncio.wait_for(answer, budget), None
        except asyncio.TimeoutError:
            return None, TimeoutError(f"{call} did not answer before the deadline ({budget:.0f} s)")
        except Exception as err:  # any failure keeps the current plan: the deadline must not depend on the API
            self.log.warning("carbon trigger: %s failed: %s", call, err)
            return None, err

    async def _comparable(self, until: datetime) -> bool:
        """Whether the hook's current value may be compared with its forecast; ``True`` when that cannot be told
        (the comparison's own call then reports what is wrong)."""
        try:
            hook = self._hook()
            # the connection (which holds the settings) is read with the async API: never block the event loop
            await asyncio.wait_for(hook._aload_connection(), max((until - utcnow()).total_seconds(), 0.001))
            return bool(hook.latest_comparable_to_forecast())
        except Exception:  # noqa: BLE001 - only a question; _bounded() logs the real failure
            return True

    async def _forecast(
        self, spec: PlanSpec, now: datetime, until: datetime, *, use_cache: bool
    ) -> tuple[Any, BaseException | None]:
        return await self._bounded("aget_forecast", until, **spec.forecast_request(now), use_cache=use_cache)

    # -- the wait ---------------------------------------------------------------------------------------------

    async def run(self) -> AsyncIterator[TriggerEvent]:
        spec = PlanSpec.from_dict(self.spec)
        decision = Decision.from_dict(self.decision)
        deviation_checked = self.deviation_checked
        # the plan's own time, not this start: a trigger resumed by a restarted triggerer (which rebuilds it from
        # the arguments it was deferred with) re-checks at once if that plan is older than the re-check interval
        last_check = min(utcnow(), decision.decided_at)
        if self.hook_class:
            # importing the hook's module (requests, tenacity, ...) takes a while on a busy machine: not in the loop
            try:
                await asyncio.to_thread(self._hook)
            except Exception as err:  # the first call reports it again; the plan stands meanwhile
                self.log.warning("carbon trigger: hook %s unusable: %s", self.hook_class, err)
        self.log.info("carbon trigger: waiting; %s; latest start %s", decision.summary(), spec.latest_start)
        while True:
            now = utcnow()
            if now >= decision.planned_start:
                observed = None
                if not deviation_checked and decision.forecast_intensity_at_start and now < spec.latest_start:
                    deviation_checked = True
                    decision, observed, moved = await self._check_deviation(spec, decision, now)
                    if moved:
                        continue
                released_at = utcnow()  # after any check above: the record says when the wait really ended
                released = decision.released(released_at, observed=observed)
                self.log.info(
                    "carbon trigger: releasing at %s (%s)", released_at.isoformat(), released.due_reason().value
                )
                yield TriggerEvent({"status": "release", "decision": released.to_dict()})
                return
            if self.recheck_interval is not None and now - last_check >= timedelta(seconds=self.recheck_interval):
                last_check = now
                decision = await self._recheck(spec, decision, now)
                continue
            wake = decision.planned_start
            if self.recheck_interval is not None:
                wake = min(wake, last_check + timedelta(seconds=self.recheck_interval))
            await _sleep(min(max((wake - now).total_seconds(), 0.0), MAX_SLEEP))

    async def _recheck(self, spec: PlanSpec, decision: Decision, now: datetime) -> Decision:
        if decision.forecast_source == HISTORY_SOURCE:
            # planned from history: the service has no forecast to re-check against (it refused one, or the task
            # asked for history), and the history of a few hours later moves the profile by little
            return decision
        # bounded by the planned start too: a slow API must not delay a release that is due
        until = min(decision.planned_start, spec.latest_start)
        forecast, error = await self._forecast(spec, now, until, use_cache=True)
        if forecast is None:
            self.log.warning(
                "carbon trigger: re-check failed (%s); keeping the plan for %s", error, decision.planned_start
            )
            return decision
        revised = revise(spec, decision, forecast, now=now)
        if revised is not decision:
            entry = revised.replans[-1]
            self.log.info("carbon trigger: %s: %s -> %s", entry["cause"], entry["previous_start"], entry["new_start"])
        return revised

    async def _check_deviation(
        self, spec: PlanSpec, decision: Decision, now: datetime
    ) -> tuple[Decision, float | None, bool]:
        until = min(spec.latest_start, now + DEVIATION_CHECK_BUDGET)
        if not await self._comparable(until):
            self.log.info(
                "carbon trigger: the current intensity and the forecast use different emission factors; "
                "starting as planned without comparing them"
            )
            return decision, None, False
        latest, error = await self._bounded("aget_latest", until)
        if latest is None:
            self.log.warning("carbon trigger: could not read the current intensity (%s); starting as planned", error)
            return decision, None, False
        observed = float(latest.values[-1])
        expected = float(decision.forecast_intensity_at_start or 0)
        if observed <= expected * (1 + self.deviation_pct / 100):
            return decision, observed, False
        self.log.warning(
            "carbon trigger: intensity now %.0f is more than %.0f %% above the forecast %.0f; re-planning",
            observed,
            self.deviation_pct,
            expected,
        )
        forecast, error = await self._forecast(spec, utcnow(), until, use_cache=False)
        if forecast is None:
            return decision, observed, False
        try:
            new = plan(spec, forecast, now=utcnow())
        except WindowError as err:  # an unusable forecast under the "fail" policy: start as planned
            self.log.warning("carbon trigger: re-plan impossible (%s); starting as planned", err)
            return decision, observed, False
        if new.used_fallback or new.planned_start <= utcnow():
            return decision, observed, False
        cause = f"deviation: observed {observed:.0f} > forecast {expected:.0f} + {self.deviation_pct:.0f} %"
        return decision.replanned(new, cause, now), observed, True

    async def cleanup(self) -> None:
        hook = getattr(self, "_hook_instance", None)
        if hook is not None:
            hook.close()
