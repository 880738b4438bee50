"""Personal data at rest (KVKK): the record history keeps personal fields masked as the call
log does; `mask_personal_data` covers the history; PERSONAL_DATA_RETENTION_DAYS bounds what may
stay in clear, masked by the periodic sweep without breaking timelines or totals."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from security.models import RetentionMark
from security.retention import personal_data_retention_sweep
from subscriptions.models import Subscription
from upstream.models import RecordChange, UpstreamCall

NAME, EMAIL, GSM = "Zeynep Kaya", "zeynep.kaya@example.com", "5321234567"
MASKED = {"name_surname": "Ze*** Ka**", "end_user_email": "z***@example.com"}


@pytest.fixture
def sub(db) -> Subscription:
    return Subscription.objects.create(
        subscription_id="0f6f1c1e-0000-4000-8000-00000000a001",
        reference_no="90000700",
        name_surname=NAME,
        end_user_email=EMAIL,
        end_user_gsm=GSM,
        is_fixed_price=False,
    )


def test_history_rows_keep_personal_fields_masked(sub) -> None:
    created = RecordChange.objects.get(object_id=sub.pk, action="create")
    assert created.new["name_surname"] == "Ze*** Ka**"
    assert created.new["end_user_email"] == "z***@example.com"
    assert created.new["end_user_gsm"] == "532***4567"
    assert created.new["reference_no"] == "90000700", "other fields as they are"
    Subscription.objects.filter(pk=sub.pk).update(end_user_gsm="5559876543")
    change = RecordChange.objects.get(object_id=sub.pk, field="end_user_gsm")
    assert (change.old, change.new) == ("532***4567", "555***6543")
    stored = " ".join(str(v) for v in RecordChange.objects.values_list("old", "new"))
    assert NAME not in stored and EMAIL not in stored and GSM not in stored


def _clear_history(sub: Subscription, days_ago: float) -> RecordChange:
    """A history row as kept before masking: the name in clear."""
    row = RecordChange.objects.filter(object_id=sub.pk, action="create").first()
    row.pk = None
    RecordChange.objects.bulk_create([row])
    row = RecordChange.objects.order_by("-pk").first()
    RecordChange.objects.filter(pk=row.pk).update(
        field="name_surname",
        action="update",
        old=NAME,
        new="Zeynep Demir",
        at=timezone.now() - timedelta(days=days_ago),
    )
    return row


def _clear_call(days_ago: float) -> UpstreamCall:
    call = UpstreamCall.objects.create(
        service="paynet",
        operation="list",
        method="POST",
        url="https://paynet.test/v1/subscription/list",
        response={"name_surname": NAME, "end_user_email": EMAIL},
        outcome="ok",
        created_at=timezone.now(),
    )
    # As stored before masking (the model masks what it writes): put the clear body back.
    UpstreamCall.objects.filter(pk=call.pk).update(
        response={"name_surname": NAME, "end_user_email": EMAIL},
        created_at=timezone.now() - timedelta(days=days_ago),
    )
    return call


def test_mask_personal_data_covers_the_history(sub) -> None:
    row = _clear_history(sub, 1)
    out = StringIO()
    call_command("mask_personal_data", stdout=out)
    assert out.getvalue().splitlines()[-1] == "1 history rows masked"
    row.refresh_from_db()
    assert (row.old, row.new) == ("Ze*** Ka**", "Ze*** De***")


def test_the_retention_sweep_masks_what_is_older_once(sub, settings) -> None:
    settings.PERSONAL_DATA_RETENTION_DAYS = 365
    old_row, new_row = _clear_history(sub, 400), _clear_history(sub, 10)
    old_call, new_call = _clear_call(400), _clear_call(10)
    rows_before = RecordChange.objects.filter(object_id=sub.pk).count()

    assert personal_data_retention_sweep() == 2
    old_row.refresh_from_db()
    old_call.refresh_from_db()
    assert (old_row.old, old_row.new) == ("Ze*** Ka**", "Ze*** De***")
    assert old_call.response == MASKED
    # Younger than the retention: not this sweep's (masked when written, as new rows are).
    new_row.refresh_from_db()
    new_call.refresh_from_db()
    assert new_row.old == NAME and new_call.response["name_surname"] == NAME
    # Nothing deleted: the timeline keeps every event.
    assert RecordChange.objects.filter(object_id=sub.pk).count() == rows_before
    assert UpstreamCall.objects.count() == 2
    # The mark: the next sweep reads only what aged since.
    assert RetentionMark.objects.get().done_until is not None
    assert personal_data_retention_sweep() == 0
    later = timezone.now() + timedelta(days=356)
    assert personal_data_retention_sweep(now=later) == 2


def test_no_retention_keeps_everything(sub, settings) -> None:
    settings.PERSONAL_DATA_RETENTION_DAYS = 0
    row = _clear_history(sub, 4000)
    assert personal_data_retention_sweep() == 0
    row.refresh_from_db()
    assert row.old == NAME


def test_the_periodic_sweep_runs_it(sub, settings) -> None:
    from upstream.tasks import jobs_sweep

    settings.PERSONAL_DATA_RETENTION_DAYS = 30
    _clear_history(sub, 40)
    result = jobs_sweep.call()
    assert result["personal_masked"] == 1
