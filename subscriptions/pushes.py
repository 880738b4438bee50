"""Paynet pushes as job kinds, one definition each: the typed payload, the re-check against the
preview, the push, the read-back and the apply. A single push runs the same kind inline
(upstream.pushes.single.push_single); a bulk push runs many items in the worker."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db.models import (
    BigIntegerField,
    CharField,
    Count,
    F,
    OuterRef,
    QuerySet,
    Subquery,
    Sum,
    Value,
)
from django.db.models.functions import Cast, Coalesce, Concat, Mod
from django.utils import timezone
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
from upstream.history.refresh import RefreshHandler
from upstream.history.sync import SyncCounts
from upstream.l10n.stored import text
from upstream.pushes.claims import live_claim_ids
from upstream.pushes.jobs import NewItem
from upstream.pushes.kinds import JobKind, Payload, WorkItem, WorkResult, register

from .client import PaynetClient, parse_datetime, to_kurus
from .models import InvoiceStatus, Subscription, SubscriptionInvoice
from .rules import VerdictKind, invoice_create_verdict, status_verdict
from .sync import invoices_reconcile, subscription_upsert

INVOICE_STATUS_KIND = "paynet.invoice_status"
# paynet.md, return codes: 5 duplicatedata.
CODE_DUPLICATE = "5"


def _label(status: Any) -> Any:
    # The lazy label: kept by its message id in an item's message (upstream.l10n.stored).
    try:
        return InvoiceStatus(int(status)).label
    except (TypeError, ValueError):
        return str(status)


SUBSCRIPTION_STATUS_ALL_KIND = "paynet.subscription_status_all"
CREATE_INVOICE_KIND = "paynet.create_invoice"


@dataclass(frozen=True)
class StatusChange(Payload):
    """One record to a new status; `from_status` is what the preview saw."""

    invoice_id: str
    invoice_no: str
    subscription_id: str
    status: int
    from_status: int | None = None
    amount: Decimal | None = None


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


class _PaynetHandler(JobKind):
    service = "paynet"

    def concurrency(self) -> int:
        return settings.PAYNET_CONCURRENCY

    def make_client(self, recorder: CallRecorder) -> PaynetClient:
        return PaynetClient(recorder=recorder)


@register
class InvoiceStatusHandler(_PaynetHandler):
    kind = INVOICE_STATUS_KIND
    label = gettext_lazy("Paynet: payment record status")
    target_type = "subscriptions.subscriptioninvoice"
    permission = "subscriptions.push_invoice_status"
    operation = "invoice_status_update"
    payload_type = StatusChange

    def recheck(self, items: list[WorkItem]) -> dict[int, str]:
        # The job sends the status chosen at the preview; if the record moved on since (a single
        # push, a sync), sending it would overwrite a newer change.
        current = dict(
            SubscriptionInvoice.objects.filter(
                pk__in=[int(i.target_id) for i in items]
            ).values_list("pk", "status")
        )
        stale = {}
        for item in items:
            p = self.payload(item)
            now = current.get(int(item.target_id))
            if now is None:
                stale[item.id] = text(
                    gettext_noop("The payment record is no longer in the mirror.")
                )
            elif p.from_status is not None and now != p.from_status:
                stale[item.id] = text(
                    gettext_noop(
                        "Not sent: the record changed since the preview (%(then)s, now %(now)s)."
                    ),
                    then=_label(p.from_status),
                    now=_label(now),
                )
            elif (verdict := status_verdict(now, p.status)).kind != VerdictKind.CHANGE:
                stale[item.id] = verdict.reason
        return stale

    def expand_queryset(self, queryset: QuerySet) -> QuerySet:
        return queryset.select_related("subscription")

    def expand(
        self, records: list[SubscriptionInvoice], tags: dict[int, str], params: dict[str, Any]
    ) -> dict[int, NewItem]:
        # from_status is the status the launch saw, so the re-check skips a record moved since.
        return {
            r.pk: NewItem(
                target=r,
                target_repr=r.invoice_no,
                payload=StatusChange(
                    invoice_id=r.invoice_id,
                    invoice_no=r.invoice_no,
                    subscription_id=r.subscription.subscription_id,
                    status=int(params["status"]),
                    from_status=int(tags[r.pk]),
                    amount=r.amount,
                ).to_json(),
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


@register
class SubscriptionStatusAllHandler(_PaynetHandler):
    kind = SUBSCRIPTION_STATUS_ALL_KIND
    label = gettext_lazy("Paynet: status of a subscription's records")
    target_type = "subscriptions.subscription"
    permission = "subscriptions.push_subscription_invoices_status"
    operation = "invoices_status_update_all"
    payload_type = StatusAllChange

    def expand(
        self, records: list[Subscription], tags: dict[int, str], params: dict[str, Any]
    ) -> dict[int, NewItem]:
        # What the mirror holds for each subscription's records when its item is written: the
        # re-check just before sending skips a subscription whose records changed after that.
        seen: dict[int, dict[str, int]] = {r.pk: {} for r in records}
        rows = SubscriptionInvoice.objects.filter(subscription_id__in=seen).values_list(
            "subscription_id", "invoice_id", "status"
        )
        for sub, invoice_id, status in rows:
            seen[sub][invoice_id] = status
        return {
            r.pk: NewItem(
                target=r,
                # Job pages and the call log show every viewer the name masked.
                target_repr=masked_str(r),
                payload=StatusAllChange(
                    subscription_id=r.subscription_id,
                    reference_no=r.reference_no,
                    status=int(params["status"]),
                    seen=seen[r.pk],
                    fingerprint=tags[r.pk],
                ).to_json(),
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
        records = self._records(items)
        stale = {}
        for item in items:
            p = self.payload(item)
            if p.seen is None:
                continue
            current = records[int(item.target_id)]
            now = {k: status for k, (_pk, status) in current.items()}
            changed = [k for k in now.keys() | p.seen.keys() if now.get(k) != p.seen.get(k)]
            if changed:
                stale[item.id] = text(
                    gettext_noop(
                        "Not sent: %(count)s payment records of this subscription changed since "
                        "the preview."
                    ),
                    count=len(changed),
                )
            elif p.fingerprint and p.fingerprint != statuses_fingerprint(
                list(current.values()), like=p.fingerprint
            ):
                stale[item.id] = text(
                    gettext_noop(
                        "Not sent: payment records of this subscription changed since the preview."
                    )
                )
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
            r for r in rows if status_verdict(int(r["status"]), p.status).kind == VerdictKind.CHANGE
        ]
        return None if pending else rows

    def apply(self, results: list[WorkResult]) -> None:
        subs = Subscription.objects.in_bulk([int(r.item.target_id) for r in results])
        for r in results:
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
class CreateInvoiceHandler(_PaynetHandler):
    """`create_invoice` with an invoice_no fixed when the operation was recorded.

    Paynet answers without the new record's ids (paynet.md §5.1), so it is found again by that
    number; a resend is refused as a duplicate (code 5) and settled the same way.
    """

    kind = CREATE_INVOICE_KIND
    label = gettext_lazy("Paynet: new payment record")
    target_type = "subscriptions.subscription"
    permission = "subscriptions.push_create_invoice"
    operation = "create_invoice"
    payload_type = NewInvoice

    def recheck(self, items: list[WorkItem]) -> dict[int, str]:
        # The create's rules again, against the mirror as it is now: a retry a day later, or
        # after the same record was created another way, must not create it twice.
        subs = Subscription.objects.in_bulk([int(i.target_id) for i in items])
        stale = {}
        for item in items:
            p = self.payload(item)
            subscription = subs.get(int(item.target_id))
            if subscription is None:
                stale[item.id] = text(gettext_noop("The subscription is no longer in the mirror."))
                continue
            errors = invoice_create_verdict(
                subscription=subscription,
                val_date=p.val_date,
                amount=p.amount,
                agent_amount=p.agent_amount,
                company_amount=p.company_amount,
                invoice_no=p.invoice_no,
            ).errors(allow_duplicate=p.allow_duplicate)
            if errors:
                stale[item.id] = _("Not sent: %(errors)s") % {
                    "errors": " ".join(m for messages in errors.values() for m in messages)
                }
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
            invoices_reconcile(subscription, [r.data])
            record = subscription.invoices.get(invoice_id=str(r.data["invoice_id"]))
            r.result = {"record": record.pk, "invoice_no": record.invoice_no}

    def describe(self, result: dict[str, Any]) -> str:
        if "invoice_no" not in result:
            return ""
        return _("Payment record %(no)s created") % {"no": result["invoice_no"]}


SUBSCRIPTION_REFRESH_KIND = "paynet.refresh"


@register
class SubscriptionRefreshHandler(RefreshHandler, _PaynetHandler):
    """Re-read a subscription and all its payment records (subscription detail, invoice_list);
    the item lists per record what changed, and records Paynet no longer lists are drift."""

    kind = SUBSCRIPTION_REFRESH_KIND
    target_type = "subscriptions.subscription"
    permission = "subscriptions.sync_subscription"
    record_model = SubscriptionInvoice

    def read(self, client: PaynetClient, item: WorkItem) -> Any:
        subscription_id = item.payload["subscription_id"]
        return {
            "detail": client.subscription_detail(subscription_id=subscription_id),
            "records": list(client.iter_invoices(subscription_id=subscription_id)),
        }

    def write(self, result: WorkResult) -> SyncCounts:
        subscription = Subscription.objects.get(pk=int(result.item.target_id))
        _, counts = subscription_upsert(
            {**result.data["detail"], "subscription_id": subscription.subscription_id}
        )
        counts.add(invoices_reconcile(subscription, result.data["records"], complete=True))
        return counts
