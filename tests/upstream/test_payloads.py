"""Typed payloads: what a job item stores as JSON reads back as the same typed value."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

from billing.pushes import ItemUpdate
from subscriptions.pushes import NewInvoice, StatusChange


def test_a_payload_survives_json_with_its_types():
    payload = NewInvoice(
        subscription_id="S1",
        invoice_no="9123456789",
        val_date=datetime(2031, 12, 15, 7, 0, tzinfo=UTC),
        amount=Decimal("1234.56"),
        agent_amount=None,
        company_amount=Decimal("1234.56"),
    )

    stored = json.loads(json.dumps(payload.to_json()))  # as the JobItem's JSONField keeps it

    assert stored["amount"] == "1234.56" and stored["val_date"] == "2031-12-15T07:00:00+00:00"
    assert NewInvoice.from_json(stored) == payload


def test_an_older_payload_without_the_new_fields_still_reads():
    # Items queued before `from_status` / `version` existed must still run after an upgrade.
    old = {"invoice_id": "7", "invoice_no": "11400556", "subscription_id": "S1", "status": 5}

    change = StatusChange.from_json(old)

    assert (change.status, change.from_status, change.amount) == (5, None, None)
    assert ItemUpdate.from_json({"item_id": 1, "invoice_id": 2, "changes": {}}).version is None
