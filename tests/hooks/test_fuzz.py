"""Property-based fuzzing of every response parser: hostile bodies must become typed errors, never raw exceptions.

Each service's documented answer (``../shared/reference/carbon-apis.md``) is the seed of every endpoint a hook
reads; hypothesis then mutates it the way an attacker or a broken proxy would: types swapped, fields dropped or
added, values replaced with booleans, huge or non-finite numbers, numeric strings, nested lists, timestamps as
numbers, in year 1 with an offset, or garbage, lists cut, reversed or with duplicates, the credential echoed back,
and now and then a body of random JSON instead. Most examples feed the decoded body straight to the hook's parse
function (fast); a quarter as many again go through a real local HTTP server to the public fetchers
(``get_forecast``, ``get_latest``, ``get_history``, ``list_zones``, ...), where raw bytes (a nesting bomb, cut JSON,
binary) and error statuses join the mutated bodies.

What must hold for every example:

* only :class:`~airflow_provider_carbon.exceptions.CarbonApiError` subclasses escape;
* no exception's text holds the connection's credential, even when the body carries it;
* whatever is returned is valid: a forecast is finite, sorted, tz-aware, within 0..5,000 g/kWh and 1970..2200.

Examples per hook: ``CARBON_FUZZ_EXAMPLES`` in-process (default 200 in the normal suite, about 3 s per hook;
``make fuzz`` runs 5,000, about 2.5 minutes for all four) plus a quarter as many over HTTP.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_carbon.core.forecast import Forecast
from airflow_provider_carbon.exceptions import CarbonApiError
from airflow_provider_carbon.hooks.carbon_aware_sdk import EmissionsPoint, SdkForecast
from airflow_provider_carbon.hooks.electricitymaps import ZoneAccess
from tests.hooks.conftest import TOKEN
from tests.hooks.hostile import SERVICES, Endpoint, Hostile, Service, encode, fresh, hostile_server

pytestmark = pytest.mark.fuzz

EXAMPLES = int(os.environ.get("CARBON_FUZZ_EXAMPLES", "200"))
HTTP_EXAMPLES = max(1, EXAMPLES // 4)

FUZZ_SETTINGS = {
    "deadline": None,  # HTTP round trips vary on a shared machine; speed is measured, not asserted per example
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    "print_blob": True,
}

# -- mutations -----------------------------------------------------------------------------------------------------

BAD_TIMES = [
    "0001-01-01T00:00:00+01:00",
    "0001-01-01T00:30+05:30",
    "9999-12-31T23:59:59-01:00",
    "1969-12-31T23:00:00Z",
    "2201-01-01T00:00:00Z",
    "2024-13-01T00:00:00Z",
    "2024-01-01T25:00Z",
    "2024-01-01T00:00:00",
    "2024-01-01",
    "1700000000",
    "",
    "Z",
]
BAD_NUMBERS = [10**400, -(10**400), 2**64, 1e308, -1, 0, 5001, 1e6, 0.0001, -0.0]
BAD_STRINGS = [
    "NaN",
    "Infinity",
    "-Infinity",
    "302",
    "abc",
    "*",
    TOKEN,
    f"echo {TOKEN} echo",
    "\x00",
    "\u202e",
    "x" * 300,
]

scalars = st.one_of(
    st.booleans(),
    st.none(),
    st.sampled_from(BAD_NUMBERS),
    st.sampled_from([math.nan, math.inf, -math.inf]),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(BAD_STRINGS),
    st.sampled_from(BAD_TIMES),
    st.sampled_from([1_700_000_000, 1.7e9, 20240101]),  # timestamps as numbers
    st.text(max_size=12),
)
random_json = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=10,
)


def _nest(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


hostile = st.one_of(scalars, random_json, st.integers(2, 60).map(_nest), st.just([]), st.just({}))


def _swaps(value: Any) -> list[Any]:
    """The same content in the wrong type: a number as a string, a value wrapped in a list or an object."""
    options: list[Any] = [[value], {"value": value}]
    if isinstance(value, str):
        options += [len(value), [value[:1]]]
    elif not isinstance(value, float) or math.isfinite(value):
        options.append(json.dumps(value))
    if isinstance(value, (list, dict)) and value:
        options.append(next(iter(value)))  # the first element or key instead of the container
    return options


# strategies built once: building them per node would cost more than drawing from them
_PERMILLE = st.integers(0, 999)
_COIN = st.booleans()
_KEYS = st.text(max_size=8)
_HOW = st.sampled_from(["cut", "reverse", "duplicate", "empty"])
_RATES = st.sampled_from([0, 20, 50, 100, 200, 400])  # per mille of nodes replaced; 0 keeps the valid seed


def _mutate(draw: st.DrawFn, value: Any, rate: int) -> Any:
    """``value`` with each node replaced with probability ``rate``/1000, and containers cut, reordered, grown."""
    if rate and draw(_PERMILLE) < rate:
        return draw(hostile) if draw(_COIN) else draw(st.sampled_from(_swaps(value)))
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if rate and draw(_PERMILLE) < rate // 2:
                continue  # field dropped
            out[key] = _mutate(draw, item, rate)
        if rate and draw(_PERMILLE) < rate // 2:
            out[draw(_KEYS)] = draw(hostile)
        return out
    if isinstance(value, list):
        items = [_mutate(draw, item, rate) for item in value]
        if rate and items and draw(_PERMILLE) < rate:
            how = draw(_HOW)
            if how == "cut":
                items = items[: draw(st.integers(0, len(items) - 1))]
            elif how == "reverse":
                items.reverse()
            elif how == "duplicate":
                items.insert(draw(st.integers(0, len(items))), items[0])
            else:
                items = []
        return items
    return value


@st.composite
def _mutated(draw: st.DrawFn, seed: Callable[[], Any]) -> Any:
    return _mutate(draw, seed(), draw(_RATES))


def bodies(seed: Callable[[], Any]) -> st.SearchStrategy[Any]:
    """Mostly the seed mutated lightly to heavily (or not at all), one time in five random JSON."""
    light = _mutated(seed)
    return st.one_of(light, light, light, light, random_json)


# -- what must hold ------------------------------------------------------------------------------------------------


def check_error(err: CarbonApiError, secrets: list[str]) -> None:
    for text in (str(err), repr(err), repr(vars(err))):
        for secret in secrets:
            assert secret not in text, f"a secret escaped in {type(err).__name__}: {text[:300]}"


def check_forecast(forecast: Forecast) -> None:
    assert isinstance(forecast, Forecast) and len(forecast) >= 1
    values = forecast.values
    assert all(math.isfinite(v) and 0 <= v <= 5000 for v in values.tolist()), values
    stamps = forecast.timestamps
    assert all(t.tzinfo is not None and t.utcoffset() == timedelta(0) for t in stamps)
    assert all(a < b for a, b in zip(stamps, stamps[1:], strict=False)), "unsorted"
    assert forecast.end > stamps[-1]
    assert datetime(1970, 1, 1, tzinfo=timezone.utc) <= stamps[0] and forecast.end <= datetime(
        2202, 1, 1, tzinfo=timezone.utc
    )
    assert forecast.zone is None or isinstance(forecast.zone, str)
    assert TOKEN not in (forecast.zone or "")
    assert forecast.generated_at is None or forecast.generated_at.tzinfo is not None


def check_result(result: Any) -> None:
    """Whatever a parser or fetcher returned is of its documented type and valid."""
    if isinstance(result, Forecast):
        check_forecast(result)
    elif isinstance(result, SdkForecast):
        check_forecast(result.forecast)
        for point in result.optimal:
            check_result(point)
    elif isinstance(result, EmissionsPoint):
        assert isinstance(result.location, str) and result.time.tzinfo is not None
        assert math.isfinite(result.value) and 0 <= result.value <= 5000 and result.duration >= timedelta(0)
    elif isinstance(result, ZoneAccess):
        assert isinstance(result.zone, str) and isinstance(result.name, str)
        assert result.country is None or isinstance(result.country, str)
        assert all(isinstance(a, str) for a in result.access)
    elif isinstance(result, (list, tuple)):
        for item in result:
            check_result(item)
    elif isinstance(result, dict):
        for key, item in result.items():
            assert isinstance(key, str)
            check_result(item)
    else:
        assert result is None or isinstance(result, (str, int, float, bool)), type(result)


def secrets_of(hook: Any) -> list[str]:
    """The connection's password and any bearer token the hook was handed (WattTime), if long enough to look for:
    a mutated login may hand out "a", and every hint holds an "a"."""
    return [s for s in {TOKEN, *hook._secrets()} if len(s) >= 8]


def outcome(hook: Any, call: Callable[[], Any]) -> str:
    """Run one parse or fetch: a typed error (free of secrets) or a valid result; anything else fails the test."""
    try:
        result = call()
    except CarbonApiError as err:
        check_error(err, secrets_of(hook))
        return "typed error"
    check_result(result)
    return "valid"


def _raw(seed: Callable[[], Any]) -> st.SearchStrategy[bytes]:
    """Bytes that are not a JSON encoding of a mutated seed: nesting bombs, cut JSON, binary, the token."""
    text = json.dumps(seed())
    return st.one_of(
        st.sampled_from([2, 500, 5_000, 100_000]).map(lambda n: b"[" * n + b"]" * n),
        st.sampled_from([2, 500, 5_000, 100_000]).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
        st.integers(0, len(text)).map(lambda n: text[:n].encode()),
        st.binary(max_size=64),
        st.just(f'{{"error": "{TOKEN}"}} {TOKEN}'.encode()),
        st.just(b"1" * 5000),  # an integer beyond Python's digit limit for str -> int
    )


_STATUS = st.sampled_from([200] * 12 + [204, 400, 401, 403, 404, 500])


def exchanges(service: Service) -> st.SearchStrategy[tuple[Endpoint, int, bytes]]:
    """An endpoint, a status (mostly 200) and the bytes it answers: an encoded mutated body, or raw bytes."""
    return st.one_of(
        [
            st.tuples(
                st.just(e), _STATUS, st.one_of(bodies(e.seed).map(encode), bodies(e.seed).map(encode), _raw(e.seed))
            )
            for e in service.endpoints
        ]
    )


def decoded(service: Service) -> st.SearchStrategy[tuple[Endpoint, Any]]:
    return st.one_of([st.tuples(st.just(e), bodies(e.seed)) for e in service.endpoints])


@pytest.fixture(scope="module")
def server() -> Iterator[Hostile]:
    with hostile_server() as running:
        yield running


def report(capsys: pytest.CaptureFixture[str], what: str, service: Service, counts: Counter[str]) -> None:
    """How many examples ran and how they ended: printed by ``make fuzz`` (``CARBON_FUZZ_EXAMPLES`` set), and in
    long runs checked, so that a fuzzer that only ever hit errors (or never did) cannot pass unnoticed."""
    if sum(counts.values()) >= 1000:  # in a short run a few percent valid answers may all be missed
        assert counts["valid"] and counts["typed error"], counts
    if "CARBON_FUZZ_EXAMPLES" in os.environ:
        with capsys.disabled():
            print(f"\n{what} {service.name}: {sum(counts.values())} examples, {dict(counts)}", end="")


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_parsers_only_raise_typed_errors(server, service, capsys):
    hook = service.hook()
    counts: Counter[str] = Counter()

    @settings(max_examples=EXAMPLES, **FUZZ_SETTINGS)
    @given(case=decoded(service))
    def check(case: tuple[Endpoint, Any]) -> None:
        endpoint, body = case
        counts[outcome(hook, lambda: endpoint.parse(hook, body))] += 1

    check()
    report(capsys, "in-process", service, counts)


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_fetchers_over_http_only_raise_typed_errors(server, service, capsys):
    hook = service.hook()
    counts: Counter[str] = Counter()

    @settings(max_examples=HTTP_EXAMPLES, **FUZZ_SETTINGS)
    @given(case=exchanges(service))
    def check(case: tuple[Endpoint, int, bytes]) -> None:
        endpoint, status, payload = case
        server.serve(endpoint, status, payload)
        fresh()
        counts[outcome(hook, lambda: endpoint.fetch(hook))] += 1

    check()
    report(capsys, "over HTTP", service, counts)


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_every_seed_parses(server, service):
    """The seeds are valid answers: the fuzzer starts from what each service really sends."""
    hook = service.hook()
    for endpoint in service.endpoints:
        check_result(endpoint.parse(hook, endpoint.seed()))
        server.serve(endpoint, 200, encode(endpoint.seed()))
        fresh()
        check_result(endpoint.fetch(hook))
