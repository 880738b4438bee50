"""`Idempotency-Key` for every API write: the same key and body answer as the first time.

No upstream offers idempotency, so a client that retries after a lost answer must not push twice.
The first request with a key records it (upstream/pushes/once.py) and stores its answer; a repeat
within 24 h with the same body gets that answer again (`Idempotent-Replayed: true`) and sends
nothing; another body with the key is a 409. A repeat that arrives while the first is still
running waits briefly, then answers with the job the first started, or 409 when it has none yet.

Bulk writes too: the jobs a request starts are linked to its key in their own transaction, so a
repeat is answered with the same job even when the first request died or failed in our code
after launching it. A request that failed in our code is never forgotten: its repeat answers
what was recorded (the job, or "not started, send again"), it does not run again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.utils.translation import gettext as _
from rest_framework import status
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from upstream.calls.errors import UpstreamError, UpstreamUnavailable
from upstream.models import IdempotencyRecord, Job
from upstream.pushes.once import (
    fingerprint,
    once_begin,
    once_forget,
    once_jobs,
    once_release_stale,
    once_scope,
    once_stale,
    once_store,
    once_wait,
)

logger = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
REPLAYED = {"Idempotent-Replayed": "true"}
# Answers a retry with the same key should not repeat: "busy, try again" and "too many".
NOT_KEPT = {status.HTTP_409_CONFLICT, status.HTTP_429_TOO_MANY_REQUESTS}


def body_hash(request: Request) -> str:
    return fingerprint(request.method or "", request.path, request.data)


def idempotent(view: Callable[..., Response]) -> Callable[..., Response]:
    """Wrap a DRF write view method (self, request, ...) so it honours Idempotency-Key."""

    @wraps(view)
    def wrapper(self: Any, request: Request, *args: Any, **kwargs: Any) -> Response:
        key = request.headers.get(HEADER, "").strip()
        if not key or not request.user.is_authenticated:
            return view(self, request, *args, **kwargs)
        if len(key) > 100:
            return Response(
                {"detail": f"{HEADER} must be at most 100 characters."},
                status=status.HTTP_400_BAD_REQUEST,
            )
        digest = body_hash(request)
        once = once_begin(
            user=request.user,
            key=key,
            method=request.method or "",
            path=request.path,
            digest=digest,
        )
        if not once.ours:
            replayed = _replay(once.record, digest)
            if replayed is not None:
                return replayed
            # The first request died having started nothing (or only a single push, which
            # answers from its own operation): run again; nothing is sent twice.
            return wrapper(self, request, *args, **kwargs)
        record = once.record
        error: Exception | None = None
        with once_scope(record):
            try:
                response = view(self, request, *args, **kwargs)
            except Exception as exc:
                error = exc
                response = _answer_error(self, request, exc, record)
        if _forget(response, error):
            once_forget(record)
        else:
            once_store(record, response.status_code, _json(response))
        return response

    return wrapper


def _forget(response: Response, error: Exception | None) -> bool:
    """Answers that started nothing and that a retry should not get again: busy or conflicting
    (409), too many requests (429), the breaker open (503 with retry_after), and the upstream's
    refusal or failure before anything could be applied (502: the same key may try again)."""
    if response.status_code in NOT_KEPT:
        return True
    return isinstance(error, UpstreamUnavailable | UpstreamError) and response.status_code in (
        status.HTTP_502_BAD_GATEWAY,
        status.HTTP_503_SERVICE_UNAVAILABLE,
    )


def _json(response: Response) -> Any:
    return json.loads(JSONRenderer().render(response.data) or b"null")


def _answer_error(
    self: Any, request: Request, exc: Exception, record: IdempotencyRecord
) -> Response:
    """Our typed errors as usual; anything else (our own bug) answered from what was started."""
    try:
        return self.handle_exception(exc)
    except Exception:
        logger.exception(
            "API write %s %s failed in our code (%s %s kept)",
            request.method,
            request.path,
            HEADER,
            record.key,
        )
    jobs = once_jobs(record)
    if jobs:
        return _started(
            jobs,
            _(
                "Started as job #%(id)s, but answering failed in our own code. Follow the job; "
                "sending this request again answers with the same job."
            )
            % {"id": jobs[0].pk},
        )
    return Response(
        {
            "detail": _(
                "Not started: an internal error (%(error)s) stopped this request before it "
                "started anything, and nothing was sent. Send it again with a new %(header)s; "
                "if it happens again, tell the administrators."
            )
            % {"error": type(exc).__name__, "header": HEADER},
            "started": False,
            "sent": False,
        },
        status=status.HTTP_500_INTERNAL_SERVER_ERROR,
    )


def _started(jobs: list[Job], detail: str, headers: dict[str, str] | None = None) -> Response:
    refs = [{"id": job.pk, "state": job.state} for job in jobs]
    return Response(
        {"detail": detail, "job": refs[0], "jobs": refs},
        status=status.HTTP_202_ACCEPTED,
        headers=headers,
    )


def _replay(first: IdempotencyRecord, digest: str) -> Response | None:
    """The first request's answer, its job, a 409, or None when it died having started nothing
    of its own (then the repeat runs)."""
    if first.body_hash != digest:
        return Response(
            {"detail": f"This {HEADER} was already used with another request."},
            status=status.HTTP_409_CONFLICT,
        )
    record = once_wait(first)
    if record is None:
        return None  # forgotten meanwhile (it was busy or refused): this one runs
    if record.status_code is not None:
        return Response(record.response, status=record.status_code, headers=REPLAYED)
    jobs = once_jobs(record)
    if once_stale(record):
        if once_release_stale(record):
            return None
        # The first request died after launching: its job is the answer, from now on too.
        answer = _started(
            jobs,
            _("Already started as job #%(id)s; not started again.") % {"id": jobs[0].pk},
            REPLAYED,
        )
        once_store(record, answer.status_code, _json(answer))
        return answer
    if jobs and not jobs[0].inline:
        # Still answering, but its job is there: that is the answer, and nothing starts twice.
        return _started(
            jobs,
            _("Already started as job #%(id)s; not started again.") % {"id": jobs[0].pk},
            REPLAYED,
        )
    return Response(
        {"detail": f"A request with this {HEADER} is still being processed."},
        status=status.HTTP_409_CONFLICT,
    )
