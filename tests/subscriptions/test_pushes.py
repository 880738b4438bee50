"""Paynet's push kinds: each kind's rules, and one verdict on every path that asks it.

The single push (the service and the API), the bulk preview, the bulk launch's queryset filter
and the check just before sending must agree for the same record and request; the sandbox says
what reached Paynet.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from django.core.exceptions import ValidationError

from subscriptions.models import InvoiceStatus, Subscription, SubscriptionInvoice
from subscriptions.pushes import (
    CREATE_INVOICE,
    INVOICE_STATUS,
    STATUS_ALL,
    CreateRequest,
    StatusRequest,
    invoice_create_verdict,
    invoice_split,
)
from subscriptions.services import (
    subscription_invoice_create_preview,
    subscription_invoice_set_status_bulk,
    subscription_invoice_status_preview,
    subscription_set_status_all,
    subscription_status_all_preview,
)
from tests.subscriptions.helpers import a_record, a_subscription, upstream_record
from upstream.models import Job, UpstreamCall
from upstream.pushes.bulk import parse
from upstream.pushes.kinds import PushKind, WorkItem
from upstream.pushes.verdicts import VerdictKind

S = InvoiceStatus
CHANGE, SAME, BLOCKED = VerdictKind.CHANGE, VerdictKind.SAME, VerdictKind.BLOCKED


# --- transition rules ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "target", "kind"),
    [
        (S.WAITING, S.CANCEL, VerdictKind.CHANGE),
        (S.WAITING, S.EXTERNAL_CHARGED, VerdictKind.CHANGE),
        (S.DONE_UNSUCCEED, S.WAITING, VerdictKind.CHANGE),
        (S.CANCEL, S.DELETED, VerdictKind.CHANGE),
        (S.EXTERNAL_CHARGED, S.DONE_UNSUCCEED, VerdictKind.CHANGE),
        (S.CANCEL, S.CANCEL, VerdictKind.SAME),
        (S.DELETED, S.DELETED, VerdictKind.SAME),
        (S.DONE_SUCCEED, S.CANCEL, VerdictKind.BLOCKED),
        (S.DELETED, S.WAITING, VerdictKind.BLOCKED),
        (S.WAITING, S.DONE_SUCCEED, VerdictKind.BLOCKED),
        (S.DONE_SUCCEED, S.DONE_SUCCEED, VerdictKind.BLOCKED),
        (S.WAITING, 1, VerdictKind.BLOCKED),
        (S.WAITING, 7, VerdictKind.BLOCKED),
    ],
)
def test_status_verdict_rule_by_rule(current, target, kind):
    record = SubscriptionInvoice(status=current)
    assert INVOICE_STATUS.verdict(record, StatusRequest(target)).kind == kind


def test_blocked_verdicts_say_why():
    assert "not a Paynet status" in INVOICE_STATUS.judge(0, 1).reason
    assert "Only Paynet's own charge" in INVOICE_STATUS.judge(0, 3).reason
    assert "Charged" in INVOICE_STATUS.judge(3, 5).reason
    assert "Deleted" in INVOICE_STATUS.judge(6, 0).reason
    assert INVOICE_STATUS.judge(5, 5).reason == "Already in this status."
    assert INVOICE_STATUS.judge(0, 5).reason == ""


# --- the create's rules ---


@pytest.mark.parametrize(
    ("agent", "company", "expected"),
    [
        (None, None, ("0", "100")),
        ("30", None, ("30", "70")),
        (None, "30", ("70", "30")),
        ("40", "60", ("40", "60")),
    ],
)
def test_invoice_split_gives_the_rest_to_the_missing_share(agent, company, expected):
    as_decimal = lambda v: None if v is None else Decimal(v)  # noqa: E731
    split = invoice_split(Decimal("100"), as_decimal(agent), as_decimal(company))
    assert split == tuple(Decimal(v) for v in expected)


def test_create_verdict_lists_each_rule_it_checked(db):
    subscription = Subscription.objects.create(
        subscription_id="s-1", reference_no="1", is_fixed_price=True
    )

    verdict = invoice_create_verdict(
        subscription=subscription,
        val_date=datetime(2020, 1, 1, tzinfo=UTC),
        amount=Decimal("10"),
        agent_amount=Decimal("4"),
        company_amount=Decimal("5"),
        currency="USD",
        now=datetime(2025, 1, 1, tzinfo=UTC),
    )

    errors = verdict.errors()
    assert set(errors) == {"__all__", "val_date", "currency"}
    assert len(errors["__all__"]) == 2  # fixed price, and 4 + 5 ≠ 10
    assert sum(not check.passed for check in verdict.checks) == 4


# --- one verdict on every path --------------------------------------------------------------


@pytest.fixture(autouse=True)
def _jobs_queued_not_run(queued_tasks):
    """A bulk launch here is looked at, not run: whether its selection holds the record."""


def recheck(kind: PushKind, record: Any, payload: Any) -> str | None:
    """What the check just before sending says of the item: None when it may be sent."""
    item = WorkItem(
        id=1,
        target_id=str(record.pk),
        target_repr=str(record),
        payload=payload.to_json(),
        in_doubt=False,
    )
    return kind.recheck([item]).get(item.id)


def frozen_pks(job: Job) -> set[int]:
    return {pk for pk, _tag in parse(Job.objects.only("selection").get(pk=job.pk).selection)}


STATUS_CASES = {
    "a normal change": (S.WAITING, S.CANCEL, CHANGE),
    "the same status": (S.CANCEL, S.CANCEL, SAME),
    "a charged record": (S.DONE_SUCCEED, S.CANCEL, BLOCKED),
    "a deleted record": (S.DELETED, S.WAITING, BLOCKED),
    "target 3, only Paynet's charge": (S.WAITING, S.DONE_SUCCEED, BLOCKED),
    "an unknown status": (S.WAITING, 7, BLOCKED),
}


@pytest.mark.parametrize(
    ("current", "target", "expected"), STATUS_CASES.values(), ids=STATUS_CASES.keys()
)
def test_status_same_verdict_on_every_path(
    mirror, operator, api_operator, current, target, expected
):
    record = a_record(current)
    request = StatusRequest(target)
    one = SubscriptionInvoice.objects.filter(pk=record.pk)

    verdict = INVOICE_STATUS.verdict(record, request)
    assert verdict.kind == expected
    assert bool(verdict.reason) == (expected != CHANGE)

    # The bulk preview: this record's verdict, or the whole preview refused for its target.
    try:
        preview = subscription_invoice_status_preview(records=one, status=target)
    except ValidationError as refused:
        assert verdict.kind == BLOCKED and refused.messages == [verdict.reason]
    else:
        ((previewed, seen),) = preview.sample
        assert previewed.pk == record.pk and seen == verdict
        assert preview.counts[verdict.kind.value] == 1

    # The bulk launch: the queryset twin, and the selection a launch freezes.
    assert one.filter(INVOICE_STATUS.change_filter(request)).exists() == (verdict.kind == CHANGE)
    try:
        job = subscription_invoice_set_status_bulk(
            records=one, status=target, actor=operator, reason="every path"
        )
    except ValidationError:
        assert verdict.kind != CHANGE
    else:
        assert verdict.kind == CHANGE and frozen_pks(job) == {record.pk}

    # Just before sending: the item built for this record and request.
    stale = recheck(INVOICE_STATUS, record, INVOICE_STATUS.build(record, request))
    assert stale == (None if verdict.kind == CHANGE else verdict.reason)

    # The single push, through the API: 200 and sent, 200 and nothing to send, or 400 and why.
    response = api_operator.post(
        f"/api/subscription-invoices/{record.pk}/set-status/",
        {"status": target, "reason": "every path"},
        format="json",
    )
    writes = mirror.ledger("paynet", "invoice_status_update")
    record.refresh_from_db()
    if verdict.kind == BLOCKED:
        assert response.status_code == 400 and response.json()["detail"] == verdict.reason
        assert record.status == current
    else:
        assert response.status_code == 200 and response.json()["status"] == target
        assert upstream_record(mirror, record)["status"] == record.status == target
    assert len(writes) == (1 if verdict.kind == CHANGE else 0)


def _all_records(subscription: Subscription, status: int) -> Subscription:
    # The mirror's records only: what the rules judge before anything is sent.
    subscription.invoices.update(status=status)
    return subscription


STATUS_ALL_CASES = {
    "a record will change": (lambda: a_record(S.WAITING).subscription, S.CANCEL, CHANGE),
    "every record already in it": (
        lambda: _all_records(a_subscription(fixed=True), S.CANCEL),
        S.CANCEL,
        SAME,
    ),
    "every record charged": (
        lambda: _all_records(a_subscription(fixed=True), S.DONE_SUCCEED),
        S.CANCEL,
        BLOCKED,
    ),
    "target 3, only Paynet's charge": (
        lambda: a_record(S.WAITING).subscription,
        S.DONE_SUCCEED,
        BLOCKED,
    ),
    "an unknown status": (lambda: a_record(S.WAITING).subscription, 7, BLOCKED),
}


@pytest.mark.parametrize(
    ("pick", "target", "expected"), STATUS_ALL_CASES.values(), ids=STATUS_ALL_CASES.keys()
)
def test_status_all_same_verdict_on_every_path(
    mirror, operator, api_operator, pick, target, expected
):
    subscription = pick()
    request = StatusRequest(target)
    one = Subscription.objects.filter(pk=subscription.pk)

    verdict = STATUS_ALL.verdict(subscription, request)
    assert verdict.kind == expected

    # The preview judges each record: something changes exactly when the subscription does.
    try:
        preview = subscription_status_all_preview(subscriptions=one, status=target)
    except ValidationError as refused:
        assert verdict.kind == BLOCKED and refused.messages == [verdict.reason]
    else:
        assert (preview.will_change > 0) == (verdict.kind == CHANGE)
        assert preview.total == subscription.invoices.count()

    assert one.filter(STATUS_ALL.change_filter(request)).exists() == (verdict.kind == CHANGE)
    try:
        job = subscription_set_status_all(
            subscriptions=one, status=target, actor=operator, reason="every path"
        )
    except ValidationError:
        assert verdict.kind != CHANGE
    else:
        assert verdict.kind == CHANGE and frozen_pks(job) == {subscription.pk}

    stale = recheck(STATUS_ALL, subscription, STATUS_ALL.build(subscription, request))
    assert stale == (None if verdict.kind == CHANGE else verdict.reason)

    response = api_operator.post(
        f"/api/subscriptions/{subscription.pk}/set-invoices-status/",
        {"status": target, "reason": "every path"},
        format="json",
    )
    assert response.status_code == (202 if verdict.kind == CHANGE else 400)
    if response.status_code == 202:
        assert frozen_pks(Job.objects.get(pk=response.json()["job"]["id"])) == {subscription.pk}
    assert mirror.ledger("paynet") == []  # launched, not run


VAL_DATE = datetime(2030, 1, 15, 7, 0, tzinfo=UTC)

CREATE_CASES = {
    "a valid create": (False, {"val_date": VAL_DATE, "amount": Decimal("100")}, CHANGE),
    "a charge date in the past": (
        False,
        {"val_date": datetime(2020, 1, 15, 7, 0, tzinfo=UTC), "amount": Decimal("100")},
        BLOCKED,
    ),
    "a fixed-price subscription": (True, {"val_date": VAL_DATE, "amount": Decimal("100")}, BLOCKED),
    "shares not adding up": (
        False,
        {
            "val_date": VAL_DATE,
            "amount": Decimal("100"),
            "agent_amount": Decimal("30"),
            "company_amount": Decimal("60"),
        },
        BLOCKED,
    ),
}


@pytest.mark.parametrize(
    ("fixed", "fields", "expected"), CREATE_CASES.values(), ids=CREATE_CASES.keys()
)
def test_create_same_verdict_on_every_path(mirror, api_operator, fixed, fields, expected):
    subscription = a_subscription(fixed=fixed)
    request = CreateRequest(**fields)

    verdict = CREATE_INVOICE.verdict(subscription, request)
    assert verdict.kind == expected

    # The confirmation page: the same rules, field by field.
    preview = subscription_invoice_create_preview(subscription=subscription, **fields)
    assert (preview.errors == {}) == (verdict.kind == CHANGE)
    assert " ".join(m for ms in preview.errors.values() for m in ms) == verdict.reason

    # A create is never launched from a selection: it has no queryset twin.
    with pytest.raises(NotImplementedError):
        CREATE_INVOICE.change_filter(request)

    stale = recheck(CREATE_INVOICE, subscription, CREATE_INVOICE.build(subscription, request))
    assert stale == (None if verdict.kind == CHANGE else f"Not sent: {verdict.reason}")

    body = {k: str(v) if isinstance(v, Decimal) else v.isoformat() for k, v in fields.items()}
    response = api_operator.post(
        f"/api/subscriptions/{subscription.pk}/invoices/",
        {**body, "reason": "every path"},
        format="json",
    )
    created = mirror.ledger("paynet", "create_invoice")
    if verdict.kind == CHANGE:
        assert response.status_code == 201 and len(created) == 1
        assert response.json()["invoice_no"] == created[0]["invoice_no"]
    else:
        assert response.status_code == 400 and created == []
        assert not UpstreamCall.objects.exists()


# --- the queryset twins and what each kind weighs ---------------------------------------------


@pytest.mark.parametrize("target", [0, 2, 3, 4, 5, 6, 7])
def test_each_queryset_twin_selects_exactly_what_its_verdict_lets_change(mirror, target):
    request = StatusRequest(target)
    for kind, model in ((INVOICE_STATUS, SubscriptionInvoice), (STATUS_ALL, Subscription)):
        records = model.objects.all()
        if model is Subscription:
            records = records.prefetch_related("invoices")
        judged = {r.pk for r in records if kind.verdict(r, request).kind == CHANGE}
        filtered = set(
            model.objects.filter(kind.change_filter(request)).values_list("pk", flat=True)
        )
        assert filtered == judged, kind.kind
        assert bool(judged) == (target not in (3, 7)), kind.kind


def test_each_kind_weighs_what_the_approval_thresholds_count(mirror):
    record = a_record(S.WAITING)
    request = StatusRequest(S.CANCEL)
    assert INVOICE_STATUS.amount(INVOICE_STATUS.build(record, request)) == record.amount

    subscription = record.subscription
    changing = [
        r for r in subscription.invoices.all() if INVOICE_STATUS.verdict(r, request).kind == CHANGE
    ]
    assert len(changing) < subscription.invoices.count(), "the fixture should mix verdicts"
    assert STATUS_ALL.amount(STATUS_ALL.build(subscription, request)) == sum(
        r.amount for r in changing
    )

    create = CreateRequest(val_date=VAL_DATE, amount=Decimal("288.98"))
    assert CREATE_INVOICE.amount(CREATE_INVOICE.build(subscription, create)) == Decimal("288.98")


def test_a_payload_reads_back_as_the_request_it_was_built_from(mirror):
    record = a_record(S.WAITING)
    request = StatusRequest(S.CANCEL)
    assert INVOICE_STATUS.request_of(INVOICE_STATUS.build(record, request)) == request
    assert STATUS_ALL.request_of(STATUS_ALL.build(record.subscription, request)) == request

    typed = CreateRequest(val_date=VAL_DATE, amount=Decimal("10"), invoice_no="77001122")
    assert CREATE_INVOICE.request_of(CREATE_INVOICE.build(record.subscription, typed)) == typed
    generated = CREATE_INVOICE.build(record.subscription, CreateRequest(VAL_DATE, Decimal("10")))
    assert generated.generated and generated.invoice_no.startswith("9")
    assert CREATE_INVOICE.request_of(generated).invoice_no == generated.invoice_no


def test_only_a_records_status_is_re_pushed_when_it_drifts(mirror):
    record = a_record(S.WAITING)
    assert INVOICE_STATUS.drift_fields == {"status"}
    assert INVOICE_STATUS.drift_request(record, {"status": S.CANCEL}) == StatusRequest(S.CANCEL)
    assert STATUS_ALL.drift_fields == CREATE_INVOICE.drift_fields == frozenset()
