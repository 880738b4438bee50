from __future__ import annotations

import contextlib

from django.conf import settings
from django.core.exceptions import FieldDoesNotExist
from django.db import models
from django.db.models import F
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from upstream.lists.fold import Folded
from upstream.lists.indexes import TrigramIndex


class Service(models.TextChoices):
    PAYNET = "paynet", "Paynet"
    WISECP = "wisecp", "WiseCP"
    PAYOFIN = "payofin", "Payofin"


class Outcome(models.TextChoices):
    PENDING = "pending", _("Pending")
    OK = "ok", _("OK")
    REJECTED = "rejected", _("Rejected by upstream")
    FAILED = "failed", _("Failed in transport")
    IN_DOUBT = "in_doubt", _("In doubt")


class UpstreamCall(models.Model):
    """One request to an upstream and its answer. Append-only: written pending, finished once."""

    service = models.CharField(_("service"), max_length=16, choices=Service.choices)
    operation = models.CharField(_("operation"), max_length=64)
    method = models.CharField(_("method"), max_length=8)
    url = models.CharField(_("URL"), max_length=500)
    request_headers = models.JSONField(_("request headers"), default=dict)
    request = models.JSONField(_("request"), null=True, blank=True)
    status_code = models.PositiveSmallIntegerField(_("HTTP status"), null=True, blank=True)
    response = models.JSONField(_("response"), null=True, blank=True)
    upstream_code = models.CharField(_("upstream code"), max_length=32, blank=True)
    upstream_message = models.TextField(_("upstream message"), blank=True)
    outcome = models.CharField(
        _("outcome"), max_length=16, choices=Outcome.choices, default=Outcome.PENDING
    )
    error = models.TextField(_("error"), blank=True)
    duration_ms = models.PositiveIntegerField(_("duration (ms)"), default=0)
    attempt = models.PositiveSmallIntegerField(_("attempt"), default=1)
    # The request changes upstream state: a row left pending by a dead process is in doubt.
    mutating = models.BooleanField(_("changes upstream state"), default=False)
    created_at = models.DateTimeField(_("created at"))
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("actor"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    job = models.ForeignKey(
        "upstream.Job",
        verbose_name=_("job"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="calls",
    )
    job_item = models.ForeignKey(
        "upstream.JobItem",
        verbose_name=_("job item"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="calls",
    )
    # The local record the call was about, e.g. ("subscriptions.subscriptioninvoice", "17").
    target_type = models.CharField(_("target type"), max_length=64, blank=True)
    target_id = models.CharField(_("target id"), max_length=64, blank=True)
    target_repr = models.CharField(_("target"), max_length=200, blank=True, db_index=True)

    class Meta:
        verbose_name = _("upstream call")
        verbose_name_plural = _("upstream calls")
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["service", "operation"]),
            models.Index(fields=["outcome", "created_at"]),
            models.Index(fields=["target_type", "target_id"]),
            # The call log's order, and a deep page's ids read from the index alone; its search
            # by upstream code (upstream.admin.lists).
            models.Index(fields=["created_at", "id"], name="call_created_id_idx"),
            models.Index(fields=["upstream_code", "created_at"], name="call_upstream_code_idx"),
            # Upstream health (upstream/calls/health.py): an upstream's calls of the last minutes by
            # outcome, their durations and its last success, each a range of this index (read
            # without touching the table) however big the log is.
            models.Index(
                fields=["service", "outcome", "created_at", "duration_ms"],
                name="upstreamcall_health_idx",
            ),
        ]

    def __str__(self) -> str:
        # Shown where a row points at its call (a job item's "last call"): in the reader's language.
        outcome = self.get_outcome_display()
        return f"#{self.pk} {self.get_service_display()} {self.operation} ({outcome})"


class UpstreamBreaker(models.Model):
    """An upstream's circuit breaker, shared by every web and worker process
    (upstream/calls/breaker.py).

    One row per upstream, written only under its row lock (PostgreSQL) or in an IMMEDIATE
    transaction (SQLite), so two processes never both take the probe or lose a failure.
    """

    class State(models.TextChoices):
        CLOSED = "closed", _("Closed")
        OPEN = "open", _("Open")
        HALF_OPEN = "half_open", _("Half open")

    service = models.CharField(
        _("service"), max_length=16, choices=Service.choices, primary_key=True
    )
    state = models.CharField(_("state"), max_length=10, choices=State.choices, default=State.CLOSED)
    # Consecutive failed calls (transport, timeout, 5xx); an answer the upstream meant resets it.
    failures = models.PositiveIntegerField(_("consecutive failures"), default=0)
    opened_at = models.DateTimeField(_("opened at"), null=True, blank=True)
    # While open, nothing is sent before this; from then one probe call may go.
    open_until = models.DateTimeField(_("open until"), null=True, blank=True)
    # Who sends the probe (half open), until when; a holder that died lets the next one take it.
    probe_holder = models.CharField(_("probe holder"), max_length=100, blank=True)
    probe_until = models.DateTimeField(_("probe until"), null=True, blank=True)
    updated_at = models.DateTimeField(_("updated at"), null=True, blank=True)

    class Meta:
        verbose_name = _("upstream breaker")
        verbose_name_plural = _("upstream breakers")

    def __str__(self) -> str:
        return f"{self.service}: {self.state}"


class UpstreamSlotLease(models.Model):
    """A share of an upstream's concurrency cap (`*_CONCURRENCY`) held by one run, across every
    process (upstream/calls/slots.py).

    One row per holder: a job's run in a worker, a single push in a web request. `granted`
    requests of it may be in flight toward the upstream, and its share of the rate cap follows
    (`granted` / the cap). A holder with `granted` 0 is waiting; `ask` and `priority` are what the
    others read to give slots back. Granting is done under a lock per upstream (an advisory lock
    on PostgreSQL, the IMMEDIATE transaction on SQLite), so the granted slots never add up to
    more than the cap. A holder that died stops renewing `expires_at`, and its slots come back.
    """

    service = models.CharField(_("service"), max_length=16, choices=Service.choices)
    holder = models.CharField(_("holder"), max_length=100)
    job = models.ForeignKey(
        "Job",
        verbose_name=_("job"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    priority = models.PositiveSmallIntegerField(_("priority"))
    ask = models.PositiveSmallIntegerField(_("slots asked"))
    granted = models.PositiveSmallIntegerField(_("slots granted"), default=0)
    # When the holder began to ask: the older of two holders of one priority is served first.
    since = models.DateTimeField(_("since"))
    expires_at = models.DateTimeField(_("expires at"))

    class Meta:
        verbose_name = _("upstream slot lease")
        verbose_name_plural = _("upstream slot leases")
        constraints = [
            models.UniqueConstraint(fields=["service", "holder"], name="slotlease_unique_holder"),
        ]
        indexes = [models.Index(fields=["holder"])]

    def __str__(self) -> str:
        return f"{self.service}: {self.holder} ({self.granted}/{self.ask})"


class DashboardFigure(models.Model):
    """A whole-table total for the dashboard, computed by the sweep (upstream/console/dashboard.py).

    A GROUP BY over a million payment records costs ~200 ms; the page reads this row instead.
    """

    key = models.CharField(_("key"), max_length=64, primary_key=True)
    data = models.JSONField(_("data"), default=list)
    computed_at = models.DateTimeField(_("computed at"))

    class Meta:
        verbose_name = _("dashboard figure")
        verbose_name_plural = _("dashboard figures")

    def __str__(self) -> str:
        return self.key


class WorkerHeartbeat(models.Model):
    """A task worker's last sign of life, written by the worker every WORKER_HEARTBEAT_SECONDS.

    django-tasks-db keeps no record of its workers: without this nobody can see that no worker
    is alive while jobs wait (upstream/liveness/heartbeat.py).
    """

    class State(models.TextChoices):
        IDLE = "idle", _("Waiting for tasks")
        RUNNING = "running", _("Running a task")
        WAITING_FOR_DATABASE = "waiting_for_database", _("Waiting for the database")

    worker_id = models.CharField(_("worker"), max_length=100, primary_key=True)
    hostname = models.CharField(_("host"), max_length=100)
    pid = models.PositiveIntegerField(_("process id"))
    started_at = models.DateTimeField(_("started at"))
    seen_at = models.DateTimeField(_("last seen"), db_index=True)
    state = models.CharField(_("state"), max_length=24, choices=State.choices, default=State.IDLE)
    # The task it is running (its path), empty when idle.
    task = models.CharField(_("task"), max_length=200, blank=True)
    # Reconnections after the database went away, since the worker started.
    reconnects = models.PositiveIntegerField(_("reconnections"), default=0)

    class Meta:
        verbose_name = _("worker heartbeat")
        verbose_name_plural = _("worker heartbeats")
        ordering = ["-seen_at"]

    def __str__(self) -> str:
        return self.worker_id


class JobManager(models.Manager["Job"]):
    def get_queryset(self) -> models.QuerySet[Job]:
        return super().get_queryset().defer("selection")


class Job(models.Model):
    """A bulk push: one JobItem per record, worked through by the task worker."""

    class State(models.TextChoices):
        # Over an approval threshold: nothing is sent until a second person approves it.
        AWAITING_APPROVAL = "awaiting_approval", _("Awaiting approval")
        QUEUED = "queued", _("Queued")
        # Writing the items of a frozen selection (upstream/pushes/bulk.py) before sending.
        PREPARING = "preparing", _("Preparing")
        RUNNING = "running", _("Running")
        SUCCEEDED = "succeeded", _("Succeeded")
        PARTIALLY_FAILED = "partially_failed", _("Partially failed")
        FAILED = "failed", _("Failed")
        CANCELLED = "cancelled", _("Cancelled")
        REJECTED = "rejected", _("Rejected")
        EXPIRED = "expired", _("Expired")

    FINISHED_STATES = (
        State.SUCCEEDED,
        State.PARTIALLY_FAILED,
        State.FAILED,
        State.CANCELLED,
        State.REJECTED,
        State.EXPIRED,
    )
    ACTIVE_STATES = (State.QUEUED, State.PREPARING, State.RUNNING)

    kind = models.CharField(_("kind"), max_length=64, db_index=True)
    title = models.CharField(_("title"), max_length=200)
    # The title's message id and parameters (upstream.l10n.stored): shown in each reader's language.
    # Empty for jobs created before it was kept; `title` is then shown as it was written.
    title_text = models.JSONField(_("title (translatable)"), default=dict, blank=True)
    state = models.CharField(
        _("state"), max_length=20, choices=State.choices, default=State.QUEUED, db_index=True
    )
    params = models.JSONField(_("parameters"), default=dict, blank=True)
    reason = models.TextField(_("reason"), blank=True)
    # Title and reason as the list's search compares them (upstream.lists.fold), kept by the
    # database on every write: a common word's capped count rechecks these, not TRANSLATE per
    # row (decision 019).
    title_folded = models.GeneratedField(
        expression=Folded("title"), output_field=models.TextField(), db_persist=True
    )
    reason_folded = models.GeneratedField(
        expression=Folded("reason"), output_field=models.TextField(), db_persist=True
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("created by"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(_("started at"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)
    # Bumped by the runner while it works; a stale one tells the sweep the worker is gone.
    heartbeat_at = models.DateTimeField(_("heartbeat"), null=True, blank=True)
    total = models.PositiveIntegerField(_("total"), default=0)
    succeeded = models.PositiveIntegerField(_("succeeded"), default=0)
    failed = models.PositiveIntegerField(_("failed"), default=0)
    cancelled = models.PositiveIntegerField(_("cancelled"), default=0)
    # Items not sent because their record changed since the preview (or another rule now says no).
    skipped = models.PositiveIntegerField(_("skipped"), default=0)
    cancel_requested = models.BooleanField(_("cancel requested"), default=False)
    # When the runner stopped sending for the cancel (null: not yet, or no runner had the job):
    # from then on no item of the job leaves, so the cancel's answer can count what is not sent.
    cancel_taken_at = models.DateTimeField(_("cancel took hold at"), null=True, blank=True)
    task_id = models.CharField(_("task id"), max_length=64, blank=True)
    # Who last retried or resumed the job, and who cancelled it (the creator is created_by).
    retried_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("retried by"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    retried_at = models.DateTimeField(_("retried at"), null=True, blank=True)
    cancelled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("cancelled by"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    # A single push (an admin form, one API call) is a job of one item run in the request.
    inline = models.BooleanField(_("single push"), default=False)
    # A form's one-time token or an API Idempotency-Key: the same key never makes a second job.
    idempotency_key = models.CharField(_("idempotency key"), max_length=100, blank=True)
    # The records as launched ("id:tag,…", upstream/pushes/bulk.py), expanded into items by the
    # worker; `prepared` counts the entries already written as items (None: the items were
    # written when the job was created). Deferred by default: it can be megabytes.
    selection = models.TextField(_("frozen selection"), blank=True)
    prepared = models.PositiveIntegerField(_("prepared"), null=True, blank=True)

    # What the preview totalled (₺), for the approval thresholds and the approver's page.
    amount = models.DecimalField(
        _("amount"), max_digits=16, decimal_places=2, null=True, blank=True
    )
    # Four-eyes approval (upstream/pushes/approvals.py): who decided, when, and why a rejection.
    approval_expires_at = models.DateTimeField(_("approval expires at"), null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("approved or rejected by"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    decided_at = models.DateTimeField(_("approved or rejected at"), null=True, blank=True)
    rejection_reason = models.TextField(_("rejection reason"), blank=True)

    objects = JobManager()

    class Meta:
        verbose_name = _("job")
        verbose_name_plural = _("jobs")
        ordering = ["-created_at", "-id"]
        permissions = [
            ("approve_job", _("Can approve or reject a job another person started")),
            (
                "manage_others_jobs",
                _("Can cancel, retry, resume or withdraw a job another person started"),
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["created_by", "idempotency_key"],
                condition=~models.Q(idempotency_key=""),
                name="job_unique_idempotency_key",
            ),
            # One sync of an upstream queued or running at a time: a second start answers with
            # it (upstream.history.sync_job.sync_start), decided here, across processes.
            models.UniqueConstraint(
                fields=["kind"],
                condition=models.Q(
                    kind__endswith=".sync", state__in=["queued", "preparing", "running"]
                ),
                name="job_one_active_sync",
            ),
        ]
        # The admin's list: the "single push" filter with its order, the search
        # (upstream.admin.lists); state, kind and created_at have their own indexes.
        indexes = [
            models.Index(fields=["inline", "created_at"], name="job_inline_created_idx"),
            TrigramIndex(F("title_folded"), name="job_title_folded_trgm"),
            TrigramIndex(F("reason_folded"), name="job_reason_folded_trgm"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.display_title}"

    @property
    def display_title(self) -> str:
        """The title in the reader's language (as stored, for older jobs)."""
        from upstream.l10n.stored import render

        return render(self.title_text, self.title)

    @property
    def done(self) -> int:
        return self.succeeded + self.failed + self.cancelled + self.skipped

    @property
    def is_finished(self) -> bool:
        return self.state in self.FINISHED_STATES

    @property
    def is_awaiting_approval(self) -> bool:
        return self.state == self.State.AWAITING_APPROVAL

    @property
    def is_preparing(self) -> bool:
        """Items of its frozen selection are still being written (the first ones may be out)."""
        if self.state == self.State.PREPARING:
            return True
        return (
            self.state == self.State.RUNNING
            and self.prepared is not None
            and self.prepared < self.total
        )

    @property
    def is_prepared(self) -> bool:
        """Every item is written (a frozen selection's entries are all expanded, a sync's
        listing is read to its end or closed: upstream.history.sync_job)."""
        listing = (self.params or {}).get("listing") if isinstance(self.params, dict) else None
        if listing and not listing.get("closed"):
            return False
        return self.prepared is None or self.prepared >= self.total

    @property
    def processed(self) -> int:
        """Items that went through (sent, or skipped by the re-check); cancelled ones did not."""
        return self.succeeded + self.failed + self.skipped

    @property
    def sent(self) -> int:
        """Items that were sent, or tried: every item that is not cancelled, skipped or waiting."""
        return self.succeeded + self.failed

    @property
    def percent(self) -> int:
        # A cancelled job must not look complete: the bar shows what was processed.
        return int(100 * self.processed / self.total) if self.total else 100


class JobAction(models.Model):
    """Who steered a job, and why: a cancel, a retry, a resume, a withdrawal (a cancel while it
    awaited approval). A job belongs to its creator; another person's step needs
    `upstream.manage_others_jobs` and a reason, kept here and shown on the job."""

    class Kind(models.TextChoices):
        CANCEL = "cancel", _("Cancel")
        WITHDRAW = "withdraw", _("Withdrawal")
        RETRY = "retry", _("Retry of failed items")
        RESUME = "resume", _("Resume of cancelled items")

    job = models.ForeignKey(
        Job, verbose_name=_("job"), on_delete=models.CASCADE, related_name="actions"
    )
    kind = models.CharField(_("action"), max_length=10, choices=Kind.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("by"),
        on_delete=models.PROTECT,
        related_name="+",
    )
    # The job was started by someone else (or by the system): the step needed the permission.
    on_behalf = models.BooleanField(_("another person's job"), default=False)
    reason = models.TextField(_("reason"), blank=True)
    at = models.DateTimeField(_("at"), auto_now_add=True)

    class Meta:
        verbose_name = _("job action")
        verbose_name_plural = _("job actions")
        ordering = ["job", "at", "id"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.job_id}"


class JobItem(models.Model):
    """One record of a job. The table is the truth about what is done (shared/ARCHITECTURE.md)."""

    class State(models.TextChoices):
        PENDING = "pending", _("Pending")
        SENDING = "sending", _("Sending")
        DONE = "done", _("Done")

    class Outcome(models.TextChoices):
        NONE = "", _("—")
        OK = "ok", _("OK")
        REJECTED = "rejected", _("Rejected by upstream")
        FAILED = "failed", _("Failed")
        IN_DOUBT = "in_doubt", _("In doubt")
        CANCELLED = "cancelled", _("Cancelled")
        SKIPPED = "skipped", _("Skipped")

    FAILED_OUTCOMES = (Outcome.REJECTED, Outcome.FAILED, Outcome.IN_DOUBT)

    # No index of its own: the (job, position) constraint's index serves every read by job, in
    # position order, and PostgreSQL no longer picks the narrower job_id index and sorts a big
    # job's items by position (on disk, for 50,000) to read its last page (decision 019).
    job = models.ForeignKey(
        Job, verbose_name=_("job"), on_delete=models.CASCADE, related_name="items", db_index=False
    )
    position = models.PositiveIntegerField(_("position"))
    target_type = models.CharField(_("target type"), max_length=64)
    target_id = models.CharField(_("target id"), max_length=64)
    target_repr = models.CharField(_("target"), max_length=200)
    payload = models.JSONField(_("payload"), default=dict)
    state = models.CharField(
        _("state"), max_length=10, choices=State.choices, default=State.PENDING
    )
    outcome = models.CharField(
        _("outcome"), max_length=10, choices=Outcome.choices, default=Outcome.NONE, blank=True
    )
    # The last push may have reached the upstream unanswered: read back before sending again.
    in_doubt = models.BooleanField(_("in doubt"), default=False)
    message = models.TextField(_("message"), blank=True)
    # The message's id and parameters (upstream.l10n.stored): shown in each reader's language. Empty
    # for messages kept before, and for an upstream's own words; `message` is shown then.
    message_text = models.JSONField(_("message (translatable)"), default=dict, blank=True)
    upstream_code = models.CharField(_("upstream code"), max_length=32, blank=True)
    result = models.JSONField(_("result"), default=dict, blank=True)
    call = models.ForeignKey(
        UpstreamCall,
        verbose_name=_("last call"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    claimed_by = models.CharField(_("claimed by"), max_length=64, blank=True)
    lease_until = models.DateTimeField(_("lease until"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)

    class Meta:
        verbose_name = _("job item")
        verbose_name_plural = _("job items")
        ordering = ["job", "position"]
        constraints = [
            models.UniqueConstraint(fields=["job", "position"], name="jobitem_unique_position"),
        ]
        indexes = [
            models.Index(fields=["job", "state", "position"]),
            models.Index(fields=["state", "lease_until"]),
            models.Index(fields=["target_type", "target_id"]),
            # The admin's list (newest job first: the (job, position) constraint read backwards):
            # filters with that order, the sortable column, the search (upstream.admin.lists).
            models.Index(fields=["outcome", "job", "position"], name="jobitem_outcome_job_pos_idx"),
            models.Index(
                fields=["job", "position"],
                condition=models.Q(in_doubt=True),
                name="jobitem_in_doubt_idx",
            ),
            models.Index(fields=["finished_at", "id"], name="jobitem_finished_id_idx"),
            models.Index(
                fields=["target_repr"],
                opclasses=["varchar_pattern_ops"],
                name="jobitem_target_repr_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.target_repr} ({self.get_state_display()})"

    @property
    def display_message(self) -> str:
        """The message in the reader's language (as stored, for older items)."""
        from upstream.l10n.stored import render

        return render(self.message_text, self.message)


class RecordClaim(models.Model):
    """One push at a time per upstream record, across processes and machines.

    A row exists while someone pushes the record; the unique constraint decides who got it. A
    holder that died leaves a row whose `until` has passed, and the next claimant replaces it.
    """

    target_type = models.CharField(_("target type"), max_length=64)
    target_id = models.CharField(_("target id"), max_length=64)
    holder = models.CharField(_("holder"), max_length=100)
    job_item = models.ForeignKey(
        JobItem,
        verbose_name=_("job item"),
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
    )
    until = models.DateTimeField(_("until"))

    class Meta:
        verbose_name = _("record claim")
        verbose_name_plural = _("record claims")
        constraints = [
            models.UniqueConstraint(
                fields=["target_type", "target_id"], name="recordclaim_unique_target"
            ),
        ]
        indexes = [models.Index(fields=["holder"])]

    def __str__(self) -> str:
        return f"{self.target_type}:{self.target_id} ({self.holder})"


class IdempotencyRecord(models.Model):
    """An API write made with an Idempotency-Key, or an admin confirmation with its one-time
    token, and the answer it got (kept 24 h). The unique row decides which request runs; the
    jobs it started are linked in their own transaction (upstream/pushes/once.py), so a repeat
    is answered from them even when the first request never stored its answer."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("user"), on_delete=models.CASCADE, related_name="+"
    )
    key = models.CharField(_("key"), max_length=100)
    method = models.CharField(_("method"), max_length=8)
    path = models.CharField(_("path"), max_length=500)
    body_hash = models.CharField(_("body hash"), max_length=64)
    status_code = models.PositiveSmallIntegerField(_("HTTP status"), null=True, blank=True)
    response = models.JSONField(_("response"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), db_index=True)
    jobs = models.ManyToManyField(
        Job, verbose_name=_("jobs started"), blank=True, related_name="idempotency_records"
    )

    class Meta:
        verbose_name = _("idempotency key")
        verbose_name_plural = _("idempotency keys")
        constraints = [
            models.UniqueConstraint(fields=["user", "key"], name="idempotency_unique_user_key"),
        ]

    def __str__(self) -> str:
        return f"{self.key} {self.method} {self.path}"


class JobNotice(models.Model):
    """A finished job, announced to its creator on their next page (and by e-mail)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("user"), on_delete=models.CASCADE, related_name="+"
    )
    job = models.ForeignKey(
        Job, verbose_name=_("job"), on_delete=models.CASCADE, related_name="notices"
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    seen_at = models.DateTimeField(_("seen at"), null=True, blank=True)

    class Meta:
        verbose_name = _("job notice")
        verbose_name_plural = _("job notices")
        constraints = [
            models.UniqueConstraint(fields=["user", "job"], name="jobnotice_unique_user_job"),
        ]
        indexes = [
            models.Index(
                fields=["user"], condition=models.Q(seen_at__isnull=True), name="jobnotice_unseen"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} · {self.job}"


class RecordChange(models.Model):
    """One field of a mirrored record changed (or the record was created or deleted), and why.

    Written by upstream.history.changes for every write path of the mirrored models (save, create,
    queryset update, bulk_update, bulk_create, delete), on every database; the timeline and the
    drift report read it.
    """

    class Source(models.TextChoices):
        OPERATION = "operation", _("Staff operation")
        CALL = "call", _("Upstream call")
        # A push whose answer never came, confirmed by reading the record back.
        READ_BACK = "read_back", _("Read-back")
        SYNC = "sync", _("Sync")
        REFRESH = "refresh", _("Refresh")
        DRIFT = "drift", _("Drift resolution")
        OTHER = "other", _("Other")

    # Changes our own pushes made, answered or confirmed by reading back: a later read that
    # finds them changed is drift ("reverted"), and a sync begun before them leaves them be.
    PUSH_SOURCES = (Source.OPERATION, Source.READ_BACK)

    class Action(models.TextChoices):
        CREATE = "create", _("Created")
        UPDATE = "update", _("Changed")
        DELETE = "delete", _("Deleted")

    content_type = models.ForeignKey(
        "contenttypes.ContentType",
        verbose_name=_("record type"),
        on_delete=models.PROTECT,
        related_name="+",
    )
    object_id = models.PositiveBigIntegerField(_("record id"))
    action = models.CharField(_("action"), max_length=8, choices=Action.choices)
    # Empty for a whole record created or deleted: `new` (or `old`) holds its fields then.
    field = models.CharField(_("field"), max_length=64, blank=True)
    old = models.JSONField(_("old value"), null=True, blank=True)
    new = models.JSONField(_("new value"), null=True, blank=True)
    source = models.CharField(_("source"), max_length=16, choices=Source.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("actor"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    reason = models.TextField(_("reason"), blank=True)
    job = models.ForeignKey(
        "upstream.Job",
        verbose_name=_("job"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    call = models.ForeignKey(
        UpstreamCall,
        verbose_name=_("call"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    at = models.DateTimeField(_("at"))

    class Meta:
        verbose_name = _("record change")
        verbose_name_plural = _("record changes")
        ordering = ["-at", "-id"]
        indexes = [
            models.Index(
                fields=["content_type", "object_id", "at"], name="recordchange_record_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.content_type_id}:{self.object_id} {self.field} ({self.source})"


class Drift(models.Model):
    """A change the upstream made that we did not expect (upstream.history.drift)."""

    class Kind(models.TextChoices):
        REVERTED = "reverted", _("Reverted upstream")
        OUTSIDE_CHANGE = "outside_change", _("Changed upstream")
        MISSING = "missing", _("Vanished upstream")

    class State(models.TextChoices):
        OPEN = "open", _("Open")
        ACCEPTED = "accepted", _("Accepted")
        REPUSHED = "repushed", _("Re-pushed")

    service = models.CharField(_("service"), max_length=16, choices=Service.choices)
    content_type = models.ForeignKey(
        "contenttypes.ContentType",
        verbose_name=_("record type"),
        on_delete=models.PROTECT,
        related_name="+",
    )
    object_id = models.PositiveBigIntegerField(_("record id"))
    record_label = models.CharField(_("record"), max_length=200, blank=True)
    field = models.CharField(_("field"), max_length=64, blank=True)
    expected = models.JSONField(_("expected"), null=True, blank=True)
    # "found" is a value here (Turkish "bulunan"), a count of lines with debt on a bill query.
    found = models.JSONField(pgettext_lazy("drift value", "found"), null=True, blank=True)
    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices)
    state = models.CharField(_("state"), max_length=10, choices=State.choices, default=State.OPEN)
    first_seen_at = models.DateTimeField(_("first seen at"))
    last_seen_at = models.DateTimeField(_("last seen at"))
    resolved_at = models.DateTimeField(_("resolved at"), null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("resolved by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    resolution_reason = models.TextField(_("resolution reason"), blank=True)
    # The push that sent `expected` back (a re-push).
    job = models.ForeignKey(
        "upstream.Job",
        verbose_name=_("job"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )

    class Meta:
        verbose_name = _("drift")
        verbose_name_plural = _("drift report")
        ordering = ["-first_seen_at", "-id"]
        indexes = [
            models.Index(
                fields=["state", "service", "kind", "first_seen_at"], name="drift_list_idx"
            ),
            models.Index(fields=["content_type", "object_id", "state"], name="drift_record_idx"),
        ]
        constraints = [
            # Seen again, a drift keeps its one open entry (upstream.history.drift._open), even
            # when two reads of the record race.
            models.UniqueConstraint(
                fields=["content_type", "object_id", "field"],
                condition=models.Q(state="open"),
                name="drift_one_open_per_field",
            )
        ]
        permissions = [("resolve_drift", _("Can accept or re-push drift"))]

    def __str__(self) -> str:
        # Breadcrumbs and messages read it: the field by its label, the kind by its name, in
        # the reader's language (the codes "amount (outside_change)" were English everywhere).
        from django.contrib.contenttypes.models import ContentType

        label = self.field
        model = ContentType.objects.get_for_id(self.content_type_id).model_class()
        if self.field and model is not None:
            with contextlib.suppress(FieldDoesNotExist):
                label = str(model._meta.get_field(self.field).verbose_name)
        what = f"{self.record_label} · {label}" if label else str(self.record_label)
        return f"{what} ({self.get_kind_display()})"
