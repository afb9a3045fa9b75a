"""The typed error tree: every error survives pickle (Airflow moves errors between processes) and holds no token."""

from __future__ import annotations

import inspect
import json
import pickle
from datetime import datetime, timedelta, timezone

import pytest

from airflow_provider_carbon import exceptions
from airflow_provider_carbon.exceptions import CarbonError

T = datetime(2025, 6, 1, 22, tzinfo=timezone.utc)
API = {"service": "electricitymaps", "zone": "DE", "status": 503, "hint": "wait"}

#: one representative instance per class; a new class without one fails the completeness test below
EXAMPLES = {
    "CarbonError": lambda: exceptions.CarbonError("something"),
    "InvalidForecastError": lambda: exceptions.InvalidForecastError(
        "negative", "value -1 is negative", index=3, timestamp=T, value=-1.0, zone="DE"
    ),
    "WindowError": lambda: exceptions.WindowError("no window"),
    "ForecastCoverageError": lambda: exceptions.ForecastCoverageError(
        forecast_start=T, forecast_end=T + timedelta(hours=3), earliest=T, duration=timedelta(hours=4)
    ),
    "DeadlineTooTightError": lambda: exceptions.DeadlineTooTightError(
        earliest=T, latest_start=T - timedelta(hours=1), duration=timedelta(hours=2)
    ),
    "CarbonApiError": lambda: exceptions.CarbonApiError("boom", **API),
    "AuthenticationError": lambda: exceptions.AuthenticationError("refused", **{**API, "status": 401}),
    "NotEntitledError": lambda: exceptions.NotEntitledError("not in plan", **{**API, "status": 403}),
    "RateLimitedError": lambda: exceptions.RateLimitedError("slow down", retry_after=7.5, **{**API, "status": 429}),
    "ServiceUnavailableError": lambda: exceptions.ServiceUnavailableError("down", **API),
    "InvalidRequestError": lambda: exceptions.InvalidRequestError("bad zone", **{**API, "status": 404}),
    "RedirectError": lambda: exceptions.RedirectError(
        "redirected", location="http://127.0.0.2:8080/v3", **{**API, "status": 302}
    ),
    "InsufficientHistoryError": lambda: exceptions.InsufficientHistoryError(
        "30 observations at a 1:00:00 step", zone="DE", days_available=1.25, days_needed=2
    ),
    "QueueInfeasibleError": lambda: exceptions.QueueInfeasibleError("job 'a' cannot end by 06:00", job="a"),
    "CarbonBudgetExceeded": lambda: exceptions.CarbonBudgetExceeded(
        scope="dag:nightly", period="month", period_start=T, used_kg=5.2, limit_kg=5.0
    ),
    "BadPayloadError": lambda: exceptions.BadPayloadError("zeros", reason="invalid_forecast", **{**API, "status": 200}),
}


def error_classes() -> list[type[CarbonError]]:
    return [
        obj
        for _, obj in inspect.getmembers(exceptions, inspect.isclass)
        if issubclass(obj, CarbonError) and obj.__module__ == exceptions.__name__
    ]


def test_every_error_class_has_an_example_and_is_public():
    names = {cls.__name__ for cls in error_classes()}
    assert names <= set(EXAMPLES), f"add an example for {sorted(names - set(EXAMPLES))}"
    assert names <= set(exceptions.__all__)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_pickle_round_trip_keeps_type_message_and_attributes(name):
    error = EXAMPLES[name]()
    if isinstance(error, exceptions.CarbonApiError):
        error.attempts = 3
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error) and copy.args == error.args
    assert vars(copy) == vars(error)
    assert copy == error and hash(copy) == hash(error)
    assert isinstance(copy, CarbonError)


def test_errors_of_different_content_are_not_equal():
    a = exceptions.ServiceUnavailableError("down", service="electricitymaps")
    assert a != exceptions.ServiceUnavailableError("down", service="watttime")
    assert a != exceptions.InvalidRequestError("down", service="electricitymaps")


def test_a_hook_error_holds_no_token_even_pickled(httpserver, monkeypatch):
    """A 401 body that echoes the token: the typed error, its repr and its pickled bytes never contain it."""
    from airflow_provider_carbon.hooks.electricitymaps import ElectricityMapsHook

    token = "s3cr3t-token-0123456789abcdef"
    httpserver.expect_request("/v3/carbon-intensity/latest").respond_with_json(
        {"message": f"Invalid auth-token {token} for zone DE"}, status=401
    )
    conn = {"conn_type": "electricitymaps", "host": httpserver.url_for("/v3"), "password": token}
    monkeypatch.setenv("AIRFLOW_CONN_ECHO", json.dumps(conn))
    with pytest.raises(exceptions.AuthenticationError) as info:
        ElectricityMapsHook("echo").get_latest("DE")
    error = info.value
    for text in (str(error), repr(error), pickle.dumps(error).decode("latin-1")):
        assert token not in text
    assert error.status == 401 and pickle.loads(pickle.dumps(error)) == error
