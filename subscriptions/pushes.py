"""Paynet's push kinds, one definition each (shared/STYLE.md, "One definition per kind of push").

Each kind owns its typed request (what staff asked for), its payload built from a record and that
request, its verdict with the same rule as a queryset filter beside it, its amount for the
approval thresholds, and its push, read-back and apply. The single push
(upstream.pushes.single.push_single), the bulk launch (a frozen selection expanded here), the
preview, the API and the check just before sending all ask the same kind.

Status transitions: Paynet documents none (paynet.md §8); the status kind follows the sandbox's
assumption 6 (docs/decisions/005), so staff see a refusal before anything is sent, and Paynet
stays the final judge.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal
from typing import Any, cast

from django.conf import settings
from django.db.models import (
    BigIntegerField,
    CharField,
    Count,
    Exists,
    F,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
)
from django.db.models.functions import Cast, Coalesce, Concat, Mod
from django.utils import formats, timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, gettext_noop

from security.personal import masked_str
from upstream.calls.client import CallRecorder
from upstream.calls.errors import (
    UpstreamAuthError,
    UpstreamError,
    UpstreamRejectedError,
    UpstreamResponseError,
)
from upstream.history.changes import history_call
from upstream.history.refresh import RefreshHandler
from upstream.history.sync import SyncCounts
from upstream.history.sync_job import SyncKind
from upstream.l10n.formats import day, money
from upstream.l10n.stored import text
from upstream.models import Job, JobItem
from upstream.pushes.claims import live_claim_ids
from upstream.pushes.jobs import NewItem
from upstream.pushes.kinds import (
    JobKind,
    Payload,
    PlannedChange,
    PushKind,
    WorkItem,
    WorkResult,
    kind_for,
    register,
)
from upstream.pushes.verdicts import Verdict, VerdictKind

from .client import PAGE_LIMIT, PaynetClient, parse_datetime, records_of, to_kurus
from .models import InvoiceStatus, Subscription, SubscriptionInvoice
from .sync import (
    EPOCH,
    invoices_reconcile,
    invoices_reconcile_many,
    subscription_upsert,
    subscriptions_upsert_many,
)

INVOICE_STATUS_KIND = "paynet.invoice_status"
SUBSCRIPTION_STATUS_ALL_KIND = "paynet.subscription_status_all"
CREATE_INVOICE_KIND = "paynet.create_invoice"
SUBSCRIPTION_REFRESH_KIND = "paynet.refresh"
# paynet.md, return codes: 5 duplicatedata.
CODE_DUPLICATE = "5"

# Only Paynet's own charge produces "Charged"; merchants record outside collection as 2.
ALLOWED_TARGETS = frozenset({0, 2, 4, 5, 6})
# Money taken, or a deleted record: never changed again.
FINAL_STATUSES = frozenset({InvoiceStatus.DONE_SUCCEED, InvoiceStatus.DELETED})


def _label(status: Any) -> Any:
    # The lazy label: kept by its message id in an item's message (upstream.l10n.stored).
    try:
        return InvoiceStatus(int(status)).label
    except (TypeError, ValueError):
        return str(status)


class _Paynet(JobKind):
    service = "paynet"

    def concurrency(self) -> int:
        return settings.PAYNET_CONCURRENCY

    def make_client(self, recorder: CallRecorder) -> PaynetClient:
        return PaynetClient(recorder=recorder)


class _PaynetKind(_Paynet, PushKind):
    """A write to Paynet."""


# --- one payment record's status (invoice_status_update, paynet.md §5.2) -----------------------


@dataclass(frozen=True)
class StatusRequest:
    """A target status as staff asked for it: for one record, a selection, or all of a
    subscription's records."""

    status: int

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> StatusRequest:
        """The request a bulk job was launched with (its `params`)."""
        return cls(status=int(params["status"]))

    def to_params(self) -> dict[str, Any]:
        return {"status": int(self.status)}


def _asked_status(
    pk: int, params: Mapping[str, Any], payloads: Mapping[int, dict[str, Any]] | None
) -> int:
    """The status a job asks of record `pk`: its item's payload, else the bulk launch's."""
    payload = (payloads or {}).get(pk)
    return int(payload["status"] if payload is not None else params["status"])


@dataclass(frozen=True)
class StatusChange(Payload):
    """One record to a new status; `from_status` is what the preview saw."""

    invoice_id: str
    invoice_no: str
    subscription_id: str
    status: int
    from_status: int | None = None
    amount: Decimal | None = None


@register
class InvoiceStatusKind(_PaynetKind):
    kind = INVOICE_STATUS_KIND
    label = gettext_lazy("Paynet: payment record status")
    target_type = "subscriptions.subscriptioninvoice"
    permission = "subscriptions.push_invoice_status"
    operation = "invoice_status_update"
    payload_type = StatusChange
    drift_fields = frozenset({"status"})

    @staticmethod
    def target_error(target: int) -> str | None:
        """Why a target status cannot be pushed at all, or None."""
        if target not in InvoiceStatus.values:
            return _("%(status)s is not a Paynet status (0, 2, 3, 4, 5 or 6).") % {"status": target}
        if target not in ALLOWED_TARGETS:
            return _("Only Paynet's own charge can set a record to “Charged”.")
        return None

    @classmethod
    def judge(cls, current: int, target: int) -> Verdict:
        """The rule on a status alone: the verdict reads nothing else of the record, so a
        preview judges a whole group of records in one status, and a read-back judges
        Paynet's rows, with it."""
        if error := cls.target_error(target):
            return Verdict(VerdictKind.BLOCKED, error)
        if current == target:
            return Verdict(VerdictKind.SAME, _("Already in this status."))
        if current in FINAL_STATUSES:
            return Verdict(
                VerdictKind.BLOCKED,
                _("A record in “%(status)s” can no longer change.")
                % {"status": InvoiceStatus(current).label},
            )
        return Verdict(VerdictKind.CHANGE)

    def verdict(self, record: SubscriptionInvoice, request: StatusRequest) -> Verdict:
        return self.judge(record.status, request.status)

    def change_filter(self, request: StatusRequest) -> Q:
        """The records `verdict` lets change, as a database filter."""
        if self.target_error(request.status):
            return Q(pk__in=[])
        return ~Q(status=request.status) & ~Q(status__in=FINAL_STATUSES)

    def build(self, record: SubscriptionInvoice, request: StatusRequest) -> StatusChange:
        # from_status: the status the record is judged by; the re-check skips it if it moved on.
        return StatusChange(
            invoice_id=record.invoice_id,
            invoice_no=record.invoice_no,
            subscription_id=record.subscription.subscription_id,
            status=int(request.status),
            from_status=record.status,
            amount=record.amount,
        )

    def request_of(self, payload: StatusChange) -> StatusRequest:
        return StatusRequest(status=int(payload.status))

    def amount(self, payload: StatusChange) -> Decimal:
        # The bulk launch sums the same field in SQL (job_create_frozen's `amount="amount"`).
        return payload.amount or Decimal("0")

    def drift_request(
        self, record: SubscriptionInvoice, changes: dict[str, Any], *, reason: str = ""
    ) -> StatusRequest:
        return StatusRequest(status=int(changes["status"]))

    def recheck(self, items: list[WorkItem]) -> dict[int, str]:
        # The job sends the status chosen at the preview; if the record moved on since (a single
        # push, a sync), sending it would overwrite a newer change.
        current = SubscriptionInvoice.objects.only("pk", "status").in_bulk(
            [int(i.target_id) for i in items]
        )
        stale = {}
        for item in items:
            p = self.payload(item)
            record = current.get(int(item.target_id))
            if record is None:
                stale[item.id] = text(
                    gettext_noop("The payment record is no longer in the mirror.")
                )
            elif p.from_status is not None and record.status != p.from_status:
                stale[item.id] = text(
                    gettext_noop(
                        "Not sent: the record changed since the preview (%(then)s, now %(now)s)."
                    ),
                    then=_label(p.from_status),
                    now=_label(record.status),
                )
            elif (verdict := self.verdict(record, self.request_of(p))).kind != VerdictKind.CHANGE:
                stale[item.id] = verdict.reason
        return stale

    def expand_queryset(self, queryset: QuerySet) -> QuerySet:
        return queryset.select_related("subscription")

    def planned(
        self,
        records: list[SubscriptionInvoice],
        params: dict[str, Any],
        payloads: Mapping[int, dict[str, Any]] | None = None,
    ) -> list[PlannedChange]:
        return [
            PlannedChange(
                record=r.invoice_no,
                customer=r.subscription.name_surname,
                amount=r.amount,
                current=r.get_status_display(),
                new=InvoiceStatus(_asked_status(r.pk, params, payloads)).label,
            )
            for r in records
        ]

    def expand(
        self, records: list[SubscriptionInvoice], tags: dict[int, str], params: dict[str, Any]
    ) -> dict[int, NewItem]:
        request = StatusRequest.from_params(params)
        # from_status is the status the launch saw, so the re-check skips a record moved since.
        return {
            r.pk: NewItem(
                target=r,
                target_repr=r.invoice_no,
                payload=replace(self.build(r, request), from_status=int(tags[r.pk])).to_json(),
            )
            for r in records
        }

    def busy(self, items: list[WorkItem]) -> set[int]:
        # A change of all records of the subscription, or a create on it, is in flight.
        parents = dict(
            SubscriptionInvoice.objects.filter(
                pk__in=[int(i.target_id) for i in items]
            ).values_list("pk", "subscription_id")
        )
        held = live_claim_ids(Subscription, parents.values())
        return {i.id for i in items if parents.get(int(i.target_id)) in held}

    def push(self, client: PaynetClient, item: WorkItem) -> Any:
        p = self.payload(item)
        try:
            client.invoice_status_update(
                invoice_id=p.invoice_id, invoice_no=p.invoice_no, status=p.status
            )
        except UpstreamAuthError:
            raise
        except UpstreamRejectedError as error:
            # The preview said "will change" and Paynet said no: its record is not what the
            # mirror holds. Read it back at once, so the mirror and the message say what it is.
            self._read_back(client, p, error)
            raise
        return p.status

    def _read_back(self, client: PaynetClient, p: StatusChange, error: UpstreamError) -> None:
        try:
            rows = list(client.iter_invoices(subscription_id=p.subscription_id))
        except UpstreamError:
            return  # the refusal stands on its own; the next sync brings the record
        row = next((r for r in rows if str(r.get("invoice_id")) == p.invoice_id), None)
        if row is None:
            error.message = _("%(error)s Paynet no longer lists payment record %(no)s.") % {
                "error": error.message,
                "no": p.invoice_no,
            }
            return
        error.read_back = {"subscription_id": p.subscription_id, "row": row}
        error.message = _("%(error)s Paynet holds payment record %(no)s in “%(status)s”.") % {
            "error": error.message,
            "no": p.invoice_no,
            "status": _label(row.get("status")),
        }

    def apply_read_back(self, results: list[WorkResult]) -> None:
        subs = Subscription.objects.in_bulk(
            [r.error.read_back["subscription_id"] for r in results], field_name="subscription_id"
        )
        for r in results:
            subscription = subs.get(r.error.read_back["subscription_id"])
            if subscription is not None:
                invoices_reconcile(subscription, [r.error.read_back["row"]])

    def settle(self, client: PaynetClient, item: WorkItem) -> Any | None:
        p = self.payload(item)
        now = client.invoice_status(subscription_id=p.subscription_id, invoice_id=p.invoice_id)
        return p.status if now == int(p.status) else None

    def apply(self, results: list[WorkResult]) -> None:
        by_status: dict[int, list[int]] = {}
        for r in results:
            by_status.setdefault(int(r.data), []).append(int(r.item.target_id))
            r.result = {"from": self.payload(r.item).from_status, "to": int(r.data)}
        now = timezone.now()
        for status, ids in by_status.items():
            SubscriptionInvoice.objects.filter(pk__in=ids).update(status=status, synced_at=now)

    def describe(self, result: dict[str, Any]) -> str:
        if "to" not in result:
            return ""
        return f"{_label(result.get('from'))} → {_label(result['to'])}"


INVOICE_STATUS = cast(InvoiceStatusKind, kind_for(INVOICE_STATUS_KIND))


# --- every record of a subscription (invoices_status_update_all, paynet.md §5.3) ---------------


@dataclass(frozen=True)
class StatusAllChange(Payload):
    """Every record of a subscription to one status (invoices_status_update_all)."""

    subscription_id: str
    status: int
    reference_no: str = ""
    # invoice_id -> status, as the preview saw the subscription's records.
    seen: dict[str, int] | None = None
    # `statuses_fingerprint` of its records when the job was launched (the items are written
    # later, from a frozen selection): a record changed in between is caught too.
    fingerprint: str = ""
    # What its records that will change weigh (₺), for the approval thresholds.
    amount: Decimal | None = None


# Two weights per record: any one record's status change moves both sums, and changes to
# several records cancel out in both only by an unlikely coincidence.
_FINGERPRINT_MOD = 9973
_FINGERPRINT_MOD_2 = 65521


def statuses_fingerprint(records: list[tuple[int, int]], *, like: str = "") -> str:
    """ "count.sum.sum" of weighted (pk, status) pairs; the same as `statuses_fingerprint_sql`.

    like: a stored fingerprint; one of the earlier "count.sum" form (a job launched before
    the second sum) is matched in that form.
    """
    first = sum(status * (pk % _FINGERPRINT_MOD + 1) for pk, status in records)
    if like.count(".") == 1:
        return f"{len(records)}.{first}"
    second = sum((status * status + 1) * (pk % _FINGERPRINT_MOD_2 + 1) for pk, status in records)
    return f"{len(records)}.{first}.{second}"


def _as_text(expression: Any) -> Cast:
    return Cast(Cast(expression, BigIntegerField()), CharField())


def statuses_fingerprint_sql() -> Coalesce:
    """Per subscription (as an annotation): the fingerprint of its records' statuses."""
    per_sub = (
        SubscriptionInvoice.objects.filter(subscription=OuterRef("pk"))
        .order_by()
        .values("subscription")
        .annotate(
            fp=Concat(
                Cast(Count("pk"), CharField()),
                Value("."),
                _as_text(Sum(F("status") * (Mod(F("pk"), _FINGERPRINT_MOD) + 1))),
                Value("."),
                _as_text(
                    Sum((F("status") * F("status") + 1) * (Mod(F("pk"), _FINGERPRINT_MOD_2) + 1))
                ),
                output_field=CharField(),
            )
        )
        .values("fp")
    )
    return Coalesce(Subquery(per_sub, output_field=CharField()), Value("0.0.0"))


def _with_records(queryset: QuerySet[Subscription]) -> QuerySet[Subscription]:
    """Subscriptions with their records' statuses read in one more query, not one each."""
    records = SubscriptionInvoice.objects.only(
        "pk", "subscription_id", "invoice_id", "status", "amount"
    ).order_by("pk")
    return queryset.prefetch_related(Prefetch("invoices", queryset=records))


@register
class SubscriptionStatusAllKind(_PaynetKind):
    """Paynet applies the single record's rules to each record (§5.3), so the verdict of a
    subscription is made of its records' verdicts: it changes when any of them does."""

    kind = SUBSCRIPTION_STATUS_ALL_KIND
    label = gettext_lazy("Paynet: status of a subscription's records")
    target_type = "subscriptions.subscription"
    permission = "subscriptions.push_subscription_invoices_status"
    operation = "invoices_status_update_all"
    payload_type = StatusAllChange

    def verdict(self, record: Subscription, request: StatusRequest) -> Verdict:
        if error := INVOICE_STATUS.target_error(request.status):
            return Verdict(VerdictKind.BLOCKED, error)
        verdicts = [INVOICE_STATUS.verdict(r, request) for r in record.invoices.all()]
        if any(v.kind == VerdictKind.CHANGE for v in verdicts):
            return Verdict(VerdictKind.CHANGE)
        if not verdicts:
            return Verdict(VerdictKind.SAME, _("This subscription has no payment records."))
        if all(v.kind == VerdictKind.SAME for v in verdicts):
            return Verdict(
                VerdictKind.SAME,
                _("Every payment record of this subscription is already in this status."),
            )
        return Verdict(
            VerdictKind.BLOCKED,
            _("None of this subscription's payment records can change to “%(status)s”.")
            % {"status": InvoiceStatus(request.status).label},
        )

    def change_filter(self, request: StatusRequest) -> Q:
        """The subscriptions `verdict` lets change: those with a record that will change."""
        if INVOICE_STATUS.target_error(request.status):
            return Q(pk__in=[])
        changing = SubscriptionInvoice.objects.filter(
            INVOICE_STATUS.change_filter(request), subscription=OuterRef("pk")
        )
        return Q(Exists(changing))

    def build(self, record: Subscription, request: StatusRequest) -> StatusAllChange:
        records = list(record.invoices.all())
        return StatusAllChange(
            subscription_id=record.subscription_id,
            reference_no=record.reference_no,
            status=int(request.status),
            seen={r.invoice_id: r.status for r in records},
            fingerprint=statuses_fingerprint([(r.pk, r.status) for r in records]),
            amount=sum(
                (
                    r.amount
                    for r in records
                    if INVOICE_STATUS.verdict(r, request).kind == VerdictKind.CHANGE
                ),
                Decimal("0"),
            ),
        )

    def request_of(self, payload: StatusAllChange) -> StatusRequest:
        return StatusRequest(status=int(payload.status))

    def amount(self, payload: StatusAllChange) -> Decimal:
        # The records that will change, not the subscription (the bulk launch sums them in SQL).
        return payload.amount or Decimal("0")

    def expand_queryset(self, queryset: QuerySet) -> QuerySet:
        return _with_records(queryset)

    def planned(
        self,
        records: list[Subscription],
        params: dict[str, Any],
        payloads: Mapping[int, dict[str, Any]] | None = None,
    ) -> list[PlannedChange]:
        rows = []
        for s in records:
            request = StatusRequest(_asked_status(s.pk, params, payloads))
            changing = [
                r
                for r in s.invoices.all()
                if INVOICE_STATUS.verdict(r, request).kind == VerdictKind.CHANGE
            ]
            rows.append(
                PlannedChange(
                    record=s.reference_no,
                    customer=s.name_surname,
                    amount=sum((r.amount for r in changing), Decimal("0")),
                    current=", ".join(sorted({r.get_status_display() for r in changing})),
                    new=InvoiceStatus(request.status).label,
                )
            )
        return rows

    def expand(
        self, records: list[Subscription], tags: dict[int, str], params: dict[str, Any]
    ) -> dict[int, NewItem]:
        # `seen` is what the mirror holds for each subscription's records when its item is
        # written, the fingerprint what the launch saw: the re-check just before sending skips a
        # subscription whose records changed after either.
        request = StatusRequest.from_params(params)
        return {
            r.pk: NewItem(
                target=r,
                # Job pages and the call log show every viewer the name masked.
                target_repr=masked_str(r),
                payload=replace(self.build(r, request), fingerprint=tags[r.pk]).to_json(),
            )
            for r in records
        }

    def _records(self, items: list[WorkItem]) -> dict[int, dict[str, tuple[int, int]]]:
        """The mirror's records of these items' subscriptions: invoice_id -> (pk, status)."""
        by_sub: dict[int, dict[str, tuple[int, int]]] = {int(i.target_id): {} for i in items}
        rows = SubscriptionInvoice.objects.filter(subscription_id__in=by_sub).values_list(
            "subscription_id", "invoice_id", "pk", "status"
        )
        for sub, invoice_id, pk, status in rows:
            by_sub[sub][invoice_id] = (pk, status)
        return by_sub

    def recheck(self, items: list[WorkItem]) -> dict[int, str]:
        # The preview showed each record's verdict; a record changed since would be overwritten.
        subs = _with_records(Subscription.objects.all()).in_bulk([int(i.target_id) for i in items])
        stale = {}
        for item in items:
            p = self.payload(item)
            subscription = subs.get(int(item.target_id))
            if subscription is None:
                stale[item.id] = text(gettext_noop("The subscription is no longer in the mirror."))
                continue
            records = subscription.invoices.all()
            now = {r.invoice_id: r.status for r in records}
            changed = (
                []
                if p.seen is None
                else [k for k in now.keys() | p.seen.keys() if now.get(k) != p.seen.get(k)]
            )
            if changed:
                stale[item.id] = text(
                    gettext_noop(
                        "Not sent: %(count)s payment records of this subscription changed since "
                        "the preview."
                    ),
                    count=len(changed),
                )
            elif p.fingerprint and p.fingerprint != statuses_fingerprint(
                [(r.pk, r.status) for r in records], like=p.fingerprint
            ):
                stale[item.id] = text(
                    gettext_noop(
                        "Not sent: payment records of this subscription changed since the preview."
                    )
                )
            elif (
                verdict := self.verdict(subscription, self.request_of(p))
            ).kind != VerdictKind.CHANGE:
                stale[item.id] = verdict.reason
        return stale

    def busy(self, items: list[WorkItem]) -> set[int]:
        # Single pushes of its records are in flight: wait for them rather than race them.
        records = self._records(items)
        held = live_claim_ids(
            SubscriptionInvoice, [pk for r in records.values() for pk, _status in r.values()]
        )
        return {
            item.id
            for item in items
            if any(pk in held for pk, _status in records[int(item.target_id)].values())
        }

    def push(self, client: PaynetClient, item: WorkItem) -> Any:
        p = self.payload(item)
        client.invoices_status_update_all(subscription_id=p.subscription_id, status=p.status)
        # The answer says nothing per record (paynet.md §5.3): read them back to reconcile.
        try:
            return list(client.iter_invoices(subscription_id=p.subscription_id))
        except UpstreamError as error:
            error.in_doubt = True  # applied, not yet read back
            raise

    def settle(self, client: PaynetClient, item: WorkItem) -> Any | None:
        p = self.payload(item)
        rows = list(client.iter_invoices(subscription_id=p.subscription_id))
        # Applied if no record that the rules let change is left in another status.
        pending = [
            r
            for r in rows
            if INVOICE_STATUS.judge(int(r["status"]), p.status).kind == VerdictKind.CHANGE
        ]
        return None if pending else rows

    def apply(self, results: list[WorkResult]) -> None:
        subs = Subscription.objects.in_bulk([int(r.item.target_id) for r in results])
        for r in results:
            # The records are not the item's target: their changes name the item's call here.
            with history_call(r.call_id):
                counts = invoices_reconcile(subs[int(r.item.target_id)], r.data)
            r.result = {
                "changed": counts.changes,
                "unchanged": counts.unchanged,
                "created": counts.created,
                "status": self.payload(r.item).status,
            }

    def describe(self, result: dict[str, Any]) -> str:
        changes = [
            f"{c['invoice_no']}: {_label(c['from'])} → {_label(c['to'])}"
            for c in result.get("changed", [])
        ]
        if "unchanged" in result:
            changes.append(_("%(count)s unchanged") % {"count": result["unchanged"]})
        return "; ".join(changes)


STATUS_ALL = cast(SubscriptionStatusAllKind, kind_for(SUBSCRIPTION_STATUS_ALL_KIND))


# --- a new payment record (create_invoice, paynet.md §5.1) --------------------------------------

# Paynet charges in kuruş (§4): more than two decimals cannot be sent.
KURUS_EXPONENT = -2
# Paynet's currency field takes TRY; the sandbox also reads TL as TRY (§10, assumption 13).
LIRA_CODES = frozenset({"TRY", "TL"})


@dataclass(frozen=True)
class CreateRequest:
    """A payment record as staff typed it; an empty `invoice_no` is generated by `build`."""

    val_date: datetime
    amount: Decimal
    agent_amount: Decimal | None = None
    company_amount: Decimal | None = None
    invoice_no: str = ""
    currency: str = "TRY"
    # A record with the same charge day and amount as an existing one is created only with it.
    allow_duplicate: bool = False


@dataclass(frozen=True)
class NewInvoice(Payload):
    """A variable-amount record; `invoice_no` is fixed when the operation is recorded."""

    subscription_id: str
    invoice_no: str
    val_date: datetime
    amount: Decimal
    agent_amount: Decimal | None = None
    company_amount: Decimal | None = None
    # We made the number up (staff left it empty): a duplicate of it can only be our own resend.
    generated: bool = False
    allow_duplicate: bool = False


@dataclass(frozen=True)
class CreateCheck:
    """One rule a new payment record was checked against; `error` is empty when it passed."""

    label: str
    field: str = "__all__"
    error: str = ""

    @property
    def passed(self) -> bool:
        return not self.error


@dataclass(frozen=True)
class CreateVerdict:
    """What the rules say about a payment record before it is sent to Paynet."""

    checks: tuple[CreateCheck, ...]
    # Records with the same charge day and amount: a warning, never a refusal on its own.
    duplicates: tuple[SubscriptionInvoice, ...] = ()
    # The same create (charge day and amount) still waiting, being sent or in doubt: a refusal
    # "create anyway" cannot lift, since it may be made at Paynet any moment.
    twins: tuple[JobItem, ...] = ()

    @property
    def twin_error(self) -> str:
        if not self.twins:
            return ""
        twin = self.twins[0]
        return _(
            "The same payment record (charge day and amount) is already being created: "
            "%(no)s in job #%(job)s, %(state)s. It is not sent again. Once that job is "
            "settled you can create another one with “Create anyway”."
        ) % {
            "no": twin.target_repr,
            "job": twin.job_id,
            "state": _twin_state(twin),
        }

    @property
    def duplicate_warning(self) -> str:
        if not self.duplicates:
            return ""
        return _(
            "This subscription already has a payment record with the same charge date and "
            "amount: %(numbers)s."
        ) % {"numbers": ", ".join(r.invoice_no for r in self.duplicates)}

    def errors(self, *, allow_duplicate: bool = False) -> dict[str, list[str]]:
        """The failed rules by field; a duplicate counts only when it was not allowed."""
        errors: dict[str, list[str]] = {}
        for check in self.checks:
            if check.error:
                errors.setdefault(check.field, []).append(check.error)
        if self.twins:
            errors.setdefault("__all__", []).append(self.twin_error)
        elif self.duplicates and not allow_duplicate:
            errors["allow_duplicate"] = [
                self.duplicate_warning + " " + _("Confirm that it should be created anyway.")
            ]
        return errors


def _twin_state(twin: JobItem) -> str:
    if twin.in_doubt and twin.state == JobItem.State.DONE:
        return _("in doubt: reading back did not settle it; “Retry failed items” on that job does")
    if twin.in_doubt:
        return _("in doubt, being checked by reading back")
    return _("not settled yet")


def _has_kurus_precision(value: Decimal) -> bool:
    exponent = value.as_tuple().exponent
    return isinstance(exponent, int) and exponent >= KURUS_EXPONENT


def invoice_split(
    amount: Decimal, agent_amount: Decimal | None, company_amount: Decimal | None
) -> tuple[Decimal, Decimal]:
    """The (agent, company) shares Paynet will record: a missing share is the rest of the amount,
    and with neither given the company gets it all (paynet.md §10, assumption 10)."""
    if agent_amount is not None and company_amount is not None:
        return agent_amount, company_amount
    if agent_amount is not None:
        return agent_amount, amount - agent_amount
    if company_amount is not None:
        return amount - company_amount, company_amount
    return Decimal("0"), amount


def invoice_create_verdict(
    *,
    subscription: Subscription,
    val_date: datetime | None,
    amount: Decimal | None,
    agent_amount: Decimal | None = None,
    company_amount: Decimal | None = None,
    invoice_no: str = "",
    currency: str = "TRY",
    now: datetime | None = None,
    exclude_item: int | None = None,
) -> CreateVerdict:
    """Check a new payment record against the rules; reads the mirror and the creates still
    unsettled (other than `exclude_item`), sends nothing."""
    now = now or timezone.now()
    checks: list[CreateCheck] = []

    def check(label: str, field: str, error: str = "") -> None:
        checks.append(CreateCheck(label=label, field=field, error=error))

    check(
        _("The subscription has a variable price"),
        "__all__",
        _("Payment records can only be created for variable-price subscriptions.")
        if subscription.is_fixed_price
        else "",
    )
    if val_date is None:
        check(_("The charge date is not in the past"), "val_date", _("Enter the charge date."))
    else:
        check(
            _("The charge date is not in the past"),
            "val_date",
            _("The charge date %(date)s is in the past.")
            % {"date": formats.date_format(timezone.localtime(val_date), "SHORT_DATETIME_FORMAT")}
            if val_date < now
            else "",
        )
    amount_ok = amount is not None and amount > 0 and _has_kurus_precision(amount)
    if amount is None or amount <= 0:
        amount_error = _("The amount must be greater than zero.")
    elif not amount_ok:
        amount_error = _("The amount can have at most two decimals.")
    else:
        amount_error = ""
    check(_("The amount is above zero with at most two decimals"), "amount", amount_error)
    shares_ok = True
    for name, part, label in (
        ("agent_amount", agent_amount, _("The agent share is not negative")),
        ("company_amount", company_amount, _("The company share is not negative")),
    ):
        if part is None:
            continue
        bad = part < 0 or not _has_kurus_precision(part)
        shares_ok = shares_ok and not bad
        check(
            label,
            name,
            _("Enter a non-negative amount with at most two decimals.") if bad else "",
        )
    if amount_ok and shares_ok:
        split_error = ""
        if agent_amount is not None and company_amount is not None:
            if agent_amount + company_amount != amount:
                split_error = _(
                    "Agent and company amounts must add up to the amount (%(sum)s ≠ %(amount)s)."
                ) % {"sum": money(agent_amount + company_amount), "amount": money(amount)}
        elif (agent_amount or company_amount or 0) > amount:
            split_error = _("A share cannot be larger than the amount.")
        check(_("The agent and company shares add up to the amount"), "__all__", split_error)
    check(
        _("The currency is Turkish lira"),
        "currency",
        "" if currency in LIRA_CODES else _("Paynet supports only Turkish lira (TRY)."),
    )
    invoice_no = (invoice_no or "").strip()
    if invoice_no:
        used = subscription.invoices.filter(invoice_no=invoice_no).exists()
        check(
            _("The payment record number is not used on this subscription"),
            "invoice_no",
            _("This subscription already has a payment record %(no)s.") % {"no": invoice_no}
            if used
            else "",
        )
    duplicates: tuple[SubscriptionInvoice, ...] = ()
    twins: tuple[JobItem, ...] = ()
    if val_date is not None and amount_ok:
        # "Same day" as staff read it: the local (Istanbul) calendar day of the charge date.
        duplicates = tuple(
            subscription.invoices.filter(
                val_date__date=timezone.localtime(val_date).date(), amount=amount
            ).order_by("val_date", "pk")
        )
        twins = create_twins(subscription, val_date, amount, exclude_item=exclude_item)
    return CreateVerdict(checks=tuple(checks), duplicates=duplicates, twins=twins)


def create_twins(
    subscription: Subscription,
    val_date: datetime,
    amount: Decimal,
    *,
    exclude_item: int | None = None,
) -> tuple[JobItem, ...]:
    """Creates of the same charge day and amount on this subscription that are not settled:
    waiting (for a worker or an approval), being sent, or in doubt. The mirror cannot show
    them yet, and any of them may be made at Paynet at any moment."""
    unsettled = (
        JobItem.objects.filter(
            job__kind=CREATE_INVOICE_KIND,
            target_type=Subscription._meta.label_lower,
            target_id=str(subscription.pk),
        )
        .filter(
            Q(
                state__in=[JobItem.State.PENDING, JobItem.State.SENDING],
                job__state__in=[*Job.ACTIVE_STATES, Job.State.AWAITING_APPROVAL],
            )
            | Q(in_doubt=True)
        )
        .exclude(pk=exclude_item)
        .order_by("pk")
    )
    day = timezone.localtime(val_date).date()
    return tuple(
        item
        for item in unsettled
        if (new := NewInvoice.from_json(item.payload)).amount == amount
        and timezone.localtime(new.val_date).date() == day
    )


def _new_invoice_no() -> str:
    # Paynet's numbers look like 11400556; ours start with 9 and are random so a create that got
    # no answer can be found again by number (create_invoice returns no identifiers, §5.1). It is
    # stored in the operation's payload, so every resend of that operation carries the same one.
    return "9" + "".join(secrets.choice("0123456789") for _ in range(9))


def _find_created(client: PaynetClient, p: NewInvoice) -> dict[str, Any] | None:
    return next(
        (
            row
            for row in client.iter_invoices(subscription_id=p.subscription_id)
            if str(row.get("invoice_no")) == p.invoice_no
        ),
        None,
    )


def _same_record(row: dict[str, Any], p: NewInvoice) -> bool:
    """Is the record Paynet lists under our number the one this operation asked for?"""
    try:
        val_date = parse_datetime(str(row.get("val_date") or ""))
    except ValueError:
        return False
    return to_kurus(p.amount) == int(row.get("amount") or 0) and val_date == p.val_date


@register
class CreateInvoiceKind(_PaynetKind):
    """`create_invoice` with an invoice_no fixed when the operation was recorded.

    Paynet answers without the new record's ids (paynet.md §5.1), so it is found again by that
    number; a resend is refused as a duplicate (code 5) and settled the same way. A create is
    never launched from a selection: it has no queryset twin.
    """

    kind = CREATE_INVOICE_KIND
    label = gettext_lazy("Paynet: new payment record")
    target_type = "subscriptions.subscription"
    permission = "subscriptions.push_create_invoice"
    operation = "create_invoice"
    payload_type = NewInvoice

    def checks(
        self, record: Subscription, request: CreateRequest, *, exclude_item: int | None = None
    ) -> CreateVerdict:
        """Each rule the create was checked against, by field (the form and the API's 400 show
        them; the confirmation page lists them); `verdict` is their one-line answer. The check
        just before sending leaves its own item out of the unsettled twins."""
        return invoice_create_verdict(
            subscription=record,
            val_date=request.val_date,
            amount=request.amount,
            agent_amount=request.agent_amount,
            company_amount=request.company_amount,
            invoice_no=request.invoice_no,
            currency=request.currency,
            exclude_item=exclude_item,
        )

    def verdict(
        self, record: Subscription, request: CreateRequest, *, exclude_item: int | None = None
    ) -> Verdict:
        errors = self.checks(record, request, exclude_item=exclude_item).errors(
            allow_duplicate=request.allow_duplicate
        )
        if errors:
            return Verdict(
                VerdictKind.BLOCKED, " ".join(m for messages in errors.values() for m in messages)
            )
        return Verdict(VerdictKind.CHANGE)

    def build(self, record: Subscription, request: CreateRequest) -> NewInvoice:
        # The number is fixed here, once per operation: a resend of this create is refused by
        # Paynet as a duplicate and settled by reading back, so one operation never makes two.
        typed = (request.invoice_no or "").strip()
        return NewInvoice(
            subscription_id=record.subscription_id,
            invoice_no=typed or _new_invoice_no(),
            # Paynet keeps whole seconds: the payload holds what is sent, so a read-back that
            # compares the record it lists with the payload finds it (an API time with
            # microseconds otherwise never matched, and a resend was refused as "not ours").
            val_date=request.val_date.replace(microsecond=0),
            amount=request.amount,
            agent_amount=request.agent_amount,
            company_amount=request.company_amount,
            generated=not typed,
            allow_duplicate=request.allow_duplicate,
        )

    def request_of(self, payload: NewInvoice) -> CreateRequest:
        # The number as sent: a retry a day later must not find it used on the subscription.
        return CreateRequest(
            val_date=payload.val_date,
            amount=payload.amount,
            agent_amount=payload.agent_amount,
            company_amount=payload.company_amount,
            invoice_no=payload.invoice_no,
            allow_duplicate=payload.allow_duplicate,
        )

    def amount(self, payload: NewInvoice) -> Decimal:
        return payload.amount

    def planned(
        self,
        records: list[Subscription],
        params: dict[str, Any],
        payloads: Mapping[int, dict[str, Any]] | None = None,
    ) -> list[PlannedChange]:
        # A create is a single push: its item's payload is the new record.
        rows = []
        for s in records:
            raw = (payloads or {}).get(s.pk)
            if raw is None:
                rows.append(PlannedChange(record=s.reference_no, customer=s.name_surname))
                continue
            p = NewInvoice.from_json(raw)
            rows.append(
                PlannedChange(
                    record=s.reference_no,
                    customer=s.name_surname,
                    amount=p.amount,
                    current=_("no payment record"),
                    new=_("payment record %(no)s, charged %(day)s")
                    % {"no": p.invoice_no, "day": day(p.val_date)},
                )
            )
        return rows

    def recheck(self, items: list[WorkItem]) -> dict[int, str]:
        # The create's rules again, against the mirror as it is now: a retry a day later, or
        # after the same record was created another way, must not create it twice.
        subs = Subscription.objects.in_bulk([int(i.target_id) for i in items])
        stale = {}
        for item in items:
            subscription = subs.get(int(item.target_id))
            if subscription is None:
                stale[item.id] = text(gettext_noop("The subscription is no longer in the mirror."))
                continue
            request = self.request_of(self.payload(item))
            verdict = self.verdict(subscription, request, exclude_item=item.id)
            if verdict.kind != VerdictKind.CHANGE:
                stale[item.id] = _("Not sent: %(errors)s") % {"errors": verdict.reason}
        return stale

    def push(self, client: PaynetClient, item: WorkItem) -> Any:
        p = self.payload(item)
        try:
            client.create_invoice(
                subscription_id=p.subscription_id,
                val_date=p.val_date,
                amount=p.amount,
                agent_amount=p.agent_amount,
                company_amount=p.company_amount,
                invoice_no=p.invoice_no,
                currency="TRY",
            )
        except UpstreamRejectedError as error:
            if error.upstream_code != CODE_DUPLICATE:
                raise
            if not (p.generated or item.in_doubt):
                # A number staff typed that Paynet already has: someone else's record.
                raise UpstreamRejectedError(
                    _("Paynet already has a payment record %(no)s.") % {"no": p.invoice_no},
                    exchange=error.exchange,
                ) from error
            found = _find_created(client, p)
            if found is None or not _same_record(found, p):
                raise UpstreamRejectedError(
                    _("Paynet already has a payment record %(no)s.") % {"no": p.invoice_no},
                    exchange=error.exchange,
                ) from error
            return found
        try:
            found = _find_created(client, p)
        except UpstreamError as error:
            # Created, but not read back: the record exists; settle it by reading back later.
            error.in_doubt = True
            raise
        if found is None:
            # Confirmed with code 0 but not listed yet: it exists; settle it by reading back.
            error = UpstreamResponseError(
                _("Paynet confirmed payment record %(no)s but does not list it yet.")
                % {"no": p.invoice_no}
            )
            error.in_doubt = True
            raise error
        return found

    def settle(self, client: PaynetClient, item: WorkItem) -> Any | None:
        p = self.payload(item)
        found = _find_created(client, p)
        return found if found is not None and _same_record(found, p) else None

    def apply(self, results: list[WorkResult]) -> None:
        subs = Subscription.objects.in_bulk([int(r.item.target_id) for r in results])
        for r in results:
            subscription = subs[int(r.item.target_id)]
            # The new record is not the item's target: its history names the item's call here.
            with history_call(r.call_id):
                invoices_reconcile(subscription, [r.data])
            record = subscription.invoices.get(invoice_id=str(r.data["invoice_id"]))
            r.result = {"record": record.pk, "invoice_no": record.invoice_no}

    def describe(self, result: dict[str, Any]) -> str:
        if "invoice_no" not in result:
            return ""
        return _("Payment record %(no)s created") % {"no": result["invoice_no"]}


CREATE_INVOICE = cast(CreateInvoiceKind, kind_for(CREATE_INVOICE_KIND))


# --- refresh (subscription detail and invoice_list; reads only) --------------------------------


@register
class SubscriptionRefreshKind(RefreshHandler, _Paynet):
    """Re-read a subscription and all its payment records (subscription detail, invoice_list);
    the item lists per record what changed, and records Paynet no longer lists are drift.
    Launched from a frozen selection, so a refresh of any size costs the same to start."""

    kind = SUBSCRIPTION_REFRESH_KIND
    label = gettext_lazy("Paynet: refresh subscriptions")
    target_type = "subscriptions.subscription"
    permission = "subscriptions.sync_subscription"
    record_model = SubscriptionInvoice

    def expand(
        self, records: list[Subscription], tags: dict[int, str], params: dict[str, Any]
    ) -> dict[int, NewItem]:
        return {
            # Masked: job pages are read by every viewer (security.view_personal_data).
            s.pk: NewItem(
                target=s,
                payload={"subscription_id": s.subscription_id},
                target_repr=masked_str(s),
            )
            for s in records
        }

    def read(self, client: PaynetClient, item: WorkItem) -> Any:
        subscription_id = item.payload["subscription_id"]
        read_at = timezone.now()
        return {
            "read_at": read_at,
            "detail": client.subscription_detail(subscription_id=subscription_id),
            "records": list(client.iter_invoices(subscription_id=subscription_id)),
        }

    def write(self, result: WorkResult) -> SyncCounts:
        subscription = Subscription.objects.get(pk=int(result.item.target_id))
        read_at = result.data["read_at"]
        _, counts = subscription_upsert(
            {**result.data["detail"], "subscription_id": subscription.subscription_id},
            read_at=read_at,
        )
        counts.add(
            invoices_reconcile(subscription, result.data["records"], complete=True, read_at=read_at)
        )
        return counts


# --- the full sync, as a job (upstream.history.sync_job) --------------------------------------

PAYNET_SYNC_KIND = "paynet.sync"


@register
class PaynetSyncKind(SyncKind, _Paynet):
    """Paynet into the mirror: the subscription list page by page (each subscription written
    from it), then one item per subscription reading all its payment records (invoice_list);
    records Paynet no longer lists are reported once as drift."""

    kind = PAYNET_SYNC_KIND
    label = gettext_lazy("Paynet: sync")
    target_type = "subscriptions.subscription"
    permission = "subscriptions.sync_subscription"
    record_model = SubscriptionInvoice
    page_size = PAGE_LIMIT

    def title(self) -> Any:
        return text(gettext_noop("Sync from Paynet"))

    def list_page(
        self, client: PaynetClient, cursor: int, params: dict[str, Any]
    ) -> tuple[list[dict[str, Any]], int | None]:
        since = params.get("since")
        body = client.subscription_list(
            datab=date.fromisoformat(since) if since else EPOCH,
            datbi=timezone.localdate(),
            starting_after=cursor,
            limit=self.page_size,
        )
        rows = records_of(body)
        # Paging is by row index (paynet.md §6.1): the next page starts after these rows.
        return rows, (cursor + len(rows) if body.get("has_more") and rows else None)

    def listed(
        self, rows: list[dict[str, Any]], read_at: datetime, counts: SyncCounts
    ) -> list[NewItem]:
        return [
            NewItem(
                target=subscription,
                payload={"subscription_id": subscription.subscription_id},
                target_repr=masked_str(subscription),
            )
            for subscription in subscriptions_upsert_many(rows, read_at=read_at, counts=counts)
        ]

    def mirrored(self) -> Any:
        return Subscription.objects.all()

    def read(self, client: PaynetClient, item: WorkItem) -> Any:
        read_at = timezone.now()
        subscription_id = item.payload["subscription_id"]
        return {
            "read_at": read_at,
            "records": list(client.iter_invoices(subscription_id=subscription_id)),
        }

    def write(self, result: WorkResult) -> SyncCounts:
        return self.write_many([result])[0]

    def write_many(self, results: list[WorkResult]) -> list[SyncCounts]:
        # The flush's reads in bulk: one look at the mirror for the whole batch. Only the ids
        # are needed (each subscription was written from the listing).
        subscriptions = Subscription.objects.only("pk").in_bulk(
            [int(r.item.target_id) for r in results]
        )
        return invoices_reconcile_many(
            [
                (subscriptions[int(r.item.target_id)], r.data["records"], r.data["read_at"])
                for r in results
            ],
            complete=True,
            calls=[r.call_id for r in results],
        )
