"""Helpers to run the sensor and its trigger in-process with a controlled clock.

Time is the only thing mocked: ``Clock`` freezes wall-clock time (time-machine) and makes the trigger's sleep jump
the clock forward by exactly the requested amount, so a wait of hours runs in milliseconds while everything else
(the hook, HTTP, the local API server, the optimizer) runs for real.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

import time_machine

from airflow_provider_carbon.triggers import carbon_window as trigger_module


class Clock:
    def __init__(self, start: datetime) -> None:
        self._traveller = time_machine.travel(start, tick=False)
        self._coordinates: Any = None
        self.scheduled: list[tuple[datetime, Callable[[], None]]] = []
        self.sleeps: list[float] = []

    def __enter__(self) -> Clock:
        self._coordinates = self._traveller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._traveller.stop()

    def now(self) -> datetime:
        return trigger_module.utcnow()

    def at(self, moment: datetime, action: Callable[[], None]) -> None:
        """Run ``action`` once the clock reaches ``moment`` (e.g. the API changes its forecast)."""
        self.scheduled.append((moment, action))
        self.scheduled.sort(key=lambda item: item[0])

    def shift(self, seconds: float) -> None:
        self._coordinates.shift(timedelta(seconds=seconds))
        while self.scheduled and self.scheduled[0][0] <= self.now():
            self.scheduled.pop(0)[1]()

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.shift(seconds)
        await asyncio.sleep(0)


def run_trigger(
    trigger: Any, clock: Clock, monkeypatch: Any, *, max_real_seconds: float = 60, timings: list[float] | None = None
) -> Any:
    """Run the trigger until its first event, sleeping on ``clock``; return the event. ``timings`` receives the real
    seconds until the event (before the event loop's shutdown, which waits for abandoned worker threads)."""
    monkeypatch.setattr(trigger_module, "_sleep", clock.sleep)

    async def main() -> Any:
        events = trigger.run()
        started = time.monotonic()
        try:
            event = await asyncio.wait_for(events.__anext__(), max_real_seconds)
            if timings is not None:
                timings.append(time.monotonic() - started)
            return event
        finally:
            await events.aclose()
            await trigger.cleanup()

    return asyncio.run(main())


class FakeTI:
    """What the sensor uses of a task instance: XCom push and, in reschedule mode, the first poke's date. (The real
    one is exercised by ``airflow dags test``.)"""

    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}
        self.first_reschedule_date: datetime | None = None  # set by a test of a later poke in reschedule mode

    def get_first_reschedule_date(self, context: Any) -> datetime | None:
        return self.first_reschedule_date

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


def context(run_start: datetime) -> dict[str, Any]:
    return {"ti": FakeTI(), "dag_run": SimpleNamespace(start_date=run_start)}
