"""Typed errors of every upstream client (shared/STYLE.md, "Errors from an upstream client")."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.core.exceptions import ValidationError

if TYPE_CHECKING:
    from upstream.calls.client import Exchange


class UpstreamError(Exception):
    """Base of every upstream fault. str() is the message staff see; it never holds a secret."""

    outcome = "failed"

    def __init__(self, message: str, *, exchange: Exchange | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.exchange = exchange
        # Set by the client: the request changes upstream state and may have been applied
        # although no trustworthy answer came. Settle by reading back, never resend blindly.
        self.in_doubt = False

    @property
    def upstream(self) -> str:
        return self.exchange.service if self.exchange else ""

    @property
    def operation(self) -> str:
        return self.exchange.operation if self.exchange else ""

    @property
    def call_id(self) -> int | None:
        return self.exchange.call_id if self.exchange else None

    @property
    def status_code(self) -> int | None:
        return self.exchange.status_code if self.exchange else None

    @property
    def upstream_code(self) -> str:
        return self.exchange.upstream_code if self.exchange else ""

    def __str__(self) -> str:
        return self.message


class UpstreamTransportError(UpstreamError):
    """No answer: connect/DNS/TLS failure, timeout, connection reset."""

    def __init__(self, message: str, *, exchange: Exchange | None = None, sent: bool) -> None:
        super().__init__(message, exchange=exchange)
        # A connect failure means nothing reached the upstream; a read timeout or a reset after
        # the request went out may have been applied there.
        self.sent = sent


class UpstreamResponseError(UpstreamError):
    """An answer we cannot trust: HTTP 5xx or 429, a body that is not JSON or of the wrong shape."""

    def __init__(
        self, message: str, *, exchange: Exchange | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, exchange=exchange)
        self.retry_after = retry_after


class UpstreamRejectedError(UpstreamError):
    """A clear no: HTTP 4xx, or a failure code in a 200 body. Never retried."""

    outcome = "rejected"


class UpstreamAuthError(UpstreamRejectedError):
    """401/403 or an auth code: the configuration needs fixing."""


class PushConflict(Exception):
    """The record is not ours to push now: another push of it is in flight, or it changed since
    the caller read it. Nothing was sent. The API answers 409, with the job in the way when it
    is known (`job`)."""

    def __init__(
        self, message: str, *, current_version: int | None = None, job: object | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.current_version = current_version
        self.job = job

    def __str__(self) -> str:
        return self.message


class PushAccepted(Exception):
    """Not done, not failed: the push is recorded as a job still to be settled; the API answers
    202 with the job."""

    def __init__(self, message: str, *, job: object) -> None:
        super().__init__(message)
        self.message = message
        self.job = job

    def __str__(self) -> str:
        return self.message


class PushInDoubt(PushAccepted):
    """The push went out and no trustworthy answer came: the operation (a job of one item) is
    being settled by reading the record back."""


class PushFailed(Exception):
    """Our own code failed before anything was sent: nothing changed here or at the upstream,
    the record is free again and the operation (a job of one item) is closed as failed. The
    traceback is in the server log. The API answers 500 with the job."""

    def __init__(self, message: str, *, job: object) -> None:
        super().__init__(message)
        self.message = message
        self.job = job

    def __str__(self) -> str:
        return self.message


class AwaitingApproval(PushAccepted):
    """The push is over an approval threshold: it waits, unsent, for a second person."""


class UpstreamUnavailable(ValidationError):
    """The upstream's circuit breaker is open (upstream/calls/breaker.py): the push is refused
    before anything is recorded or sent. A ValidationError, so every admin page shows it as the
    refusal it is; the API answers 503 with `retry_after` (seconds until a probe may go)."""

    def __init__(self, message: str, *, service: str, retry_after: int) -> None:
        super().__init__(message, code="upstream_unavailable")
        self.service = service
        self.retry_after = retry_after

    def __str__(self) -> str:
        return str(self.message)
