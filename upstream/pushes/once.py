"""One request, one launch: the store behind `Idempotency-Key` and the admin's one-time tokens.

An API write with an `Idempotency-Key` and a confirmed admin form (its hidden one-time token)
both begin by inserting an `IdempotencyRecord`, unique per (user, key): the database decides
which of two copies of the same request runs, across processes and machines, on SQLite and
PostgreSQL alike. The copy that lost waits for the first one's answer and repeats it.

Every job created while a request runs under its record (`once_scope`) is linked to the record
in the job's own transaction (`once_link`, called by the job creators), so the link is there
exactly when the job is: a repeat whose first request died, or failed in our code after
launching, is answered with the job it started and never starts a second one.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from upstream.actors import User
from upstream.models import IdempotencyRecord, Job

# How long a key is remembered.
KEEP = timedelta(hours=24)
# How long a repeat waits for the first request to answer.
WAIT_SECONDS = 5.0

# The record the running request answers for: the jobs it creates are linked to it.
_current: ContextVar[int | None] = ContextVar("idempotency_record", default=None)


@dataclass(frozen=True)
class Once:
    record: IdempotencyRecord
    # True: this request inserted the row and runs; False: another copy did first.
    ours: bool


def fingerprint(method: str, path: str, body: Any) -> str:
    """What makes two requests "the same": method, path (with its query) and body."""
    text = json.dumps(body, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(f"{method} {path}\n{text}".encode()).hexdigest()


def forget_expired(*, batch: int = 5000) -> int:
    """Delete keys older than KEEP, a batch at a time (the sweep calls it); returns how many.

    A key is only read back by its own user's repeat within KEEP: older rows are dead weight,
    and without this every admin confirmation's one-time token stayed for good.
    """
    cutoff = timezone.now() - KEEP
    deleted = 0
    while True:
        pks = list(
            IdempotencyRecord.objects.filter(created_at__lt=cutoff).values_list("pk", flat=True)[
                :batch
            ]
        )
        if not pks:
            return deleted
        IdempotencyRecord.objects.filter(pk__in=pks).delete()
        deleted += len(pks)


def once_begin(*, user: User, key: str, method: str, path: str, digest: str) -> Once:
    """Insert the request's row, or find the row of the first request with this key."""
    now = timezone.now()
    IdempotencyRecord.objects.filter(user=user, key=key, created_at__lt=now - KEEP).delete()
    for _attempt in range(3):
        try:
            with transaction.atomic():
                record = IdempotencyRecord.objects.create(
                    user=user,
                    key=key,
                    method=method[:8],
                    path=path[:500],
                    body_hash=digest,
                    created_at=now,
                )
            return Once(record, ours=True)
        except IntegrityError:
            first = IdempotencyRecord.objects.filter(user=user, key=key).first()
            if first is not None:
                return Once(first, ours=False)
            # The first row went away between our insert and the read (forgotten): try again.
    raise RuntimeError(f"idempotency key {key!r} could not be recorded")


@contextmanager
def once_scope(record: IdempotencyRecord) -> Iterator[None]:
    """While the request runs: every job it creates is linked to its record."""
    token = _current.set(record.pk)
    try:
        yield
    finally:
        _current.reset(token)


def once_link(job: Job) -> None:
    """Link a new job to the record of the request creating it (inside the job's transaction,
    so the link commits or rolls back with the job). Nothing outside a scope."""
    record_id = _current.get()
    if record_id is not None:
        IdempotencyRecord.jobs.through.objects.create(idempotencyrecord_id=record_id, job=job)


def once_jobs(record: IdempotencyRecord) -> list[Job]:
    """The jobs the record's request started, oldest first."""
    return list(Job.objects.filter(idempotency_records=record).order_by("pk"))


def once_store(record: IdempotencyRecord, status_code: int, response: Any) -> None:
    IdempotencyRecord.objects.filter(pk=record.pk).update(
        status_code=status_code, response=response
    )
    record.status_code, record.response = status_code, response


def once_forget(record: IdempotencyRecord) -> None:
    """Nothing was started and nothing is worth repeating (busy, refused): the key may go again."""
    IdempotencyRecord.objects.filter(pk=record.pk).delete()


def once_stale(record: IdempotencyRecord) -> bool:
    """Unanswered for longer than any request can run: its process died."""
    from upstream.pushes.single import inline_lease

    return record.status_code is None and record.created_at < timezone.now() - inline_lease()


def once_wait(record: IdempotencyRecord, seconds: float | None = None) -> IdempotencyRecord | None:
    """The first request's record once it has an answer, or as it is when the wait ends (or the
    first died); None when it was forgotten meanwhile (the repeat may run itself)."""
    deadline = time.monotonic() + (WAIT_SECONDS if seconds is None else seconds)
    while True:
        current = IdempotencyRecord.objects.filter(pk=record.pk).first()
        if current is None or current.status_code is not None or once_stale(current):
            return current
        if time.monotonic() >= deadline:
            return current
        time.sleep(0.1)


def once_release_stale(record: IdempotencyRecord) -> bool:
    """Drop a dead first request's row when it started nothing, so the repeat runs itself.

    A single push carries the key in its own job (`Job.idempotency_key`): run again, it is
    answered from that operation (done, refused or in doubt), never sent twice.
    """
    if any(job.idempotency_key != record.key for job in once_jobs(record)):
        return False
    return bool(
        IdempotencyRecord.objects.filter(pk=record.pk, status_code__isnull=True).delete()[0]
    )
