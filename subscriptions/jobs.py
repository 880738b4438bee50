"""Bulk Paynet pushes as job kinds: what each item sends, how it is read back, how it is applied."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext as _

from upstream.client import CallRecorder
from upstream.errors import UpstreamError, UpstreamRejectedError, UpstreamResponseError
from upstream.handlers import JobHandler, WorkItem, WorkResult, register

from .client import PaynetClient, to_kurus
from .models import InvoiceStatus, Subscription, SubscriptionInvoice
from .rules import VerdictKind, status_verdict
from .sync import invoices_reconcile

INVOICE_STATUS_KIND = "paynet.invoice_status"
# paynet.md, return codes: 5 duplicatedata.
CODE_DUPLICATE = "5"


def _label(status: Any) -> str:
    try:
        return str(InvoiceStatus(int(status)).label)
    except (TypeError, ValueError):
        return str(status)


SUBSCRIPTION_STATUS_ALL_KIND = "paynet.subscription_status_all"


class _PaynetHandler(JobHandler):
    service = "paynet"

    def concurrency(self) -> int:
        return settings.PAYNET_CONCURRENCY

    def make_client(self, recorder: CallRecorder) -> PaynetClient:
        return PaynetClient(recorder=recorder)


@register
class InvoiceStatusHandler(_PaynetHandler):
    kind = INVOICE_STATUS_KIND
    target_type = "subscriptions.subscriptioninvoice"
    permission = "subscriptions.push_invoice_status"
    operation = "invoice_status_update"

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
            p = item.payload
            now = current.get(int(item.target_id))
            if now is None:
                stale[item.id] = _("The payment record is no longer in the mirror.")
            elif "from_status" in p and now != p["from_status"]:
                stale[item.id] = _(
                    "Not sent: the record changed since the preview (%(then)s, now %(now)s)."
                ) % {"then": _label(p["from_status"]), "now": _label(now)}
            elif (verdict := status_verdict(now, p["status"])).kind != VerdictKind.CHANGE:
                stale[item.id] = verdict.reason
        return stale

    def push(self, client: PaynetClient, item: WorkItem) -> Any:
        p = item.payload
        client.invoice_status_update(
            invoice_id=p["invoice_id"], invoice_no=p["invoice_no"], status=p["status"]
        )
        return p["status"]

    def settle(self, client: PaynetClient, item: WorkItem) -> Any | None:
        p = item.payload
        now = client.invoice_status(
            subscription_id=p["subscription_id"], invoice_id=p["invoice_id"]
        )
        return p["status"] if now == int(p["status"]) else None

    def apply(self, results: list[WorkResult]) -> None:
        by_status: dict[int, list[int]] = {}
        for r in results:
            by_status.setdefault(int(r.data), []).append(int(r.item.target_id))
            r.result = {"from": r.item.payload.get("from_status"), "to": int(r.data)}
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
    target_type = "subscriptions.subscription"
    permission = "subscriptions.push_subscription_invoices_status"
    operation = "invoices_status_update_all"

    def push(self, client: PaynetClient, item: WorkItem) -> Any:
        p = item.payload
        client.invoices_status_update_all(subscription_id=p["subscription_id"], status=p["status"])
        # The answer says nothing per record (paynet.md §5.3): read them back to reconcile.
        try:
            return list(client.iter_invoices(subscription_id=p["subscription_id"]))
        except UpstreamError as error:
            error.in_doubt = True  # applied, not yet read back
            raise

    def settle(self, client: PaynetClient, item: WorkItem) -> Any | None:
        p = item.payload
        rows = list(client.iter_invoices(subscription_id=p["subscription_id"]))
        # Applied if no record that the rules let change is left in another status.
        pending = [
            r
            for r in rows
            if status_verdict(int(r["status"]), p["status"]).kind == VerdictKind.CHANGE
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
                "status": r.item.payload["status"],
            }

    def describe(self, result: dict[str, Any]) -> str:
        changes = [
            f"{c['invoice_no']}: {_label(c['from'])} → {_label(c['to'])}"
            for c in result.get("changed", [])
        ]
        if "unchanged" in result:
            changes.append(_("%(count)s unchanged") % {"count": result["unchanged"]})
        return "; ".join(changes)


CREATE_INVOICE_KIND = "paynet.create_invoice"


def _find_created(client: PaynetClient, p: dict[str, Any]) -> dict[str, Any] | None:
    return next(
        (
            row
            for row in client.iter_invoices(subscription_id=p["subscription_id"])
            if str(row.get("invoice_no")) == p["invoice_no"]
        ),
        None,
    )


def _same_record(row: dict[str, Any], p: dict[str, Any]) -> bool:
    # An invoice_no we generated is ours; one staff typed may be someone else's record.
    return to_kurus(Decimal(p["amount"])) == int(row.get("amount") or 0)


@register
class CreateInvoiceHandler(_PaynetHandler):
    """`create_invoice` with an invoice_no fixed when the operation was recorded.

    Paynet answers without the new record's ids (paynet.md §5.1), so it is found again by that
    number; a resend is refused as a duplicate (code 5) and settled the same way.
    """

    kind = CREATE_INVOICE_KIND
    target_type = "subscriptions.subscription"
    permission = "subscriptions.push_create_invoice"
    operation = "create_invoice"

    def push(self, client: PaynetClient, item: WorkItem) -> Any:
        p = item.payload
        try:
            client.create_invoice(
                subscription_id=p["subscription_id"],
                val_date=datetime.fromisoformat(p["val_date"]),
                amount=Decimal(p["amount"]),
                agent_amount=_decimal(p.get("agent_amount")),
                company_amount=_decimal(p.get("company_amount")),
                invoice_no=p["invoice_no"],
                currency="TRY",
            )
        except UpstreamRejectedError as error:
            if error.upstream_code != CODE_DUPLICATE:
                raise
            found = _find_created(client, p)
            if found is None or not _same_record(found, p):
                raise UpstreamRejectedError(
                    _("Paynet already has a payment record %(no)s.") % {"no": p["invoice_no"]},
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
            # Confirmed with code 0 but not listed: we cannot tell yet; read back later.
            raise UpstreamResponseError(
                _("Paynet confirmed payment record %(no)s but does not list it yet.")
                % {"no": p["invoice_no"]}
            )
        return found

    def settle(self, client: PaynetClient, item: WorkItem) -> Any | None:
        found = _find_created(client, item.payload)
        return found if found is not None and _same_record(found, item.payload) else None

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


def _decimal(value: Any) -> Decimal | None:
    return None if value in (None, "") else Decimal(str(value))
