"""Work: the HTTP side of an item, run in a job's pool threads (a single push runs it inline).

It pushes the item, or reads back one in doubt, or skips one whose record went stale. In a job's
threads it only talks HTTP: the rows of its calls are committed for it by the runner's thread
(see `calls`). Whatever happens becomes a WorkResult for the flush; a failure after a write may
have been applied leaves the item in doubt, to be read back before anything is sent again.
With a breaker gate, the breaker is asked before every call.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import replace

from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from upstream.calls.breaker import BreakerGate, BreakerOpen
from upstream.calls.errors import UpstreamError, UpstreamResponseError
from upstream.l10n.stored import text
from upstream.models import Job, JobItem, UpstreamCall
from upstream.pushes.kinds import JobKind, WorkItem, WorkResult
from upstream.pushes.runner.calls import JobRecorder, insert_call

logger = logging.getLogger(__name__)


class SendStop:
    """A job's cancel as its pool threads see it: checked as a thread takes up an item.

    The runner's thread reads the job's cancel flag (the threads never touch the database) and
    calls `stop`; from then on no item is let through. The lock makes the line exact: `stop`
    returns the items already let through (those in flight), every other claimed item is not
    sent, so the runner can write them as cancelled at once.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stopped = False
        self._started: set[int] = set()

    def admit(self, item_id: int) -> bool:
        with self._lock:
            if self._stopped:
                return False
            self._started.add(item_id)
            return True

    def stop(self) -> set[int]:
        with self._lock:
            self._stopped = True
            return set(self._started)

    @property
    def stopped(self) -> bool:
        return self._stopped


# A Retry-After up to this long re-schedules the item; a longer one fails it with the reason.
MAX_RETRY_AFTER = 3600


def work_item(
    job: Job,
    handler: JobKind,
    item: WorkItem,
    reserve: Callable[[UpstreamCall], int] = insert_call,
    gate: BreakerGate | None = None,
    stop: SendStop | None = None,
) -> WorkResult:
    if stop is not None and not stop.admit(item.id):
        # Cancelled while it waited for a thread: nothing is sent, not even a read-back.
        return WorkResult(
            item,
            JobItem.Outcome.CANCELLED,
            message=text(gettext_noop("Cancelled before it was sent.")),
        )
    return _attempt(handler, item, JobRecorder(job, handler, item, reserve, gate))


def _attempt(handler: JobKind, item: WorkItem, recorder: JobRecorder) -> WorkResult:
    client = handler.make_client(recorder)
    try:
        if item.in_doubt:
            try:
                data = handler.settle(client, item)
            except UpstreamError as error:
                # Still unknown whether the first push landed: keep it in doubt, send nothing.
                return WorkResult(
                    item,
                    JobItem.Outcome.IN_DOUBT,
                    message=text(
                        gettext_noop("Could not read the record back: %(error)s"), error=error
                    ),
                    upstream_code=error.upstream_code,
                    exchanges=recorder.exchanges,
                    error=error,
                )
            if data is not None:
                return WorkResult(
                    item,
                    JobItem.Outcome.OK,
                    message=text(
                        gettext_noop("Confirmed by reading back from the upstream; not sent again.")
                    ),
                    data=data,
                    exchanges=recorder.exchanges,
                )
        if item.stale_reason:
            return WorkResult(
                item,
                JobItem.Outcome.SKIPPED,
                message=item.stale_reason,
                exchanges=recorder.exchanges,
            )
        data = handler.push(client, item)
        last = recorder.exchanges[-1] if recorder.exchanges else None
        return WorkResult(
            item,
            JobItem.Outcome.OK,
            upstream_code=last.upstream_code if last else "",
            data=data,
            exchanges=recorder.exchanges,
        )
    except BreakerOpen as stop:
        # The breaker kept this call back: the item waits as pending, and is read back first if
        # an earlier call of it may have been applied.
        return WorkResult(
            replace(item, in_doubt=item.in_doubt or recorder.may_have_applied),
            JobItem.Outcome.NONE,
            message=str(stop),
            exchanges=recorder.exchanges,
            paused=True,
        )
    except UpstreamError as error:
        retry_after = error.retry_after if isinstance(error, UpstreamResponseError) else None
        if retry_after is not None and not error.in_doubt and retry_after <= MAX_RETRY_AFTER:
            return WorkResult(
                item,
                JobItem.Outcome.NONE,
                message=text(
                    gettext_noop("%(error)s Sent again after %(seconds)s s."),
                    error=error,
                    seconds=int(retry_after),
                ),
                upstream_code=error.upstream_code,
                exchanges=recorder.exchanges,
                retry_after=retry_after,
                error=error,
            )
        return WorkResult(
            item,
            JobItem.Outcome.IN_DOUBT if error.in_doubt else error.outcome,
            message=str(error),  # a Text when the client wrote it (upstream.l10n.stored)
            upstream_code=error.upstream_code,
            exchanges=recorder.exchanges,
            error=error,
        )
    except Exception as error:
        # Our bug, not the upstream's: keep the traceback in the log. Once a write went out it
        # may have been applied, so the item is in doubt (read back, never resent blindly).
        logger.exception("job item %s crashed", item.id)
        message = _("Internal error (%(error)s); see the server log.") % {
            "error": type(error).__name__
        }
        if recorder.wrote:
            return WorkResult(
                item,
                JobItem.Outcome.IN_DOUBT,
                message=text(
                    gettext_noop(
                        "%(error)s The change may have reached the upstream; it will be read back."
                    ),
                    error=message,
                ),
                exchanges=recorder.exchanges,
                error=error,
            )
        return WorkResult(
            item, JobItem.Outcome.FAILED, message=message, exchanges=recorder.exchanges, error=error
        )
