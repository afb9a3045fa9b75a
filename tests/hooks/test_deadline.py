"""One way to bound a call in time: ``deadline=``, a tz-aware instant by which the whole call has ended.

Real local servers throughout; time is never mocked here, the waits are short.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
from werkzeug import Response

from airflow_provider_carbon.exceptions import ServiceUnavailableError
from airflow_provider_carbon.hooks.carbon_aware_sdk import CarbonAwareSdkHook
from airflow_provider_carbon.hooks.electricitymaps import ElectricityMapsHook
from airflow_provider_carbon.hooks.watttime import WattTimeHook
from tests.hooks.conftest import TOKEN, em_forecast, requests_to
from tests.hooks.servers import running, send

PATH = "/v3/carbon-intensity/forecast"
#: the settings a deadline must beat: without one, a dead API may hold a call for minutes
PATIENT = {"timeout": 10, "connect_timeout": 5, "max_attempts": 4, "max_retry_wait": 30, "retry_backoff": 1}


def soon(seconds: float) -> datetime:
    return datetime.now(timezone.utc) + timedelta(seconds=seconds)


def answer_after(delay: float):
    """A handler answering a valid EM forecast after ``delay`` seconds (or at once when the server stops)."""

    def respond(handler):
        handler.server.stopping.wait(delay)
        send(handler, 200, json.dumps(em_forecast("DE", [300] * 25)).encode())

    return respond


@pytest.fixture
def em_slow(connection):
    """An EM hook against a server that answers after 5 s, in one thread (so a test can count threads)."""
    with running(answer_after(5)) as server:
        connection("em_slow", "electricitymaps", server.url + "/v3", password=TOKEN, extra={"zone": "DE", **PATIENT})
        yield ElectricityMapsHook("em_slow"), server


def test_a_deadline_ends_a_slow_call_in_time_without_a_thread(em_slow, record_property):
    hook, server = em_slow
    before = set(threading.enumerate())
    deadline = soon(1)
    started = time.monotonic()
    with pytest.raises(ServiceUnavailableError) as info:
        hook.get_forecast(deadline=deadline)
    took = time.monotonic() - started
    record_property("deadline_call_s", round(took, 2))
    print(f"deadline=now+1s against a 5 s server: ServiceUnavailableError after {took:.2f} s")
    assert 0.9 <= took < 2.5
    assert f"before the deadline {deadline.isoformat()}" in str(info.value)
    assert str(info.value).startswith("electricitymaps, zone DE: no answer from /carbon-intensity/forecast within")
    # no watchdog left behind: no thread this call started is still alive (a count would also see an earlier
    # test's thread that happened to end meanwhile: the floor job in CI failed on 4 == 5 that way)
    assert [t.name for t in threading.enumerate() if t not in before] == []
    assert len(server.requests) == 1  # no time was left for a second attempt


def test_the_async_twin_honours_the_deadline(em_slow):
    hook, _ = em_slow

    async def main():
        started = time.monotonic()
        with pytest.raises(ServiceUnavailableError, match="before the deadline"):
            await hook.aget_forecast(deadline=soon(1))
        return time.monotonic() - started

    assert asyncio.run(main()) < 2.5


def test_service_specific_fetchers_take_a_deadline(connection):
    with running(answer_after(5)) as server:
        connection("em_zones", "electricitymaps", server.url + "/v3", password=TOKEN, extra=PATIENT)
        connection("casdk_dl", "carbon_aware_sdk", server.url, extra=PATIENT)
        connection("wt_dl", "watttime", server.url, login="ada", password=TOKEN, extra=PATIENT)
        for call in (
            lambda d: ElectricityMapsHook("em_zones").list_zones(deadline=d),
            lambda d: CarbonAwareSdkHook("casdk_dl").list_locations(deadline=d),
            lambda d: CarbonAwareSdkHook("casdk_dl").get_best_location(["eastus"], deadline=d),
            lambda d: WattTimeHook("wt_dl").my_access(deadline=d),  # the login inside it is bounded too
        ):
            started = time.monotonic()
            with pytest.raises(ServiceUnavailableError, match="before the deadline"):
                call(soon(0.5))
            assert time.monotonic() - started < 2


def test_a_wait_the_service_asks_for_past_the_deadline_is_not_waited(em, httpserver):
    """429 with Retry-After 3 s and 1 s left: one request, then the deadline error at once, naming the failure."""
    httpserver.expect_request(PATH).respond_with_json({"error": "busy"}, status=429, headers={"Retry-After": "3"})
    started = time.monotonic()
    with pytest.raises(ServiceUnavailableError) as info:
        em.get_forecast(deadline=soon(1))
    assert time.monotonic() - started < 0.5
    assert len(requests_to(httpserver, PATH)) == 1
    err = info.value
    assert "before the deadline" in err.detail and "(last attempt: busy)" in err.detail
    assert err.status == 429 and err.attempts == 1


def test_retries_go_on_while_the_deadline_allows(em, httpserver):
    """Three 503s then an answer, with quick back-off: a deadline far enough away changes nothing."""
    answers = iter([Response("x", status=503)] * 3 + [Response(json.dumps(em_forecast("DE", [300] * 25)))])
    httpserver.expect_request(PATH).respond_with_handler(lambda request: next(answers))
    assert em.get_forecast(deadline=soon(30)).values[0] == 300
    assert len(requests_to(httpserver, PATH)) == 4


def test_a_later_deadline_never_loosens_the_timeouts(em, httpserver):
    httpserver.expect_request(PATH).respond_with_handler(lambda request: time.sleep(0.8) or Response("{}"))
    em._overrides.update(timeout=0.3, max_attempts=1)
    started = time.monotonic()
    with pytest.raises(ServiceUnavailableError, match=r"within 0.3 s"):
        em.get_forecast(deadline=soon(60))
    assert time.monotonic() - started < 0.75


def test_a_deadline_leaves_the_hook_as_it_was(em, httpserver):
    """The deadline is the call's, not the hook's: the next call without one waits the full read timeout."""
    before = em.transport_settings()
    httpserver.expect_request(PATH).respond_with_handler(
        lambda request: time.sleep(1.2) or Response(json.dumps(em_forecast("DE", [300] * 25)))
    )
    with pytest.raises(ServiceUnavailableError):
        em.get_forecast(deadline=soon(0.5), use_cache=False)
    assert em.transport_settings() == before
    assert em.get_forecast(use_cache=False).values[0] == 300  # timeout 2 s (FAST) beats the 1.2 s answer


def test_a_deadline_already_past_makes_no_request(em, httpserver):
    httpserver.expect_request(PATH).respond_with_json(em_forecast("DE", [300] * 25))
    with pytest.raises(ServiceUnavailableError, match="before the deadline") as info:
        em.get_forecast(deadline=soon(-1))
    assert info.value.attempts == 0 and requests_to(httpserver, PATH) == []


def test_a_naive_deadline_is_refused(em):
    with pytest.raises(ValueError, match="tz-aware"):
        em.get_forecast(deadline=datetime.now())


def test_waiting_for_another_callers_fetch_is_bounded(em, httpserver):
    """Single flight: a caller with a deadline does not wait past it for another caller's slow fetch."""
    httpserver.expect_request(PATH).respond_with_handler(
        lambda request: time.sleep(1.2) or Response(json.dumps(em_forecast("DE", [300] * 25)))
    )
    first = threading.Thread(target=lambda: ElectricityMapsHook("em_base").get_forecast())
    first.start()
    time.sleep(0.2)  # the first caller holds the key's lock now
    started = time.monotonic()
    with pytest.raises(ServiceUnavailableError, match="another caller's fetch"):
        em.get_forecast(deadline=soon(0.5))
    assert time.monotonic() - started < 1
    first.join()
    assert len(requests_to(httpserver, PATH)) == 1


@pytest.fixture
def em(httpserver, connection):
    connection("em_base", "electricitymaps", httpserver.url_for("/v3"), password=TOKEN, extra={"zone": "DE"})
    return ElectricityMapsHook("em_base")
