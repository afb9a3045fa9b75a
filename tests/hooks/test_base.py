"""Behaviour every hook shares through the base class: cache, async bridge, secrets, settings, parsing."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest
import time_machine
from werkzeug import Response

from airflow_provider_carbon.exceptions import BadPayloadError, CarbonError, ServiceUnavailableError
from airflow_provider_carbon.hooks.electricitymaps import ElectricityMapsHook
from airflow_provider_carbon.hooks.timeutil import parse_retry_after, parse_timestamp
from tests.conftest import REPO_ROOT
from tests.hooks.conftest import TOKEN, em_forecast, requests_to

PATH = "/v3/carbon-intensity/forecast"
H2 = timedelta(hours=2)


@pytest.fixture
def em(httpserver, connection):
    connection("em_base", "electricitymaps", httpserver.url_for("/v3"), password=TOKEN, extra={"zone": "DE"})
    return ElectricityMapsHook("em_base")


def slow_forecast(delay: float, values=None):
    def handler(request):
        time.sleep(delay)
        return Response(json.dumps(em_forecast("DE", values or [300] * 25)), content_type="application/json")

    return handler


class TestCache:
    def test_concurrent_callers_cause_one_request(self, em, httpserver):
        httpserver.expect_request(PATH).respond_with_handler(slow_forecast(0.3))
        results, errors = [], []

        def call():
            try:
                results.append(ElectricityMapsHook("em_base").get_forecast("DE"))  # a hook per caller, like tasks
            except Exception as err:  # pragma: no cover - reported below
                errors.append(err)

        threads = [threading.Thread(target=call) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors and len(results) == 8
        assert len(requests_to(httpserver, PATH)) == 1
        assert all(r.to_dict() == results[0].to_dict() for r in results)

    def test_fresh_within_ttl_then_fetched_again(self, em, httpserver):
        httpserver.expect_request(PATH).respond_with_handler(slow_forecast(0))
        with time_machine.travel(datetime.now(timezone.utc), tick=True) as clock:
            em.get_forecast()
            clock.shift(timedelta(minutes=14))
            em.get_forecast()
            assert len(requests_to(httpserver, PATH)) == 1
            clock.shift(timedelta(minutes=2))  # past the default 15 min TTL
            em.get_forecast()
        assert len(requests_to(httpserver, PATH)) == 2

    def test_keys_differ_by_zone_and_horizon(self, em, httpserver):
        httpserver.expect_request(PATH).respond_with_handler(slow_forecast(0, [300] * 49))
        em.get_forecast("DE")
        em.get_forecast("FR")
        em.get_forecast("DE", horizon=timedelta(hours=48))
        em.get_forecast("DE", use_cache=False)
        assert len(requests_to(httpserver, PATH)) == 4

    def test_a_shrinking_horizon_shares_one_answer_within_the_hour(self, em, httpserver):
        """A sensor asks for "up to my deadline" (a horizon that shrinks by the second); asks within the same whole
        hour share one request and one cache entry."""
        httpserver.expect_request(PATH).respond_with_handler(slow_forecast(0, [300] * 25))
        em.get_forecast("DE", horizon=timedelta(hours=9, minutes=40), min_horizon=H2)
        em.get_forecast("DE", horizon=timedelta(hours=9, minutes=10, seconds=3), min_horizon=H2)
        assert len(requests_to(httpserver, PATH)) == 1
        em.get_forecast("DE", horizon=timedelta(hours=10, minutes=1), min_horizon=H2)  # the next whole hour
        assert len(requests_to(httpserver, PATH)) == 2

    def test_keys_differ_by_emission_factor_type(self, httpserver, connection):
        httpserver.expect_request(PATH).respond_with_handler(slow_forecast(0))
        for factor in ("lifecycle", "direct", "lifecycle"):
            connection(
                "em_factor",
                "electricitymaps",
                httpserver.url_for("/v3"),
                password=TOKEN,
                extra={"zone": "DE", "emission_factor_type": factor},
            )
            ElectricityMapsHook("em_factor").get_forecast()
        assert len(requests_to(httpserver, PATH)) == 2

    def test_ttl_zero_disables(self, httpserver, connection):
        connection(
            "em_nocache",
            "electricitymaps",
            httpserver.url_for("/v3"),
            password=TOKEN,
            extra={"zone": "DE", "cache_ttl": 0},
        )
        httpserver.expect_request(PATH).respond_with_handler(slow_forecast(0))
        hook = ElectricityMapsHook("em_nocache")
        hook.get_forecast()
        hook.get_forecast()
        assert len(requests_to(httpserver, PATH)) == 2

    def test_file_cache_is_shared_by_processes(self, httpserver, tmp_path):
        """Four separate Python processes, one shared cache directory: one request reaches the API."""
        httpserver.expect_request(PATH).respond_with_handler(slow_forecast(0.5))
        conn = {
            "conn_type": "electricitymaps",
            "host": httpserver.url_for("/v3"),
            "password": TOKEN,
            "extra": {"zone": "DE", "cache_dir": str(tmp_path / "cache")},
        }
        env = {**os.environ, "AIRFLOW_CONN_EM_SHARED": json.dumps(conn), "PYTHONPATH": str(REPO_ROOT)}
        code = (
            "from airflow_provider_carbon.hooks.electricitymaps import ElectricityMapsHook\n"
            "print(ElectricityMapsHook('em_shared').get_forecast().values[0])\n"
        )
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            for _ in range(4)
        ]
        outputs = [p.communicate(timeout=120) for p in procs]
        assert all(p.returncode == 0 for p in procs), outputs
        assert [o[0].strip().splitlines()[-1] for o in outputs] == ["300.0"] * 4
        assert len(requests_to(httpserver, PATH)) == 1

    def test_a_file_entry_keeps_its_age(self, httpserver, connection, tmp_path):
        """An entry read from the file cache expires when the file's entry does, not a full TTL after the read;
        and each caller judges freshness by its own TTL."""
        connection(
            "em_age",
            "electricitymaps",
            httpserver.url_for("/v3"),
            password=TOKEN,
            extra={"zone": "DE", "cache_dir": str(tmp_path)},
        )
        httpserver.expect_request(PATH).respond_with_handler(slow_forecast(0))
        from airflow_provider_carbon.hooks.cache import forecast_cache

        with time_machine.travel(datetime.now(timezone.utc), tick=False) as clock:
            ElectricityMapsHook("em_age").get_forecast()  # fetched at t0, into memory and file
            forecast_cache.clear()  # as another process would start: only the file knows it
            clock.shift(timedelta(minutes=14))
            ElectricityMapsHook("em_age").get_forecast()  # served from the file, 14 min old
            assert len(requests_to(httpserver, PATH)) == 1
            clock.shift(timedelta(minutes=2))  # 16 min after the fetch: stale for the default 15 min
            ElectricityMapsHook("em_age").get_forecast()
            assert len(requests_to(httpserver, PATH)) == 2
            clock.shift(timedelta(minutes=2))  # 2 min old: fresh for 15 min, stale for a caller wanting 1 min
            ElectricityMapsHook("em_age").get_forecast()
            ElectricityMapsHook("em_age", cache_ttl=60).get_forecast()
        assert len(requests_to(httpserver, PATH)) == 3

    def test_a_cached_forecast_that_ends_too_soon_is_fetched_again(self, httpserver, connection, tmp_path):
        """A forecast still within its TTL but no longer covering what the caller needs (what a compressed clock
        does to a 15-min-old forecast: the simulator at 720x ages it 180 h) is fetched again, once for all the
        callers waiting on it, in memory and through the file layer; before, the run fell back on short_forecast."""
        connection(
            "em_stale",
            "electricitymaps",
            httpserver.url_for("/v3"),
            password=TOKEN,
            extra={"zone": "DE", "cache_dir": str(tmp_path), "cache_ttl": 4 * 3600},
        )
        # three hourly points from the current hour: two hours ahead at most, as a short forecast would be
        httpserver.expect_request(PATH).respond_with_handler(
            lambda request: Response(json.dumps(em_forecast("DE", [300] * 3)), content_type="application/json")
        )
        from airflow_provider_carbon.hooks.cache import forecast_cache

        with time_machine.travel(datetime.now(timezone.utc).replace(minute=5), tick=False) as clock:
            first = ElectricityMapsHook("em_stale").get_forecast(horizon=H2, min_horizon=timedelta(hours=1))
            clock.shift(timedelta(minutes=30))  # covers 2h25 still: served from the cache
            ElectricityMapsHook("em_stale").get_forecast(horizon=H2, min_horizon=timedelta(hours=1))
            assert len(requests_to(httpserver, PATH)) == 1
            clock.shift(timedelta(minutes=90))  # covers 55 min now, while 1 h is needed: asked again
            results = []
            threads = [
                threading.Thread(
                    target=lambda: results.append(
                        ElectricityMapsHook("em_stale").get_forecast(horizon=H2, min_horizon=timedelta(hours=1))
                    )
                )
                for _ in range(4)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert len(results) == 4 and len(requests_to(httpserver, PATH)) == 2
            assert all(r.start > first.start for r in results)
            forecast_cache.clear()  # another process: the file layer judges the entry the same way
            clock.shift(timedelta(minutes=120))
            ElectricityMapsHook("em_stale").get_forecast(horizon=H2, min_horizon=timedelta(hours=1))
        assert len(requests_to(httpserver, PATH)) == 3

    def test_file_cache_never_stores_a_failure(self, httpserver, connection, tmp_path):
        connection(
            "em_files",
            "electricitymaps",
            httpserver.url_for("/v3"),
            password=TOKEN,
            extra={"zone": "DE", "cache_dir": str(tmp_path), "max_attempts": 1},
        )
        responses = iter(
            [
                Response("oops", status=500),
                Response(json.dumps(em_forecast("DE", [300] * 25)), content_type="application/json"),
            ]
        )
        httpserver.expect_request(PATH).respond_with_handler(lambda request: next(responses))
        hook = ElectricityMapsHook("em_files")
        with pytest.raises(ServiceUnavailableError):
            hook.get_forecast()
        assert list(tmp_path.glob("*.json")) == []
        assert hook.get_forecast().values[0] == 300
        assert len(list(tmp_path.glob("*.json"))) == 1


class TestAsync:
    def test_aget_forecast_does_not_block_the_event_loop(self, em, httpserver):
        """While the API takes 0.5 s, a ticker on the same loop keeps running."""
        httpserver.expect_request(PATH).respond_with_handler(slow_forecast(0.5))

        async def main():
            ticks = 0
            stop = asyncio.Event()

            async def ticker():
                nonlocal ticks
                while not stop.is_set():
                    ticks += 1
                    await asyncio.sleep(0.01)

            task = asyncio.create_task(ticker())
            hook = ElectricityMapsHook("em_base")
            forecast = await hook.aget_forecast("DE")
            stop.set()
            await task
            return forecast, ticks

        forecast, ticks = asyncio.run(main())
        assert forecast.values[0] == 300
        assert ticks >= 20  # ~50 possible in 0.5 s; a blocked loop would give 1

    def test_every_method_has_an_async_twin(self, em, httpserver):
        httpserver.expect_request(PATH).respond_with_handler(slow_forecast(0))
        httpserver.expect_request("/v3/carbon-intensity/latest").respond_with_json(
            {"zone": "DE", "carbonIntensity": 250, "datetime": "2024-03-06T19:00:00.000Z", "isEstimated": False}
        )
        httpserver.expect_request("/v3/carbon-intensity/past-range").respond_with_json(
            {"zone": "DE", "data": [{"carbonIntensity": 200, "datetime": "2024-03-06T19:00:00.000Z"}]}
        )
        httpserver.expect_request("/v3/zones").respond_with_json({"DE": {"zoneName": "Germany", "access": ["*"]}})

        async def main():
            hook = ElectricityMapsHook("em_base")
            start = datetime(2024, 3, 6, 19, tzinfo=timezone.utc)
            return await asyncio.gather(
                hook.aget_forecast(),
                hook.aget_latest(),
                hook.aget_history(start=start, end=start + timedelta(hours=1)),
                hook.atest_connection(),
            )

        forecast, latest, history, (ok, _) = asyncio.run(main())
        assert forecast.values[0] == 300 and latest.values[0] == 250 and history.values[0] == 200 and ok


def test_token_never_in_logs_errors_reprs_or_urls(httpserver, connection, logs):
    connection("em_secret", "electricitymaps", httpserver.url_for("/v3"), password=TOKEN, extra={"zone": "DE"})
    hook = ElectricityMapsHook("em_secret")
    # a misbehaving server that echoes the token back in an error body
    httpserver.expect_request(PATH).respond_with_json({"error": f"bad request with token {TOKEN}"}, status=400)
    httpserver.expect_request("/v3/carbon-intensity/latest").respond_with_data(f"<html>{TOKEN}", status=200)
    messages = []
    for call in (hook.get_forecast, hook.get_latest):
        with pytest.raises(CarbonError) as info:
            call()
        messages += [str(info.value), repr(info.value), info.value.detail]
    messages += [repr(hook), str(hook.test_connection())]
    assert "***" in messages[0]
    assert all(TOKEN not in m for m in messages)
    assert TOKEN not in logs()
    for request, _ in httpserver.log:
        assert TOKEN not in request.url
        assert request.headers["auth-token"] == TOKEN  # it travels only where the API wants it


def test_settings_precedence(httpserver, connection):
    connection(
        "em_settings",
        "electricitymaps",
        httpserver.url_for("/v3"),
        password=TOKEN,
        extra={"timeout": 3, "cache_ttl": 60},
    )
    hook = ElectricityMapsHook("em_settings", timeout=7)
    assert hook.setting("timeout") == 7  # argument beats extra
    assert hook.setting("cache_ttl") == 60  # extra beats default
    assert hook.setting("max_attempts") == 4  # default


def test_base_url_with_port_field(connection):
    connection("em_port", "electricitymaps", "http://127.0.0.1/v3", password=TOKEN)
    os.environ["AIRFLOW_CONN_EM_PORT"] = json.dumps({**json.loads(os.environ["AIRFLOW_CONN_EM_PORT"]), "port": 8081})
    assert ElectricityMapsHook("em_port").base_url == "http://127.0.0.1:8081/v3"


def test_hook_from_connection_type(connection, httpserver):
    """Airflow picks the hook class from the connection type: the sensor relies on this."""
    from airflow.sdk import BaseHook

    connection("em_lookup", "electricitymaps", httpserver.url_for("/v3"), password=TOKEN)
    hook = BaseHook.get_hook("em_lookup")
    assert isinstance(hook, ElectricityMapsHook) and hook.carbon_conn_id == "em_lookup"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-03-06T19:00:00.000Z", datetime(2024, 3, 6, 19, tzinfo=timezone.utc)),
        ("2018-01-20T12:00Z", datetime(2018, 1, 20, 12, tzinfo=timezone.utc)),
        ("2022-07-15T00:00:00+00:00", datetime(2022, 7, 15, tzinfo=timezone.utc)),
        ("2022-05-17T20:45:11.5092741+00:00", datetime(2022, 5, 17, 20, 45, 11, 509274, tzinfo=timezone.utc)),
        ("2025-03-30T03:00:00+02:00", datetime(2025, 3, 30, 1, tzinfo=timezone.utc)),
        # .NET trims trailing zeros: 1, 2, 4 or 5 digits, which fromisoformat on Python 3.10 refuses
        ("2022-05-17T20:45:11.5+00:00", datetime(2022, 5, 17, 20, 45, 11, 500000, tzinfo=timezone.utc)),
        ("2022-05-17T20:45:11.12+00:00", datetime(2022, 5, 17, 20, 45, 11, 120000, tzinfo=timezone.utc)),
        ("2022-05-17T20:45:11.1234Z", datetime(2022, 5, 17, 20, 45, 11, 123400, tzinfo=timezone.utc)),
    ],
)
def test_parse_timestamp(text, expected):
    assert parse_timestamp(text) == expected


def test_parse_timestamp_refuses_naive():
    with pytest.raises(ValueError, match="no UTC offset"):
        parse_timestamp("2024-03-06T19:00:00")


def test_parse_retry_after():
    assert parse_retry_after("7") == 7
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    in_30s = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    assert 25 <= parse_retry_after(in_30s) <= 30


def test_bad_payload_carries_reason_service_and_zone(em, httpserver):
    httpserver.expect_request(PATH).respond_with_json({"zone": "DE"})
    with pytest.raises(BadPayloadError) as info:
        em.get_forecast()
    err = info.value
    assert (err.reason, err.service, err.zone) == ("missing_field", "electricitymaps", "DE")
    assert "the response lacks a 'forecast' list" in str(err)


def test_airflow_config_supplies_defaults(httpserver, connection, monkeypatch, tmp_path):
    """[carbon] cache_dir (AIRFLOW__CARBON__CACHE_DIR) applies to every connection that does not set it."""
    monkeypatch.setenv("AIRFLOW__CARBON__CACHE_DIR", str(tmp_path))
    connection("em_conf", "electricitymaps", httpserver.url_for("/v3"), password=TOKEN, extra={"zone": "DE"})
    httpserver.expect_request(PATH).respond_with_handler(slow_forecast(0))
    ElectricityMapsHook("em_conf").get_forecast()
    assert len(list(tmp_path.glob("*.json"))) == 1


def test_a_pasted_token_is_stripped_and_never_quoted(httpserver, connection, logs):
    """A token pasted with a newline: sent stripped; and if a header still cannot be sent, requests' message (which
    quotes the header value) never reaches the typed error."""
    connection("em_paste", "electricitymaps", httpserver.url_for("/v3"), password=f" {TOKEN}\n", extra={"zone": "DE"})
    httpserver.expect_request(PATH, headers={"auth-token": TOKEN}).respond_with_json(em_forecast("DE", [300] * 25))
    assert ElectricityMapsHook("em_paste").get_forecast().values[0] == 300

    hook = ElectricityMapsHook("em_paste")
    hook.session.headers["X-Broken"] = f"{TOKEN}\r\ninjected"  # requests refuses it with InvalidHeader
    with pytest.raises(CarbonError) as info:
        hook.get_latest()
    err = info.value
    assert type(err).__name__ == "InvalidRequestError" and "InvalidHeader" in str(err) and err.attempts == 1
    assert err.__cause__ is None and err.__suppress_context__
    assert TOKEN not in str(err) and TOKEN not in repr(err) and TOKEN not in logs()


def test_a_body_cut_off_midway_is_retried_as_unavailable(em, httpserver):
    """A chunked body that ends before its last chunk (ChunkedEncodingError in requests) is a transient failure."""
    import socket
    import socketserver

    class Truncating(socketserver.BaseRequestHandler):
        def handle(self):
            self.request.recv(65536)
            self.request.sendall(
                b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{"for\r\n'
            )
            self.request.shutdown(socket.SHUT_RDWR)

    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), Truncating) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        os.environ["AIRFLOW_CONN_EM_CUT"] = json.dumps(
            {
                "conn_type": "electricitymaps",
                "host": f"http://127.0.0.1:{server.server_address[1]}/v3",
                "password": TOKEN,
                "extra": {"zone": "DE", "max_attempts": 2, "retry_backoff": 0.01, "cache_ttl": 0},
            }
        )
        try:
            with pytest.raises(ServiceUnavailableError) as info:
                ElectricityMapsHook("em_cut").get_forecast()
        finally:
            del os.environ["AIRFLOW_CONN_EM_CUT"]
            server.shutdown()
    assert info.value.attempts == 2 and "ChunkedEncodingError" in str(info.value)
