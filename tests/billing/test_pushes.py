"""The invoice item update kind (billing/pushes.py): one rule set that every path asks.

The single edit (the API's PATCH, through the service), the bulk preview and the check just
before sending (`recheck`) judge the same record and request alike; the bulk launch freezes its
selection with the verdict's queryset twin in a constant number of statements; a refresh takes
every selected invoice, however many.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext

from billing.client import ISTANBUL
from billing.models import Invoice, InvoiceItem
from billing.pushes import (
    AT_STAKE,
    FROZEN_TAG,
    PERM_OVERRIDE_CLOSED,
    ItemUpdate,
    bulk_request,
    bulk_selection,
    item_request,
    item_update_kind,
)
from billing.services import (
    invoice_item_bulk_preview,
    invoice_item_bulk_update,
    invoice_refresh_start,
)
from upstream.models import Job, JobItem
from upstream.pushes.bulk import freeze, parse, prepare_job
from upstream.pushes.kinds import WorkItem
from upstream.pushes.verdicts import VerdictKind

from .conftest import (
    EURO_INVOICE_ID,
    ITEM_ID,
    PAID_ITEM_ID,
    PAID_SAME_CUSTOMER_ID,
    TARGET_INVOICE_ID,
    item_puts,
)

CHANGE, SAME, BLOCKED = VerdictKind.CHANGE, VerdictKind.SAME, VerdictKind.BLOCKED
CANCELLED_ITEM_ID = 1576  # on #334, cancelled (Can Aydın)
OTHER_CUSTOMERS_INVOICE_ID = 310  # TRY, unpaid, Burak Öztürk


def _invoice(wisecp_id: int) -> int:
    return Invoice.objects.get(wisecp_id=wisecp_id).pk


def _same_customer_as_302(invoice_id: int) -> None:
    Invoice.objects.filter(wisecp_id=invoice_id).update(user_id=27)


@dataclass(frozen=True)
class Case:
    item: int
    # The change by local field name; an invoice by its local id (resolved when run).
    changes: Callable[[InvoiceItem], dict[str, Any]]
    expected: VerdictKind
    reason: str = ""
    override: bool = False
    may_override: bool = False
    prepare: Callable[[], None] | None = None
    # The check before sending keeps its reason where every viewer reads it: names masked.
    masks_names: bool = False
    note: str = ""  # in the reason of a change that goes ahead


CASES = {
    "no change": Case(ITEM_ID, lambda i: {"description": i.description, "sequence": 1}, SAME),
    "money without a reason": Case(ITEM_ID, lambda i: {"amount": Decimal("1000.00")}, BLOCKED),
    "quantity without a reason": Case(ITEM_ID, lambda i: {"quantity": 2}, BLOCKED),
    "money with a reason": Case(ITEM_ID, lambda i: {"amount": Decimal("1000.00")}, CHANGE, "x"),
    "money on a paid invoice": Case(
        PAID_ITEM_ID, lambda i: {"amount": Decimal("350.00")}, BLOCKED, "İade"
    ),
    "override asked without the permission": Case(
        PAID_ITEM_ID, lambda i: {"amount": Decimal("350.00")}, BLOCKED, "İade", override=True
    ),
    "override asked with the permission": Case(
        PAID_ITEM_ID,
        lambda i: {"amount": Decimal("350.00")},
        CHANGE,
        "İade",
        override=True,
        may_override=True,
        note="by override",
    ),
    "override with the permission, no reason": Case(
        PAID_ITEM_ID,
        lambda i: {"amount": Decimal("350.00")},
        BLOCKED,
        override=True,
        may_override=True,
    ),
    "move to another currency's invoice": Case(
        ITEM_ID,
        lambda i: {"invoice": _invoice(EURO_INVOICE_ID)},
        BLOCKED,
        "x",
        prepare=lambda: _same_customer_as_302(EURO_INVOICE_ID),
    ),
    "move to another customer's invoice": Case(
        ITEM_ID,
        lambda i: {"invoice": _invoice(OTHER_CUSTOMERS_INVOICE_ID)},
        BLOCKED,
        "x",
        masks_names=True,
    ),
    "move into a paid invoice": Case(
        ITEM_ID, lambda i: {"invoice": _invoice(PAID_SAME_CUSTOMER_ID)}, BLOCKED, "x"
    ),
    "move without a reason": Case(
        ITEM_ID, lambda i: {"invoice": _invoice(TARGET_INVOICE_ID)}, BLOCKED
    ),
    "move with a reason": Case(
        ITEM_ID, lambda i: {"invoice": _invoice(TARGET_INVOICE_ID)}, CHANGE, "Birleştirme"
    ),
    "description only, no reason": Case(ITEM_ID, lambda i: {"description": "Yeni"}, CHANGE),
    "due date on a cancelled invoice": Case(
        CANCELLED_ITEM_ID,
        lambda i: {"due_date": datetime(2031, 1, 31, 23, 59, 59, tzinfo=ISTANBUL)},
        CHANGE,
        note="moves no money",
    ),
    "description on a paid invoice": Case(
        PAID_ITEM_ID, lambda i: {"description": "Açıklama"}, CHANGE, note="moves no money"
    ),
}


def _api_body(changes: dict[str, Any]) -> dict[str, Any]:
    body = {}
    for name, value in changes.items():
        if isinstance(value, Decimal):
            value = str(value)
        elif isinstance(value, datetime):
            value = value.isoformat()
        body[name] = value
    return body


def _texts(body: Any) -> list[str]:
    if isinstance(body, dict):
        return [t for value in body.values() for t in _texts(value)]
    if isinstance(body, list):
        return [t for value in body for t in _texts(value)]
    return [str(body)]


def _recheck(record: InvoiceItem, case: Case, changes: dict[str, Any], actor) -> tuple[str, str]:
    """What the runner's check just before sending says of the item the single path builds."""
    kind = item_update_kind()
    permitted = case.override and actor.has_perm(PERM_OVERRIDE_CLOSED)
    request = item_request(changes, reason=case.reason, override=permitted, version=record.version)
    payload = kind.build(record, request).to_json()
    item = WorkItem(id=1, target_id=str(record.pk), target_repr="", payload=payload, in_doubt=False)
    stale = kind.recheck([item])
    if item.id not in stale:
        return CHANGE, ""
    message = str(stale[item.id]).removeprefix("Not sent: ")
    return (SAME if message == "Already so." else BLOCKED), message


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_same_verdict_on_every_path(case: Case, sandbox, synced, operator, api_operator) -> None:
    if case.prepare:
        case.prepare()
    if case.may_override:
        operator.user_permissions.add(
            Permission.objects.get(
                codename="override_closed_invoice", content_type__app_label="billing"
            )
        )
        operator = type(operator).objects.get(pk=operator.pk)
        api_operator.force_authenticate(operator)
    record = InvoiceItem.objects.select_related("invoice").get(wisecp_id=case.item)
    changes = case.changes(record)

    # The bulk preview of the same change on this one item (the "fields" action).
    preview = invoice_item_bulk_preview(
        items=InvoiceItem.objects.filter(pk=record.pk),
        action="fields",
        value=changes,
        reason=case.reason,
        override=case.override,
        actor=operator,
    )
    [row] = preview.rows
    # The check just before sending, on the payload the single path would send.
    rechecked, recheck_reason = _recheck(record, case, changes, operator)
    # The single edit: the API's PATCH through the service.
    response = api_operator.patch(
        f"/api/invoice-items/{record.pk}/",
        {
            **_api_body(changes),
            "version": record.version,
            "reason": case.reason,
            "override": case.override,
        },
        format="json",
    )
    if response.status_code == 200:
        single = CHANGE if response.json()["version"] == record.version + 1 else SAME
    else:
        assert response.status_code in (400, 409), response.json()
        single = BLOCKED

    assert (row.kind, rechecked, single) == (case.expected,) * 3
    assert len(item_puts(sandbox)) == (1 if case.expected == CHANGE else 0)
    if case.expected == BLOCKED and not case.masks_names:
        # The same words, whichever path read them.
        assert recheck_reason == row.reason
        assert any(row.reason in text for text in _texts(response.json()))
    if case.note:  # a change that goes ahead on a closed invoice says so in the preview
        assert case.note in row.reason


def test_the_bulk_move_preview_asks_the_same_rules(sandbox, synced, operator) -> None:
    # The named bulk actions build the same requests: a move, and a due date on closed invoices.
    items = InvoiceItem.objects.filter(wisecp_id__in=[ITEM_ID, PAID_ITEM_ID, CANCELLED_ITEM_ID])
    moved = invoice_item_bulk_preview(items=items, action="move", value=_invoice(358), reason="")
    kinds = {row.item.wisecp_id: (row.kind, row.reason) for row in moved.rows}
    assert kinds[ITEM_ID][0] == BLOCKED and "Give a reason" in kinds[ITEM_ID][1]
    assert kinds[PAID_ITEM_ID][0] == BLOCKED  # another customer's invoice, and paid

    due = invoice_item_bulk_preview(items=items, action="due_date", value="2031-01-31 23:59:59")
    assert {row.kind for row in due.rows} == {CHANGE}
    assert sum(due.notes.values()) == 2  # the paid and the cancelled invoice, said so


def test_a_bulk_move_out_of_a_closed_invoice_takes_a_permitted_override(
    sandbox, synced, operator, queued_tasks
) -> None:
    items = InvoiceItem.objects.filter(wisecp_id=1622)  # on #354, paid; Merve Koç's
    target = _invoice(TARGET_INVOICE_ID)

    for override in (False, True):  # without the permission, asking changes nothing
        preview = invoice_item_bulk_preview(
            items=items, action="move", value=target, override=override, actor=operator
        )
        assert [row.kind for row in preview.rows] == [BLOCKED]
        with pytest.raises(ValidationError):
            invoice_item_bulk_update(
                items=items, action="move", value=target, actor=operator, reason="x"
            )

    operator.user_permissions.add(Permission.objects.get(codename="override_closed_invoice"))
    allowed = type(operator).objects.get(pk=operator.pk)
    preview = invoice_item_bulk_preview(
        items=items, action="move", value=target, override=True, actor=allowed
    )
    assert [row.kind for row in preview.rows] == [CHANGE]
    job = invoice_item_bulk_update(
        items=items, action="move", value=target, actor=allowed, reason="İade", override=True
    )
    prepare_job(job.pk)
    payload = ItemUpdate.from_json(JobItem.objects.get(job=job).payload)
    assert (payload.override, payload.reason, payload.changes) == (
        True,
        "İade",
        {"owner_id": TARGET_INVOICE_ID},
    )
    assert item_update_kind().recheck([_work_item(JobItem.objects.get(job=job))]) == {}


def _work_item(row: JobItem) -> WorkItem:
    return WorkItem(
        id=row.pk,
        target_id=row.target_id,
        target_repr=row.target_repr,
        payload=row.payload,
        in_doubt=False,
    )


# The queryset twin: the same rule as a filter --------------------------------------------------


TWIN_REQUESTS = {
    "move, reason": ("move", lambda: _invoice(TARGET_INVOICE_ID), "x", False),
    "move, no reason": ("move", lambda: _invoice(TARGET_INVOICE_ID), "", False),
    "move, override": ("move", lambda: _invoice(TARGET_INVOICE_ID), "x", True),
    "move into a paid invoice": ("move", lambda: _invoice(PAID_SAME_CUSTOMER_ID), "x", True),
    "move to euros": ("move", lambda: _invoice(EURO_INVOICE_ID), "x", False),
    "move to a company's invoice": ("move", lambda: _invoice(305), "x", True),
    "due date": ("due_date", lambda: "2031-01-31 23:59:59", "", False),
    "no due date": ("due_date", lambda: None, "", False),
    "renumber": ("renumber", lambda: None, "", False),
    "unit price": ("fields", lambda: {"amount": "100.00"}, "x", False),
    "unit price, no reason": ("fields", lambda: {"amount": "100.00"}, "", False),
    "unit price, override": ("fields", lambda: {"amount": "100.00"}, "x", True),
    "quantity": ("fields", lambda: {"quantity": 2}, "x", False),
    "a price too big": (
        "fields",
        lambda: {"quantity": 10_000, "amount": "999999999999"},
        "x",
        True,
    ),
    "description": ("fields", lambda: {"description": "Hosting"}, "", False),
    "tax exemption and total": ("fields", lambda: {"tax_exempt": True, "total": "10"}, "x", False),
}


@pytest.mark.parametrize("case", TWIN_REQUESTS.values(), ids=TWIN_REQUESTS.keys())
def test_the_queryset_twin_selects_what_the_verdict_lets_change(case, synced) -> None:
    action, value, reason, override = case
    # Some invoices without WiseCP's customer id: their names decide (rules, same_customer).
    Invoice.objects.filter(wisecp_id__in=[302, 354, 358, 361]).update(user_id=None)
    Invoice.objects.filter(wisecp_id=361).update(full_name="Merve Koç")
    Invoice.objects.filter(wisecp_id=342).update(user_id=None)  # Kapadokya's, by its name
    # Gaps for a renumber to close.
    InvoiceItem.objects.filter(wisecp_id__in=[1504, 1512, 1523, 1596]).update(sequence=9)
    kind = item_update_kind()
    items = InvoiceItem.objects.all()
    bulk = bulk_request(action, value(), reason=reason, override=override)

    judged = {
        item.pk: kind.verdict(item, bulk.for_item(item))
        for item in bulk.selection(items).select_related("invoice")
    }
    frozen = bulk_selection(items, bulk)

    changing = {pk for pk, verdict in judged.items() if verdict.kind == CHANGE}
    assert set(frozen.values_list("pk", flat=True)) == changing
    count, ids, amount = freeze(frozen, FROZEN_TAG, AT_STAKE)
    assert count == len(changing)
    # What the approval thresholds weigh: the kind's amount of the payload each item gets.
    records = InvoiceItem.objects.select_related("invoice").in_bulk(changing)
    tags = dict(parse(ids))
    weights = []
    for pk, tag in tags.items():
        version, _sep, position = tag.partition(".")
        assert int(version) == records[pk].version
        request = bulk.for_item(records[pk], position=int(position) if position else None)
        weights.append(kind.amount(kind.build(records[pk], request)))
    assert amount == sum(weights, Decimal("0"))


# The frozen launch -----------------------------------------------------------------------------


def _rows(n: int) -> list[InvoiceItem]:
    """n items of one customer's open TRY invoices (sequences 2, 4: a renumber moves both)."""
    invoices = Invoice.objects.bulk_create(
        Invoice(
            wisecp_id=20_000 + i,
            number=f"#{20_000 + i}",
            status="unpaid",
            currency="TRY",
            user_id=5,
            full_name="Müşteri",
        )
        for i in range(n // 2 + 1)
    )
    return InvoiceItem.objects.bulk_create(
        InvoiceItem(
            wisecp_id=60_000 + i,
            invoice=invoices[i // 2],
            sequence=2 + 2 * (i % 2),
            description=f"Kalem {i}",
            amount=Decimal("10.00"),
            total=Decimal("10.00"),
        )
        for i in range(n)
    )


@pytest.mark.parametrize(
    ("action", "value"),
    [
        ("due_date", "2031-01-31 23:59:59"),
        ("move", "target"),
        ("renumber", None),
        ("fields", {"description": "Toplu"}),
    ],
)
def test_the_launch_takes_the_same_statements_for_20_and_for_200_items(
    operator, queued_tasks, action, value
) -> None:
    target = Invoice.objects.create(
        wisecp_id=19_999, number="#19999", status="unpaid", user_id=5, full_name="Müşteri"
    )
    operator.has_perm("billing.push_invoiceitem")  # the permission cache, read once
    counts = []
    for n in (20, 200):
        InvoiceItem.objects.exclude(invoice=target).delete()
        Invoice.objects.exclude(pk=target.pk).delete()
        Job.objects.all().delete()
        items = InvoiceItem.objects.filter(pk__in=[i.pk for i in _rows(n)])
        with CaptureQueriesContext(connection) as queries:
            job = invoice_item_bulk_update(
                items=InvoiceItem.objects.filter(wisecp_id__gte=60_000),
                action=action,
                value=target.pk if value == "target" else value,
                actor=operator,
                reason="toplu",
            )
        counts.append(len(queries))
        assert job.total == n and job.prepared == 0
        assert not JobItem.objects.filter(job=job).exists()
        assert items.count() == n
    assert counts[0] == counts[1], counts


def test_the_worker_writes_the_items_in_chunks_and_each_is_judged_before_sending(
    sandbox, synced, operator, queued_tasks
) -> None:
    InvoiceItem.objects.filter(wisecp_id=1504).update(sequence=7)  # #302: 1, 7
    items = InvoiceItem.objects.filter(invoice__wisecp_id__in=[302, 306, 310])
    job = invoice_item_bulk_update(
        items=items, action="renumber", value=None, actor=operator, reason=""
    )
    # #302's second item and #310, #306 are already 1, 2, 3: only 1504 needs a new number.
    assert job.total == 1

    due = invoice_item_bulk_update(
        items=items, action="due_date", value="2031-01-31 23:59:59", actor=operator, reason=""
    )
    prepare_job(due.pk, chunk=2)
    rows = list(JobItem.objects.filter(job=due).order_by("position"))
    assert len(rows) == due.total == items.count()
    paid = next(r for r in rows if r.target_id == str(InvoiceItem.objects.get(wisecp_id=1511).pk))
    payload = ItemUpdate.from_json(paid.payload)
    assert payload.changes == {"due_date": "2031-01-31 23:59:59"}
    assert "→" in payload.summary and payload.reason == ""
    # One of them is saved meanwhile: the check before sending skips it, as the preview would.
    InvoiceItem.objects.filter(pk=int(paid.target_id)).update(version=9)
    stale = item_update_kind().recheck([_work_item(r) for r in rows])
    assert list(stale) == [paid.pk]
    assert "changed since the preview" in stale[paid.pk]


def test_a_renumber_leaves_out_an_item_being_saved_without_moving_the_others(
    synced, operator, queued_tasks
) -> None:
    # #306 becomes 1511: 1, 1513: 3, 1512: 9, so 1513 → 2 and 1512 → 3. A save of 1513 is in
    # flight: it is left out, and 1512 still counts it (3, not 2), as the preview does.
    from tests.conftest import hold_claim

    InvoiceItem.objects.filter(wisecp_id=1512).update(sequence=9)
    hold_claim(InvoiceItem.objects.get(wisecp_id=1513))
    items = InvoiceItem.objects.filter(invoice__wisecp_id=306)

    preview = invoice_item_bulk_preview(items=items, action="renumber")
    job = invoice_item_bulk_update(
        items=items, action="renumber", value=None, actor=operator, reason=""
    )

    shown = {row.item.wisecp_id: (row.kind, row.new) for row in preview.rows}
    assert shown == {1511: (SAME, "1"), 1513: (BLOCKED, "2"), 1512: (CHANGE, "3")}
    frozen = parse(Job.objects.only("selection").get(pk=job.pk).selection)
    item_1512 = InvoiceItem.objects.get(wisecp_id=1512)
    assert frozen == [(item_1512.pk, f"{item_1512.version}.3")]


# The request, the payload and drift ------------------------------------------------------------


def test_a_payload_reads_back_as_its_request(synced) -> None:
    kind = item_update_kind()
    item = InvoiceItem.objects.select_related("invoice").get(wisecp_id=ITEM_ID)
    for changes in (
        {"amount": Decimal("120.00"), "quantity": 3},
        {"invoice": _invoice(TARGET_INVOICE_ID), "due_date": None},
        {"description": "Yeni", "attributes": {"a": 1}},
    ):
        request = item_request(changes, reason="x", version=item.version)
        payload = kind.build(item, request)
        again = kind.request_of(ItemUpdate.from_json(payload.to_json()))
        assert kind.build(item, again) == payload
        assert kind.verdict(item, again) == kind.verdict(item, request)


def test_a_credit_line_weighs_its_absolute_amount(synced) -> None:
    kind = item_update_kind()
    item = InvoiceItem.objects.select_related("invoice").get(wisecp_id=ITEM_ID)  # 1,199.00
    credit = kind.build(item, item_request({"total": Decimal("-10000000")}, reason="x"))
    assert kind.amount(credit) == Decimal("10001199.00")
    moved = kind.build(item, item_request({"invoice": _invoice(TARGET_INVOICE_ID)}, reason="x"))
    assert kind.amount(moved) == Decimal("1199.00")


def test_a_drift_repush_request_reads_the_stored_values(synced) -> None:
    kind = item_update_kind()
    item = InvoiceItem.objects.select_related("invoice").get(wisecp_id=ITEM_ID)
    target = Invoice.objects.get(wisecp_id=TARGET_INVOICE_ID)

    request = kind.drift_request(item, {"amount": "1000.00", "invoice": target.pk})

    assert request.changes == {"amount": Decimal("1000.00"), "invoice": target}
    assert request.version == item.version
    assert kind.verdict(item, request).kind == BLOCKED  # a money change: the re-push's reason
    assert kind.verdict(item, replace(request, reason="Geri al")).kind == CHANGE
    assert kind.drift_fields == {
        "sequence",
        "description",
        "quantity",
        "tax_exempt",
        "amount",
        "total",
        "order_id",
        "invoice",
    }
    with pytest.raises(ValidationError):
        kind.drift_request(item, {"due_date": "2031-01-31 23:59:59"})


# A refresh of any number of invoices -----------------------------------------------------------


def _invoices(n: int, start: int = 100_000) -> None:
    Invoice.objects.bulk_create(
        (Invoice(wisecp_id=start + i, number=f"#{start + i}", status="unpaid") for i in range(n)),
        batch_size=2000,
    )


def test_a_refresh_of_more_than_10000_invoices_takes_them_all(operator, queued_tasks) -> None:
    # It used to stop at the first 10,000 without a word.
    _invoices(10_001)

    job = invoice_refresh_start(invoices=Invoice.objects.all(), actor=operator)

    assert (job.total, job.state) == (10_001, Job.State.QUEUED)  # a read needs no approval
    assert "10001" in job.title.replace(".", "").replace(",", "")
    assert prepare_job(job.pk) == 10_001
    rows = JobItem.objects.filter(job=job)
    assert rows.count() == 10_001
    last = rows.order_by("-position").first()
    assert last.payload == {"wisecp_id": 100_000 + 10_000}


def test_a_refresh_launch_takes_the_same_statements_for_150_and_for_1500(
    operator, queued_tasks
) -> None:
    operator.has_perm("billing.sync_invoice")
    counts = []
    for n, start in ((150, 100_000), (1500, 200_000)):
        _invoices(n, start)
        invoices = Invoice.objects.filter(wisecp_id__gte=start)
        with CaptureQueriesContext(connection) as queries:
            job = invoice_refresh_start(invoices=invoices, actor=operator)
        counts.append(len(queries))
        assert job.total == n
    assert counts[0] == counts[1], counts
