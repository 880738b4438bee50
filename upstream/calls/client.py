"""The base of every upstream client: one pooled session per upstream, timeouts, error mapping,
redaction and the retry rules of shared/ARCHITECTURE.md. No ORM here: a CallRecorder decides
where exchanges are written.

The contract of every client (PaynetClient, WiseCPClient, PayofinClient): each public operation
method returns the upstream's answer parsed (a dict, a list or a typed value; None when the
answer carries nothing) or raises a typed UpstreamError. The Exchange, what was sent and what
came back, is for the recorder and travels on the error (`error.exchange`); it never reaches the
caller of an operation. `request()` returns it to the client's own methods only, and a client
checks an answer's shape in `interpret`, so a malformed answer is recorded as failed.
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Protocol

import requests
from django.conf import settings
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop
from requests.adapters import HTTPAdapter

from upstream.calls.errors import (
    UpstreamAuthError,
    UpstreamError,
    UpstreamRejectedError,
    UpstreamResponseError,
    UpstreamTransportError,
)
from upstream.calls.redaction import redact, redact_body, redact_headers
from upstream.l10n.stored import text


@dataclass
class Exchange:
    """One request and what came back; the call log row is written from it."""

    service: str
    operation: str
    method: str
    url: str
    request_headers: dict[str, str]
    request_body: Any
    attempt: int = 1
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    status_code: int | None = None
    response_body: Any = None
    upstream_code: str = ""
    upstream_message: str = ""
    duration_ms: int = 0
    outcome: str = "pending"
    error: str = ""
    call_id: int | None = None
    response_headers: dict[str, str] = field(default_factory=dict)
    # The parsed JSON answer, for the caller (the recorded copy is response_body).
    data: Any = None
    # The request changes upstream state (its call row must be committed before it leaves).
    mutating: bool = False
    # A write that failed after it may have reached the upstream (even if it is then retried).
    may_have_applied: bool = False


class CallRecorder(Protocol):
    def started(self, exchange: Exchange) -> None: ...

    def finished(self, exchange: Exchange) -> None: ...


class NullRecorder:
    def started(self, exchange: Exchange) -> None:
        pass

    def finished(self, exchange: Exchange) -> None:
        pass


class ListRecorder:
    """Keeps exchanges in memory; the job runner writes them to the call log in bulk."""

    def __init__(self) -> None:
        self.exchanges: list[Exchange] = []

    def started(self, exchange: Exchange) -> None:
        pass

    def finished(self, exchange: Exchange) -> None:
        self.exchanges.append(exchange)


def sentence(text: str) -> str:
    """An upstream's message as the end of one of our sentences: trimmed, with a full stop."""
    text = " ".join(str(text).split())
    return text if not text or text[-1] in ".!?…" else f"{text}."


def retry_delay(
    error: UpstreamError,
    *,
    attempt: int,
    max_attempts: int,
    idempotent: bool,
    mutating: bool,
    base: float,
    cap: float,
    rng: Callable[[float, float], float] = random.uniform,
) -> float | None:
    """Seconds to wait before the next attempt, or None to give up.

    Retry only transport errors, 429 and 5xx, a bounded number of times, with capped exponential
    backoff and full jitter; honour Retry-After. Never retry a clear rejection. A write that may
    have been applied without an answer (sent, then no reply or an unreadable one) is in doubt:
    it is settled by reading back, never resent blindly; a 5xx is resent only when idempotent.
    """
    if attempt >= max_attempts or isinstance(error, UpstreamRejectedError):
        return None
    if isinstance(error, UpstreamResponseError):
        if error.retry_after is not None:
            # Never sooner than asked; a wait longer than the cap is left to a later retry.
            return error.retry_after if error.retry_after <= cap else None
        status = error.status_code or 0
        if status >= 500:
            if not idempotent:
                return None
        elif mutating:
            return None
    elif isinstance(error, UpstreamTransportError):
        if error.sent and mutating:
            return None
    else:
        return None
    return rng(0, min(cap, base * 2 ** (attempt - 1)))


class TokenBucket:
    """At most `rate` requests a second after a burst of `burst`, shared by every thread.

    Each caller reserves the next free slot under the lock and sleeps outside it, so waiting
    threads leave in the order they came and no interval of L seconds holds more than
    burst + rate * L requests.
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.sleep = sleep
        self._tokens = float(burst)
        self._at = clock()
        self._lock = threading.Lock()

    def set_rate(self, rate: float) -> None:
        """A new rate from now on (this process's share of the cap changed,
        upstream.calls.slots); what was saved up so far counts at the old rate, and never more
        than the new burst."""
        with self._lock:
            now = self.clock()
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
            self._at = now
            self.rate = rate
            self.burst = rate_burst(rate)
            self._tokens = min(self._tokens, float(self.burst))

    def acquire(self) -> float:
        """Wait for a slot; return how long this call waited."""
        with self._lock:
            now = self.clock()
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
            self._at = now
            self._tokens -= 1
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait:
            self.sleep(wait)
        return wait


def rate_burst(rate: float) -> int:
    """The burst allowed above a rate cap: a fifth of a second's worth, at least one request."""
    return max(1, math.ceil(rate / 5))


_buckets: dict[tuple[str, float], TokenBucket] = {}
_buckets_lock = threading.Lock()


def rate_limiter(service: str, rate: float) -> TokenBucket | None:
    """The process's bucket for an upstream (None: no cap), shared by all its clients."""
    if not rate or rate <= 0:
        return None
    key = (service, float(rate))
    with _buckets_lock:
        bucket = _buckets.get(key)
        if bucket is None:
            bucket = _buckets[key] = TokenBucket(float(rate), rate_burst(rate))
        return bucket


_sessions: dict[tuple[str, int, str], requests.Session] = {}
_sessions_lock = threading.Lock()


def pooled_session(service: str, pool_size: int, base_url: str = "") -> requests.Session:
    """One keep-alive session per upstream, shared by every thread, pool >= concurrency.

    The environment's proxy and CA bundle settings (HTTPS_PROXY, NO_PROXY, REQUESTS_CA_BUNDLE)
    are read once here for the upstream's URL: requests reads them on every request otherwise,
    scanning the whole environment twice, which cost the runner more than sending did.
    """
    key = (service, pool_size, base_url)
    with _sessions_lock:
        session = _sessions.get(key)
        if session is None:
            session = requests.Session()
            if base_url:
                found = session.merge_environment_settings(base_url, {}, None, None, None)
                session.proxies.update(found["proxies"])
                session.verify = found["verify"]
                session.trust_env = False
            adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            _sessions[key] = session
        return session


class UpstreamClient:
    """Subclasses set `service`, build URLs and headers, and read their envelope in `interpret`.

    Anything not passed in comes from settings: the base URL, concurrency and rate cap from the
    subclass's `<UPSTREAM>_BASE_URL` / `_CONCURRENCY` / `_RATE_LIMIT` settings, timeouts,
    attempts and backoff from the shared `UPSTREAM_*` ones. Every attempt waits for the rate
    cap's token (one bucket per upstream and process) before it is recorded and sent.
    """

    service: ClassVar[str] = ""
    service_label: ClassVar[str] = ""
    # Every operation the client sends, as the call log names it (the call log's filter lists them).
    operations: ClassVar[tuple[str, ...]] = ()
    base_url_setting: ClassVar[str] = ""
    concurrency_setting: ClassVar[str] = ""
    # Requests per second this process sends the upstream, beside the concurrency cap (0: none).
    rate_limit_setting: ClassVar[str] = ""

    def __init__(
        self,
        *,
        base_url: str | None = None,
        recorder: CallRecorder | None = None,
        session: requests.Session | None = None,
        pool_size: int | None = None,
        connect_timeout: float | None = None,
        read_timeout: float | None = None,
        max_attempts: int | None = None,
        backoff_base: float | None = None,
        backoff_cap: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rate_limit: float | None = None,
    ) -> None:
        def setting(value: Any, name: str) -> Any:
            return getattr(settings, name) if value is None else value

        self.base_url = setting(base_url, self.base_url_setting)
        self.recorder: CallRecorder = recorder or NullRecorder()
        pool_size = setting(pool_size, self.concurrency_setting) if self.concurrency_setting else 16
        self.session = session or pooled_session(
            self.service, max(int(pool_size or 1), 1), self.base_url or ""
        )
        self.timeout = (
            setting(connect_timeout, "UPSTREAM_CONNECT_TIMEOUT"),
            setting(read_timeout, "UPSTREAM_READ_TIMEOUT"),
        )
        self.max_attempts = setting(max_attempts, "UPSTREAM_MAX_ATTEMPTS")
        self.backoff_base = setting(backoff_base, "UPSTREAM_BACKOFF_BASE")
        self.backoff_cap = setting(backoff_cap, "UPSTREAM_BACKOFF_CAP")
        self.sleep = sleep
        rate = setting(rate_limit, self.rate_limit_setting) if self.rate_limit_setting else 0
        self.rate_limit = rate_limiter(self.service, rate or 0)

    # Subclass hooks -------------------------------------------------------------------------

    def auth_headers(self) -> dict[str, str]:
        return {}

    def url_for(self, path: str) -> str:
        return self.base_url.rstrip("/") + "/" + path.lstrip("/")

    def interpret(self, exchange: Exchange, status: int, body: Any) -> None:
        """Read the upstream's envelope: set upstream_code/message, raise on a failure."""
        self.raise_for_status(exchange, status, exchange.upstream_message)

    # Shared machinery ----------------------------------------------------------------------

    def raise_for_status(self, exchange: Exchange, status: int, message: str) -> None:
        label = self.service_label or self.service
        # The status is already in the sentence: without a message of the upstream's there is no
        # detail to add ("(HTTP 502): HTTP 502" said it twice), and every message ends a sentence.
        detail = sentence(message) if message else ""
        if status in (401, 403):
            raise UpstreamAuthError(
                text(
                    gettext_noop("%(upstream)s refused our credentials: %(detail)s")
                    if detail
                    else gettext_noop("%(upstream)s refused our credentials (HTTP %(status)s)."),
                    upstream=label,
                    detail=detail,
                    status=status,
                ),
                exchange=exchange,
            )
        if status == 429:
            raise UpstreamResponseError(
                text(gettext_noop("%(upstream)s asks us to slow down (HTTP 429)."), upstream=label),
                exchange=exchange,
                retry_after=exchange_retry_after(exchange),
            )
        if status >= 500:
            raise UpstreamResponseError(
                text(
                    gettext_noop("%(upstream)s had a server error (HTTP %(status)s): %(detail)s")
                    if detail
                    else gettext_noop("%(upstream)s had a server error (HTTP %(status)s)."),
                    upstream=label,
                    status=status,
                    detail=detail,
                ),
                exchange=exchange,
            )
        if status >= 400:
            raise UpstreamRejectedError(
                text(
                    gettext_noop("%(upstream)s rejected the request: %(detail)s")
                    if detail
                    else gettext_noop("%(upstream)s rejected the request (HTTP %(status)s)."),
                    upstream=label,
                    detail=detail,
                    status=status,
                ),
                exchange=exchange,
            )

    def request(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: dict[str, Any] | None = None,
        idempotent: bool,
        mutating: bool,
    ) -> Exchange:
        """Send one operation (with retries); return the ok exchange or raise a typed error."""
        url = self.url_for(path)
        headers = {"Accept": "application/json", **self.auth_headers()}
        if json_body is not None:
            headers["Content-Type"] = "application/json; charset=UTF-8"
        attempt = 0
        # Once an attempt may have reached the upstream, the write stays in doubt whatever later
        # attempts say (a 502, then a refused connection): only a read-back settles it.
        doubt = False
        while True:
            attempt += 1
            exchange = Exchange(
                service=self.service,
                operation=operation,
                method=method,
                # Secrets and personal data in the query string are masked like the body's.
                url=url
                if not params
                else requests.Request(method, url, params=redact(params)).prepare().url,
                request_headers=redact_headers(headers),
                request_body=redact_body(json_body),
                attempt=attempt,
                mutating=mutating,
            )
            try:
                self._send(exchange, method, url, headers, json_body, params)
            except UpstreamError as error:
                delay = retry_delay(
                    error,
                    attempt=attempt,
                    max_attempts=self.max_attempts,
                    idempotent=idempotent,
                    mutating=mutating,
                    base=self.backoff_base,
                    cap=self.backoff_cap,
                )
                exchange.may_have_applied = mutating and _may_have_applied(error)
                doubt = doubt or exchange.may_have_applied
                error.in_doubt = doubt
                exchange.outcome = "in_doubt" if error.in_doubt and delay is None else error.outcome
                exchange.error = str(error)
                self.recorder.finished(exchange)
                if delay is None:
                    raise
                self.sleep(delay)
                continue
            exchange.outcome = "ok"
            self.recorder.finished(exchange)
            return exchange

    def _send(
        self,
        exchange: Exchange,
        method: str,
        url: str,
        headers: dict[str, str],
        json_body: Any,
        params: dict[str, Any] | None,
    ) -> None:
        label = self.service_label or self.service
        if self.rate_limit is not None:
            self.rate_limit.acquire()
        self.recorder.started(exchange)
        started = time.monotonic()
        try:
            data = None if json_body is None else json.dumps(json_body, ensure_ascii=False)
            response = self.session.request(
                method,
                url,
                data=data.encode("utf-8") if data is not None else None,
                params=params,
                headers=headers,
                timeout=self.timeout,
                allow_redirects=False,
            )
        except requests.exceptions.RequestException as exc:
            exchange.duration_ms = int((time.monotonic() - started) * 1000)
            raise _transport_error(label, exc, exchange) from None
        exchange.duration_ms = int((time.monotonic() - started) * 1000)
        exchange.status_code = response.status_code
        exchange.response_headers = dict(response.headers)
        text = response.text
        try:
            body = response.json() if text.strip() else None
        except ValueError:
            exchange.response_body = redact_body(text)
            if response.status_code >= 400:
                self.raise_for_status(exchange, response.status_code, "")
            raise UpstreamResponseError(
                _("%(upstream)s answered with a body that is not JSON (HTTP %(status)s).")
                % {"upstream": label, "status": response.status_code},
                exchange=exchange,
            ) from None
        # Masked whatever its length: a long body is masked, then cut (upstream/calls/redaction.py).
        exchange.response_body = redact_body(body)
        exchange.data = body
        self.interpret(exchange, response.status_code, body)


def exchange_retry_after(exchange: Exchange) -> float | None:
    # Header names are case-insensitive; the recorded copy is a plain dict.
    headers = {k.lower(): v for k, v in exchange.response_headers.items()}
    value = headers.get("retry-after")
    try:
        return max(float(value), 0.0) if value is not None else None
    except ValueError:
        return None


def _transport_error(label: str, exc: Exception, exchange: Exchange) -> UpstreamTransportError:
    # A refused or timed-out connect never sent the request; anything later may have.
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return UpstreamTransportError(
            _("%(upstream)s did not accept the connection in time.") % {"upstream": label},
            exchange=exchange,
            sent=False,
        )
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return UpstreamTransportError(
            _("%(upstream)s did not answer in time; the change may or may not have been applied.")
            % {"upstream": label},
            exchange=exchange,
            sent=True,
        )
    if isinstance(exc, requests.exceptions.ConnectionError):
        sent = not _is_connect_failure(exc)
        message = (
            _("%(upstream)s closed the connection without an answer.")
            if sent
            else _("%(upstream)s could not be reached (connection refused or DNS failure).")
        )
        return UpstreamTransportError(message % {"upstream": label}, exchange=exchange, sent=sent)
    return UpstreamTransportError(
        _("%(upstream)s request failed: %(error)s")
        % {"upstream": label, "error": type(exc).__name__},
        exchange=exchange,
        sent=True,
    )


def _is_connect_failure(exc: BaseException) -> bool:
    from urllib3.exceptions import NameResolutionError, NewConnectionError

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, NewConnectionError | NameResolutionError | ConnectionRefusedError):
            return True
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException) and id(reason) not in seen:
            current = reason
            continue
        nested = (
            current.args[0] if current.args and isinstance(current.args[0], BaseException) else None
        )
        current = nested or current.__cause__ or current.__context__
    return False


def _may_have_applied(error: UpstreamError) -> bool:
    if isinstance(error, UpstreamTransportError):
        return error.sent
    if isinstance(error, UpstreamResponseError):
        # 429 means "not processed"; a 5xx or an unreadable answer may follow an applied write.
        return error.retry_after is None and (error.status_code or 0) != 429
    return False


def operation_catalogue() -> list[tuple[str, str]]:
    """(service, operation) of every operation a client sends, by service, in declared order."""
    found: dict[tuple[str, str], None] = {}
    pending = list(UpstreamClient.__subclasses__())
    while pending:
        client = pending.pop(0)
        pending.extend(client.__subclasses__())
        for operation in client.operations:
            found[(client.service, operation)] = None
    return sorted(found, key=lambda pair: pair[0])
