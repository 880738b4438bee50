"""Every Paynet write: permission, then push this one or push this selection (shared/STYLE.md,
"One push"). What is sent, what the rules say and what a push weighs come from the push kinds
(subscriptions/pushes.py); nothing here judges a record on its own."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db.models import Count, Max, QuerySet, Sum
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from security.personal import masked_str
from upstream.actors import User, actor_require
from upstream.calls.errors import PushConflict, UpstreamRejectedError
from upstream.history.drift import open_drift_count, open_drift_ids
from upstream.l10n.stored import record_param, text
from upstream.models import Job
from upstream.pushes.bulk import job_create_frozen
from upstream.pushes.single import operation_seen, push_single
from upstream.pushes.verdicts import Preview, Verdict, VerdictKind

from .models import InvoiceStatus, Subscription, SubscriptionInvoice
from .pushes import (
    CODE_DUPLICATE,
    CREATE_INVOICE,
    INVOICE_STATUS,
    STATUS_ALL,
    SUBSCRIPTION_REFRESH_KIND,
    CreateRequest,
    CreateVerdict,
    StatusRequest,
    invoice_split,
    statuses_fingerprint_sql,
)

# Who may push what is the kind's: the admin asks these to show an action or a button.
PERM_INVOICE_STATUS = INVOICE_STATUS.permission
PERM_STATUS_ALL = STATUS_ALL.permission
PERM_CREATE_INVOICE = CREATE_INVOICE.permission
PREVIEW_SAMPLE = 200


def _require(actor: User, perm: str) -> None:
    actor_require(actor, perm, _("You do not have permission to make this change at Paynet."))


def _status_request(status: int) -> StatusRequest:
    """The request, refused at once when no record could take its target."""
    if error := INVOICE_STATUS.target_error(status):
        raise ValidationError(error)
    return StatusRequest(status=int(status))


def _require_reason(reason: str) -> None:
    if not (reason or "").strip():
        raise ValidationError({"reason": _("Give a reason for the change.")})


@dataclass
class StatusPreview(Preview):
    """What a status change would do to each selected record, before anything is sent."""

    status: InvoiceStatus | None = None
    change_total: Decimal = Decimal("0")
    # The highest id the preview saw: the confirm sends it back so that records created after
    # the preview are not in the job.
    upto: int | None = None
    sample: list[tuple[SubscriptionInvoice, Verdict]] = field(default_factory=list)
    # Records of the selection with open drift (Paynet changed them behind our back), and those
    # of the sample: the preview marks them.
    drift_count: int = 0
    drift_ids: set[int] = field(default_factory=set)


def subscription_invoice_status_preview(
    *, records: QuerySet[SubscriptionInvoice], status: int
) -> StatusPreview:
    """Each record's verdict for `status`, counted and totalled per verdict; sends nothing."""
    request = _status_request(status)
    preview = StatusPreview(status=InvoiceStatus(request.status))
    rows = (
        records.order_by()
        .values("status")
        .annotate(n=Count("id"), total=Sum("amount"), top=Max("id"))
    )
    for row in rows:
        # The status kind's verdict reads only the status: one judgement per group of records.
        verdict = INVOICE_STATUS.judge(row["status"], request.status)
        preview.tally(verdict, row["n"])
        preview.upto = max(preview.upto or 0, row["top"])
        if verdict.kind == VerdictKind.CHANGE:
            preview.change_total += row["total"] or Decimal("0")
    for record in records.select_related("subscription").order_by("val_date", "pk")[
        :PREVIEW_SAMPLE
    ]:
        preview.sample.append((record, INVOICE_STATUS.verdict(record, request)))
    preview.drift_count = open_drift_count(SubscriptionInvoice, records)
    if preview.drift_count:
        preview.drift_ids = open_drift_ids(SubscriptionInvoice, [r.pk for r, _v in preview.sample])
    return preview


def subscription_status_all_preview(
    *, subscriptions: QuerySet[Subscription], status: int
) -> StatusPreview:
    """What "change status of all payment records" would do, judged per record from the mirror
    with the same rules as a single change (Paynet applies them record by record, §5.3)."""
    preview = subscription_invoice_status_preview(
        records=SubscriptionInvoice.objects.filter(subscription__in=subscriptions), status=status
    )
    preview.upto = subscriptions.aggregate(top=Max("pk"))["top"]
    return preview


def subscription_invoice_set_status(
    *,
    record: SubscriptionInvoice,
    status: int,
    actor: User,
    reason: str = "",
    idempotency_key: str = "",
) -> SubscriptionInvoice:
    """Push `invoice_status_update` for one record; on code 0 set the mirror's status.

    The same operation as a job's item (kind `paynet.invoice_status`), run in the request: the
    record is claimed, re-checked and recorded before anything is sent. Raises ValidationError
    for a blocked change or a missing reason, PushConflict when another push holds the record,
    UpstreamError when Paynet refuses or fails (the mirror is untouched), and PushInDoubt when
    the answer never came (the worker settles it by reading the record back).
    """
    _require(actor, PERM_INVOICE_STATUS)
    request = StatusRequest(status=int(status))
    record = SubscriptionInvoice.objects.select_related("subscription").get(pk=record.pk)
    verdict = INVOICE_STATUS.verdict(record, request)
    if verdict.kind == VerdictKind.BLOCKED:
        raise ValidationError(verdict.reason)
    if verdict.kind == VerdictKind.SAME:
        return record  # nothing to send
    _require_reason(reason)
    payload = INVOICE_STATUS.build(record, request)
    push_single(
        kind=INVOICE_STATUS.kind,
        target=record,
        target_repr=record.invoice_no,
        payload=payload.to_json(),
        actor=actor,
        reason=reason,
        idempotency_key=idempotency_key,
        title=text(
            gettext_noop("Set payment record %(no)s to “%(status)s”"),
            no=record.invoice_no,
            status=InvoiceStatus(request.status).label,
        ),
        amount=INVOICE_STATUS.amount(payload),
    )
    return SubscriptionInvoice.objects.select_related("subscription").get(pk=record.pk)


def subscription_invoice_set_status_bulk(
    *,
    records: QuerySet[SubscriptionInvoice],
    status: int,
    actor: User,
    reason: str,
    upto: int | None = None,
) -> Job:
    """Queue `invoice_status_update` for every selected record the rules let change.

    The selection is frozen as it is now (upstream/pushes/bulk.py): the same few statements
    for 500 or 50,000 records; the worker writes the items, and each is re-checked against the
    status the launch saw before it is sent. `upto` is the preview's highest id: records
    created after the preview are left out.
    """
    _require(actor, PERM_INVOICE_STATUS)
    request = _status_request(status)
    if not reason.strip():
        raise ValidationError(_("Give a reason for the change."))
    if upto is not None:
        records = records.filter(pk__lte=upto)
    return job_create_frozen(
        kind=INVOICE_STATUS.kind,
        queryset=records.filter(INVOICE_STATUS.change_filter(request)),
        tag="status",
        # The status kind's amount (the record's), summed by the database.
        amount="amount",
        title=lambda count: text(
            gettext_noop("Set %(count)s payment records to “%(status)s”"),
            count=count,
            status=InvoiceStatus(request.status).label,
        ),
        actor=actor,
        params=request.to_params(),
        reason=reason.strip(),
    )


def subscription_set_status_all(
    *,
    subscriptions: QuerySet[Subscription],
    status: int,
    actor: User,
    reason: str,
    upto: int | None = None,
) -> Job:
    """Queue `invoices_status_update_all` for each selected subscription with a record the rules
    let change; each is reconciled from invoice_list.

    `upto` is the preview's highest subscription id (later ones are left out).
    """
    _require(actor, PERM_STATUS_ALL)
    request = _status_request(status)
    if not reason.strip():
        raise ValidationError(_("Give a reason for the change."))
    if upto is not None:
        subscriptions = subscriptions.filter(pk__lte=upto)
    subscriptions = subscriptions.filter(STATUS_ALL.change_filter(request))
    # What the approval thresholds weigh: the records that will change, not the subscriptions
    # (the kind's amount, summed by the database).
    changing = SubscriptionInvoice.objects.filter(
        INVOICE_STATUS.change_filter(request), subscription__in=subscriptions
    ).aggregate(n=Count("pk"), amount=Sum("amount"))
    return job_create_frozen(
        kind=STATUS_ALL.kind,
        queryset=subscriptions.annotate(fingerprint=statuses_fingerprint_sql()),
        tag="fingerprint",
        extra_amount=changing["amount"] or Decimal("0"),
        approval_count=changing["n"],
        title=lambda count: text(
            gettext_noop("Set all payment records of %(count)s subscriptions to “%(status)s”"),
            count=count,
            status=InvoiceStatus(request.status).label,
        ),
        actor=actor,
        params=request.to_params(),
        reason=reason.strip(),
    )


@dataclass(frozen=True)
class CreatePreview:
    """A payment record as it would be sent to Paynet, and what the rules said about it."""

    subscription: Subscription
    val_date: datetime
    amount: Decimal
    agent_amount: Decimal
    company_amount: Decimal
    invoice_no: str
    verdict: CreateVerdict

    @property
    def errors(self) -> dict[str, list[str]]:
        return self.verdict.errors(allow_duplicate=True)


def subscription_invoice_create_preview(
    *,
    subscription: Subscription,
    val_date: datetime,
    amount: Decimal,
    agent_amount: Decimal | None = None,
    company_amount: Decimal | None = None,
    invoice_no: str = "",
    currency: str = "TRY",
) -> CreatePreview:
    """The confirmation step of a create: rules and split from the mirror; sends nothing."""
    request = CreateRequest(
        val_date=val_date,
        amount=amount,
        agent_amount=agent_amount,
        company_amount=company_amount,
        invoice_no=invoice_no,
        currency=currency,
    )
    agent, company = invoice_split(amount, agent_amount, company_amount)
    return CreatePreview(
        subscription=subscription,
        val_date=val_date,
        amount=amount,
        agent_amount=agent,
        company_amount=company,
        invoice_no=(invoice_no or "").strip(),
        verdict=CREATE_INVOICE.checks(subscription, request),
    )


def subscription_invoice_create(
    *,
    subscription: Subscription,
    val_date: datetime,
    amount: Decimal,
    actor: User,
    agent_amount: Decimal | None = None,
    company_amount: Decimal | None = None,
    invoice_no: str = "",
    currency: str = "TRY",
    reason: str = "",
    idempotency_key: str = "",
    allow_duplicate: bool = False,
) -> SubscriptionInvoice:
    """Push `create_invoice` for a variable-price subscription, then mirror the new record.

    Paynet answers without the new record's ids, so the record is read back from invoice_list and
    the mirror is written from that. Nothing is saved locally when Paynet refuses.
    The create kind's rules and a reason come first; a record with the same charge day and
    amount as an existing one is refused unless `allow_duplicate`.
    """
    _require(actor, PERM_CREATE_INVOICE)
    request = CreateRequest(
        val_date=val_date,
        amount=amount,
        agent_amount=agent_amount,
        company_amount=company_amount,
        invoice_no=(invoice_no or "").strip(),
        currency=currency,
        allow_duplicate=allow_duplicate,
    )
    # A double submit is answered from the first operation (never created twice), so the
    # duplicate checks below, which would now see the first record, are not asked again.
    if not operation_seen(actor, idempotency_key):
        verdict = CREATE_INVOICE.checks(subscription, request)
        if verdict.twins:
            # The same create is on its way (or in doubt): answered with it, never sent twice.
            raise PushConflict(verdict.twin_error, job=verdict.twins[0].job)
        errors = verdict.errors(allow_duplicate=allow_duplicate)
        if not (reason or "").strip():
            errors["reason"] = [_("Give a reason for the change.")]
        if errors:
            raise ValidationError(errors)
    payload = CREATE_INVOICE.build(subscription, request)
    try:
        done = push_single(
            kind=CREATE_INVOICE.kind,
            target=subscription,
            target_repr=payload.invoice_no,
            payload=payload.to_json(),
            actor=actor,
            reason=reason,
            idempotency_key=idempotency_key,
            title=text(
                gettext_noop("Create payment record %(no)s for %(subscription)s"),
                no=payload.invoice_no,
                # The stored title masks the name; each reader reads it as they may see it.
                subscription=record_param(subscription, masked_str(subscription)),
            ),
            amount=CREATE_INVOICE.amount(payload),
        )
    except UpstreamRejectedError as error:
        if error.upstream_code == CODE_DUPLICATE:
            raise ValidationError({"invoice_no": str(error)}) from error
        raise
    return SubscriptionInvoice.objects.get(pk=done.data["record"])


def subscription_refresh_start(*, subscriptions: QuerySet[Subscription], actor: User) -> Job:
    """Queue a refresh job: each subscription and its payment records re-read from Paynet
    (subscription detail, invoice_list); each item lists per record what changed.

    Every selected subscription, however many: the selection is frozen in a few statements and
    the worker writes the items in chunks (upstream/pushes/bulk.py).
    """
    return job_create_frozen(
        kind=SUBSCRIPTION_REFRESH_KIND,
        queryset=subscriptions,
        title=lambda count: text(
            gettext_noop("Refresh %(count)s subscriptions from Paynet"), count=count
        ),
        actor=actor,
    )
