"""Everything HTTP the hooks share: one session, User-Agent, timeouts, retries, redaction, error mapping.

The hooks say *what* to ask and how to read the answer; this module says *how* a request travels and how its
failures turn into the typed :class:`~airflow_provider_carbon.exceptions.CarbonApiError` tree:

* connection errors, timeouts, 5xx and 429 are retried with tenacity (exponential back-off with jitter, or exactly
  the ``Retry-After`` the service asked for) within a bounded number of attempts and a bounded total wait;
* 400/401/403/404 are never retried;
* a call may carry a deadline (a tz-aware instant): all its attempts, the waits between them, connect and body end
  by then, each attempt's timeouts capped to the time left, and the call raises
  :class:`~airflow_provider_carbon.exceptions.ServiceUnavailableError` saying so when time is up;
* no text from a response or a request reaches an exception or a log line without passing one
  :class:`Redactor`, which knows every secret of the connection.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property
from typing import Any, TypeVar

import requests
import tenacity
from requests.exceptions import ChunkedEncodingError, ContentDecodingError

from airflow_provider_carbon import __version__
from airflow_provider_carbon.exceptions import (
    AuthenticationError,
    BadPayloadError,
    CarbonApiError,
    InvalidRequestError,
    NotEntitledError,
    RateLimitedError,
    ServiceUnavailableError,
)
from airflow_provider_carbon.hooks.timeutil import parse_retry_after

__all__ = [
    "HOMEPAGE",
    "Redactor",
    "Transport",
    "TransportSettings",
    "error_detail",
    "error_for_status",
    "user_agent",
]

HOMEPAGE = "https://github.com/airflow-provider-carbon/airflow-provider-carbon"
T = TypeVar("T")
#: an attempt with less time left than this is not started: it could only time out
MIN_ATTEMPT_S = 0.05
Params = Mapping[str, Any] | list[tuple[str, Any]] | None


class Redactor:
    """The one redaction rule: replaces every secret of a connection found in a text with ``***``.

    :param secrets: the credentials as the connection holds them; empty ones are ignored.
    """

    def __init__(self, secrets: Iterable[str | None]) -> None:
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text


@dataclass(frozen=True)
class TransportSettings:
    """The settings of one call, read from the hook's constructor, the connection's extras and the defaults."""

    connect_timeout: float
    read_timeout: float
    max_attempts: int
    max_retry_wait: float
    retry_backoff: float


def user_agent() -> str:
    """Who is asking: provider, Airflow and requests versions, and where to read about us."""
    from airflow import __version__ as airflow_version

    return (
        f"airflow-provider-carbon/{__version__} (+{HOMEPAGE}) apache-airflow/{airflow_version} "
        f"python-requests/{requests.__version__}"
    )


def error_detail(response: requests.Response, redact: Callable[[str], str]) -> str:
    """The service's own words about an error response, from the common error shapes."""
    try:
        body = response.json()
    except ValueError:
        return redact(response.text).strip()[:200] or response.reason or "no details"
    if isinstance(body, dict):
        for key in ("message", "error", "detail", "title"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value
            if isinstance(value, dict) and isinstance(value.get("message"), str):
                return value["message"]
    return redact(str(body))[:200]


def error_for_status(response: requests.Response, detail: str, *, service: str, zone: str | None) -> CarbonApiError:
    """The typed error of an HTTP error status, with the service's words in ``detail``."""
    status = response.status_code
    common = {"service": service, "zone": zone, "status": status}
    if status == 429:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        hint = None
        if retry_after is not None:
            hint = f"the service asked to wait {retry_after:g} s; raise the cache TTL or call less often"
        return RateLimitedError(detail, retry_after=retry_after, hint=hint, **common)
    if status >= 500:
        return ServiceUnavailableError(detail, **common)
    if status == 401:
        return AuthenticationError(detail, **common)
    if status == 403:
        return NotEntitledError(detail, **common)
    return InvalidRequestError(detail, **common)


class Clock:
    """The time left until a call's deadline, on the monotonic clock (immune to wall-clock jumps mid-call).

    :param deadline: a tz-aware instant, or ``None`` for no deadline.
    :raises ValueError: if ``deadline`` is naive.
    """

    def __init__(self, deadline: datetime | None) -> None:
        if deadline is not None and deadline.tzinfo is None:
            raise ValueError("deadline must be a tz-aware datetime")
        self.deadline = deadline
        self.started = time.monotonic()
        self.ends = None
        if deadline is not None:
            self.ends = self.started + (deadline - datetime.now(timezone.utc)).total_seconds()

    def left(self) -> float | None:
        """Seconds until the deadline (negative once past), or ``None`` without one."""
        return None if self.ends is None else self.ends - time.monotonic()

    def cap(self, seconds: float) -> float:
        """``seconds``, or the time left if that is shorter (never below a millisecond: 0 would mean no timeout)."""
        left = self.left()
        return seconds if left is None else max(min(seconds, left), 0.001)

    def elapsed(self) -> float:
        return time.monotonic() - self.started


class _StopAtDeadline(tenacity.stop.stop_base):
    """Stop when the next attempt would start too close to the deadline, or after it (tenacity computes the
    upcoming sleep before it asks whether to stop). Remembers that it fired, so the error can say why."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.fired = False

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        left = self.clock.left()
        if left is not None and retry_state.upcoming_sleep + MIN_ATTEMPT_S >= left:
            self.fired = True
        return self.fired


class _StopAfterWaiting(tenacity.stop.stop_base):
    """Stop when the waits between attempts would add up to more than ``budget`` seconds."""

    def __init__(self, budget: float) -> None:
        self.budget = budget

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        return retry_state.idle_for + retry_state.upcoming_sleep > self.budget


class Transport:
    """One HTTP session of one hook, and the way every request of that hook travels.

    :param service: short service id, for errors and logs.
    :param conn_id: the connection, named in hints.
    :param log: the hook's logger.
    :param redactor: returns the connection's :class:`Redactor` (called per use: a WattTime token changes).
    """

    def __init__(self, *, service: str, conn_id: str, log: Any, redactor: Callable[[], Redactor]) -> None:
        self.service = service
        self.conn_id = conn_id
        self.log = log
        self.redactor = redactor

    @cached_property
    def session(self) -> requests.Session:
        """One HTTP session per hook: connection reuse and one place for the User-Agent."""
        session = requests.Session()
        session.headers["User-Agent"] = user_agent()
        session.headers["Accept"] = "application/json"
        return session

    def close(self) -> None:
        if "session" in self.__dict__:
            self.session.close()
            del self.__dict__["session"]

    def get_json(
        self,
        url: str,
        *,
        label: str,
        settings: TransportSettings,
        error_from_response: Callable[[requests.Response, str | None], CarbonApiError],
        params: Params = None,
        headers: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        zone: str | None = None,
        allow_empty: bool = False,
        deadline: datetime | None = None,
    ) -> Any:
        """GET ``url`` and return the parsed JSON body, retrying transient failures.

        :param label: how messages name the request (the path below the service root).
        :param error_from_response: maps an error response to its typed exception (the service knows its shapes).
        :param allow_empty: return ``None`` for an empty body or 204 instead of raising :class:`BadPayloadError`.
        :param deadline: a tz-aware instant by which the whole call (attempts and waits) has ended.
        :raises CarbonApiError: the typed failure, with ``attempts`` set; :class:`ServiceUnavailableError` when the
            deadline comes first.
        """
        clock = Clock(deadline)

        def attempt() -> Any:
            started = time.monotonic()
            timeouts = (clock.cap(settings.connect_timeout), clock.cap(settings.read_timeout))
            try:
                response = self.session.get(url, params=params, headers=headers, auth=auth, timeout=timeouts)
            except requests.Timeout:
                raise ServiceUnavailableError(
                    f"no answer from {label} within {timeouts[1]:g} s (connect {timeouts[0]:g} s)",
                    service=self.service,
                    zone=zone,
                ) from None
            except (requests.ConnectionError, ChunkedEncodingError, ContentDecodingError) as err:
                # refused, reset, or dropped in the middle of the body: transient, so retried
                raise ServiceUnavailableError(
                    f"could not connect to {_origin(url)} or read its answer ({type(err).__name__})",
                    service=self.service,
                    zone=zone,
                ) from None
            except requests.RequestException as err:
                # e.g. InvalidHeader for a token pasted with a newline: requests' message quotes the header value,
                # so only the class name may travel on (chained with `from None`)
                raise InvalidRequestError(
                    f"the request to {label} could not be sent ({type(err).__name__})",
                    service=self.service,
                    zone=zone,
                    hint=f"check the host and the credentials of connection {self.conn_id!r} for stray characters",
                ) from None
            self.log.info(
                "%s GET %s (zone %s) -> HTTP %s in %.0f ms",
                self.service,
                label,
                zone,
                response.status_code,
                (time.monotonic() - started) * 1000,
            )
            if response.status_code >= 400:
                raise error_from_response(response, zone)
            return self._parse_body(response, label, zone, allow_empty)

        return self.with_retries(attempt, settings, clock=clock, label=label, zone=zone)

    def with_retries(
        self,
        attempt: Callable[[], T],
        settings: TransportSettings,
        *,
        clock: Clock | None = None,
        label: str = "the service",
        zone: str | None = None,
    ) -> T:
        """Call ``attempt`` until it succeeds, fails for good, or the attempts, the retry-wait budget or the time
        before the deadline run out."""
        clock = clock or Clock(None)
        backoff = settings.retry_backoff
        at_deadline = _StopAtDeadline(clock)
        # the order matters only for the message: running out of attempts or of waiting budget says so itself
        stop = tenacity.stop_after_attempt(max(1, settings.max_attempts)) | _StopAfterWaiting(settings.max_retry_wait)
        stop = stop | at_deadline
        count = 0
        left = clock.left()
        if left is not None and left < MIN_ATTEMPT_S:
            err = self._deadline_error(clock, label, zone, None)
            err.attempts = 0
            self.log.error("%s: giving up: %s", self.service, err)
            raise err

        def counted() -> T:
            nonlocal count
            count += 1
            return attempt()

        def wait(state: tenacity.RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            retry_after = getattr(exc, "retry_after", None)
            if retry_after is not None:
                return float(retry_after)  # the service said exactly how long; do not hammer it
            # exponential with "equal jitter": never less than half the step, so retries spread out
            step = backoff * 2 ** (state.attempt_number - 1)
            return step / 2 + random.uniform(0, step / 2)

        def before_sleep(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            self.log.warning(
                "%s: attempt %d failed (%s); retrying in %.2f s",
                self.service,
                state.attempt_number,
                exc,
                state.upcoming_sleep,
            )

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(lambda e: isinstance(e, CarbonApiError) and e.retryable),
            wait=wait,
            stop=stop,
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            return retrying(counted)
        except CarbonApiError as err:
            err.attempts = count
            if at_deadline.fired and err.retryable:
                final = self._deadline_error(clock, label, zone, err)
                final.attempts = count
                self.log.error("%s: giving up: %s", self.service, final)
                raise final from err
            if count > 1 or not err.retryable:
                self.log.error("%s: giving up: %s", self.service, err)
            raise

    def _deadline_error(
        self, clock: Clock, label: str, zone: str | None, last: CarbonApiError | None
    ) -> ServiceUnavailableError:
        assert clock.deadline is not None
        detail = (
            f"no answer from {label} within {clock.elapsed():.1f} s, before the deadline {clock.deadline.isoformat()}"
        )
        if last is not None:
            detail += f" (last attempt: {last.detail})"
        return ServiceUnavailableError(
            detail,
            service=self.service,
            zone=zone,
            status=last.status if last is not None else None,
            hint="the caller's deadline came first; its fallback policy decides what happens now",
        )

    def _parse_body(self, response: requests.Response, label: str, zone: str | None, allow_empty: bool) -> Any:
        if response.status_code == 204 or not response.content.strip():
            if allow_empty:
                return None
            raise BadPayloadError(
                f"{label} answered HTTP {response.status_code} with an empty body",
                reason="empty",
                service=self.service,
                zone=zone,
                status=response.status_code,
            )
        try:
            return response.json()
        except ValueError:
            snippet = self.redactor()(response.text)[:80]  # redact first: a cut could split a token
            raise BadPayloadError(
                f"{label} answered with malformed JSON: {snippet!r}",
                reason="malformed_json",
                service=self.service,
                zone=zone,
                status=response.status_code,
            ) from None


def _origin(url: str) -> str:
    """``scheme://host:port`` of a URL: where a message may say it tried to connect, without path or query."""
    parts = requests.utils.urlparse(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
