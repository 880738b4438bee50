"""Bill queries as a job kind: one item is one multipleinvoicequery of up to 15 lines."""

from __future__ import annotations

from collections import Counter
from typing import Any

from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext as _

from upstream.client import CallRecorder
from upstream.handlers import JobHandler, WorkItem, WorkResult, register
from upstream.models import Job, JobItem

from .client import BillQuery, PayofinClient, QueryResult
from .models import BillDebt, BillQueryBatch, BillQueryLine

BILL_QUERY_KIND = "payofin.bill_query"
PERM_RUN = "billqueries.run_billquery"

LINE_RESULT_FIELDS = [
    "state",
    "result",
    "result_code",
    "result_message",
    "outcome",
    "queried_at",
    "debt_count",
    "debt_total",
    "job_item",
]


@register
class BillQueryHandler(JobHandler):
    kind = BILL_QUERY_KIND
    target_type = "billqueries.billquerybatch"
    permission = PERM_RUN

    def concurrency(self) -> int:
        return settings.PAYOFIN_CONCURRENCY

    def make_client(self, recorder: CallRecorder) -> PayofinClient:
        return PayofinClient(recorder=recorder)

    def push(self, client: PayofinClient, item: WorkItem) -> list[QueryResult]:
        # Runs in a worker thread: everything it sends is in the payload, no ORM here.
        queries = [BillQuery(**q) for q in item.payload["queries"]]
        return client.multiple_invoice_query(queries)

    def settle(self, client: PayofinClient, item: WorkItem) -> Any | None:
        # A query changes nothing at Payofin: never in doubt, and safe to send again.
        return None

    def apply(self, results: list[WorkResult]) -> None:
        """Write each line's answer and its bills; a line's earlier bills are replaced."""
        now = timezone.now()
        line_ids = [i for r in results for i in r.item.payload["line_ids"]]
        lines = BillQueryLine.objects.in_bulk(line_ids)
        BillDebt.objects.filter(line_id__in=line_ids).delete()
        debts: list[BillDebt] = []
        for r in results:
            counts: Counter[str] = Counter()
            for line_id, answer in zip(r.item.payload["line_ids"], r.data, strict=True):
                line = lines.get(line_id)
                if line is None:
                    continue
                line.state = BillQueryLine.State.DONE
                line.result = answer.result
                line.result_code = answer.code
                line.outcome = answer.outcome
                line.result_message = (
                    answer.failure if line.outcome == BillQueryLine.Outcome.FAILED else answer.message
                )
                line.queried_at = now
                line.job_item_id = r.item.id
                line.debt_count = len(answer.bills)
                line.debt_total = sum((b.invoice_amount for b in answer.bills), start=0)
                counts[line.outcome] += 1
                debts.extend(
                    BillDebt(
                        line_id=line.pk,
                        invoice_query_id=bill.invoice_query_id,
                        subscriber_no=(bill.subscriber_no or line.subscriber_no)[:64],
                        customer_name=bill.customer_name[:200],
                        invoice_no=bill.invoice_no[:64],
                        exp_date=bill.exp_date,
                        invoice_amount=bill.invoice_amount,
                        merchant_profit=bill.merchant_profit,
                        total_amount=bill.total_amount,
                        soot_code=bill.soot_code if bill.soot_code is not None else line.soot_code,
                    )
                    for bill in answer.bills
                )
            r.result = {
                "found": counts[BillQueryLine.Outcome.FOUND],
                "no_debt": counts[BillQueryLine.Outcome.NO_DEBT],
                "failed": counts[BillQueryLine.Outcome.FAILED],
                "summary": _("%(found)s with debt, %(no_debt)s without, %(failed)s failed")
                % {
                    "found": counts[BillQueryLine.Outcome.FOUND],
                    "no_debt": counts[BillQueryLine.Outcome.NO_DEBT],
                    "failed": counts[BillQueryLine.Outcome.FAILED],
                },
            }
        BillQueryLine.objects.bulk_update(list(lines.values()), LINE_RESULT_FIELDS, batch_size=500)
        BillDebt.objects.bulk_create(debts, batch_size=500)
        batch_ids = {r.item.payload["batch_id"] for r in results}
        BillQueryBatch.objects.filter(pk__in=batch_ids, state=BillQueryBatch.State.QUEUED).update(
            state=BillQueryBatch.State.RUNNING
        )
        batch_recount(batch_ids)

    def finished(self, job: Job) -> None:
        """Lines of chunks that got no usable answer fail with the reason; the batch closes."""
        batch_id = job.params.get("batch_id")
        if batch_id is None:
            return
        items = JobItem.objects.filter(
            job=job, outcome__in=[*JobItem.FAILED_OUTCOMES, JobItem.Outcome.CANCELLED]
        ).values("id", "payload", "message", "finished_at")
        for item in items:
            BillQueryLine.objects.filter(
                id__in=item["payload"].get("line_ids", []), state=BillQueryLine.State.PENDING
            ).update(
                state=BillQueryLine.State.DONE,
                outcome=BillQueryLine.Outcome.FAILED,
                result=None,
                result_code=None,
                result_message=item["message"] or _("Payofin gave no usable answer."),
                queried_at=item["finished_at"],
                job_item_id=item["id"],
            )
        batch = BillQueryBatch.objects.filter(pk=batch_id, job_id=job.pk).first()
        if batch is None:
            return  # an older run of a batch that has been re-run since
        # Nothing may stay pending once the run is over: say so rather than leave it silent.
        batch.lines.filter(state=BillQueryLine.State.PENDING).update(
            state=BillQueryLine.State.DONE,
            outcome=BillQueryLine.Outcome.FAILED,
            result_message=_("Not sent: the job ended before this line's turn."),
        )
        batch_recount([batch.pk])
        batch.refresh_from_db()
        answered = batch.found_count + batch.no_debt_count
        batch.state = (
            BillQueryBatch.State.FAILED
            if job.succeeded == 0 and answered == 0
            else BillQueryBatch.State.FINISHED
        )
        batch.finished_at = timezone.now()
        batch.save(update_fields=["state", "finished_at"])


def batch_recount(batch_ids: Any) -> None:
    """The batch's counts and totals, always recounted from its lines (never incremented)."""
    from django.db.models import Count, Q, Sum

    Outcome = BillQueryLine.Outcome
    rows = (
        BillQueryLine.objects.filter(batch_id__in=list(batch_ids))
        .values("batch_id")
        .annotate(
            lines=Count("id"),
            found=Count("id", filter=Q(outcome=Outcome.FOUND)),
            no_debt=Count("id", filter=Q(outcome=Outcome.NO_DEBT)),
            failed=Count("id", filter=Q(outcome=Outcome.FAILED)),
            debts=Sum("debt_count"),
            total=Sum("debt_total"),
        )
    )
    for row in rows:
        BillQueryBatch.objects.filter(pk=row["batch_id"]).update(
            line_count=row["lines"],
            found_count=row["found"],
            no_debt_count=row["no_debt"],
            failed_count=row["failed"],
            debt_count=row["debts"] or 0,
            debt_total=row["total"] or 0,
        )
