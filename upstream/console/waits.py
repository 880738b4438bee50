"""What a job is waiting for, said on its page: the upstream's breaker and the items in doubt.

While a breaker is open a running job sends nothing; its page read "Running 0 %" for a minute
with no word of the pause, and its items in doubt were listed only on the dashboard.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Q, QuerySet
from django.utils import formats, timezone
from django.utils.translation import gettext as _

from upstream.calls.breaker import breaker_get, service_label
from upstream.models import Job, JobItem
from upstream.pushes.kinds import kind_for

# A page lists at most this many items in doubt; the item list has them all.
IN_DOUBT_SHOWN = 50


@dataclass(frozen=True)
class Pause:
    """A job held back by its upstream's breaker until `until` (the next try)."""

    service: str
    until: datetime
    probing: bool

    @property
    def message(self) -> str:
        at = formats.time_format(timezone.localtime(self.until), "TIME_FORMAT")
        label = service_label(self.service)
        if self.probing:
            return _("Paused: %(upstream)s is being checked after failing; next try at %(at)s.") % {
                "upstream": label,
                "at": at,
            }
        return _("Paused: %(upstream)s is failing, next try at %(at)s.") % {
            "upstream": label,
            "at": at,
        }


def job_pause(job: Job, now: datetime | None = None) -> Pause | None:
    """The pause of an unfinished job whose upstream's breaker keeps calls back, or None."""
    if job.is_finished or job.state == Job.State.AWAITING_APPROVAL:
        return None
    try:
        service = kind_for(job.kind).service
    except LookupError:
        return None
    if not service:
        return None
    now = now or timezone.now()
    breaker = breaker_get(service)
    if breaker.cooling(now):
        return Pause(service, breaker.open_until, probing=False)
    if breaker.probe_out(now):
        return Pause(service, breaker.probe_until, probing=True)
    return None


def job_in_doubt(job: Job) -> QuerySet[JobItem]:
    """The job's items whose change may have reached the upstream without an answer: settled
    by reading back, never sent again."""
    return job.items.filter(
        Q(outcome=JobItem.Outcome.IN_DOUBT) | Q(in_doubt=True, state=JobItem.State.PENDING)
    ).order_by("position")
