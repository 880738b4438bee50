"""The circuit breaker of each upstream: when it opens, what it refuses, how jobs pause and resume,
the half-open probe, and that every process sees the same breaker.

Real HTTP against the sandbox; its request log says what reached the upstream, its ledger what
it applied.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from django_tasks import TaskResultStatus

from subscriptions.models import InvoiceStatus as S
from subscriptions.models import SubscriptionInvoice
from subscriptions.services import (
    subscription_invoice_set_status,
    subscription_invoice_set_status_bulk,
)
from subscriptions.sync import paynet_sync
from tests.conftest import worker_env
from upstream.calls.breaker import (
    CLOSED,
    GO,
    HALF_OPEN,
    OPEN,
    PROBE,
    WAIT,
    Admission,
    Breaker,
    BreakerGate,
    BreakerOpen,
    breaker_admit,
    breaker_get,
    breaker_next,
    call_verdict,
    unavailable,
)
from upstream.calls.client import Exchange
from upstream.calls.errors import (
    PushInDoubt,
    UpstreamError,
    UpstreamRejectedError,
    UpstreamUnavailable,
)
from upstream.calls.log import DbCallRecorder
from upstream.models import Job, JobItem, UpstreamCall
from upstream.pushes import bulk
from upstream.pushes.bulk import prepare_job
from upstream.pushes.jobs import job_retry_failed

ROOT = Path(__file__).resolve().parents[2]
INVOICES = "/api/subscription-invoices/"


@pytest.fixture(autouse=True)
def _jobs_queued_not_run(queued_tasks):
    """A job created here is queued and never runs by itself: each test decides who runs it."""


@pytest.fixture
def mirror(sandbox, db):
    paynet_sync()
    return sandbox


@pytest.fixture
def breaker(settings):
    """A breaker that opens after 3 failed calls and cools down for a second."""
    settings.BREAKER_FAILURES = 3
    settings.BREAKER_COOLDOWN_SECONDS = 1
    return settings


def waiting(n: int):
    ids = list(
        SubscriptionInvoice.objects.filter(status=S.WAITING).order_by("pk").values_list("pk")[:n]
    )
    assert len(ids) == n
    return SubscriptionInvoice.objects.filter(pk__in=[i for (i,) in ids])


def queued_job(records, actor) -> Job:
    job = subscription_invoice_set_status_bulk(
        records=records, status=S.CANCEL, actor=actor, reason="test"
    )
    prepare_job(job.pk)
    return job


def status_requests(sandbox) -> list[dict]:
    """invoice_status_update requests that reached the sandbox, applied or not."""
    return sandbox.requests("paynet", "invoice_status_update")


def status_writes(sandbox) -> list[str]:
    """invoice_status_update writes the sandbox applied."""
    return [e["request"]["invoice_no"] for e in sandbox.ledger("paynet", "invoice_status_update")]


def open_paynet_breaker(sandbox) -> Breaker:
    """Paynet fails (503) until the breaker opens on failed reads; then Paynet is healthy again,
    so whatever is refused next is refused by the breaker alone."""
    sandbox.faults({"kind": "status", "status": 503, "service": "paynet"})
    with pytest.raises(UpstreamError):
        paynet_sync(recorder=DbCallRecorder())  # calls count when they are in the call log
    sandbox.faults()
    state = breaker_get("paynet")
    assert state.state == OPEN
    return state


def wait_out_the_cooldown(state: Breaker) -> None:
    time.sleep(max(0.0, (state.open_until - timezone.now()).total_seconds()) + 0.05)


def exchange(outcome: str, status: int | None = None) -> Exchange:
    e = Exchange("paynet", "invoice_list", "POST", "http://x", {}, None)
    e.outcome, e.status_code = outcome, status
    return e


# The rules, one by one ---------------------------------------------------------------------


def test_transport_errors_timeouts_and_5xx_count_refusals_and_429_do_not():
    assert call_verdict(exchange("failed")) is False  # no answer (transport, timeout)
    assert call_verdict(exchange("failed", 503)) is False
    assert call_verdict(exchange("in_doubt", 500)) is False
    assert call_verdict(exchange("ok", 200)) is True
    assert call_verdict(exchange("rejected", 200)) is True  # the upstream said no: it is up
    assert call_verdict(exchange("rejected", 401)) is True
    assert call_verdict(exchange("failed", 429)) is None  # slow down: neither up nor down
    assert call_verdict(exchange("pending")) is None


def test_breaker_opens_at_the_threshold_and_an_answer_in_between_resets_the_count():
    now = datetime(2026, 1, 1, tzinfo=UTC)
    cooldown = timedelta(seconds=60)

    def after(breaker, verdicts):
        return breaker_next(breaker, verdicts, now=now, threshold=3, cooldown=cooldown)

    closed = Breaker("paynet")
    assert after(closed, [False, False]).state == CLOSED
    assert after(closed, [False, False, True, False, False]) == Breaker("paynet", failures=2)
    opened = after(closed, [False, False, False])
    assert (opened.state, opened.failures, opened.open_until) == (OPEN, 3, now + cooldown)
    assert opened.shown(now) == OPEN and opened.shown(now + cooldown) == HALF_OPEN
    # Only the probe closes it: a late answer while open resets the count, not the state.
    assert after(opened, [True]).state == OPEN

    probing = Breaker("paynet", state=HALF_OPEN, failures=3, probe_holder="w")
    closed_again = after(probing, [True, False])
    assert (closed_again.state, closed_again.failures, closed_again.probe_holder) == (
        CLOSED,
        1,
        "",
    )
    reopened = after(probing, [False])
    assert (reopened.state, reopened.open_until, reopened.probe_holder) == (
        OPEN,
        now + cooldown,
        "",
    )


def test_gate_lets_one_probe_call_through_and_trips_on_its_own_failures(breaker):
    gate = BreakerGate("paynet")
    probe = Admission(PROBE, Breaker("paynet", state=HALF_OPEN, failures=3))
    gate.follow(probe)
    gate.before(exchange("pending"))
    with pytest.raises(BreakerOpen):
        gate.before(exchange("pending"))  # one call until the probe answers
    gate.follow(probe)  # the runner looks again while the probe is on its way
    with pytest.raises(BreakerOpen):
        gate.before(exchange("pending"))
    gate.after(exchange("ok", 200))
    assert gate.mode == GO
    gate.before(exchange("pending"))

    gate = BreakerGate("paynet")
    gate.follow(Admission(GO, Breaker("paynet", failures=1)))
    gate.after(exchange("failed", 503))
    gate.follow(Admission(GO, Breaker("paynet", failures=1)))  # nothing new written yet
    assert gate.mode == GO
    gate.after(exchange("failed", 503))  # the database's one plus two of its own
    assert gate.mode == WAIT and gate.take_trip()
    with pytest.raises(BreakerOpen):
        gate.before(exchange("pending"))


# Opening -----------------------------------------------------------------------------------


def test_it_opens_on_consecutive_failures_and_not_on_business_refusals(mirror, operator, breaker):
    records = list(waiting(5))
    mirror.faults({"kind": "reject", "operation": "invoice_status_update", "message": "Hayır"})
    for record in records[:4]:
        with pytest.raises(UpstreamRejectedError):
            subscription_invoice_set_status(
                record=record, status=S.CANCEL, actor=operator, reason="test"
            )
    assert breaker_get("paynet") == Breaker("paynet")

    reads = len(mirror.requests("paynet", "invoice_list"))  # the mirror's sync
    mirror.faults({"kind": "status", "status": 503, "operation": "invoice_status_update"})
    with pytest.raises(PushInDoubt):
        subscription_invoice_set_status(
            record=records[4], status=S.CANCEL, actor=operator, reason="test"
        )

    state = breaker_get("paynet")
    assert (state.state, state.failures) == (OPEN, 3)
    # Three attempts failed, then the breaker kept the read-back in the request from going out.
    assert len(status_requests(mirror)) == 4 + 3
    assert len(mirror.requests("paynet", "invoice_list")) == reads
    assert breaker_get("wisecp") == Breaker("wisecp"), "each upstream has its own breaker"


def test_a_single_push_stopped_midway_with_nothing_sent_is_refused_like_any_other(
    mirror, operator, breaker
):
    breaker.BREAKER_FAILURES = 4
    breaker.BREAKER_COOLDOWN_SECONDS = 60
    record = SubscriptionInvoice.objects.filter(status=S.WAITING).order_by("pk").first()
    with socket.socket() as closed:  # a port nothing listens on: every connection is refused
        closed.bind(("127.0.0.1", 0))
        breaker.PAYNET_BASE_URL = f"http://127.0.0.1:{closed.getsockname()[1]}/paynet"
    with pytest.raises(UpstreamError):
        paynet_sync(recorder=DbCallRecorder())  # three failed reads: one more opens it

    with pytest.raises(UpstreamUnavailable):
        subscription_invoice_set_status(
            record=record, status=S.CANCEL, actor=operator, reason="test"
        )

    # Its first attempt failed to connect; the breaker opened and kept the retries back.
    job = Job.objects.get(inline=True)
    assert (job.state, job.items.get().outcome) == (Job.State.FAILED, JobItem.Outcome.FAILED)
    (push,) = UpstreamCall.objects.filter(operation="invoice_status_update")
    assert push.outcome == "failed" and "could not be reached" in push.error
    assert breaker_get("paynet").state == OPEN
    assert not UpstreamCall.objects.filter(outcome="pending").exists()


# Refusing while open -----------------------------------------------------------------------


def test_open_breaker_refuses_single_and_bulk_pushes_before_anything_is_sent(
    mirror, operator, api_operator, breaker
):
    breaker.BREAKER_COOLDOWN_SECONDS = 60
    open_paynet_breaker(mirror)
    record = SubscriptionInvoice.objects.filter(status=S.WAITING).order_by("pk").first()
    jobs, calls, requests = Job.objects.count(), UpstreamCall.objects.count(), mirror.requests()

    with pytest.raises(UpstreamUnavailable) as single:
        subscription_invoice_set_status(
            record=record, status=S.CANCEL, actor=operator, reason="test"
        )
    with pytest.raises(UpstreamUnavailable):
        subscription_invoice_set_status_bulk(
            records=waiting(10), status=S.CANCEL, actor=operator, reason="test"
        )
    one = api_operator.post(
        f"{INVOICES}{record.pk}/set-status/", {"status": 5, "reason": "x"}, format="json"
    )
    bulk = api_operator.post(
        f"{INVOICES}set-status/", {"ids": [record.pk], "status": 5, "reason": "x"}, format="json"
    )

    assert "Paynet is unavailable" in single.value.message and single.value.retry_after > 50
    for response in (one, bulk):
        assert response.status_code == 503, response.content
        body = response.json()
        assert set(body) == {"detail", "retry_after"}
        assert "Paynet is unavailable" in body["detail"]
        assert 50 < body["retry_after"] <= 60
        assert response["Retry-After"] == str(body["retry_after"])
    assert mirror.requests() == requests and status_writes(mirror) == []
    assert (Job.objects.count(), UpstreamCall.objects.count()) == (jobs, calls)
    assert not UpstreamCall.objects.filter(outcome="pending").exists()
    record.refresh_from_db()
    assert record.status == S.WAITING


def test_retry_of_a_finished_job_is_refused_while_open(mirror, operator, breaker):
    breaker.BREAKER_COOLDOWN_SECONDS = 60
    mirror.faults({"kind": "reject", "operation": "invoice_status_update"})
    job = queued_job(waiting(2), operator)
    bulk.run_job(job.pk)
    job.refresh_from_db()
    assert job.state == Job.State.FAILED
    open_paynet_breaker(mirror)

    with pytest.raises(UpstreamUnavailable):
        job_retry_failed(job=job, actor=operator)

    job.refresh_from_db()
    assert job.state == Job.State.FAILED


# A running job pauses and resumes ----------------------------------------------------------


def test_running_job_pauses_its_items_and_resumes_when_the_breaker_closes(
    mirror, operator, breaker, queued_tasks, monkeypatch, django_capture_on_commit_callbacks
):
    breaker.PAYNET_CONCURRENCY = 2
    # Defer rather than wait in-process.
    monkeypatch.setattr("upstream.pushes.bulk.LONG_WAIT", timedelta(0))
    records = waiting(20)
    job = queued_job(records, operator)
    mirror.faults({"kind": "status", "status": 503, "operation": "invoice_status_update"})

    with django_capture_on_commit_callbacks(execute=True):
        bulk.run_job(job.pk)

    job.refresh_from_db()
    state = breaker_get("paynet")
    assert state.state == OPEN
    assert not job.is_finished and (job.succeeded, job.failed) == (0, 0)
    items = job.items.all()
    assert {i.state for i in items} == {JobItem.State.PENDING}, "paused, not failed"
    assert sum("Paused: Paynet is unavailable" in i.message for i in items) >= 1
    # The threads stopped at the threshold: a few calls, not one per item.
    assert len(status_requests(mirror)) <= 3 + 2
    assert not UpstreamCall.objects.filter(outcome="pending").exists()
    (deferred,) = [t for t in queued_tasks if t.task.name == "job_run"]
    assert deferred.status == TaskResultStatus.READY and deferred.args == [job.pk]
    assert deferred.task.run_after == state.open_until

    mirror.faults()  # Paynet is back
    wait_out_the_cooldown(state)
    bulk.run_job(job.pk)  # what the deferred task does

    job.refresh_from_db()
    assert (job.state, job.succeeded) == (Job.State.SUCCEEDED, 20)
    assert breaker_get("paynet").state == CLOSED
    writes = status_writes(mirror)
    assert sorted(writes) == sorted(records.values_list("invoice_no", flat=True))
    assert set(records.values_list("status", flat=True)) == {S.CANCEL}


def test_a_job_started_while_open_sends_nothing_and_waits(mirror, operator, breaker, monkeypatch):
    breaker.BREAKER_COOLDOWN_SECONDS = 60
    job = queued_job(waiting(5), operator)
    open_paynet_breaker(mirror)

    bulk.run_job(job.pk)

    job.refresh_from_db()
    assert not job.is_finished
    assert set(job.items.values_list("state", "outcome")) == {(JobItem.State.PENDING, "")}
    assert status_requests(mirror) == []


# The half-open probe -----------------------------------------------------------------------


def test_after_the_cooldown_one_probe_goes_and_a_failure_reopens_then_a_success_closes(
    mirror, operator, breaker, monkeypatch
):
    monkeypatch.setattr("upstream.pushes.bulk.LONG_WAIT", timedelta(0))
    records = waiting(6)
    job = queued_job(records, operator)
    first = open_paynet_breaker(mirror)
    mirror.faults({"kind": "status", "status": 503, "operation": "invoice_status_update"})
    wait_out_the_cooldown(first)
    assert breaker_get("paynet").shown(timezone.now()) == HALF_OPEN

    bulk.run_job(job.pk)

    # One call went through, failed, and the breaker is open for another cooldown.
    assert len(status_requests(mirror)) == 1
    again = breaker_get("paynet")
    assert again.state == OPEN and again.open_until > first.open_until
    job.refresh_from_db()
    assert not job.is_finished
    assert set(job.items.values_list("state", flat=True)) == {JobItem.State.PENDING}

    mirror.faults()
    wait_out_the_cooldown(again)
    bulk.run_job(job.pk)

    job.refresh_from_db()
    assert (job.state, job.succeeded) == (Job.State.SUCCEEDED, 6)
    assert breaker_get("paynet") == Breaker("paynet", state=CLOSED, failures=0)
    writes = status_writes(mirror)
    assert sorted(writes) == sorted(records.values_list("invoice_no", flat=True))


def test_after_the_cooldown_a_single_push_is_the_probe_and_its_success_closes(
    mirror, operator, breaker
):
    state = open_paynet_breaker(mirror)
    record = SubscriptionInvoice.objects.filter(status=S.WAITING).order_by("pk").first()
    with pytest.raises(UpstreamUnavailable):
        subscription_invoice_set_status(
            record=record, status=S.CANCEL, actor=operator, reason="test"
        )
    wait_out_the_cooldown(state)

    subscription_invoice_set_status(record=record, status=S.CANCEL, actor=operator, reason="test")

    assert breaker_get("paynet").state == CLOSED
    assert status_writes(mirror) == [record.invoice_no]


def test_only_one_probe_at_a_time(mirror, operator, breaker):
    state = open_paynet_breaker(mirror)
    wait_out_the_cooldown(state)
    assert breaker_admit("paynet", "another-process").kind == PROBE
    assert breaker_admit("paynet", "a-third-one").kind == WAIT
    record = SubscriptionInvoice.objects.filter(status=S.WAITING).order_by("pk").first()

    with pytest.raises(UpstreamUnavailable) as refused:
        subscription_invoice_set_status(
            record=record, status=S.CANCEL, actor=operator, reason="test"
        )

    assert "being checked" in refused.value.message and refused.value.retry_after <= 2
    assert status_requests(mirror) == []


# Shared by every process -------------------------------------------------------------------


def _manage(env, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


SHOW_STATE = "from upstream.calls.breaker import breaker_get; print(breaker_get('paynet').state)"


def test_the_breaker_is_shared_between_processes(transactional_db, sandbox, operator, settings):
    settings.BREAKER_FAILURES = 3
    settings.BREAKER_COOLDOWN_SECONDS = 4
    paynet_sync()
    env = worker_env(sandbox.url, BREAKER_FAILURES="3", BREAKER_COOLDOWN_SECONDS="4")
    sandbox.faults({"kind": "status", "status": 503, "service": "paynet"})

    # Another process's sync fails three times in a row: the breaker opens for everyone.
    synced = _manage(env, "sync", "paynet")
    assert synced.returncode != 0

    sandbox.faults()
    state = breaker_get("paynet")
    assert state.state == OPEN and state.failures == 3
    record = SubscriptionInvoice.objects.filter(status=S.WAITING).order_by("pk").first()
    with pytest.raises(UpstreamUnavailable):
        subscription_invoice_set_status(
            record=record, status=S.CANCEL, actor=operator, reason="test"
        )
    assert status_writes(sandbox) == []

    # Here, after the cooldown, a push is the probe and closes it: the other process sees it.
    wait_out_the_cooldown(state)
    subscription_invoice_set_status(record=record, status=S.CANCEL, actor=operator, reason="test")
    shown = _manage(env, "shell", "-c", SHOW_STATE)
    assert shown.stdout.strip().splitlines()[-1] == "closed", shown.stderr[-2000:]


def test_the_refusal_names_the_real_threshold_not_the_running_count(settings):
    # Calls in flight when the breaker opened went on failing: 20 stored, threshold 5.
    settings.BREAKER_FAILURES = 5
    now = timezone.now()
    breaker = Breaker("paynet", state=OPEN, failures=20, open_until=now + timedelta(seconds=30))
    message = unavailable(breaker, now).message
    assert "5 calls in a row failed" in message and "20" not in message


@pytest.mark.django_db
def test_a_job_page_says_it_is_paused_by_the_breaker_and_lists_what_is_in_doubt(
    operator, operator_client
):
    from django.urls import reverse
    from django.utils import translation

    from upstream.calls.breaker import breaker_trip

    job = Job.objects.create(
        kind="paynet.invoice_status",
        title="t",
        created_by=operator,
        state=Job.State.RUNNING,
        total=3,
    )
    JobItem.objects.create(
        job=job,
        position=1,
        target_type="x",
        target_id="1",
        target_repr="11400001",
        in_doubt=True,
    )
    JobItem.objects.create(job=job, position=2, target_type="x", target_id="2", target_repr="r2")
    breaker_trip("paynet")
    until = timezone.localtime(breaker_get("paynet").open_until).strftime("%H:%M")
    url = reverse("admin:upstream_job_change", args=[job.pk])
    operator_client.cookies["django_language"] = "en"
    page = operator_client.get(url).content.decode()
    assert f"Paused: Paynet is failing, next try at {until}." in page
    doubt = page.split('id="job-in-doubt"')[1].split("</table>")[0]
    assert "11400001" in doubt and "r2" not in doubt
    progress = operator_client.get(reverse("admin:upstream_job_progress", args=[job.pk])).json()
    assert progress["paused"] == f"Paused: Paynet is failing, next try at {until}."
    operator_client.cookies["django_language"] = "tr"
    with translation.override("tr"):
        page = operator_client.get(url).content.decode()
    assert f"Duraklatıldı: Paynet hata veriyor, sonraki deneme {until}." in page
    from upstream.calls.breaker import breaker_reset

    breaker_reset("paynet")
    assert (
        operator_client.get(reverse("admin:upstream_job_progress", args=[job.pk])).json()["paused"]
        == ""
    )
