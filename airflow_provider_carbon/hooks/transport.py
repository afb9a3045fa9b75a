"""Everything HTTP the hooks share: one session, User-Agent, timeouts, retries, redaction, error mapping.

The hooks say *what* to ask and how to read the answer; this module says *how* a request travels and how its
failures turn into the typed :class:`~airflow_provider_carbon.exceptions.CarbonApiError` tree:

* connection errors, timeouts, 5xx and 429 are retried with tenacity (exponential back-off with jitter, or exactly
  the ``Retry-After`` the service asked for) within a bounded number of attempts and a bounded total wait;
* 400/401/403/404 are never retried;
* a body is streamed and capped (``max_response_bytes``, counted after decompression, which is done here in
  bounded steps so that a gzip bomb stops at the cap), and each request, connect and whole body, has a time budget
  (``request_budget``) so that a body dripping a byte at a time ends as a timeout;
* redirects are not followed, unless the connection allows them, and then only to the same scheme, host and port:
  a credential never travels to another server;
* a call may carry a deadline (a tz-aware instant): all its attempts, the waits between them, connect and body end
  by then, each attempt's timeouts capped to the time left, and the call raises
  :class:`~airflow_provider_carbon.exceptions.ServiceUnavailableError` saying so when time is up;
* no text from a response or a request reaches an exception or a log line without passing one
  :class:`Redactor`, which knows every secret of the connection.
"""

from __future__ import annotations

import base64
import contextlib
import contextvars
import json
import random
import socket
import threading
import time
import urllib.parse
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property
from typing import Any, TypeVar

import requests
import tenacity
from requests.adapters import HTTPAdapter
from requests.exceptions import ChunkedEncodingError, ContentDecodingError
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ProtocolError, ReadTimeoutError

from airflow_provider_carbon import __version__
from airflow_provider_carbon.exceptions import (
    AuthenticationError,
    BadPayloadError,
    CarbonApiError,
    CarbonError,
    InvalidRequestError,
    NotEntitledError,
    RateLimitedError,
    RedirectError,
    ServiceUnavailableError,
)
from airflow_provider_carbon.hooks.timeutil import parse_retry_after

__all__ = [
    "HOMEPAGE",
    "Clock",
    "RedactingLogger",
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
#: bytes read from the socket (and inflated) per step: the most a step adds to memory
CHUNK = 64 * 1024
#: bytes of an error body read at most: only its message is wanted, and the start of it is enough
ERROR_BODY_BYTES = 64 * 1024
#: same-origin redirects followed per request at most, where the connection allows them
MAX_REDIRECTS = 5
Params = Mapping[str, Any] | list[tuple[str, Any]] | None


class Redactor:
    """The one redaction rule: every secret of a connection, in every form it may travel in, becomes ``***``.

    Applied to whatever text from a response or a request reaches an exception, a log line or an error detail.

    :param secrets: the credentials as the connection holds them (token or password, raw and stripped; a WattTime
        bearer token); empty ones are ignored.
    :param basic: ``(login, password)`` sent as HTTP Basic auth, whose header value is base64 of both.
    """

    def __init__(self, secrets: Iterable[str | None], *, basic: tuple[str, str] | None = None) -> None:
        forms: set[str] = set()
        for secret in (s for s in secrets if s):
            for text in (secret, secret.strip()):
                if text:
                    # as sent, and as a server may echo it: URL-encoded (a query or a Location) or JSON-escaped
                    forms |= {text, urllib.parse.quote(text, safe=""), urllib.parse.quote_plus(text)}
                    forms.add(json.dumps(text)[1:-1])
        if basic and basic[0] and basic[1]:
            forms.add(base64.b64encode(f"{basic[0]}:{basic[1]}".encode()).decode())
        # longest first: a form that contains another must go whole, not leave its rest behind
        self.secrets = sorted((f for f in forms if f), key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def scrub(self, err: BaseException) -> BaseException:
        """Redact a provider error in place (its detail, hint, args and message) and return it.

        Also drops a suppressed ``__context__`` (``raise ... from None``): it is never shown, but it is the
        original error, and its text may quote what was redacted here.
        """
        if isinstance(err, CarbonError):
            for name in ("detail", "hint", "location"):
                value = err.__dict__.get(name)
                if isinstance(value, str):
                    err.__dict__[name] = self(value)
            err.args = tuple(self(a) if isinstance(a, str) else a for a in err.args)
        if err.__suppress_context__:
            err.__context__ = None
        return err


class RedactingLogger:
    """A logger whose every line passes a :class:`Redactor` (formatted first, so the arguments are redacted too).

    :param logger: the logger to write to (stdlib or structlog: both take a ready message).
    :param redactor: returns the redactor to apply (per line: the secrets known may change).
    """

    def __init__(self, logger: Any, redactor: Callable[[], Redactor]) -> None:
        self._logger = logger
        self._redactor = redactor

    def _emit(self, level: str, msg: object, *args: Any, **kwargs: Any) -> Any:
        try:
            text = str(msg) % args if args else str(msg)
        except (TypeError, ValueError):  # a format that does not fit its arguments: still a line, never a crash
            text = f"{msg} {args!r}"
        return getattr(self._logger, level)(self._redactor()(text), **kwargs)

    def debug(self, msg: object, *args: Any, **kwargs: Any) -> Any:
        return self._emit("debug", msg, *args, **kwargs)

    def info(self, msg: object, *args: Any, **kwargs: Any) -> Any:
        return self._emit("info", msg, *args, **kwargs)

    def warning(self, msg: object, *args: Any, **kwargs: Any) -> Any:
        return self._emit("warning", msg, *args, **kwargs)

    def error(self, msg: object, *args: Any, **kwargs: Any) -> Any:
        return self._emit("error", msg, *args, **kwargs)

    def exception(self, msg: object, *args: Any, **kwargs: Any) -> Any:
        return self._emit("exception", msg, *args, **kwargs)

    def critical(self, msg: object, *args: Any, **kwargs: Any) -> Any:
        return self._emit("critical", msg, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:  # anything else (level checks, names) as the logger has it
        return getattr(self._logger, name)


@dataclass(frozen=True)
class TransportSettings:
    """The settings of one call, read from the hook's constructor, the connection's extras and the defaults."""

    connect_timeout: float
    read_timeout: float
    max_attempts: int
    max_retry_wait: float
    retry_backoff: float
    #: bytes a body may have, decompressed
    max_response_bytes: int = 4 * 1024 * 1024
    #: seconds one request may take, connect and whole body (each attempt has its own)
    request_budget: float = 30.0
    #: follow redirects to the same scheme, host and port
    allow_redirects: bool = False


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
    except (ValueError, RecursionError):  # RecursionError: a nesting bomb such as [[[[...]]]]
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
        session = _Session()
        for prefix in ("http://", "https://"):
            session.mount(prefix, _GuardedAdapter())
        session.headers["User-Agent"] = user_agent()
        session.headers["Accept"] = "application/json"
        # only what _Inflater decodes (requests would add br or zstd when their modules are installed)
        session.headers["Accept-Encoding"] = "gzip, deflate"
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
            # the request budget, or less when the deadline is nearer: connect, redirects and the whole body
            budget = clock.cap(settings.request_budget)
            ends = started + budget
            with _BudgetGuard(budget) as guard:
                try:
                    response = self._send(url, params, headers, auth, settings, ends, label, zone)
                    try:
                        error = response.status_code >= 400
                        # an error body is only read for its message: its first bytes are enough, never an error
                        self._read_body(response, settings, ends, budget, label, zone, truncate=error)
                    finally:
                        response.close()
                except CarbonApiError:
                    if guard.fired:  # the guard closed the connection: say why, not "could not read"
                        raise self._over_budget(label, zone, budget) from None
                    raise
            self.log.info(
                "%s GET %s (zone %s) -> HTTP %s in %.0f ms",
                self.service,
                label,
                zone,
                response.status_code,
                (time.monotonic() - started) * 1000,
            )
            if error:
                raise error_from_response(response, zone)
            return self._parse_body(response, label, zone, allow_empty)

        return self.with_retries(attempt, settings, clock=clock, label=label, zone=zone)

    def _send(
        self,
        url: str,
        params: Params,
        headers: Mapping[str, str] | None,
        auth: tuple[str, str] | None,
        settings: TransportSettings,
        ends: float,
        label: str,
        zone: str | None,
    ) -> requests.Response:
        """Send the GET (and any same-origin redirects the connection allows); the body is not read yet."""
        origin = _origin_key(url)
        for hop in range(MAX_REDIRECTS + 1):
            left = max(ends - time.monotonic(), 0.001)
            timeouts = (min(settings.connect_timeout, left), min(settings.read_timeout, left))
            response = self._get(url, params, headers, auth, timeouts, label, zone)
            if not 300 <= response.status_code < 400 or response.status_code == 304:
                return response
            # a redirect's body is never read: only its Location matters, and it may be anything
            response.close()
            location = response.headers.get("Location")
            target = urllib.parse.urljoin(url, location) if location else None
            shown = self.redactor()(_without_userinfo(target))[:200] if target else None
            common = {"service": self.service, "zone": zone, "status": response.status_code, "location": shown}
            if target is None:
                raise RedirectError(f"{label} answered HTTP {response.status_code} without a Location", **common)
            if not settings.allow_redirects:
                raise RedirectError(
                    f"{label} answered HTTP {response.status_code} pointing to {shown}; redirects are not followed",
                    hint=f"set the host of connection {self.conn_id!r} to where it points, or allow same-host "
                    "redirects with the extra allow_redirects=true",
                    **common,
                )
            if _origin_key(target) != origin:
                raise RedirectError(
                    f"{label} answered HTTP {response.status_code} pointing to {shown}, another scheme, host or "
                    "port; it is not followed, so that the credentials stay with the configured host",
                    hint=f"set the host of connection {self.conn_id!r} to where it points, if you trust it",
                    **common,
                )
            if hop == MAX_REDIRECTS:
                raise RedirectError(f"{label}: more than {MAX_REDIRECTS} redirects, the last to {shown}", **common)
            self.log.info("%s: %s redirected (HTTP %s) to %s", self.service, label, response.status_code, shown)
            url, params = target, None  # the Location carries its own query
        raise AssertionError("unreachable")  # pragma: no cover

    def _get(
        self,
        url: str,
        params: Params,
        headers: Mapping[str, str] | None,
        auth: tuple[str, str] | None,
        timeouts: tuple[float, float],
        label: str,
        zone: str | None,
    ) -> requests.Response:
        try:
            return self.session.get(
                url, params=params, headers=headers, auth=auth, timeout=timeouts, stream=True, allow_redirects=False
            )
        except requests.Timeout:
            raise ServiceUnavailableError(
                f"no answer from {label} within {timeouts[1]:g} s (connect {timeouts[0]:g} s)",
                service=self.service,
                zone=zone,
            ) from None
        except (requests.ConnectionError, ChunkedEncodingError, ContentDecodingError) as err:
            # refused, reset, or dropped in the middle of the body: transient, so retried
            raise self._unreadable(url, zone, type(err).__name__) from None
        except requests.RequestException as err:
            # e.g. InvalidHeader for a token pasted with a newline: requests' message quotes the header value,
            # so only the class name may travel on (chained with `from None`)
            raise InvalidRequestError(
                f"the request to {label} could not be sent ({type(err).__name__})",
                service=self.service,
                zone=zone,
                hint=f"check the host and the credentials of connection {self.conn_id!r} for stray characters",
            ) from None

    def _over_budget(self, label: str, zone: str | None, budget: float) -> ServiceUnavailableError:
        return ServiceUnavailableError(
            f"the answer from {label} took longer than the {budget:.3g} s allowed for one request",
            service=self.service,
            zone=zone,
            hint="the service is slow or sends its answer a little at a time; request_budget sets the limit",
        )

    def _unreadable(self, url: str, zone: str | None, what: str) -> ServiceUnavailableError:
        return ServiceUnavailableError(
            f"could not connect to {_origin(url)} or read its answer ({what})", service=self.service, zone=zone
        )

    def _read_body(
        self,
        response: requests.Response,
        settings: TransportSettings,
        ends: float,
        budget: float,
        label: str,
        zone: str | None,
        *,
        truncate: bool = False,
    ) -> None:
        """Read the body into ``response`` (so ``.json()`` and ``.text`` work), within the size cap and by ``ends``.

        :param truncate: keep the first :data:`ERROR_BODY_BYTES` (at most ``max_response_bytes``) and stop there,
            instead of raising ``too_large``.
        :raises BadPayloadError: ``too_large`` or ``bad_encoding``.
        :raises ServiceUnavailableError: the budget ran out, the body was cut off, or it does not decompress.
        """
        cap = min(settings.max_response_bytes, ERROR_BODY_BYTES) if truncate else settings.max_response_bytes
        common = {"service": self.service, "zone": zone, "status": response.status_code}
        encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("identity", "", "gzip", "x-gzip", "deflate"):
            raise BadPayloadError(
                f"{label} answered in the encoding {encoding[:40]!r}, which was not asked for",
                reason="bad_encoding",
                **common,
            )
        inflater = _Inflater(encoding) if encoding in ("gzip", "x-gzip", "deflate") else None
        too_large = BadPayloadError(
            f"{label} answered with more than {cap} bytes (max_response_bytes)", reason="too_large", **common
        )
        length = response.headers.get("Content-Length", "")
        # isascii: str.isdigit() is also true for "²", which int() refuses (a hostile header is not an error here)
        if inflater is None and length.isascii() and length.isdigit() and int(length) > cap and not truncate:
            raise too_large  # said so up front: not a byte of it is read
        body = bytearray()
        try:
            for raw in self._raw_chunks(response, settings.read_timeout, ends, budget, label, zone):
                for piece in inflater.feed(raw, CHUNK) if inflater else (raw,):
                    body += piece
                    if len(body) > cap:
                        if truncate:
                            del body[cap:]
                            response._content = bytes(body)
                            return
                        raise too_large
        except zlib.error:
            raise self._unreadable(response.url, zone, "ContentDecodingError") from None
        response._content = bytes(body)
        response._content_consumed = True  # read to the end: close() returns the connection to the pool

    def _raw_chunks(
        self, response: requests.Response, read_timeout: float, ends: float, budget: float, label: str, zone: str | None
    ) -> Iterator[bytes]:
        """The body as it arrives (still compressed), one socket read at a time, until EOF or ``ends``."""
        raw = response.raw
        read = getattr(raw, "read1", None) or raw.read  # read1: return what arrived, do not wait for a full chunk
        sock = _socket_of(response)
        over_budget = self._over_budget(label, zone, budget)
        while True:
            left = ends - time.monotonic()
            if left <= 0:
                raise over_budget
            if sock is not None:  # a read waits at most until the budget ends, not a whole read timeout
                with contextlib.suppress(OSError):
                    sock.settimeout(max(min(read_timeout, left), 0.001))
            try:
                data = read(CHUNK, decode_content=False)
            except (TimeoutError, ReadTimeoutError):
                if ends - time.monotonic() <= 0.001:
                    raise over_budget from None
                raise ServiceUnavailableError(
                    f"no answer from {label} within {read_timeout:g} s", service=self.service, zone=zone
                ) from None
            except (ProtocolError, OSError):
                raise self._unreadable(response.url, zone, "ChunkedEncodingError") from None
            if not data:
                return
            yield data

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
        except (ValueError, RecursionError):  # RecursionError: a nesting bomb such as [[[[...]]]]
            snippet = self.redactor()(response.text)[:80]  # redact first: a cut could split a token
            raise BadPayloadError(
                f"{label} answered with malformed JSON: {snippet!r}",
                reason="malformed_json",
                service=self.service,
                zone=zone,
                status=response.status_code,
            ) from None


#: the guard of the request this thread is sending, if any (see _BudgetGuard)
_GUARD: contextvars.ContextVar[_BudgetGuard | None] = contextvars.ContextVar("carbon_budget_guard", default=None)


class _BudgetGuard:
    """Ends a request at its budget even while the status line and headers trickle in.

    requests (http.client) applies the read timeout to each socket read, and it reads the status line and headers
    inside ``Session.get`` before the transport sees the response: a server that sends one byte every half second
    would hold the call for as long as it likes. So a timer shuts the request's socket down when the budget ends;
    the blocked read then returns at once and the attempt fails as over budget. The timer runs nothing of the call
    (the call stays in the caller's thread and ends by the budget, which the deadline caps), and is cancelled as soon
    as the attempt is over. The socket comes from the connection that sends the request (``_GuardedConnection``).
    """

    def __init__(self, seconds: float) -> None:
        self.fired = False
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(max(seconds, 0.0), self._fire)
        self._timer.daemon = True
        self._token: contextvars.Token[_BudgetGuard | None] | None = None

    def __enter__(self) -> _BudgetGuard:
        self._token = _GUARD.set(self)
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()
        if self._token is not None:
            _GUARD.reset(self._token)

    def watch(self, sock: socket.socket | None) -> None:
        with self._lock:
            self._sock = sock
            if self.fired:
                _shutdown(sock)

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            _shutdown(self._sock)


def _shutdown(sock: socket.socket | None) -> None:
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


class _GuardedConnection:
    """Hands the socket of the request being sent to the current :class:`_BudgetGuard`."""

    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        guard = _GUARD.get()
        if guard is not None:
            guard.watch(getattr(self, "sock", None))
        return super().getresponse(*args, **kwargs)  # type: ignore[misc]


class _GuardedHTTPConnection(_GuardedConnection, HTTPConnection):
    pass


class _GuardedHTTPSConnection(_GuardedConnection, HTTPSConnection):
    pass


class _GuardedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


class _GuardedAdapter(HTTPAdapter):
    """requests' adapter with connections that report their socket to the budget guard."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _GuardedHTTPPool, "https": _GuardedHTTPSPool}


class _Session(requests.Session):
    """A session that never resolves redirects itself.

    With ``allow_redirects=False`` requests still prepares the next request of a redirect (``Response.next``) and,
    doing so, reads the redirect's whole body into memory, past any size cap; the transport decides about
    redirects itself instead.
    """

    def get_redirect_target(self, resp: requests.Response) -> None:
        return None


class _Inflater:
    """Decompress gzip or deflate in bounded steps: at most ``limit`` bytes of output per step, so that a small
    body inflating to gigabytes is stopped at the size cap, not after it filled memory."""

    def __init__(self, encoding: str) -> None:
        self.gzip = encoding != "deflate"
        self._raw_deflate_tried = self.gzip  # "deflate" is zlib-wrapped by the RFC, raw in some servers
        self._obj = zlib.decompressobj(16 + zlib.MAX_WBITS if self.gzip else zlib.MAX_WBITS)

    def feed(self, data: bytes, limit: int) -> Iterator[bytes]:
        while data:
            try:
                piece = self._obj.decompress(data, limit)
            except zlib.error:
                if self._raw_deflate_tried:
                    raise
                self._raw_deflate_tried = True
                self._obj = zlib.decompressobj(-zlib.MAX_WBITS)
                continue
            self._raw_deflate_tried = True
            if piece:
                yield piece
            if self._obj.eof:
                if not (self.gzip and self._obj.unused_data):
                    return  # anything after the end of the stream is ignored, as urllib3 does
                data = self._obj.unused_data  # the next member of a multi-member gzip body
                self._obj = zlib.decompressobj(16 + zlib.MAX_WBITS)
                continue
            if not piece and self._obj.unconsumed_tail == data:
                return  # pragma: no cover - zlib made no progress; never loop on it
            data = self._obj.unconsumed_tail


def _socket_of(response: requests.Response) -> socket.socket | None:
    """The socket a streamed response reads from, or ``None`` where it cannot be found (then each read keeps the
    timeout it started with, the read timeout capped to the budget).

    From the body's file object first: on a ``Connection: close`` answer http.client already dropped the
    connection's own reference (``HTTPConnection.sock`` is ``None``) while the body is still read through it.
    """
    fp = getattr(getattr(response.raw, "_fp", None), "fp", None)
    sock = getattr(getattr(fp, "raw", None), "_sock", None)
    if not isinstance(sock, socket.socket):
        sock = getattr(getattr(response.raw, "connection", None), "sock", None)
    return sock if isinstance(sock, socket.socket) else None


def _origin_key(url: str) -> tuple[str, str, int | None]:
    """Scheme, host and port, with the scheme's default port filled in: what "the same server" means."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or {"http": 80, "https": 443}.get(scheme)
    except ValueError:  # a port that is not a number: matches nothing
        port = -1
    return scheme, (parts.hostname or "").lower(), port


def _without_userinfo(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]))


def _origin(url: str) -> str:
    """``scheme://host:port`` of a URL: where a message may say it tried to connect, without path or query."""
    parts = requests.utils.urlparse(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
