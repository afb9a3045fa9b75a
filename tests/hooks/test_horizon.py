"""Each service's longest forecast is the hook's fact (``max_horizon``), not the core's: a caller whose deadline
lies beyond it gets the longest forecast there is, never a ``short_forecast`` error."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from tests.hooks.test_error_modes import SERVICES, ok, serve

LONG = timedelta(hours=200)


@pytest.fixture(params=SERVICES, ids=lambda s: s.name)
def api(request):
    return request.param


def test_each_service_states_its_longest_forecast(api, httpserver, connection):
    hook = api.hook(httpserver, connection)
    expected = {"electricitymaps": 72, "watttime": 72, "uk_carbon_intensity": 48, "carbon_aware_sdk": 24}
    assert type(hook).max_horizon == timedelta(hours=expected[api.name])


@pytest.mark.parametrize("min_horizon", [None, LONG], ids=["default-min", "explicit-min"])
def test_a_horizon_beyond_the_service_is_capped(api, httpserver, connection, min_horizon):
    hook = api.hook(httpserver, connection)
    hours = int(hook.max_horizon / timedelta(hours=1)) + 1  # what the service sends: from the current period on
    values = [200 + (i % 7) * 10 for i in range(hours)]
    if api.path is None:  # the UK API: the route names the horizon, and 48 h is the longest
        calls = []
        httpserver.expect_request(re.compile(r"^/intensity/.+/fw48h$")).respond_with_handler(
            lambda request: calls.append(request) or _json(api.body(values))
        )
    else:
        calls = serve(httpserver, api, [ok(api, values)])
    forecast = hook.get_forecast(horizon=LONG, min_horizon=min_horizon)
    assert forecast.end - forecast.start >= hook.max_horizon - timedelta(hours=1)
    assert len(calls) == 1
    if api.name == "electricitymaps":
        assert calls[0].args["horizonHours"] == "72"
    if api.name == "watttime":
        assert calls[0].args["horizon_hours"] == "72"
    # the capped request is the cache key too: another long horizon is the same question
    hook.get_forecast(horizon=LONG * 2, min_horizon=min_horizon)
    assert len(calls) == 1


def _json(body):
    import json

    from werkzeug import Response

    return Response(json.dumps(body), content_type="application/json")
