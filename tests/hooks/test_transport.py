"""How requests travel: size cap (decompressed), time budget per request, redirects, one redaction rule.

Every test talks to a real local server (pytest-httpserver, or the small stdlib servers of ``servers.py`` where
the behaviour needs raw control: a dripping body, a gzip bomb, a second host on 127.0.0.2). Memory is measured
with tracemalloc around the call: requests' and urllib3's buffers are Python objects, so a body read into memory
shows up there.
"""

from __future__ import annotations

import json
import pickle
import time
import tracemalloc
import zlib
from datetime import datetime, timedelta, timezone

import pytest
from werkzeug import Response

from airflow_provider_carbon.exceptions import (
    BadPayloadError,
    CarbonError,
    RateLimitedError,
    RedirectError,
    ServiceUnavailableError,
)
from airflow_provider_carbon.hooks.carbon_aware_sdk import CarbonAwareSdkHook
from airflow_provider_carbon.hooks.electricitymaps import ElectricityMapsHook
from airflow_provider_carbon.hooks.transport import Redactor
from airflow_provider_carbon.hooks.watttime import WattTimeHook
from tests.hooks.conftest import TOKEN, em_forecast, requests_to
from tests.hooks.servers import running, send

PATH = "/v3/carbon-intensity/forecast"
MiB = 1024 * 1024
FORECAST = json.dumps(em_forecast("DE", [300] * 25)).encode()


def em_hook(connection, url: str, conn_id: str = "em_t", **extra) -> ElectricityMapsHook:
    connection(
        conn_id, "electricitymaps", url + "/v3", password=TOKEN, extra={"zone": "DE", "max_attempts": 1, **extra}
    )
    return ElectricityMapsHook(conn_id)


def peak_during(call) -> tuple[int, BaseException | None]:
    """Bytes of Python memory a call allocates at its peak, above what was allocated before it; and its error.

    The hook behind ``call`` is warmed up first (connection, settings, session), so that the figure is the
    request's, not the first use of Airflow's configuration.
    """
    hook = call.__self__
    hook.connection, hook.transport_settings(), hook.session, hook.default_granularity, hook.cache_key_extras()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        error = None
        try:
            call()
        except BaseException as err:  # noqa: BLE001 - returned to the test
            error = err
        return tracemalloc.get_traced_memory()[1] - base, error
    finally:
        tracemalloc.stop()


def stream(total: int, *, chunked: bool, encoding: str | None = None, produce=None, status: int = 200, headers=None):
    """A handler sending ``total`` bytes (zeros, or what ``produce(size)`` yields) in 64 KiB writes."""

    def respond(handler):
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Connection", "close")
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        if encoding:
            handler.send_header("Content-Encoding", encoding)
        if chunked:
            handler.send_header("Transfer-Encoding", "chunked")
        else:
            handler.send_header("Content-Length", str(total))
        handler.end_headers()
        pieces = produce() if produce else (b"0" * min(64 * 1024, total - sent) for sent in range(0, total, 64 * 1024))
        for piece in pieces:
            if handler.server.stopping.is_set():
                return
            handler.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
        if chunked:
            handler.wfile.write(b"0\r\n\r\n")

    return respond


def gzip_bomb(inflated: int):
    """A gzip stream of ``inflated`` zero bytes, produced piecewise (it is ~1000 times smaller than that)."""

    def produce():
        packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        zeros = b"\0" * MiB
        for _ in range(inflated // MiB):
            out = packer.compress(zeros)
            if out:
                yield out
        yield packer.flush()

    return produce


# -- size cap -------------------------------------------------------------------------------------------------------


class TestSizeCap:
    def test_a_50_mb_body_announced_as_such_is_not_read(self, connection, record_property):
        with running(stream(50 * MiB, chunked=False)) as server:
            hook = em_hook(connection, server.url)
            peak, err = peak_during(hook.get_forecast)
        record_property("peak_50mb_content_length", peak)
        print(f"50 MB body with Content-Length: peak Python memory growth {peak / MiB:.2f} MiB")
        assert isinstance(err, BadPayloadError) and err.reason == "too_large"
        assert "more than 4194304 bytes (max_response_bytes)" in str(err)
        assert peak < 2 * MiB  # what a request costs anyway: not a byte of the body

    def test_a_50_mb_chunked_body_stops_at_the_cap(self, connection, record_property):
        with running(stream(50 * MiB, chunked=True)) as server:
            hook = em_hook(connection, server.url)
            peak, err = peak_during(hook.get_forecast)
        record_property("peak_50mb_chunked", peak)
        print(f"50 MB chunked body: peak Python memory growth {peak / MiB:.2f} MiB (cap 4 MiB)")
        assert isinstance(err, BadPayloadError) and err.reason == "too_large"
        assert peak < 10 * MiB  # the capped body once, plus a chunk: never the 50 MB

    def test_a_gzip_bomb_stops_at_the_cap_after_decompression(self, connection, record_property):
        produce = gzip_bomb(200 * MiB)
        compressed = sum(len(p) for p in produce())
        with running(stream(0, chunked=True, encoding="gzip", produce=produce)) as server:
            hook = em_hook(connection, server.url)
            started = time.monotonic()
            peak, err = peak_during(hook.get_forecast)
            took = time.monotonic() - started
        record_property("peak_gzip_bomb", peak)
        print(
            f"gzip bomb ({compressed / 1024:.0f} KiB inflating to 200 MiB): peak Python memory growth "
            f"{peak / MiB:.2f} MiB, stopped after {took:.2f} s"
        )
        assert isinstance(err, BadPayloadError) and err.reason == "too_large"
        assert peak < 10 * MiB

    def test_a_gzip_body_within_the_cap_is_read(self, connection):
        packed = zlib.compress(FORECAST, wbits=16 + zlib.MAX_WBITS)
        with running(lambda h: send(h, 200, packed, {"Content-Encoding": "gzip"})) as server:
            assert em_hook(connection, server.url).get_forecast().values[0] == 300

    def test_the_cap_is_a_connection_extra(self, connection, httpserver):
        httpserver.expect_request(PATH).respond_with_data(FORECAST, content_type="application/json")
        hook = em_hook(connection, httpserver.url_for(""), max_response_bytes="1000")
        with pytest.raises(BadPayloadError) as info:
            hook.get_forecast()
        assert info.value.reason == "too_large" and "more than 1000 bytes" in str(info.value)
        assert len(FORECAST) > 1000 and em_hook(connection, httpserver.url_for(""), "em_u").get_forecast()

    def test_an_encoding_not_asked_for_is_refused(self, connection, httpserver):
        httpserver.expect_request(PATH).respond_with_data(FORECAST, headers={"Content-Encoding": "br"})
        with pytest.raises(BadPayloadError) as info:
            em_hook(connection, httpserver.url_for("")).get_forecast()
        assert info.value.reason == "bad_encoding"
        assert httpserver.log[0][0].headers["Accept-Encoding"] == "gzip, deflate"

    def test_a_huge_error_body_is_read_only_as_far_as_the_cap(self, connection, record_property):
        with running(stream(50 * MiB, chunked=True, status=503)) as server:
            hook = em_hook(connection, server.url)
            peak, err = peak_during(hook.get_forecast)
        assert isinstance(err, ServiceUnavailableError) and err.status == 503
        assert peak < 10 * MiB


# -- time budget per request ----------------------------------------------------------------------------------------


def drip(total: int = 150, every: float = 0.2):
    """Headers at once, then one byte of the body every ``every`` seconds (150 bytes: 30 s)."""

    def respond(handler):
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(total))
        handler.send_header("Connection", "close")
        handler.end_headers()
        handler.wfile.flush()
        for _ in range(total):
            if handler.server.stopping.wait(every):
                return
            handler.wfile.write(b" ")
            handler.wfile.flush()

    return respond


class TestBudget:
    def test_a_dripping_body_ends_within_the_request_budget(self, connection, record_property):
        with running(drip()) as server:
            hook = em_hook(connection, server.url, request_budget=2)
            started = time.monotonic()
            with pytest.raises(ServiceUnavailableError) as info:
                hook.get_forecast()
            took = time.monotonic() - started
        record_property("drip_end_s", round(took, 2))
        print(
            f"a body dripping 1 byte / 0.2 s for 30 s, request_budget 2 s: ServiceUnavailableError after {took:.2f} s"
        )
        assert 1.9 <= took < 3
        assert "took longer than the 2 s allowed for one request" in str(info.value)

    def test_a_body_that_stalls_ends_with_the_budget_not_the_read_timeout(self, connection):
        """Bytes for 0.8 s, then silence: the last read waits until the budget ends (1 s in all), not for another
        full read timeout (which the first reads were given as min(timeout, budget))."""

        def stall(handler):
            handler.send_response(200)
            handler.send_header("Content-Length", "1000")
            handler.send_header("Connection", "close")
            handler.end_headers()
            for _ in range(4):
                handler.wfile.write(b" ")
                handler.wfile.flush()
                handler.server.stopping.wait(0.2)
            handler.server.stopping.wait(10)

        with running(stall) as server:
            hook = em_hook(connection, server.url, request_budget=1, timeout=10)
            started = time.monotonic()
            with pytest.raises(ServiceUnavailableError, match="took longer than the 1 s allowed"):
                hook.get_forecast()
            assert time.monotonic() - started < 1.5

    def test_headers_sent_a_byte_at_a_time_end_within_the_budget(self, connection, record_property):
        """The status line and headers trickle in (a byte every 0.3 s, under the read timeout): http.client reads
        them inside Session.get, where only the budget guard can end the request."""

        def trickle(handler):
            handler.wfile.write(b"HTTP/1.1 200 OK\r\n")
            for _ in range(200):
                if handler.server.stopping.wait(0.3):
                    return
                handler.wfile.write(b"X")
                handler.wfile.flush()

        with running(trickle) as server:
            hook = em_hook(connection, server.url, request_budget=2, timeout=5)
            started = time.monotonic()
            with pytest.raises(ServiceUnavailableError, match="took longer than the 2 s allowed"):
                hook.get_forecast()
            took = time.monotonic() - started
        record_property("header_drip_end_s", round(took, 2))
        assert 1.9 <= took < 3

    def test_the_deadline_caps_the_budget(self, connection):
        with running(drip()) as server:
            hook = em_hook(connection, server.url, max_attempts=4)
            started = time.monotonic()
            with pytest.raises(ServiceUnavailableError, match="before the deadline"):
                hook.get_forecast(deadline=datetime.now(timezone.utc) + timedelta(seconds=1.5))
            assert time.monotonic() - started < 2.5


# -- redirects --------------------------------------------------------------------------------------------------


def redirect_to(location: str, status: int = 302):
    return lambda handler: send(handler, status, b"", {"Location": location})


@pytest.fixture
def other_host():
    """A second server, on 127.0.0.2 (another host on Linux loopback), that must never see a credential."""
    seen = []

    def respond(handler):
        headers = {k.lower(): v for k, v in handler.headers.items()}
        seen.append(headers)
        leaked = "auth-token" in headers or "authorization" in headers
        send(handler, 500 if leaked else 200, b'{"error": "credential leaked"}' if leaked else FORECAST)

    with running(respond, host="127.0.0.2") as server:
        server.seen = seen
        yield server


class TestRedirects:
    def test_not_followed_by_default(self, connection, httpserver):
        httpserver.expect_request(PATH).respond_with_handler(
            lambda r: Response(status=302, headers={"Location": "/v3/moved"})
        )
        httpserver.expect_request("/v3/moved").respond_with_data(FORECAST)
        with pytest.raises(RedirectError) as info:
            em_hook(connection, httpserver.url_for("")).get_forecast()
        err = info.value
        assert isinstance(err, CarbonError) and err.status == 302 and not err.retryable
        assert err.location == httpserver.url_for("/v3/moved")
        assert f"pointing to {err.location}; redirects are not followed" in str(err)
        assert requests_to(httpserver, "/v3/moved") == []
        assert pickle.loads(pickle.dumps(err)) == err  # crosses process boundaries like the others

    @pytest.mark.parametrize("word", ["false", "no", "0"])
    def test_the_extra_is_read_as_a_word(self, connection, httpserver, word):
        httpserver.expect_request(PATH).respond_with_handler(
            lambda r: Response(status=301, headers={"Location": "/v3/moved"})
        )
        with pytest.raises(RedirectError):
            em_hook(connection, httpserver.url_for(""), allow_redirects=word).get_forecast()

    def test_same_host_redirects_may_be_allowed(self, connection, httpserver):
        httpserver.expect_request(PATH).respond_with_handler(
            lambda r: Response(status=307, headers={"Location": "/v3/moved?zone=DE"})
        )
        httpserver.expect_request("/v3/moved", headers={"auth-token": TOKEN}).respond_with_data(FORECAST)
        hook = em_hook(connection, httpserver.url_for(""), allow_redirects="true")
        assert hook.get_forecast().values[0] == 300
        assert len(requests_to(httpserver, "/v3/moved")) == 1

    def test_a_redirect_loop_ends(self, connection, httpserver):
        httpserver.expect_request(PATH).respond_with_handler(lambda r: Response(status=302, headers={"Location": PATH}))
        with pytest.raises(RedirectError, match="more than 5 redirects"):
            em_hook(connection, httpserver.url_for(""), allow_redirects=True).get_forecast()
        assert len(requests_to(httpserver, PATH)) == 6

    def test_another_port_is_another_server(self, connection, httpserver, other_host):
        with running(lambda h: send(h, 200, FORECAST)) as same_host_other_port:
            target = same_host_other_port.url + PATH
            httpserver.expect_request(PATH).respond_with_handler(
                lambda r: Response(status=302, headers={"Location": target})
            )
            with pytest.raises(RedirectError, match="another scheme, host or port"):
                em_hook(connection, httpserver.url_for(""), allow_redirects=True).get_forecast()
            assert same_host_other_port.requests == []

    def test_another_scheme_is_another_server(self, connection, httpserver):
        target = httpserver.url_for(PATH).replace("http://", "https://")
        httpserver.expect_request(PATH).respond_with_handler(
            lambda r: Response(status=302, headers={"Location": target})
        )
        with pytest.raises(RedirectError, match="another scheme, host or port"):
            em_hook(connection, httpserver.url_for(""), allow_redirects=True).get_forecast()

    def test_a_redirect_body_is_never_read(self, connection):
        big = stream(50 * MiB, chunked=True, status=302, headers={"Location": "/elsewhere"})
        with running(big) as server:
            peak, err = peak_during(em_hook(connection, server.url).get_forecast)
        assert isinstance(err, RedirectError) and peak < 1 * MiB

    def test_the_location_shown_is_redacted(self, connection, httpserver, other_host):
        target = f"http://user:pw@127.0.0.2:{other_host.server_address[1]}/steal?token={TOKEN}"
        httpserver.expect_request(PATH).respond_with_handler(
            lambda r: Response(status=302, headers={"Location": target})
        )
        with pytest.raises(RedirectError) as info:
            em_hook(connection, httpserver.url_for("")).get_forecast()
        assert TOKEN not in str(info.value) and "pw@" not in str(info.value)
        assert f"***@127.0.0.2:{other_host.server_address[1]}/steal?token=***" in info.value.location


CREDENTIALS = {
    # service -> (hook factory, path whose answer redirects)
    "electricitymaps auth-token": (
        lambda c, url: em_hook(c, url, allow_redirects=True),
        PATH,
    ),
    "watttime bearer": (
        lambda c, url: _wt(c, url),
        "/v3/forecast",
    ),
    "watttime basic auth": (
        lambda c, url: _wt(c, url),
        "/login",
    ),
    "carbon aware sdk bearer": (
        lambda c, url: _casdk(c, url),
        "/emissions/forecasts/current",
    ),
}


def _wt(connection, url):
    connection(
        "wt_r",
        "watttime",
        url,
        login="ada",
        password=TOKEN,
        extra={"region": "CAISO_NORTH", "allow_redirects": "true", "max_attempts": 1},
    )
    return WattTimeHook("wt_r")


def _casdk(connection, url):
    connection(
        "casdk_r",
        "carbon_aware_sdk",
        url,
        password=TOKEN,
        extra={"location": "westeurope", "allow_redirects": "true", "max_attempts": 1},
    )
    return CarbonAwareSdkHook("casdk_r")


@pytest.mark.parametrize("credential", list(CREDENTIALS))
def test_no_credential_ever_goes_to_another_host(connection, httpserver, other_host, credential):
    """Redirects allowed, and the service points to 127.0.0.2: refused, so the credential never arrives there."""
    make, path = CREDENTIALS[credential]
    elsewhere = f"{other_host.url}{path}?from=redirect"
    httpserver.expect_request(path).respond_with_handler(
        lambda r: Response(status=302, headers={"Location": elsewhere})
    )
    httpserver.expect_request("/login").respond_with_json({"token": "wt-bearer-token-1"})  # unless redirected
    hook = make(connection, httpserver.url_for(""))
    with pytest.raises(RedirectError) as info:
        hook.get_forecast()
    assert "another scheme, host or port" in str(info.value) and info.value.location == elsewhere
    assert other_host.seen == []  # not a single request: no credential can have arrived


# -- one redaction rule -----------------------------------------------------------------------------------------


def test_a_token_echoed_in_a_bad_field_of_a_200_never_reaches_errors_or_logs(connection, httpserver, logs):
    body = em_forecast("DE", [300] * 25)
    body["forecast"][3]["datetime"] = f"echo {TOKEN}"  # a bad field, quoted by the parser's error
    httpserver.expect_request(PATH).respond_with_json(body)
    hook = em_hook(connection, httpserver.url_for(""))
    with pytest.raises(BadPayloadError) as info:
        hook.get_forecast()
    err = info.value
    assert "echo ***" in str(err)  # the error still shows what was wrong
    texts = [str(err), repr(err), err.detail, str(err.args), str(hook.test_connection())]
    assert all(TOKEN not in t for t in texts)
    assert TOKEN not in logs()
    assert err.__context__ is None  # the original parse error quoted the token too; it is gone
    assert TOKEN not in str(pickle.loads(pickle.dumps(err)).__dict__)


def test_watttime_secrets_never_reach_logs_or_errors(connection, httpserver, logs):
    """The password, the bearer token and the Basic header (base64 of login:password) are all secrets."""
    import base64

    bearer = "wt-bearer-token-7e1"
    basic = base64.b64encode(f"ada:{TOKEN}".encode()).decode()
    httpserver.expect_request("/login").respond_with_json({"token": bearer})
    now = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    httpserver.expect_request("/v3/forecast").respond_with_json(
        {
            "data": [{"point_time": f"{now.isoformat()} {bearer}", "value": 900}],
            "meta": {"region": "CAISO_NORTH", "units": "lbs_co2_per_mwh", "warnings": [f"echo {bearer} {TOKEN}"]},
        }
    )
    hook = _wt(connection, httpserver.url_for(""))
    with pytest.raises(BadPayloadError) as info:
        hook.get_forecast()
    assert all(s not in str(info.value) + repr(info.value) for s in (bearer, TOKEN))
    WattTimeHook._tokens.clear()
    httpserver.clear()
    httpserver.expect_request("/login").respond_with_data(f"denied: Authorization: Basic {basic}", status=403)
    with pytest.raises(CarbonError) as info:
        _wt(connection, httpserver.url_for("")).get_forecast()
    assert basic not in str(info.value) and "Basic ***" in str(info.value)
    text = logs()
    assert "echo *** ***" in text
    assert all(s not in text for s in (bearer, TOKEN, basic))


def test_the_redactor_knows_every_form_a_secret_travels_in():
    """As pasted, stripped, URL-encoded (a query, a Location), JSON-escaped, and inside a Basic header."""
    from urllib.parse import quote, quote_plus

    redact = Redactor([' tok/en+x="y"\n'], basic=("ada", "pw"))
    token = 'tok/en+x="y"'
    forms = [' tok/en+x="y"\n', token, quote(token, safe=""), quote_plus(token), 'tok/en+x=\\"y\\"', "YWRhOnB3"]
    for form in forms:
        assert redact(f"<{form}>") == "<***>", form
    assert Redactor([None, ""])("nothing to hide") == "nothing to hide"


@pytest.mark.parametrize(
    ("status", "header", "error"),
    [
        (429, "Retry-After: \xb2", RateLimitedError),  # "²".isdigit() is true, float("²") is not
        (200, "Content-Length: \xb2", BadPayloadError),
        (429, "Retry-After: Mon, 01 Jan 99999 00:00:00 GMT", RateLimitedError),
    ],
)
def test_hostile_headers_are_typed_errors_not_raw_ones(connection, status, header, error):
    def respond(handler):
        reason = "Too Many Requests" if status == 429 else "OK"
        handler.wfile.write(
            f"HTTP/1.1 {status} {reason}\r\n{header}\r\nConnection: close\r\n\r\n{{}}".encode("latin-1")
        )
        handler.wfile.flush()

    with running(respond) as server, pytest.raises(error):
        em_hook(connection, server.url).get_forecast()
