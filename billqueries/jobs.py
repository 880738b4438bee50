"""Bill queries as a job kind: one item is one multipleinvoicequery of up to 15 lines."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Model, Q, Sum
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, gettext_noop

from upstream.calls.client import CallRecorder
from upstream.history.changes import history_call, history_calls, record_written
from upstream.history.sync import SyncCounts
from upstream.history.sync_job import SyncKind
from upstream.l10n.stored import text
from upstream.models import Job, JobItem
from upstream.pushes.jobs import NewItem
from upstream.pushes.kinds import JobKind, Payload, WorkItem, WorkResult, register

from .client import BillQuery, PayofinClient, QueryResult
from .models import BillDebt, BillQueryBatch, BillQueryLine, Institution
from .sync import institutions_reconcile

BILL_QUERY_KIND = "payofin.bill_query"
LINE_LABEL = BillQueryLine._meta.label_lower
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
    "fee_total",
    "job_item",
]
DEBT_FIELDS = [
    "line",
    "invoice_query_id",
    "subscriber_no",
    "customer_name",
    "invoice_no",
    "exp_date",
    "invoice_amount",
    "merchant_profit",
    "total_amount",
    "soot_code",
]


@dataclass(frozen=True)
class QueryChunk(Payload):
    """One multipleinvoicequery: up to 15 lines, matched to the answer by position."""

    batch_id: int
    line_ids: list[int]
    queries: list[dict[str, Any]]


@register
class BillQueryHandler(JobKind):
    kind = BILL_QUERY_KIND
    label = gettext_lazy("Payofin: bill queries")
    target_type = "billqueries.billquerybatch"
    permission = PERM_RUN
    payload_type = QueryChunk
    # Its calls count for Payofin's circuit breaker; a query writes nothing, so no operation is
    # reserved in the call log before it is sent.
    service = "payofin"
    # A query changes nothing at Payofin, and a batch's chunks run side by side.
    claims_records = False

    def concurrency(self) -> int:
        return settings.PAYOFIN_CONCURRENCY

    def make_client(self, recorder: CallRecorder) -> PayofinClient:
        return PayofinClient(recorder=recorder)

    def push(self, client: PayofinClient, item: WorkItem) -> list[QueryResult]:
        # Runs in a worker thread: everything it sends is in the payload, no ORM here.
        queries = [BillQuery(**q) for q in self.payload(item).queries]
        return client.multiple_invoice_query(queries)

    def settle(self, client: PayofinClient, item: WorkItem) -> Any | None:
        # A query changes nothing at Payofin: never in doubt, and safe to send again.
        return None

    def apply(self, results: list[WorkResult]) -> None:
        """Write each line's answer and its bills; a line's earlier bills are replaced."""
        now = timezone.now()
        line_ids = [i for r in results for i in self.payload(r.item).line_ids]
        # What the lines held before: their history is the difference (written raw, as they are).
        before = {
            row[0]: row[1:]
            for row in BillQueryLine.objects.filter(pk__in=line_ids).values_list(
                "pk", *LINE_RESULT_FIELDS
            )
        }
        calls: dict[tuple[str, str], int] = {}
        BillDebt.objects.filter(line_id__in=line_ids).delete()
        updates: list[list[Any]] = []
        debts: list[list[Any]] = []
        for r in results:
            counts: Counter[str] = Counter()
            chunk = self.payload(r.item)
            pairs = zip(chunk.line_ids, chunk.queries, r.data, strict=True)
            for line_id, query, answer in pairs:
                if line_id not in before:
                    continue
                if r.call_id is not None:
                    calls[(LINE_LABEL, str(line_id))] = r.call_id
                outcome = answer.outcome
                counts[outcome] += 1
                message = (
                    answer.failure if outcome == BillQueryLine.Outcome.FAILED else answer.message
                )
                total = sum((b.invoice_amount for b in answer.bills), start=Decimal("0"))
                fees = sum((b.merchant_profit for b in answer.bills), start=Decimal("0"))
                # In LINE_RESULT_FIELDS order, then the id.
                updates.append(
                    [
                        BillQueryLine.State.DONE,
                        answer.result,
                        answer.code,
                        message,
                        outcome,
                        now,
                        len(answer.bills),
                        total,
                        fees,
                        r.item.id,
                        line_id,
                    ]
                )
                # In DEBT_FIELDS order.
                debts.extend(
                    [
                        line_id,
                        bill.invoice_query_id,
                        (bill.subscriber_no or query["subscriber_no"])[:64],
                        bill.customer_name[:200],
                        bill.invoice_no[:64],
                        bill.exp_date,
                        bill.invoice_amount,
                        bill.merchant_profit,
                        bill.total_amount,
                        query["soot_code"] if bill.soot_code is None else bill.soot_code,
                    ]
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
        # One statement run for all rows (executemany). bulk_update builds a CASE per field per
        # row and bulk_create a statement per 500 rows: for a flush of some hundred lines they
        # held the runner's thread, and the GIL its HTTP threads need, for about a millisecond
        # per line, which halved what bench/bill_queries.py measured.
        after = {row[-1]: row[:-1] for row in updates}  # copies: _execute_many adapts rows
        _execute_many(BillQueryLine, LINE_RESULT_FIELDS, updates, update=True)
        # Each line's changes name the query that answered it, in the flush's source (the job).
        with history_calls(calls):
            record_written(BillQueryLine, LINE_RESULT_FIELDS, before, after)
        _execute_many(BillDebt, DEBT_FIELDS, debts)
        batch_ids = {self.payload(r.item).batch_id for r in results}
        BillQueryBatch.objects.filter(pk__in=batch_ids, state=BillQueryBatch.State.QUEUED).update(
            state=BillQueryBatch.State.RUNNING
        )
        batch_recount(batch_ids)

    def describe(self, result: dict[str, Any]) -> str:
        # From the counts, in the reader's language (the stored summary is the worker's).
        if "found" not in result:
            return super().describe(result)
        return _("%(found)s with debt, %(no_debt)s without, %(failed)s failed") % {
            key: result.get(key, 0) for key in ("found", "no_debt", "failed")
        }

    def finished(self, job: Job) -> None:
        """Lines of chunks that got no usable answer fail with the reason; the batch closes."""
        batch = BillQueryBatch.objects.filter(pk=job.params.get("batch_id"), job_id=job.pk).first()
        if batch is None:
            return  # not a batch's job, or an older run of a batch that has been re-run since
        items = JobItem.objects.filter(
            job=job, outcome__in=[*JobItem.FAILED_OUTCOMES, JobItem.Outcome.CANCELLED]
        ).values("id", "payload", "message", "finished_at", "call_id")
        for item in items:
            # Still waiting, or failed by this same item before (a retried item that failed again).
            unanswered = Q(state=BillQueryLine.State.PENDING) | Q(
                outcome=BillQueryLine.Outcome.FAILED, job_item_id=item["id"]
            )
            # In the job's source (job_finalize); each line names its item's last call.
            with history_call(item["call_id"]):
                BillQueryLine.objects.filter(unanswered, id__in=item["payload"]["line_ids"]).update(
                    state=BillQueryLine.State.DONE,
                    outcome=BillQueryLine.Outcome.FAILED,
                    result=None,
                    result_code=None,
                    result_message=item["message"] or _("Payofin gave no usable answer."),
                    queried_at=item["finished_at"],
                    job_item_id=item["id"],
                )
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


def _execute_many(
    model: type[Model], names: list[str], rows: list[list[Any]], *, update: bool = False
) -> None:
    """INSERT rows of `names` values, or UPDATE (each row then ends with its primary key)."""
    if not rows:
        return
    fields = [model._meta.get_field(name) for name in names]
    qn = connection.ops.quote_name
    table = qn(model._meta.db_table)
    # Identifiers come from the model's meta; every value is a parameter.
    if update:
        sets = ", ".join(f"{qn(f.column)} = %s" for f in fields)
        sql = f"UPDATE {table} SET {sets} WHERE {qn(model._meta.pk.column)} = %s"  # noqa: S608
    else:
        columns = ", ".join(qn(f.column) for f in fields)
        marks = ", ".join(["%s"] * len(fields))
        sql = f"INSERT INTO {table} ({columns}) VALUES ({marks})"  # noqa: S608
    # Dates, datetimes and decimals need the backend's adaptation; str, int, bool and None do not.
    adapt = [(i, f) for i, f in enumerate(fields) if f.get_internal_type() in _ADAPTED_TYPES]
    for row in rows:
        for i, f in adapt:
            row[i] = f.get_db_prep_save(row[i], connection)
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)


_ADAPTED_TYPES = frozenset({"DateField", "DateTimeField", "DecimalField"})


def batch_recount(batch_ids: Any) -> None:
    """The batch's counts and totals, always recounted from its lines (never incremented)."""
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
            fees=Sum("fee_total"),
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
            fee_total=row["fees"] or 0,
        )


# --- the catalogue's sync, as a job of one item (upstream.history.sync_job) -------------------

PAYOFIN_SYNC_KIND = "payofin.sync"


@register
class PayofinSyncKind(SyncKind):
    """Payofin's institution catalogue (`sootlist`): one read, one item; a job like every sync,
    so it has a page, a history source and the one-at-a-time rule."""

    kind = PAYOFIN_SYNC_KIND
    label = gettext_lazy("Payofin: sync")
    target_type = "billqueries.institution"
    permission = "billqueries.sync_institution"
    service = "payofin"
    record_model = Institution
    streams = False

    def concurrency(self) -> int:
        return 1

    def make_client(self, recorder: CallRecorder) -> PayofinClient:
        return PayofinClient(recorder=recorder)

    def title(self) -> Any:
        return text(gettext_noop("Sync from Payofin"))

    def single_item(self) -> NewItem:
        return NewItem(target=None, payload={}, target_repr="sootlist")  # type: ignore[arg-type]

    def mirrored(self) -> Any:
        return Institution.objects.all()

    def read(self, client: PayofinClient, item: WorkItem) -> Any:
        return {"infos": client.sootlist()}

    def write(self, result: WorkResult) -> SyncCounts:
        with transaction.atomic():
            return institutions_reconcile(result.data["infos"])
