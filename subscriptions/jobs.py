"""Bulk Paynet pushes as job kinds: what each item sends, how it is read back, how it is applied."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext as _

from upstream.client import CallRecorder
from upstream.handlers import JobHandler, WorkItem, WorkResult, register

from .client import PaynetClient
from .models import InvoiceStatus, Subscription, SubscriptionInvoice
from .rules import VerdictKind, status_verdict
from .sync import invoices_reconcile

INVOICE_STATUS_KIND = "paynet.invoice_status"


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
        return list(client.iter_invoices(subscription_id=p["subscription_id"]))

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
