"""Ways to pick mirrored records and to read the sandbox's side of them."""

from __future__ import annotations

from typing import Any

from subscriptions.models import InvoiceStatus, Subscription, SubscriptionInvoice


def a_record(status: int = InvoiceStatus.WAITING, **filters: Any) -> SubscriptionInvoice:
    record = (
        SubscriptionInvoice.objects.select_related("subscription")
        .filter(status=status, **filters)
        .order_by("pk")
        .first()
    )
    assert record is not None, f"the seeded mirror has no record in status {status}"
    return record


def a_subscription(*, fixed: bool) -> Subscription:
    subscription = Subscription.objects.filter(is_fixed_price=fixed).order_by("pk").first()
    assert subscription is not None
    return subscription


def upstream_records(sandbox) -> dict[str, dict[str, Any]]:
    """Every record as the sandbox holds it now, by invoice_id."""
    return {str(r["invoice_id"]): r for r in sandbox.state("paynet")["records"]}


def upstream_record(sandbox, record: SubscriptionInvoice) -> dict[str, Any]:
    return upstream_records(sandbox)[record.invoice_id]
