"""Fixtures for the Paynet app tests."""

from __future__ import annotations

from typing import Any

import pytest

from subscriptions.models import Subscription, SubscriptionInvoice
from subscriptions.sync import paynet_sync

# What paynet_sync() made of the freshly reset (deterministically seeded) sandbox the first time.
_synced: dict[str, list[dict[str, Any]]] = {}


@pytest.fixture
def mirror(sandbox, db):
    """The sandbox's ~40 subscriptions and ~600 records, mirrored; returns the sandbox control.

    The first use runs paynet_sync() over HTTP; later uses write the same rows again, since a
    reset sandbox always holds the same state (about 80 HTTP calls saved per test).
    """
    if not _synced:
        paynet_sync()
        _synced["subscriptions"] = list(Subscription.objects.values())
        _synced["invoices"] = list(SubscriptionInvoice.objects.values())
        return sandbox
    rows = _synced["subscriptions"]
    created = Subscription.objects.bulk_create(
        Subscription(**{k: v for k, v in row.items() if k != "id"}) for row in rows
    )
    new_pk = {row["id"]: sub.pk for row, sub in zip(rows, created, strict=True)}
    SubscriptionInvoice.objects.bulk_create(
        SubscriptionInvoice(
            **{k: v for k, v in row.items() if k not in ("id", "subscription_id")},
            subscription_id=new_pk[row["subscription_id"]],
        )
        for row in _synced["invoices"]
    )
    return sandbox
