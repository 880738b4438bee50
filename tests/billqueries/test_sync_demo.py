"""The catalogue sync (and `manage.py sync payofin`) and the demo batch."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from billqueries.models import BillQueryBatch, Institution
from billqueries.sync import payofin_sync
from upstream.calls.errors import UpstreamResponseError
from upstream.models import UpstreamCall

pytestmark = pytest.mark.django_db


def test_sync_creates_then_finds_unchanged_then_updates(sandbox) -> None:
    first = payofin_sync()
    assert (first.created, first.updated, first.unchanged) == (10, 0, 0)
    iski = Institution.objects.get(soot_code=1)
    assert (iski.name, iski.mask, iski.invoice_type) == ("İSKİ", "9999999####", "Su Faturası")
    assert iski.partial_amount and not iski.additional_no_required and iski.synced_at
    assert Institution.objects.get(soot_code=30).additional_no_required

    second = payofin_sync()
    assert (second.created, second.updated, second.unchanged) == (0, 0, 10)

    Institution.objects.filter(soot_code=1).update(mask="9", name="old")
    Institution.objects.create(soot_code=999, name="Gone")
    third = payofin_sync()
    assert (third.created, third.updated, third.unchanged) == (0, 2, 9)
    assert Institution.objects.get(soot_code=1).mask == "9999999####"
    assert not Institution.objects.get(soot_code=999).active  # kept for its lines, not listed


def test_sync_command_prints_counts(sandbox, capsys) -> None:
    call_command("sync", "payofin")
    assert "payofin: 10 created, 0 updated, 0 unchanged" in capsys.readouterr().out
    call = UpstreamCall.objects.get(operation="sootlist")
    assert call.outcome == "ok" and call.request_headers["SecretKey"] == "***"


def test_sync_failure_changes_nothing(sandbox) -> None:
    sandbox.faults({"kind": "malformed", "service": "payofin", "operation": "sootlist"})
    with pytest.raises(UpstreamResponseError):
        payofin_sync()
    assert Institution.objects.count() == 0


def test_demo_batch_runs_to_the_end_once(sandbox, settings, capsys) -> None:
    settings.SANDBOX_URL = sandbox.url
    call_command("billqueries_demo")
    batch = BillQueryBatch.objects.get()
    assert batch.state == BillQueryBatch.State.FINISHED and 28 <= batch.line_count <= 40
    assert batch.found_count and batch.no_debt_count and batch.failed_count == 3
    assert set(batch.lines.filter(outcome="failed").values_list("result_code", flat=True)) == {
        -14,
        -24,
    }
    assert "Demo bill query batch" in capsys.readouterr().out
    call_command("billqueries_demo")
    assert BillQueryBatch.objects.count() == 1
