"""A single push (an admin form, one API call) as a job of one item, run in the request.

It goes through what a job's item goes through: the operation is committed before anything
leaves (who, why, what, the idempotency key), the record is claimed, the item is re-checked,
the write's call row is committed pending, and the answer is applied with the same handler.
An answer that never came leaves the job to the worker, which settles it by reading back.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass, replace
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, connection, transaction
from django.db.models import Model
from django.utils import timezone
from django.utils.translation import gettext as _

from upstream.actors import User
from upstream.calls.breaker import (
    PROBE,
    WAIT,
    BreakerGate,
    BreakerOpen,
    breaker_admit,
    breaker_get,
    breaker_release_probe,
    breaker_trip,
    unavailable,
)
from upstream.calls.errors import (
    AwaitingApproval,
    PushConflict,
    PushFailed,
    PushInDoubt,
    UpstreamError,
    UpstreamRejectedError,
    UpstreamUnavailable,
)
from upstream.calls.slots import single_slot
from upstream.l10n.stored import to_json
from upstream.models import Job, JobItem
from upstream.pushes.approvals import approval_fields, approval_needed, awaiting_message
from upstream.pushes.claims import claim_holder, claim_records, release_records
from upstream.pushes.jobs import job_enqueue
from upstream.pushes.kinds import JobKind, WorkItem, WorkResult, kind_for
from upstream.pushes.once import once_link
from upstream.pushes.runner import (
    JobRecorder,
    flush_results,
    hand_over,
    job_finalize,
    reserve_calls,
    work_item,
)
from upstream.pushes.runner.leases import WEB_LEASE, renew_leases

logger = logging.getLogger(__name__)

# How long a second push of the same record waits for the first before it is refused.
CLAIM_WAIT_SECONDS = 2.0
# How long a repeated form or Idempotency-Key waits for the first request to finish.
DUPLICATE_WAIT_SECONDS = 5.0


@dataclass(frozen=True)
class SingleResult:
    job: Job
    data: Any
    message: str


# A single push's item and claim are leased for WEB_LEASE (runner.leases) and renewed every
# WEB_RENEW_EVERY while its request runs (`_LeaseKeeper`): a killed web process stops renewing,
# and the sweep puts its push in doubt and has it read back within WEB_LEASE plus one interval.
WEB_RENEW_EVERY = 5.0


def inline_lease() -> timedelta:
    """The longest a single push's request can run, with its retries and read-back: anything a
    request left unfinished for longer belongs to a process that has died."""
    per_attempt = (
        settings.UPSTREAM_CONNECT_TIMEOUT
        + settings.UPSTREAM_READ_TIMEOUT
        + settings.UPSTREAM_BACKOFF_CAP
    )
    return timedelta(
        seconds=max(settings.JOBS_LEASE_SECONDS, settings.UPSTREAM_MAX_ATTEMPTS * per_attempt + 5)
    )


def push_single(
    *,
    kind: str,
    target: Model,
    payload: dict[str, Any],
    actor: User | None,
    title: str,
    reason: str = "",
    idempotency_key: str = "",
    target_repr: str = "",
    amount: Decimal | None = None,
) -> SingleResult:
    """Run one push now. Returns when the upstream confirmed it (or a read-back did).

    Raises PushConflict when another push holds the record or the record changed, the typed
    UpstreamError when the upstream refused or failed (nothing changed locally), PushInDoubt
    when no trustworthy answer came (the worker settles it by reading back), and
    UpstreamUnavailable, before anything is recorded or sent, while the upstream's circuit
    breaker is open. After the breaker's cooldown this push is the probe. A push of `amount` ₺
    over the approval threshold is not sent: it raises AwaitingApproval with its job.
    """
    handler = kind_for(kind)
    if actor is None or not actor.has_perm(handler.permission):
        raise PermissionDenied(_("You do not have permission to make this change."))
    key = (idempotency_key or "").strip()[:100]
    if handler.operation and approval_needed(1, amount, actor):
        return _await_approval(
            handler,
            kind=kind,
            target=target,
            payload=payload,
            actor=actor,
            title=title,
            reason=reason,
            key=key,
            target_repr=target_repr or str(target),
            amount=amount,
        )
    holder = f"web:{uuid.uuid4().hex}"
    gate = None
    probing = False
    if handler.service:
        admission = breaker_admit(handler.service, holder)
        if admission.kind == WAIT:
            raise unavailable(admission.breaker)
        gate = BreakerGate(handler.service)
        gate.follow(admission)
        probing = admission.kind == PROBE
    try:
        return _push_single(
            handler,
            kind=kind,
            target=target,
            payload=payload,
            actor=actor,
            title=title,
            reason=reason,
            key=key,
            holder=holder,
            target_repr=target_repr,
            gate=gate,
            amount=amount,
        )
    finally:
        if gate is not None and gate.take_trip():
            breaker_trip(handler.service)
        if probing:
            # Still holding the probe means no call gave a verdict: the next sender may take it.
            breaker_release_probe(handler.service, holder)


def _push_single(
    handler: JobKind,
    *,
    kind: str,
    target: Model,
    payload: dict[str, Any],
    actor: User,
    title: str,
    reason: str,
    key: str,
    holder: str,
    target_repr: str,
    gate: BreakerGate | None,
    amount: Decimal | None = None,
) -> SingleResult:
    deadline = time.monotonic() + CLAIM_WAIT_SECONDS
    while True:
        try:
            job, item = _start(
                handler,
                kind=kind,
                target=target,
                payload=payload,
                actor=actor,
                title=title,
                reason=reason,
                key=key,
                holder=holder,
                target_repr=target_repr or str(target),
                amount=amount,
            )
            break
        except _Busy as busy:
            if time.monotonic() >= deadline:
                raise PushConflict(busy.message) from None
            time.sleep(0.2)
        except IntegrityError:
            if not key:
                raise
            if _release_failed_key(actor, key):
                continue  # the first try was refused and changed nothing: this is a new try
            return _repeat(actor, key, kind, target, payload)

    result: WorkResult | None = None
    try:
        with (
            _LeaseKeeper(job.pk, holder),
            # Its request counts toward the upstream's cap, and goes before any job's.
            single_slot(handler.service, holder=holder, job_id=job.pk, lease=WEB_LEASE),
        ):
            result = work_item(job, handler, item, gate=gate)
            if result.paused:
                result = _paused(handler, result)
            if result.outcome == JobItem.Outcome.IN_DOUBT:
                result = _read_back_now(job, handler, item, result, gate)
            if result.retry_after is not None:
                # One change asked for now: a long "come back later" fails it rather than
                # queueing it.
                result.retry_after = None
                result.outcome = JobItem.Outcome.FAILED
            flush_results(job, handler, holder, [result])
        release_records(holder=holder)
        finished = job_finalize(job.pk, announce=False)
    except Exception as error:
        # Our own bug or the database, after the claim: the web holder stops here, so nothing
        # may stay held by it. The traceback goes to the log, the user gets a typed answer.
        logger.exception("single push %s of %s failed in our code (job %s)", kind, target, job.pk)
        return _crashed(job, handler, holder, result, error)
    if finished:
        job.refresh_from_db()
        return _finished(job, result)
    # In doubt: the worker reads the record back (after a short pause) and settles the job.
    job_enqueue(job)
    job.refresh_from_db()
    if job.is_finished:  # an immediate task backend settled it already
        return _finished(job, result)
    raise PushInDoubt(
        _("Sent, but no trustworthy answer came (%(error)s). It is being checked by reading back.")
        % {"error": result.message},
        job=job,
    )


class _LeaseKeeper:
    """Renews a single push's lease from a thread of its own while the request waits on the
    upstream (the request's thread is blocked in the HTTP call and cannot).

    Best effort: a renewal that fails is logged, and the lease then runs out as if the process
    had died, which the protocol settles by reading back. The thread uses its own database
    connection and closes it when it stops.
    """

    def __init__(self, job_id: int, holder: str) -> None:
        self._job_id = job_id
        self._holder = holder
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{holder}", daemon=True)

    def __enter__(self) -> _LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        # Not joined: a renewal waiting on a database lock must not hold the answer back; what
        # it renews afterwards is already released or finished, so it changes nothing.
        self._stop.set()

    def _run(self) -> None:
        try:
            while not self._stop.wait(WEB_RENEW_EVERY):
                try:
                    renew_leases(self._job_id, self._holder, length=WEB_LEASE)
                except Exception:
                    logger.warning(
                        "renewing the lease of job %s failed", self._job_id, exc_info=True
                    )
        finally:
            connection.close()


def _crashed(
    job: Job, handler: JobKind, holder: str, result: WorkResult | None, error: Exception
) -> SingleResult:
    """Hand a single push over after our own code failed, and answer with a typed error.

    Once its write may have gone out (no result yet counts as that: reading back is harmless,
    racing an applied write is not), the item is in doubt, keeps its record under its own
    holder and is queued for the worker to read back: PushInDoubt. With nothing sent, the
    record is released and the job closed as failed: PushFailed. A result the flush already
    wrote stands as written (the failure came after its commit).
    """
    sent = result is None or (
        result.outcome in (JobItem.Outcome.OK, JobItem.Outcome.IN_DOUBT) or result.item.in_doubt
    )
    try:
        handed = hand_over(job, handler.target_type, holder, error, sent=sent)
        if not job_finalize(job.pk, announce=False):
            job_enqueue(job)  # the worker reads it back (an immediate backend does so now)
    except Exception:
        # The hand-over failed too (the database is gone): the sweep settles it from the
        # pending call and the leases, as after a killed process.
        logger.exception("handing over the failed single push of job %s failed", job.pk)
        raise error from None
    job.refresh_from_db()
    if not job.is_finished:
        raise PushInDoubt(job.items.get().display_message, job=job)
    if handed and not sent:
        raise _failed_here(job, error)
    # The flush wrote the answer before the failure, or the worker settled it by reading back.
    return _finished(job, result if not handed else None)


def _failed_here(job: Job, error: BaseException) -> PushFailed:
    return PushFailed(
        _(
            "Not done: an internal error (%(error)s) stopped this change and the upstream did "
            "not apply it, so nothing changed. Try again; if it happens again, tell the "
            "administrators (the details are in the server log)."
        )
        % {"error": type(error).__name__},
        job=job,
    )


def _await_approval(
    handler: JobKind,
    *,
    kind: str,
    target: Model,
    payload: dict[str, Any],
    actor: User,
    title: str,
    reason: str,
    key: str,
    target_repr: str,
    amount: Decimal | None,
) -> SingleResult:
    """Record the push as a job of one item that waits for a second person; send nothing."""
    try:
        with transaction.atomic():
            job = Job.objects.create(
                kind=kind,
                title=title[:200],
                title_text=to_json(title),
                inline=True,
                reason=reason.strip(),
                created_by=actor if actor.is_authenticated else None,
                idempotency_key=key,
                total=1,
                amount=amount,
                **approval_fields(1, amount, actor),
            )
            JobItem.objects.create(
                job=job,
                position=1,
                target_type=handler.target_type,
                target_id=str(target.pk),
                target_repr=target_repr[:200],
                payload=payload,
            )
            once_link(job)
    except IntegrityError:
        if not key:
            raise
        return _repeat(actor, key, kind, target, payload)
    raise AwaitingApproval(awaiting_message(job), job=job)


def _paused(handler: JobKind, result: WorkResult) -> WorkResult:
    """The breaker opened while this push was on its way and kept its next call back.

    If its write may have been applied: in doubt, settled by reading back (by the worker, once the
    breaker lets calls through). Otherwise nothing was applied: it failed cleanly, with the
    breaker's refusal (UpstreamUnavailable).
    """
    result.paused = False
    if result.item.in_doubt:
        last = next((e.error for e in reversed(result.exchanges) if e.error), "")
        result.outcome = JobItem.Outcome.IN_DOUBT
        result.message = _(
            "%(error)s The upstream's circuit breaker then opened, so it was not sent again; it "
            "will be read back once the upstream answers again."
        ) % {"error": last}
        return result
    error = unavailable(breaker_get(handler.service))
    result.outcome = JobItem.Outcome.FAILED
    result.message = error.message
    result.error = error
    return result


def _read_back_now(
    job: Job,
    handler: JobKind,
    item: WorkItem,
    result: WorkResult,
    gate: BreakerGate | None = None,
) -> WorkResult:
    """One read-back in the request: most unanswered writes did land, and staff should see so.

    Only "it is there" settles it here; anything else is left to the worker, which reads back
    again after a pause before it would send anything a second time.
    """
    recorder = JobRecorder(job, handler, replace(item, call_id=None), gate=gate)
    try:
        data = handler.settle(handler.make_client(recorder), item)
    except (UpstreamError, BreakerOpen):
        data = None
    result.exchanges = [*result.exchanges, *recorder.exchanges]
    if data is None:
        return result
    return WorkResult(
        item,
        JobItem.Outcome.OK,
        message=_("Confirmed by reading back from the upstream; not sent again."),
        data=data,
        exchanges=result.exchanges,
    )


def operation_seen(actor: User | None, idempotency_key: str) -> bool:
    """Was an operation already started with this key (a double submit, a client retry)?

    Services skip their "would this duplicate something?" checks then: the repeat is answered
    from the first operation, never sent again.
    """
    key = (idempotency_key or "").strip()[:100]
    if not key or actor is None or not actor.is_authenticated:
        return False
    job = Job.objects.filter(created_by=actor, idempotency_key=key).first()
    return job is not None and not _failed_cleanly(job)


class _Busy(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _busy_message(target_type: str, target_id: str, target_repr: str) -> str:
    """Who holds the record: a push in flight, or one in doubt that holds it until it is read
    back (named, so staff can find it; "try again in a moment" would not be true then)."""
    claim = claim_holder(target_type, target_id)
    item = claim.job_item if claim is not None else None
    if item is not None and item.in_doubt:
        return _(
            "A change of %(record)s sent by job #%(job)s may have reached the upstream without "
            "an answer; no other change of it is sent until reading back settles that (the "
            "job's page says how it stands)."
        ) % {"record": target_repr, "job": item.job_id}
    return _("Another change of %(record)s is being sent right now. Try again in a moment.") % {
        "record": target_repr
    }


def _start(
    handler: JobKind,
    *,
    kind: str,
    target: Model,
    payload: dict[str, Any],
    actor: User,
    title: str,
    reason: str,
    key: str,
    holder: str,
    target_repr: str,
    amount: Decimal | None = None,
) -> tuple[Job, WorkItem]:
    """Commit the operation, its item, the record's claim and the pending call, or nothing.
    Its ₺ `amount` is kept: the approval window adds up what a person sent (approvals.py)."""
    now = timezone.now()
    lease_until = now + WEB_LEASE
    target_id = str(target.pk)
    with transaction.atomic():
        job = Job.objects.create(
            kind=kind,
            title=title[:200],
            title_text=to_json(title),
            state=Job.State.RUNNING,
            inline=True,
            reason=reason.strip(),
            created_by=actor if actor.is_authenticated else None,
            idempotency_key=key,
            total=1,
            amount=amount,
            started_at=now,
            heartbeat_at=now,
        )
        row = JobItem.objects.create(
            job=job,
            position=1,
            target_type=handler.target_type,
            target_id=target_id,
            target_repr=target_repr[:200],
            payload=payload,
            state=JobItem.State.SENDING,
            claimed_by=holder,
            lease_until=lease_until,
        )
        once_link(job)  # an API request that fails after this answers with the job
        ours = claim_records(
            handler.target_type,
            [target_id],
            holder=holder,
            until=lease_until,
            job_items={target_id: row.pk},
        )
        if not ours:
            busy = _Busy(_busy_message(handler.target_type, target_id, target_repr))
            transaction.set_rollback(True)
            raise busy
        item = WorkItem(
            id=row.pk,
            target_id=target_id,
            target_repr=row.target_repr,
            payload=payload,
            in_doubt=False,
        )
        if handler.busy([item]):
            transaction.set_rollback(True)
            raise _Busy(
                _("Another change of %(record)s is being sent right now. Try again in a moment.")
                % {"record": target_repr}
            )
        stale = handler.recheck([item]).get(item.id)
        if stale:
            transaction.set_rollback(True)
            raise PushConflict(stale)
        call_ids = reserve_calls(job, handler, [item], now)
    return job, replace(item, call_id=call_ids.get(item.id))


def _finished(job: Job, result: WorkResult | None) -> SingleResult:
    item = job.items.get()
    if item.outcome == JobItem.Outcome.OK:
        # What apply() recorded for the item (e.g. the new record's id).
        return SingleResult(job=job, data=item.result, message=item.display_message)
    error = result.error if result is not None else None
    if isinstance(error, UpstreamError) and item.outcome == result.outcome:
        raise error
    if item.outcome == JobItem.Outcome.IN_DOUBT:
        raise PushInDoubt(item.display_message, job=job)
    if item.outcome == JobItem.Outcome.SKIPPED:
        raise PushConflict(item.display_message)
    if isinstance(error, UpstreamUnavailable):
        raise error  # the breaker opened on the way: refused like any push it refuses
    if error is not None and not isinstance(error, UpstreamError):
        # Our own code failed before the write left (upstream.pushes.runner.send logged it).
        raise _failed_here(job, error) from error
    raise UpstreamRejectedError(item.display_message)


def _failed_cleanly(job: Job) -> bool:
    """Finished, and every item refused or failed before anything could have been applied."""
    return (
        job.is_finished
        and not job.items.exclude(
            outcome__in=[JobItem.Outcome.REJECTED, JobItem.Outcome.FAILED]
        ).exists()
    )


def _release_failed_key(actor: User, key: str) -> bool:
    """Free a key whose operation was refused or failed before anything could have applied.

    A form that Paynet refused is corrected and sent again with the same one-time token; only an
    operation that succeeded, is still running or is in doubt answers a repeat of its key.
    """
    job = Job.objects.filter(created_by=actor, idempotency_key=key).first()
    if job is None or not _failed_cleanly(job):
        return False
    return bool(
        Job.objects.filter(pk=job.pk, idempotency_key=key).update(
            idempotency_key=f"{key[:80]}#retried-{job.pk}"
        )
    )


def repeat_single(*, actor: User, idempotency_key: str, kind: str, target: Model) -> SingleResult:
    """Answer a repeated form submit from its first operation (the caller knows it is one)."""
    return _repeat(actor, idempotency_key.strip()[:100], kind, target, None)


def _fingerprint(payload: dict[str, Any]) -> dict[str, Any]:
    # A number we generated differs on every submit of the same form: it is not what was asked.
    if payload.get("generated"):
        return {k: v for k, v in payload.items() if k != "invoice_no"}
    return payload


def _repeat(
    actor: User, key: str, kind: str, target: Model, payload: dict[str, Any] | None
) -> SingleResult:
    """The same form or Idempotency-Key again: answer as the first did, send nothing."""
    job = Job.objects.get(created_by=actor, idempotency_key=key)
    item = job.items.first()
    if (
        job.kind != kind
        or item is None
        or item.target_id != str(target.pk)
        or (payload is not None and _fingerprint(item.payload) != _fingerprint(payload))
    ):
        raise PushConflict(_("This key was already used for another change."))
    if job.is_awaiting_approval:
        raise AwaitingApproval(awaiting_message(job), job=job)
    deadline = time.monotonic() + DUPLICATE_WAIT_SECONDS
    while not job.is_finished and time.monotonic() < deadline:
        time.sleep(0.2)
        job.refresh_from_db()
    item.refresh_from_db()
    if item.outcome == JobItem.Outcome.OK:
        return SingleResult(job=job, data=item.result, message=item.display_message)
    if not job.is_finished or item.outcome == JobItem.Outcome.IN_DOUBT:
        raise PushInDoubt(
            _("This change was already sent (job #%(id)s) and is still being settled.")
            % {"id": job.pk},
            job=job,
        )
    raise PushConflict(
        _("This change was already sent once (job #%(id)s) and did not go through: %(message)s")
        % {"id": job.pk, "message": item.display_message}
    )
