"""Bill-query batches: check the lines, then query Payofin 15 lines per request in a job."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, BinaryIO, NamedTuple

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop, ngettext

from upstream.actors import User, actor_allowed, actor_require
from upstream.history.changes import history_source
from upstream.l10n.stored import text
from upstream.pushes.jobs import NewItem, job_create

from .client import MAX_FIRM_REF_LEN, MAX_QUERIES
from .jobs import BILL_QUERY_KIND, PERM_RUN, QueryChunk, batch_recount
from .models import BillQueryBatch, BillQueryLine
from .parsing import InvalidLine, ParsedLine, parse_dicts, parse_input

PERM_SYNC = "billqueries.sync_institution"
MAX_BATCH_LINES = 10_000
_B36 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


class BatchPreview(NamedTuple):
    valid: list[ParsedLine]
    invalid: list[InvalidLine]


class InvalidLines(ValidationError):
    """Some lines cannot be queried; `invalid` says which and why."""

    def __init__(self, invalid: list[InvalidLine]) -> None:
        self.invalid = invalid
        super().__init__(
            ngettext(
                "%(count)s line cannot be queried; fix it and send the batch again.",
                "%(count)s lines cannot be queried; fix them and send the batch again.",
                len(invalid),
            )
            % {"count": len(invalid)}
        )


def require_run_permission(actor: User | None) -> None:
    # None is the system itself (the demo, the benchmark): upstream/actors.py.
    if not actor_allowed(actor, PERM_RUN):
        raise PermissionDenied(_("You do not have permission to run bill queries at Payofin."))


def _base36(n: int) -> str:
    out = ""
    while True:
        n, rest = divmod(n, 36)
        out = _B36[rest] + out
        if not n:
            return out


def firm_ref_no(batch_id: int, position: int, attempt: int) -> str:
    """Our unique reference for one query: Q + batch (base 36) + line (3) + attempt (2).

    The fixed-width tail keeps it unambiguous, so (batch, line, attempt) is unique and so is
    the reference; Payofin allows 15 characters (payofin.md §4)."""
    ref = f"Q{_base36(batch_id)}{_base36(position).rjust(3, '0')}{_base36(attempt).rjust(2, '0')}"
    if len(ref) > MAX_FIRM_REF_LEN or position >= 36**3 or attempt >= 36**2:
        raise ValueError(f"no firmRefNo fits batch {batch_id}, line {position}, attempt {attempt}")
    return ref


def bill_query_batch_preview(*, text: str = "", file: BinaryIO | None = None) -> BatchPreview:
    """The lines of typed/pasted text or an uploaded CSV/xlsx `file`, each valid or with its
    reason. Nothing is sent and nothing is saved."""
    if file is None and not text.strip():
        raise ValidationError(_("Type or paste some lines, or choose a file."))
    valid, invalid = parse_input(text=text, upload=file)
    if not valid and not invalid:
        raise ValidationError(_("No lines found."))
    if len(valid) > MAX_BATCH_LINES:
        raise ValidationError(
            _("A batch holds at most %(max)s lines; this one has %(count)s. Split it.")
            % {"max": MAX_BATCH_LINES, "count": len(valid)}
        )
    return BatchPreview(valid, invalid)


def _checked(lines: Iterable[ParsedLine | Mapping[str, Any]]) -> list[ParsedLine]:
    # Checked again whatever their origin: the catalogue may have changed since the preview.
    dicts = [line.as_dict() if isinstance(line, ParsedLine) else line for line in lines]
    valid, invalid = parse_dicts(dicts)
    if invalid:
        raise InvalidLines(invalid)
    if not valid:
        raise ValidationError(_("A batch needs at least one line."))
    if len(valid) > MAX_BATCH_LINES:
        raise ValidationError(
            _("A batch holds at most %(max)s lines; this one has %(count)s. Split it.")
            % {"max": MAX_BATCH_LINES, "count": len(valid)}
        )
    return valid


def _actor_id(actor: User | None) -> int | None:
    return actor.pk if actor is not None and actor.is_authenticated else None


def bill_query_batch_create(
    *,
    lines: Iterable[ParsedLine | Mapping[str, Any]],
    actor: User | None,
    source: str,
    filename: str = "",
) -> BillQueryBatch:
    """Save the batch and its lines, then queue a job that sends `multipleinvoicequery` for
    every 15 lines. Each line gets Payofin's answer and its bills when its request returns.

    Raises PermissionDenied without billqueries.run_billquery, InvalidLines (a ValidationError)
    listing every line that cannot be queried; nothing is saved or sent then."""
    require_run_permission(actor)
    if source not in BillQueryBatch.Source.values:
        raise ValidationError(_("Unknown source %(source)s.") % {"source": source})
    checked = _checked(lines)
    # The lines are created by staff: their history says who (the job comes after them).
    with transaction.atomic(), history_source("operation", actor_id=_actor_id(actor)):
        batch = BillQueryBatch.objects.create(
            source=source,
            filename=(filename or "")[:255],
            created_by=actor if actor is not None and actor.is_authenticated else None,
            line_count=len(checked),
        )
        BillQueryLine.objects.bulk_create(
            [
                BillQueryLine(
                    batch=batch,
                    position=position,
                    input_line=line.number,
                    institution=line.institution,
                    soot_code=line.soot_code,
                    subscriber_no=line.subscriber_no,
                    additional_no=line.additional_no,
                    firm_ref_no=firm_ref_no(batch.pk, position, 1),
                )
                for position, line in enumerate(checked, start=1)
            ],
            batch_size=1000,
        )
        _queue(batch, batch.lines.order_by("position"), actor)
    return batch


def bill_query_batch_rerun_failed(batch: BillQueryBatch, actor: User) -> BillQueryBatch:
    """Query the batch's failed lines again, with new firmRefNos, in a new job.

    The other lines keep their answers; a re-run line's earlier failure is replaced by the new
    answer (the call log keeps every request and answer). Only a person re-runs lines."""
    actor_require(actor, PERM_RUN, _("You do not have permission to run bill queries at Payofin."))
    with transaction.atomic(), history_source("operation", actor_id=_actor_id(actor)):
        batch = BillQueryBatch.objects.select_for_update().get(pk=batch.pk)
        if batch.job is not None and not batch.job.is_finished:
            raise ValidationError(_("The batch is still running; re-run its failed lines later."))
        failed = list(batch.lines.filter(outcome=BillQueryLine.Outcome.FAILED).order_by("position"))
        if not failed:
            raise ValidationError(_("The batch has no failed lines."))
        for line in failed:
            line.attempt += 1
            line.firm_ref_no = firm_ref_no(batch.pk, line.position, line.attempt)
            line.state = BillQueryLine.State.PENDING
            line.outcome = BillQueryLine.Outcome.NONE
            line.result = None
            line.result_code = None
            line.result_message = ""
            line.queried_at = None
        BillQueryLine.objects.bulk_update(
            failed,
            [
                "attempt",
                "firm_ref_no",
                "state",
                "outcome",
                "result",
                "result_code",
                "result_message",
                "queried_at",
            ],
            batch_size=500,
        )
        batch.state = BillQueryBatch.State.QUEUED
        batch.finished_at = None
        batch.save(update_fields=["state", "finished_at"])
        _queue(batch, failed, actor, rerun=True)
        batch_recount([batch.pk])
    batch.refresh_from_db()
    return batch


def _queue(
    batch: BillQueryBatch, lines: Iterable[BillQueryLine], actor: User | None, rerun: bool = False
) -> None:
    """One job item per request: up to 15 lines, carrying all that push() sends."""
    lines = list(lines)
    items = []
    for start in range(0, len(lines), MAX_QUERIES):
        chunk = lines[start : start + MAX_QUERIES]
        items.append(
            NewItem(
                target=batch,
                # Numbers only: the call log shows it to readers of every language.
                target_repr=f"#{batch.pk} · {chunk[0].line_number}–{chunk[-1].line_number}",
                payload=QueryChunk(
                    batch_id=batch.pk,
                    line_ids=[line.pk for line in chunk],
                    queries=[
                        {
                            "soot_code": line.soot_code,
                            "subscriber_no": line.subscriber_no,
                            "additional_no": line.additional_no,
                            "firm_ref_no": line.firm_ref_no,
                        }
                        for line in chunk
                    ],
                ).to_json(),
            )
        )
    title = text(
        gettext_noop("Bill queries: re-run %(count)s failed lines of batch #%(batch)s")
        if rerun
        else gettext_noop("Bill queries: batch #%(batch)s, %(count)s lines"),
        batch=batch.pk,
        count=len(lines),
    )
    job = job_create(
        kind=BILL_QUERY_KIND,
        title=title,
        items=items,
        actor=actor,
        params={"batch_id": batch.pk, "lines": len(lines)},
    )
    BillQueryBatch.objects.filter(pk=batch.pk).update(job=job)
    batch.job = job
