"""The lean inserts write what bulk_create would, on SQLite (executemany, RETURNING) and on
PostgreSQL (COPY, ids drawn from the sequence)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.contenttypes.models import ContentType
from django.utils import timezone
from django.utils.translation import gettext_lazy

from upstream.models import Job, JobItem, RecordChange, UpstreamCall
from upstream.rows import field_defaults, insert_fields, insert_rows, insert_values, row_values

pytestmark = pytest.mark.django_db


def _job(**extra) -> Job:
    return Job.objects.create(kind="paynet.invoice_status", title="Toplu İşlem", **extra)


def test_new_ids_are_the_rows_ids_and_every_value_reads_back_as_written():
    at = timezone.now() - timedelta(days=3, microseconds=7)
    job = _job()
    content_type = ContentType.objects.get_for_model(Job)
    rows = [
        RecordChange(
            content_type=content_type,
            object_id=100 + n,
            action=RecordChange.Action.UPDATE,
            field="status",
            old={"value": n, "names": ["Şükrü", None]},
            new=None if n % 2 else [1, "2"],
            source=RecordChange.Source.OTHER,
            reason=f"neden {n}",
            job_id=job.pk,
            at=at,
        )
        for n in range(7)
    ]
    before = RecordChange.objects.count()

    insert_rows(rows, new_ids=True)

    assert RecordChange.objects.count() == before + 7
    assert len({r.pk for r in rows}) == 7 and all(not r._state.adding for r in rows)
    for row in rows:
        stored = RecordChange.objects.get(pk=row.pk)  # each object got its own row's id
        assert (stored.object_id, stored.old, stored.new, stored.reason, stored.job_id) == (
            row.object_id,
            row.old,
            row.new,
            row.reason,
            job.pk,
        )
        assert stored.at == at


def test_rows_without_ids_are_numbered_by_the_database_and_lazy_texts_are_stored_as_text():
    job = _job()
    items = [
        JobItem(
            job=job,
            position=n,
            target_type="subscriptions.subscriptioninvoice",
            target_id=str(n),
            target_repr=f"Fatura {n}",
            payload={"status": 3, "amount": "12.50"},
            message=gettext_lazy("Cancelled before it was sent."),
        )
        for n in range(1, 4)
    ]

    insert_rows(items, new_ids=False)

    stored = list(job.items.order_by("position").values_list("position", "payload", "message"))
    assert stored == [
        (n, {"status": 3, "amount": "12.50"}, "Cancelled before it was sent.") for n in (1, 2, 3)
    ]
    assert all(item.pk is None for item in items), "ids not asked for, not read back"


def test_rows_that_carry_their_ids_keep_them():
    now = timezone.now()
    first = UpstreamCall.objects.create(service="paynet", operation="x", created_at=now)
    ids = [first.pk + 1000, first.pk + 1001]
    calls = [
        UpstreamCall(
            pk=pk, service="paynet", operation="invoice_list", request={"n": pk}, created_at=now
        )
        for pk in ids
    ]

    insert_rows(calls, new_ids=False)

    assert sorted(UpstreamCall.objects.filter(pk__in=ids).values_list("pk", "request")) == [
        (pk, {"n": pk}) for pk in ids
    ]


def test_generated_columns_are_left_to_the_database():
    saved = _job(reason="İptal")  # the ORM's own insert, for comparison
    lean = Job(kind="paynet.invoice_status", title=saved.title, reason=saved.reason)

    insert_rows([lean], new_ids=True)

    folds = Job.objects.values_list("title_folded", "reason_folded")
    assert folds.get(pk=lean.pk) == folds.get(pk=saved.pk)
    assert folds.get(pk=lean.pk)[0] != lean.title, "the fold was computed, not copied"


def test_nothing_to_insert_sends_nothing(django_assert_num_queries):
    with django_assert_num_queries(0):
        insert_rows([], new_ids=True)


def test_a_value_of_another_type_goes_through_its_field_as_bulk_create_sends_it():
    job = _job()
    odd = JobItem(job=job, position="7", target_type="x", target_id=True, payload={})
    same = JobItem(job=job, position=8, target_type="x", target_id=True, payload={})

    insert_rows([odd], new_ids=False)
    JobItem.objects.bulk_create([same])

    assert sorted(job.items.values_list("position", "target_id")) == [(7, "True"), (8, "True")]


def test_rows_with_and_without_ids_are_refused_rather_than_renumbered():
    now = timezone.now()
    calls = [
        UpstreamCall(service="paynet", operation="a", created_at=now),
        UpstreamCall(pk=987654, service="paynet", operation="b", created_at=now),
    ]

    with pytest.raises(ValueError, match="every row carries its id or none"):
        insert_rows(calls, new_ids=False)
    assert not UpstreamCall.objects.filter(operation__in=["a", "b"]).exists()


def test_a_left_out_field_gets_its_own_default_per_row():
    fields = insert_fields(JobItem)
    defaults = field_defaults(fields)
    job = _job()
    first, second = (
        row_values(fields, {"job_id": job.pk, "position": n, "target_type": "x"}, defaults)
        for n in (1, 2)
    )
    payload = [f.attname for f in fields].index("payload")

    assert first[payload] == second[payload] == {}
    assert first[payload] is not second[payload], "a default=dict is drawn per row, not shared"
    insert_values(JobItem, fields, [first, second], new_ids=False)
    assert list(job.items.values_list("payload", "state")) == [({}, "pending")] * 2


def test_dates_and_amounts_read_back_as_written_and_odd_ones_go_through_their_field(settings):
    """On PostgreSQL an aware datetime and a finite Decimal skip the field's layers; a naive
    datetime is still made aware in the current time zone, and NaN is still refused."""
    from decimal import Decimal

    from django.core.exceptions import ValidationError

    from subscriptions.models import Subscription

    fields = insert_fields(Subscription)
    defaults = field_defaults(fields)
    aware = timezone.now().replace(microsecond=123456)
    naive = timezone.make_naive(aware)  # the same moment in Istanbul, without its zone
    rows = [
        row_values(
            fields,
            {"subscription_id": sid, "amount": Decimal("12.34"), "begin_date": at},
            defaults,
        )
        for sid, at in (("S-aware", aware), ("S-naive", naive))
    ]

    with pytest.warns(RuntimeWarning, match="naive datetime"):
        insert_values(Subscription, fields, rows, new_ids=False)

    stored = dict(Subscription.objects.values_list("subscription_id", "begin_date"))
    assert stored == {"S-aware": aware, "S-naive": aware}
    assert set(Subscription.objects.values_list("amount", flat=True)) == {Decimal("12.34")}
    nan = row_values(fields, {"subscription_id": "S-nan", "amount": Decimal("NaN")}, defaults)
    with pytest.raises(ValidationError):
        insert_values(Subscription, fields, [nan], new_ids=False)
