"""A finished job is announced to its creator: a notice on their next page, and an e-mail.

The notice stores only the job; its text is written when it is shown, in the reader's language.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.contrib import messages
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext as _
from django.utils.translation import override

from upstream.models import Job, JobNotice

logger = logging.getLogger(__name__)


def job_summary(job: Job) -> str:
    """“Job #12 “…” finished: 480 succeeded, 3 failed, 2 skipped, 0 cancelled.”"""
    return _(
        "Job #%(id)s “%(title)s” finished (%(state)s): %(succeeded)s succeeded, %(failed)s "
        "failed, %(skipped)s skipped, %(cancelled)s cancelled."
    ) % {
        "id": job.pk,
        "title": job.display_title,
        "state": job.get_state_display(),
        "succeeded": job.succeeded,
        "failed": job.failed,
        "skipped": job.skipped,
        "cancelled": job.cancelled,
    }


def job_finished_announce(job: Job) -> None:
    """Queue the creator's notice and e-mail (in the caller's transaction; mailed on commit).

    Single pushes answered in the request are not announced: their page already said how it went.
    """
    if job.created_by_id is None:
        return
    try:
        with transaction.atomic():
            JobNotice.objects.create(user_id=job.created_by_id, job=job)
    except IntegrityError:
        return  # announced already (a job finalized twice)
    transaction.on_commit(lambda: _mail(job.pk))


def _mail(job_id: int) -> None:
    job = Job.objects.select_related("created_by").get(pk=job_id)
    address = getattr(job.created_by, "email", "")
    if not address:
        return
    url = settings.BACKOFFICE_URL.rstrip("/") + reverse("admin:upstream_job_change", args=[job.pk])
    with override(settings.LANGUAGE_CODE):
        subject = _("Job #%(id)s finished: %(title)s") % {"id": job.pk, "title": job.display_title}
        body = f"{job_summary(job)}\n\n{url}"
    try:
        send_mail(subject[:200], body, None, [address])
    except Exception:
        # The notice in the app stands; a mail server down must not fail the job's finish.
        logger.exception("could not e-mail the creator of job %s", job_id)


def notices_show(request: HttpRequest) -> int:
    """Put the user's unseen notices among the page's messages and mark them seen."""
    unseen = list(
        JobNotice.objects.filter(user_id=request.user.pk, seen_at__isnull=True)
        .select_related("job")
        .order_by("created_at")[:20]
    )
    for notice in unseen:
        job = notice.job
        url = reverse("admin:upstream_job_change", args=[job.pk])
        link = _("See the failures.") if job.failed else _("See the job.")
        anchor = "#job-failures" if job.failed else ""
        level = messages.WARNING if job.failed else messages.SUCCESS
        messages.add_message(
            request,
            level,
            format_html('{} <a href="{}{}">{}</a>', job_summary(job), url, anchor, link),
        )
    if unseen:
        JobNotice.objects.filter(pk__in=[n.pk for n in unseen]).update(seen_at=timezone.now())
    return len(unseen)


class JobNoticeMiddleware:
    """Shows a finished job's notice on its creator's next admin page (not on API or polling)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest):
        user = getattr(request, "user", None)
        if (
            user is not None
            and user.is_authenticated
            and request.method == "GET"
            and not request.path.startswith("/api/")
            and not request.path.endswith(".json")
            and "text/html" in request.headers.get("Accept", "text/html")
        ):
            notices_show(request)
        return self.get_response(request)
