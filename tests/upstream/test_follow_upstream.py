"""The mirror follows the upstream: periodic sync, refresh as a job, a refused push read back."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone
from django_tasks import TaskResultStatus
from django_tasks_db.models import DBTaskResult

from subscriptions.models import InvoiceStatus as S
from tests.subscriptions.conftest import mirror  # noqa: F401
from tests.subscriptions.helpers import a_record
from upstream import tasks
from upstream.models import Drift, RecordChange

pytestmark = pytest.mark.django_db


def waiting_syncs(service: str):
    return DBTaskResult.objects.filter(
        status=TaskResultStatus.READY,
        task_path__endswith=".upstream_sync_periodic",
        args_kwargs__kwargs__service=service,
    )


def test_the_periodic_sync_follows_paynet_and_queues_its_next_run(mirror, settings):  # noqa: F811
    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
    settings.SYNC_INTERVAL_SECONDS = 900
    record = a_record(S.WAITING)
    mirror.tamper("paynet", invoice_no=record.invoice_no, fields={"status": S.CANCEL})

    result = tasks.upstream_sync_periodic.call(service="paynet")
    tasks.upstream_sync_periodic.call(service="paynet")  # never doubled

    record.refresh_from_db()
    assert record.status == S.CANCEL
    assert result["updated"] >= 1
    change = RecordChange.objects.get(object_id=record.pk, field="status")
    assert change.source == "sync"
    assert Drift.objects.get().kind == "outside_change"
    (next_run,) = waiting_syncs("paynet")
    assert next_run.run_after > timezone.now() + timedelta(seconds=800)


def test_a_failed_periodic_sync_keeps_the_chain(db, sandbox, settings):
    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
    sandbox.faults({"kind": "status", "service": "paynet", "status": 500})

    result = tasks.upstream_sync_periodic.call(service="paynet")

    # The listing failed: the sync job failed, with that listing as its failed item.
    assert result["failed"] == 1 and result["state"] == "failed"
    assert waiting_syncs("paynet").count() == 1


def test_sync_interval_zero_schedules_nothing(db, settings):
    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
    settings.SYNC_INTERVAL_SECONDS = 0

    call_command("sync", "--schedule")

    assert not DBTaskResult.objects.filter(task_path__endswith=".upstream_sync_periodic").exists()


def test_sync_schedule_queues_one_per_upstream(db, settings):
    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}

    call_command("sync", "--schedule")
    call_command("sync", "--schedule")

    for service in ("paynet", "wisecp", "payofin"):
        assert waiting_syncs(service).count() == 1


# --- a push refused because the upstream's state differs -----------------------------------


def test_a_refused_push_reads_the_record_back_and_says_what_paynet_holds(mirror, operator):  # noqa: F811
    from subscriptions.services import subscription_invoice_set_status
    from upstream.calls.errors import UpstreamRejectedError
    from upstream.models import UpstreamCall

    record = a_record(S.WAITING)
    # Paynet charged it; the mirror has not seen it yet, so the preview says "will change".
    mirror.tamper("paynet", invoice_no=record.invoice_no, fields={"status": S.DONE_SUCCEED})

    with pytest.raises(UpstreamRejectedError) as refused:
        subscription_invoice_set_status(
            record=record, status=S.CANCEL, actor=operator, reason="customer left"
        )

    assert f"Paynet holds payment record {record.invoice_no} in “Charged”" in str(refused.value)
    record.refresh_from_db()
    assert record.status == S.DONE_SUCCEED
    change = RecordChange.objects.get(object_id=record.pk, field="status")
    read_back = UpstreamCall.objects.filter(operation="invoice_list").latest("id")
    assert (change.source, change.call_id, change.reason) == ("call", read_back.pk, "customer left")
    assert (change.old, change.new) == (S.WAITING, S.DONE_SUCCEED)
    assert not Drift.objects.exists()  # Paynet's own charge: lifecycle, not drift


def test_a_push_refused_for_a_record_changed_outside_makes_drift(mirror, operator):  # noqa: F811
    from subscriptions.services import subscription_invoice_set_status
    from upstream.calls.errors import UpstreamRejectedError

    record = a_record(S.WAITING)
    mirror.tamper("paynet", invoice_no=record.invoice_no, fields={"status": S.DELETED})

    with pytest.raises(UpstreamRejectedError):
        subscription_invoice_set_status(record=record, status=S.CANCEL, actor=operator, reason="r")

    drift = Drift.objects.get()
    assert (drift.kind, drift.expected, drift.found) == ("outside_change", S.WAITING, S.DELETED)
