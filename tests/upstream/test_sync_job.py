"""A sync is a job (issue 18): resumable, one at a time, per-record failures, quiet when nothing
changed, vanished records reported once; its page, the dashboard's mirror age, the command."""

from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import IntegrityError, connection, transaction
from django.urls import reverse
from django.utils import timezone

from billing.models import Invoice, InvoiceItem
from billing.pushes import WiseCPSyncKind
from billqueries.models import Institution
from subscriptions.models import Subscription, SubscriptionInvoice
from subscriptions.pushes import PaynetSyncKind
from tests.subscriptions.conftest import mirror  # noqa: F401
from tests.subscriptions.helpers import upstream_records
from upstream.history.sync_job import mirror_age, sync_start
from upstream.models import Drift, Job, JobItem, RecordChange, UpstreamCall
from upstream.pushes import bulk, runner

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _queued(queued_tasks):
    """Jobs wait in the queue; each test runs them."""


@pytest.fixture
def quick(settings):
    # A failing read is retried without waiting; the breaker stays out of the way.
    settings.UPSTREAM_BACKOFF_BASE = 0
    settings.UPSTREAM_BACKOFF_CAP = 0
    settings.BREAKER_FAILURES = 1000


class Killed(BaseException):
    """The worker process dies here (nothing after it runs, nothing is handed over)."""


def sync(service: str = "paynet") -> Job:
    job, created = sync_start(service, enqueue=False)
    assert created
    bulk.run_job(job.pk)
    job.refresh_from_db()
    return job


def sync_changes(model, after: int = 0) -> list[int]:
    """The records a sync wrote (one entry per history row) since history row `after`."""
    return list(
        RecordChange.objects.filter(
            content_type=ContentType.objects.get_for_model(model), source="sync", pk__gt=after
        ).values_list("object_id", flat=True)
    )


def last_change() -> int:
    return RecordChange.objects.order_by("-pk").values_list("pk", flat=True).first() or 0


def assert_mirror_is_paynet(sandbox) -> None:
    upstream = upstream_records(sandbox)
    mirrored = {r.invoice_id: r for r in SubscriptionInvoice.objects.all()}
    assert set(mirrored) == set(upstream)
    for invoice_id, row in upstream.items():
        record = mirrored[invoice_id]
        assert record.status == row["status"], invoice_id
        assert record.amount == Decimal(row["amount"]) / 100, invoice_id
    assert Subscription.objects.count() == len(sandbox.state("paynet")["subscriptions"])


def kill_the_listing_at(monkeypatch, cursor: int) -> None:
    real = PaynetSyncKind.list_page

    def list_page(self, client, at, params):
        if at == cursor:
            raise Killed
        return real(self, client, at, params)

    monkeypatch.setattr(PaynetSyncKind, "list_page", list_page)


def the_worker_died(job: Job) -> None:
    """What the sweep finds once the dead worker's leases ran out."""
    past = timezone.now() - timedelta(hours=1)
    JobItem.objects.filter(job=job, state=JobItem.State.SENDING).update(lease_until=past)
    Job.objects.filter(pk=job.pk).update(heartbeat_at=past)
    runner.sweep()


def test_a_sync_killed_mid_run_resumes_and_writes_each_change_once(
    mirror,  # noqa: F811
    monkeypatch,
    settings,
):
    settings.PAYNET_CONCURRENCY = 4
    monkeypatch.setattr(PaynetSyncKind, "page_size", 10)
    upstream = list(upstream_records(mirror).values())
    # Records of several subscriptions, before and after the kill.
    changed = [r for r in upstream[::60] if r["status"] != 4]
    for row in changed:
        mirror.command("paynet", command="set_status", invoice_no=row["invoice_no"], status=4)
    kill_the_listing_at(monkeypatch, 20)
    before = last_change()

    job, _ = sync_start("paynet", enqueue=False)
    with pytest.raises(Killed):
        bulk.run_job(job.pk)
    job.refresh_from_db()
    # Two pages were written as items; the third was never read.
    assert job.params["listing"]["cursor"] == 20 and not job.params["listing"]["closed"]
    assert job.total == 20 and job.state == Job.State.RUNNING
    monkeypatch.undo()
    monkeypatch.setattr(PaynetSyncKind, "page_size", 10)

    the_worker_died(job)
    bulk.run_job(job.pk)

    job.refresh_from_db()
    assert job.state == Job.State.SUCCEEDED
    assert job.total == len(mirror.state("paynet")["subscriptions"])
    assert_mirror_is_paynet(mirror)
    # Each changed record written once, by the sync (the resumed reads found nothing new).
    written = sync_changes(SubscriptionInvoice, before)
    assert sorted(written) == sorted(
        SubscriptionInvoice.objects.filter(
            invoice_id__in=[str(r["invoice_id"]) for r in changed]
        ).values_list("pk", flat=True)
    )
    assert job.params["summary"]["updated"] == len(changed)
    # Each listing page was read into items once: no subscription has two items.
    targets = list(JobItem.objects.filter(job=job).values_list("target_id", flat=True))
    assert len(targets) == len(set(targets))


def test_a_sync_killed_while_items_run_resumes_from_an_empty_mirror(db, sandbox, monkeypatch):
    real = PaynetSyncKind.read
    reads = iter(range(10_000))
    lock = threading.Lock()

    def read(self, client, item):
        with lock:
            n = next(reads)
        if n >= 12:
            raise Killed
        return real(self, client, item)

    monkeypatch.setattr(PaynetSyncKind, "read", read)
    job, _ = sync_start("paynet", enqueue=False)
    with pytest.raises(Killed):
        bulk.run_job(job.pk)
    left = JobItem.objects.filter(job=job).exclude(state=JobItem.State.DONE).count()
    assert left > 0  # the run stopped with items not done
    monkeypatch.undo()

    the_worker_died(job)
    bulk.run_job(job.pk)

    job.refresh_from_db()
    assert job.state == Job.State.SUCCEEDED, job.state
    assert_mirror_is_paynet(sandbox)
    # Every record was created once (one history row of its creation at most).
    created = sync_changes(SubscriptionInvoice)
    assert len(created) == len(set(created))


def test_two_syncs_started_together_run_once(mirror):  # noqa: F811
    first, created = sync_start("paynet", enqueue=False)
    second, again = sync_start("paynet", enqueue=False)

    assert created and not again and second.pk == first.pk
    # The database says so, not only the code: a second active sync row is refused.
    with pytest.raises(IntegrityError), transaction.atomic():
        Job.objects.create(kind="paynet.sync", title="x", state=Job.State.RUNNING)
    # Other upstreams' syncs are their own.
    wisecp, created = sync_start("wisecp", enqueue=False)
    assert created and wisecp.pk != first.pk

    bulk.run_job(first.pk)
    bulk.run_job(second.pk)  # the same job: nothing more is read
    reads = UpstreamCall.objects.filter(job_id=first.pk, operation="invoice_list").count()
    assert reads == Subscription.objects.count()
    # Once it has ended, the next start is a new sync.
    third, created = sync_start("paynet", enqueue=False)
    assert created and third.pk != first.pk


@pytest.mark.django_db(transaction=True)
def test_two_processes_starting_a_sync_at_once_make_one_job(sandbox):
    if connection.vendor == "sqlite":
        pytest.skip("SQLite serializes writers; the race is PostgreSQL's")
    jobs, barrier = [], threading.Barrier(4)

    def start() -> None:
        barrier.wait()
        try:
            jobs.append(sync_start("paynet", enqueue=False)[0].pk)
        finally:
            connection.close()

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(jobs) == 4 and len(set(jobs)) == 1


def test_one_subscription_failing_leaves_the_rest_synced(mirror, quick):  # noqa: F811
    upstream = [r for r in upstream_records(mirror).values() if r["status"] != 4]
    broken = upstream[0]["subscription_id"]
    others = [r for r in upstream if r["subscription_id"] != broken][::50]
    for row in [upstream[0], *others]:
        mirror.command("paynet", command="set_status", invoice_no=row["invoice_no"], status=4)
    mirror.faults(
        {
            "kind": "status",
            "status": 500,
            "service": "paynet",
            "operation": "invoice_list",
            "match": {"subscription_id": broken},
        }
    )

    job = sync()

    assert job.state == Job.State.PARTIALLY_FAILED
    (failed,) = JobItem.objects.filter(job=job, outcome=JobItem.Outcome.FAILED)
    assert failed.payload["subscription_id"] == str(broken)
    assert job.failed == 1 and job.succeeded == job.total - 1
    for row in others:
        assert SubscriptionInvoice.objects.get(invoice_id=str(row["invoice_id"])).status == 4
    stale = SubscriptionInvoice.objects.get(invoice_id=str(upstream[0]["invoice_id"]))
    assert stale.status != 4  # its subscription failed: left as it was, not guessed
    # The job page lists it among the failures.
    assert job.params["summary"]["failed"] == 1


def test_a_sync_with_nothing_changed_writes_no_row(mirror):  # noqa: F811
    sync()  # the mirror now holds exactly what Paynet holds
    changes = RecordChange.objects.count()
    drift = Drift.objects.count()
    stamps = sorted(SubscriptionInvoice.objects.values_list("synced_at", flat=True))
    subscriptions = sorted(Subscription.objects.values_list("synced_at", flat=True))

    job = sync()

    assert job.state == Job.State.SUCCEEDED
    assert RecordChange.objects.count() == changes
    assert Drift.objects.count() == drift
    assert sorted(SubscriptionInvoice.objects.values_list("synced_at", flat=True)) == stamps
    assert sorted(Subscription.objects.values_list("synced_at", flat=True)) == subscriptions
    summary = job.params["summary"]
    assert summary["created"] == summary["updated"] == summary["vanished"] == 0
    assert summary["seen"] == SubscriptionInvoice.objects.count() + Subscription.objects.count()


def test_a_vanished_record_is_reported_once(mirror):  # noqa: F811
    gone = next(iter(upstream_records(mirror).values()))
    mirror.tamper("paynet", invoice_no=gone["invoice_no"], delete=True)

    first = sync()
    second = sync()

    assert first.params["summary"]["vanished"] == 1
    assert second.params["summary"]["vanished"] == 0
    record = SubscriptionInvoice.objects.get(invoice_id=str(gone["invoice_id"]))
    assert Drift.objects.filter(object_id=record.pk, kind="missing").count() == 1
    reported = JobItem.objects.filter(job=first, result__vanished=1)
    assert reported.count() == 1
    assert not JobItem.objects.filter(job=second, result__vanished=1).exists()


def test_a_vanished_subscription_is_reported_once(mirror):  # noqa: F811
    ghost = Subscription.objects.order_by("pk").first()
    Subscription.objects.filter(pk=ghost.pk).update(subscription_id="999999")

    first = sync()
    second = sync()

    assert first.params["summary"]["vanished"] == 1
    assert second.params["summary"]["vanished"] == 0
    assert Drift.objects.filter(object_id=ghost.pk, kind="missing").count() == 1


def test_a_wisecp_sync_job_mirrors_every_invoice_and_reports_a_deleted_item_once(sandbox):
    first = sync("wisecp")
    assert first.state == Job.State.SUCCEEDED
    invoices = sandbox.state("wisecp")["invoices"]
    assert Invoice.objects.count() == len(invoices) == first.total
    assert not JobItem.objects.filter(job=first, target_id="").exists()
    item = InvoiceItem.objects.order_by("pk").first()
    sandbox.wisecp_delete_item(item.wisecp_id)

    second = sync("wisecp")
    third = sync("wisecp")

    assert not InvoiceItem.objects.filter(pk=item.pk).exists()
    assert second.params["summary"]["vanished"] == 1
    assert third.params["summary"]["vanished"] == 0
    assert third.params["summary"]["updated"] == third.params["summary"]["created"] == 0


def test_the_wisecp_listing_reads_every_page_up_to_wisecps_total(sandbox, monkeypatch):
    # The listing stops only where WiseCP's total says; never at a fixed count (issue 18).
    monkeypatch.setattr(WiseCPSyncKind, "page_size", 7)
    job = sync("wisecp")
    pages = UpstreamCall.objects.filter(job_id=job.pk, operation="GetInvoices").count()
    assert pages == -(-len(sandbox.state("wisecp")["invoices"]) // 7)
    assert job.total == Invoice.objects.count()


def test_the_payofin_sync_is_a_job_of_one_item(sandbox):
    job = sync("payofin")
    assert job.state == Job.State.SUCCEEDED and job.total == 1
    assert Institution.objects.count() == job.params["summary"]["created"] > 0


def test_the_sync_job_page_shows_its_figures(mirror, admin_client):  # noqa: F811
    gone = next(iter(upstream_records(mirror).values()))
    mirror.tamper("paynet", invoice_no=gone["invoice_no"], delete=True)
    job = sync()

    page = admin_client.get(reverse("admin:upstream_job_change", args=[job.pk])).content.decode()

    assert 'id="sync-summary"' in page
    summary = job.params["summary"]
    assert f'data-key="seen">{summary["seen"]}<' in page
    assert 'data-key="vanished">1<' in page and 'data-key="failed">0<' in page
    # The per-record results: the vanished record is listed among the records that changed.
    changed = page.split('id="sync-changed"', 1)[1].split("</table>", 1)[0]
    assert gone["invoice_no"] in changed


def test_the_dashboard_shows_the_mirror_age_and_warns_when_late_or_failed(
    mirror,  # noqa: F811
    admin_client,
    settings,
    quick,
):
    settings.SYNC_INTERVAL_SECONDS = 900
    job = sync()
    page = admin_client.get(reverse("admin:index")).content.decode()
    card = page.split('id="mirror-paynet"', 1)[1].split("</div>", 1)[0]
    assert "as of" in card and "synced in" in card
    assert "mirror-late" not in card and "mirror-failed" not in card
    # Not synced for more than twice the interval: late.
    Job.objects.filter(pk=job.pk).update(
        started_at=timezone.now() - timedelta(hours=1),
        finished_at=timezone.now() - timedelta(minutes=59),
    )
    assert mirror_age("paynet").late
    page = admin_client.get(reverse("admin:index")).content.decode()
    assert "mirror-late" in page.split('id="mirror-paynet"', 1)[1].split("</div>", 1)[0]
    # The last sync failed: said so.
    mirror.faults({"kind": "status", "status": 500, "service": "paynet", "operation": "list"})
    sync()
    page = admin_client.get(reverse("admin:index")).content.decode()
    assert "mirror-failed" in page.split('id="mirror-paynet"', 1)[1].split("</div>", 1)[0]


def test_the_dashboard_says_when_no_sync_ran_yet(db, admin_client, settings):
    settings.SYNC_INTERVAL_SECONDS = 900
    page = admin_client.get(reverse("admin:index")).content.decode()
    assert "never synced" in page.split('id="mirror-paynet"', 1)[1].split("</div>", 1)[0]


def test_the_sync_command_is_quiet_without_a_terminal(mirror, capsys):  # noqa: F811
    out, err = StringIO(), StringIO()
    call_command("sync", "paynet", stdout=out, stderr=err)

    assert out.getvalue().count("\n") == 1
    assert out.getvalue().startswith("paynet: 0 created, 0 updated, ")
    assert err.getvalue() == ""
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""
    assert Job.objects.get(kind="paynet.sync").state == Job.State.SUCCEEDED


class Terminal(StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.django_db(transaction=True)
def test_the_sync_command_shows_a_progress_bar_on_a_terminal(sandbox):
    out = Terminal()
    call_command("sync", "payofin", stdout=out)

    shown = out.getvalue()
    assert "payofin" in shown and "1/1" in shown  # tqdm's bar: done/total
    assert shown.rstrip().splitlines()[-1].startswith("payofin: 10 created")


def test_the_sync_command_fails_when_records_failed(mirror, quick):  # noqa: F811
    broken = next(iter(upstream_records(mirror).values()))["subscription_id"]
    mirror.faults(
        {
            "kind": "status",
            "service": "paynet",
            "operation": "invoice_list",
            "match": {"subscription_id": broken},
        }
    )
    with pytest.raises(CommandError, match="1 record"):
        call_command("sync", "paynet", stdout=StringIO())


def test_the_dashboards_latest_jobs_leave_the_syncs_to_their_cards(mirror, admin_client):  # noqa: F811
    job = sync()
    page = admin_client.get(reverse("admin:index")).content.decode()
    latest = page.split('id="dashboard"', 1)[1].split("</div>", 1)[0]
    assert f"#{job.pk} " not in latest
    assert f'href="{reverse("admin:upstream_job_change", args=[job.pk])}"' in page  # its card


def test_the_command_resumes_a_sync_whose_worker_is_gone(mirror, monkeypatch, settings):  # noqa: F811
    settings.PAYNET_CONCURRENCY = 2
    monkeypatch.setattr(PaynetSyncKind, "page_size", 10)
    kill_the_listing_at(monkeypatch, 20)
    job, _ = sync_start("paynet", enqueue=False)
    with pytest.raises(Killed):
        bulk.run_job(job.pk)
    monkeypatch.undo()
    past = timezone.now() - timedelta(hours=1)
    JobItem.objects.filter(job=job, state=JobItem.State.SENDING).update(lease_until=past)
    Job.objects.filter(pk=job.pk).update(heartbeat_at=past)

    out = StringIO()
    call_command("sync", "paynet", stdout=out)

    job.refresh_from_db()
    assert job.state == Job.State.SUCCEEDED and out.getvalue().startswith("paynet: ")
    assert Job.objects.filter(kind="paynet.sync").count() == 1  # resumed, not a second one
    assert_mirror_is_paynet(mirror)


def test_a_failed_listing_is_a_failed_item_and_reports_nothing_vanished(mirror, quick):  # noqa: F811
    from upstream.pushes.jobs import job_retry_failed

    mirror.faults({"kind": "status", "status": 500, "service": "paynet", "operation": "list"})
    job = sync()

    assert job.state == Job.State.FAILED and job.params["listing"]["complete"] is False
    (failed,) = JobItem.objects.filter(job=job)
    assert failed.outcome == JobItem.Outcome.FAILED and "listing" in failed.target_repr
    assert job.params["summary"]["vanished"] == 0
    assert not Drift.objects.exists()  # nothing listed is not everything gone
    # Retried, it says why it cannot read on (no internal error).
    mirror.faults()
    user = get_user_model().objects.create_superuser("boss", password="x")
    job_retry_failed(job=job, actor=user, reason="again")
    bulk.run_job(job.pk)
    failed.refresh_from_db()
    assert failed.outcome == JobItem.Outcome.FAILED
    assert "next sync" in failed.display_message


def test_the_listing_reader_leaves_every_slot_to_the_items(mirror, monkeypatch, settings):  # noqa: F811
    # The reader waits on its queue of pages for the whole listing: on a thread of the pool's
    # `concurrency`, the items would run one short of the upstream's cap until the list ended.
    settings.PAYNET_CONCURRENCY = 3
    sizes = []

    class Pool(bulk.ThreadPoolExecutor):
        def __init__(self, max_workers=None, **kwargs):
            sizes.append(max_workers)
            super().__init__(max_workers=max_workers, **kwargs)

    monkeypatch.setattr(bulk, "ThreadPoolExecutor", Pool)

    assert sync().state == Job.State.SUCCEEDED
    assert sizes == [3 + 1]
