"""WiseCP fixtures: the mirror synced from the sandbox, a fake transport, upstream-shaped JSON."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from billing.models import Invoice, InvoiceItem
from billing.sync import wisecp_sync
from upstream.models import UpstreamCall

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "wisecp"
# Seed 1 of the sandbox: invoice 302 (TRY, unpaid, customer 27 Merve Koç) holds items 1502
# (seq 1) and 1504 (seq 2); 358 (TRY, unpaid, the same customer) holds 1638, so items of 302 may
# move there; 354 is hers too but paid. 306 (TRY, paid, customer 13) holds 1511, 1512, 1513;
# 311 is EUR.
ITEM_ID = 1502
SOURCE_INVOICE_ID = 302
TARGET_INVOICE_ID = 358
PAID_SAME_CUSTOMER_ID = 354
PAID_INVOICE_ID = 306
PAID_ITEM_ID = 1511
EURO_INVOICE_ID = 311


def load_fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


class FakeTransport(BaseAdapter):
    """A requests transport that answers from a script and records every request it was sent."""

    def __init__(self, *answers: tuple[int, bytes | str, dict[str, str]] | Exception) -> None:
        super().__init__()
        self.answers = list(answers)
        self.sent: list[requests.PreparedRequest] = []

    def send(self, request, **kwargs):
        self.sent.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        status, body, headers = answer
        response = requests.Response()
        response.status_code = status
        response._content = body.encode() if isinstance(body, str) else body
        response.headers = CaseInsensitiveDict(
            {"Content-Type": "application/json; charset=utf-8", **headers}
        )
        response.encoding = "utf-8"
        response.url = request.url
        response.request = request
        return response

    def close(self) -> None:
        pass


@pytest.fixture
def fake_session() -> Callable[..., tuple[requests.Session, FakeTransport]]:
    def make(*answers: Any) -> tuple[requests.Session, FakeTransport]:
        transport = FakeTransport(*answers)
        session = requests.Session()
        session.mount("https://", transport)
        return session, transport

    return make


@pytest.fixture
def synced(sandbox, db):
    """The mirror after a full sync from a freshly reset sandbox (seed 1)."""
    counts = wisecp_sync()
    UpstreamCall.objects.all().delete()
    return counts


@pytest.fixture
def item(synced) -> InvoiceItem:
    return InvoiceItem.objects.select_related("invoice").get(wisecp_id=ITEM_ID)


@pytest.fixture
def target_invoice(synced) -> Invoice:
    return Invoice.objects.get(wisecp_id=TARGET_INVOICE_ID)


def upstream_invoice(sandbox, invoice_id: int) -> dict[str, Any]:
    """The sandbox's own view of an invoice (no float noise), with its items."""
    return next(i for i in sandbox.state("wisecp")["invoices"] if i["id"] == invoice_id)


def upstream_item(sandbox, item_id: int) -> dict[str, Any]:
    for invoice in sandbox.state("wisecp")["invoices"]:
        for entry in invoice["items"]:
            if entry["id"] == item_id:
                return entry
    raise LookupError(item_id)


def item_puts(sandbox) -> list[dict[str, Any]]:
    return sandbox.ledger("wisecp", "UpdateInvoiceItem")


def mirror_of(item: InvoiceItem) -> dict[str, Any]:
    """What a test compares to prove the mirror did not change."""
    fresh = InvoiceItem.objects.get(pk=item.pk)
    return {
        name: getattr(fresh, name)
        for name in (
            "invoice_id",
            "sequence",
            "description",
            "quantity",
            "tax_exempt",
            "amount",
            "total",
            "order_id",
            "due_date",
            "attributes",
            "version",
        )
    }
