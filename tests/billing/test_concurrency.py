"""The record claim across database connections (PostgreSQL: real concurrent transactions).

SQLite's test database cannot show two connections racing, so these run in the PostgreSQL pass.
"""

from __future__ import annotations

import threading

import pytest
from django.db import close_old_connections, connections, transaction

from billing.models import InvoiceItem
from billing.services import ConflictError, invoice_item_update
from billing.sync import wisecp_sync
from tests.conftest import hold_claim, require_postgres
from upstream.models import RecordClaim

from .conftest import ITEM_ID, item_puts

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def in_other_connection(work) -> object:
    """Run `work` in a thread, i.e. on a database connection of its own, and return its result."""
    result: dict[str, object] = {}

    def run() -> None:
        try:
            result["value"] = work()
        except BaseException as error:  # handed to the test thread
            result["error"] = error
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=30)
    if "error" in result:
        raise result["error"]
    return result.get("value")


@pytest.fixture
def pg_item(sandbox, operator) -> InvoiceItem:
    require_postgres()  # the SQLite pass skips, .ci/run's PostgreSQL pass runs it
    wisecp_sync()
    return InvoiceItem.objects.select_related("invoice").get(wisecp_id=ITEM_ID)


def test_a_claim_held_by_another_connection_refuses_the_save(sandbox, pg_item, operator) -> None:
    def hold_lock() -> str:
        with transaction.atomic():
            return hold_claim(pg_item, holder="save-in-another-process").holder

    assert in_other_connection(hold_lock) == "save-in-another-process"

    with pytest.raises(ConflictError) as caught:
        invoice_item_update(
            item=pg_item,
            changes={"description": "Yeni"},
            expected_version=pg_item.version,
            actor=operator,
        )

    assert "is being sent right now" in str(caught.value)
    assert item_puts(sandbox) == []
    assert RecordClaim.objects.get().holder == "save-in-another-process"


def test_two_saves_at_once_push_exactly_once(sandbox, pg_item, operator) -> None:
    # WiseCP answers slowly, so both saves are surely in flight together.
    sandbox.faults(
        {"kind": "latency", "seconds": 0.3, "service": "wisecp", "operation": "UpdateInvoiceItem"}
    )
    start = threading.Barrier(2)
    outcomes: list[str] = []

    def save(text: str) -> None:
        def work() -> str:
            item = InvoiceItem.objects.select_related("invoice").get(pk=pg_item.pk)
            start.wait(timeout=10)
            try:
                invoice_item_update(
                    item=item,
                    changes={"description": text},
                    expected_version=pg_item.version,
                    actor=operator,
                )
            except ConflictError:
                return "conflict"
            return "saved"

        outcomes.append(in_other_connection(work))

    threads = [threading.Thread(target=save, args=(t,)) for t in ("Birinci", "İkinci")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    close_old_connections()

    assert sorted(outcomes) == ["conflict", "saved"]
    [put] = item_puts(sandbox)
    fresh = InvoiceItem.objects.get(pk=pg_item.pk)
    assert fresh.description == put["request"]["description"]
    assert fresh.version == pg_item.version + 1
    assert not RecordClaim.objects.exists()
