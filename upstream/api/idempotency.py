"""`Idempotency-Key` for every API write: the same key and body answer as the first time.

No upstream offers idempotency, so a client that retries after a lost answer must not push twice.
The first request with a key stores its answer; a repeat within 24 h with the same body gets that
answer again (`Idempotent-Replayed: true`) and sends nothing; another body with the key is a 409.
A repeat that arrives while the first is still running waits briefly, then answers 409.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from datetime import timedelta
from functools import wraps
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework import status
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from upstream.models import IdempotencyRecord

HEADER = "Idempotency-Key"
KEEP = timedelta(hours=24)
WAIT_SECONDS = 5.0
# Answers a retry with the same key should not repeat: "busy, try again" and "unavailable".
NOT_KEPT = {status.HTTP_409_CONFLICT, status.HTTP_429_TOO_MANY_REQUESTS, 503}


def body_hash(request: Request) -> str:
    body = json.dumps(request.data, sort_keys=True, default=str, ensure_ascii=False)
    text = f"{request.method} {request.path}\n{body}"
    return hashlib.sha256(text.encode()).hexdigest()


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
        now = timezone.now()
        IdempotencyRecord.objects.filter(
            user=request.user, key=key, created_at__lt=now - KEEP
        ).delete()
        try:
            with transaction.atomic():
                record = IdempotencyRecord.objects.create(
                    user=request.user,
                    key=key,
                    method=request.method,
                    path=request.path[:500],
                    body_hash=digest,
                    created_at=now,
                )
        except IntegrityError:
            replayed = _replay(request, key, digest)
            if replayed is not None:
                return replayed
            # The first request died without an answer: run again. The operation it recorded
            # under the same key answers for it (done, or in doubt), so nothing is sent twice.
            return wrapper(self, request, *args, **kwargs)
        try:
            response = view(self, request, *args, **kwargs)
        except Exception as exc:
            response = self.handle_exception(exc)
        if response.status_code in NOT_KEPT or response.status_code >= 500:
            record.delete()
        else:
            data = json.loads(JSONRenderer().render(response.data) or b"null")
            IdempotencyRecord.objects.filter(pk=record.pk).update(
                status_code=response.status_code, response=data
            )
        return response

    return wrapper


def _replay(request: Request, key: str, digest: str) -> Response | None:
    """The stored answer, a 409, or None when the first request is gone (run it again)."""
    from upstream.pushes.single import inline_lease

    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        record = IdempotencyRecord.objects.filter(user=request.user, key=key).first()
        if record is None:
            return None
        if record.body_hash != digest:
            return Response(
                {"detail": f"This {HEADER} was already used with another request."},
                status=status.HTTP_409_CONFLICT,
            )
        if record.status_code is not None:
            return Response(
                record.response,
                status=record.status_code,
                headers={"Idempotent-Replayed": "true"},
            )
        if record.created_at < timezone.now() - inline_lease():
            # Older than any request could run: its process died before it stored an answer.
            IdempotencyRecord.objects.filter(pk=record.pk, status_code__isnull=True).delete()
            return None
        if time.monotonic() >= deadline:
            return Response(
                {"detail": f"A request with this {HEADER} is still being processed."},
                status=status.HTTP_409_CONFLICT,
            )
        time.sleep(0.1)
