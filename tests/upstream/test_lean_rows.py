"""The lean writes of a sync's first fill (upstream.rows, changes.insert_created): the same rows
and history rows as the ORM's paths they replace, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from copy import deepcopy
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.utils import timezone

from billing.client import ISTANBUL, WiseCPClient
from billing.models import Invoice
from billing.sync import invoices_sync_many
from subscriptions.models import Subscription
from tests.billing.conftest import SOURCE_INVOICE_ID
from upstream.history.changes import history_source, insert_created
from upstream.history.sync_job import job_items_retarget
from upstream.models import Job, JobItem, RecordChange, UpstreamCall
from upstream.rows import insert_rows


def _subscription(subscription_id: str) -> dict[str, Any]:
    return {
        "subscription_id": subscription_id,
        "reference_no": "REF-1",
        "name_surname": "Zeynep Kaya",
        "amount": Decimal("120.50"),
        "currency": "TRY",
        "begin_date": datetime(2025, 3, 1, 12, 0, tzinfo=ISTANBUL),
        "end_user_email": "zeynep.kaya@example.com",
        "end_user_gsm": "5321234567",
        "status": 1,
        "synced_at": timezone.now(),
    }


def _call() -> UpstreamCall:
    call = UpstreamCall(
        service="paynet", operation="invoice_list", method="POST", url="", outcome="ok",
        created_at=timezone.now(),
    )  # fmt: skip
    insert_rows([call], new_ids=True)
    return call


def _created(pk: int, model: type = Subscription) -> RecordChange:
    return RecordChange.objects.get(
        content_type__model=model._meta.model_name, object_id=pk, action="create"
    )


def test_insert_created_writes_what_bulk_create_writes(db) -> None:
    job = Job.objects.create(kind="paynet.sync", title="Sync", total=0)
    with history_source("sync", job_id=job.pk):
        (orm,) = Subscription.objects.bulk_create([Subscription(**_subscription("S-ORM"))])
        (pk,) = insert_created(Subscription, [_subscription("S-LEAN")])

    lean = Subscription.objects.get(pk=pk)
    for name in ("reference_no", "name_surname", "amount", "begin_date", "end_user_email"):
        assert getattr(lean, name) == getattr(Subscription.objects.get(pk=orm.pk), name)
    assert lean.is_fixed_price is True  # a field left out takes its default
    by_orm, by_lean = _created(orm.pk), _created(pk)
    expected = {**by_orm.new, "subscription_id": "S-LEAN"}
    assert by_lean.new == expected
    # Personal data is kept masked at rest, as the ORM's path keeps it.
    assert by_lean.new["name_surname"] == "Ze*** Ka**"
    assert "zeynep.kaya" not in str(by_lean.new)
    assert (by_lean.source, by_lean.job_id, by_lean.field, by_lean.old) == (
        "sync",
        job.pk,
        "",
        None,
    )


def test_each_record_carries_its_own_call_else_the_sources(db) -> None:
    mine, the_sources = _call(), _call()
    with history_source("sync", call_id=the_sources.pk):
        first, second = insert_created(
            Subscription, [_subscription("S-1"), _subscription("S-2")], calls=[mine.pk, None]
        )
    assert _created(first).call_id == mine.pk
    assert _created(second).call_id == the_sources.pk


def test_outside_a_source_the_write_is_recorded_as_other_without_a_call(db) -> None:
    (pk,) = insert_created(Subscription, [_subscription("S-1")], calls=[_call().pk])
    change = _created(pk)
    assert (change.source, change.call_id) == ("other", None)


def test_stored_form_records_what_a_save_records(db) -> None:
    values = {
        "number": "#1",
        "status": "unpaid",
        "subtotal": Decimal("10.5"),
        "total": Decimal("12.6"),
        "due_date": datetime(2025, 5, 1, 9, 30, tzinfo=ISTANBUL),
        "full_name": "Ali Veli",
        "synced_at": timezone.now(),
    }
    with history_source("sync"):
        saved = Invoice.objects.create(wisecp_id=1, **values)
        (pk,) = insert_created(Invoice, [{"wisecp_id": 2, **values}], stored_form=True)

    expected = {**_created(saved.pk, Invoice).new, "wisecp_id": 2}
    assert _created(pk, Invoice).new == expected
    assert expected["subtotal"] == "10.50"
    assert expected["due_date"].endswith("+00:00")


def test_ids_come_back_in_the_rows_order(db) -> None:
    ids = insert_created(Subscription, [_subscription(f"S-{n}") for n in range(30)])
    assert len(set(ids)) == 30
    for n, pk in enumerate(ids):
        assert Subscription.objects.get(pk=pk).subscription_id == f"S-{n}"


def test_job_items_retarget_names_each_items_new_record(db) -> None:
    job = Job.objects.create(kind="wisecp.sync", title="Sync", total=3)
    items = JobItem.objects.bulk_create(
        JobItem(job=job, position=n, target_type="billing.invoice", target_id="", target_repr="")
        for n in range(1, 4)
    )
    job_items_retarget({items[0].pk: "11", items[2].pk: "33"})
    targets = dict(JobItem.objects.filter(job=job).values_list("position", "target_id"))
    assert targets == {1: "11", 2: "", 3: "33"}


def test_an_invoice_read_twice_in_one_batch_is_written_in_turn(sandbox, db) -> None:
    first = WiseCPClient().get_invoice(SOURCE_INVOICE_ID)
    second = deepcopy(first)
    second["full_name"] = "Ayşe Yılmaz"
    began = timezone.now()
    with history_source("sync"):
        written = invoices_sync_many(
            [(first, began, None), (second, began + timedelta(seconds=1), None)]
        )

    (counts_1, invoice_1), (counts_2, invoice_2) = written
    assert invoice_1.pk == invoice_2.pk
    assert (counts_2.created, counts_2.updated) == (0, 1)
    assert Invoice.objects.get().full_name == "Ayşe Yılmaz"
    listed = len(first["items"])
    assert listed and counts_1.created == 1 + listed and counts_2.unchanged == listed
    assert Invoice.objects.get().items.count() == listed
