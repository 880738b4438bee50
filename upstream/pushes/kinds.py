"""The kinds of job and the registry of them: the one unit every path of a push goes through.

A `JobKind` is what the runner runs (a refresh or a bill query batch is one too). A `PushKind`
is a write to an upstream, defined once in its vertical's `pushes.py`: how its typed payload is
built from a record and the staff's request, its verdict (and the same rule as a queryset
filter), push, settle (read back), apply, its amount for the approval thresholds and which fields
a drift re-push may send. The single push (`upstream.pushes.single`), the bulk launch
(`upstream.pushes.bulk`), the API, the approval page and the runner's check just before
sending all ask the same kind.

`push` and `settle` run in worker threads and only talk HTTP; `apply` runs in the runner's
thread, inside the transaction that marks the items done.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar, Self

from django.db.models import Model, Q, QuerySet

from upstream.calls.client import CallRecorder, Exchange, UpstreamClient
from upstream.calls.slots import PRIORITY_BACKGROUND, PRIORITY_PUSH, PRIORITY_READ
from upstream.pushes.verdicts import Verdict


@dataclass(frozen=True)
class Payload:
    """What one item of a kind sends, typed. Stored on the JobItem as JSON (`to_json`), read
    back by the handler in the worker (`from_json`): the only shape the two paths share."""

    def to_json(self) -> dict[str, Any]:
        return {f.name: _to_json(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        values = {}
        for name, options in _field_types(cls):
            if name in data:
                values[name] = _from_json(data[name], options)
        return cls(**values)


@functools.cache
def _field_types(cls: type[Payload]) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    """Each field's name and the types its hint allows, read once per class.

    `typing.get_type_hints` evaluates every annotation string anew: called per item it was
    the runner's largest cost (three reads of a payload per pushed record).
    """
    hints = typing.get_type_hints(cls)
    return tuple(
        (
            f.name,
            typing.get_args(hints[f.name])
            if isinstance(hints[f.name], types.UnionType)
            else (hints[f.name],),
        )
        for f in dataclasses.fields(cls)
    )


def _to_json(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _from_json(value: Any, options: tuple[Any, ...]) -> Any:
    if value is None:
        return None
    if Decimal in options:
        return Decimal(str(value))
    if datetime in options:
        return datetime.fromisoformat(value)
    return value


@dataclass(frozen=True)
class WorkItem:
    id: int
    target_id: str
    target_repr: str
    payload: dict[str, Any]
    in_doubt: bool
    # Set at claim time: why the item must not be sent now (its record changed since the preview).
    stale_reason: str = ""
    # The call-log row committed as pending for this item's write before anything is sent.
    call_id: int | None = None


@dataclass
class WorkResult:
    item: WorkItem
    outcome: str  # JobItem.Outcome value
    message: str = ""
    upstream_code: str = ""
    data: Any = None
    exchanges: list[Exchange] = field(default_factory=list)
    # What the item shows when done (e.g. which records changed); apply() may fill it.
    result: dict[str, Any] = field(default_factory=dict)
    # The upstream asked us to wait this long (429 Retry-After): send again later, not failed.
    retry_after: float | None = None
    # The typed error behind a failed or in-doubt outcome, for a single push to re-raise.
    error: Exception | None = None
    # The upstream's circuit breaker kept the item's next call back: pending again, not failed.
    paused: bool = False
    # Set by the flush before apply: the call that brought this result's changes (the write,
    # or the read-back that confirmed it). `apply` wraps writes of records other than its
    # target in `history_call(result.call_id)`, so their history names the call too.
    call_id: int | None = None


class JobKind:
    """What the runner needs of a kind of job."""

    kind: ClassVar[str]
    # What staff read for the kind ("paynet.invoice_status" is for code and logs).
    label: ClassVar[Any] = ""
    # The kind's typed payload; `payload(item)` reads an item's JSON back into it.
    payload_type: ClassVar[type[Payload] | None] = None
    target_type: ClassVar[str]
    # The permission a user needs to create or retry this kind of job.
    permission: ClassVar[str]
    # The upstream (its circuit breaker gates the kind's pushes and calls) and the write
    # operation each item sends; a pending call-log row is committed for that operation before
    # the request leaves. The operation is empty for kinds that only read.
    service: ClassVar[str] = ""
    operation: ClassVar[str] = ""
    # Writes claim their record (one push at a time per record); a read-only kind need not.
    claims_records: ClassVar[bool] = True
    # Each read's call row is committed pending before it leaves, as a write's is; a kind whose
    # items only read the upstream (a sync) may write it with the results instead.
    reserve_reads: ClassVar[bool] = True

    def concurrency(self) -> int:
        return 4

    def priority(self, job: Any) -> int:
        """Who goes first when the upstream's slots are short (upstream.calls.slots): a write
        staff launched, then a read staff asked for, then work nobody launched (a periodic
        sync). A kind may say otherwise (a sync kind launched by hand, say)."""
        if self.operation:
            return PRIORITY_PUSH
        return PRIORITY_READ if job.created_by_id else PRIORITY_BACKGROUND

    def make_client(self, recorder: CallRecorder) -> UpstreamClient:
        raise NotImplementedError

    def listing(self, job: Any, reserve: Any, gate: Any) -> Any:
        """What a run reads while its items run (a sync's listing pages,
        upstream.history.sync_job.Listing); None: the job's items are all written already."""
        return None

    def expand_queryset(self, queryset: QuerySet) -> QuerySet:
        """How a frozen selection's records are read for `expand` (e.g. with select_related)."""
        return queryset

    def expand(
        self, records: list[Model], tags: dict[int, str], params: dict[str, Any]
    ) -> dict[int, Any]:
        """A frozen selection's chunk as items: {record pk: NewItem}. `tags[pk]` is the value
        the launch saw (the item's re-check compares it); a record left out is skipped."""
        raise NotImplementedError(f"{self.kind} is not launched from a frozen selection")

    def payload(self, item: WorkItem) -> Any:
        return self.payload_type.from_json(item.payload) if self.payload_type else item.payload

    def recheck(self, items: list[WorkItem]) -> dict[int, str]:
        """Just before sending: items whose record no longer matches what was previewed.

        Runs in the runner's thread with the records claimed, so nothing else pushes them until
        the item is done. Returns {item id: reason staff can read}; those items are skipped.
        """
        return {}

    def busy(self, items: list[WorkItem]) -> set[int]:
        """Items whose record another kind of push holds (e.g. all records of a subscription);
        they wait like items whose own record is claimed. Runs with their records claimed."""
        return set()

    def push(self, client: UpstreamClient, item: WorkItem) -> Any:
        """Send the item's change; return what apply() needs. Raise UpstreamError on failure."""
        raise NotImplementedError

    def settle(self, client: UpstreamClient, item: WorkItem) -> Any | None:
        """Read back an item whose last push may have been applied unanswered.

        Return what apply() needs when the change is already there, None when it is not (the
        runner then pushes it), or raise UpstreamError when the upstream cannot tell us.
        """
        raise NotImplementedError

    def apply(self, results: list[WorkResult]) -> None:
        """Write confirmed changes to the mirror (inside the runner's transaction)."""
        raise NotImplementedError

    def apply_read_back(self, results: list[WorkResult]) -> None:
        """Write what a refused push read back (its error's `read_back`) to the mirror.

        A push the preview judged "will change" and the upstream refused means the upstream's
        state differs from the mirror's: the handler reads the record at once, and the runner
        calls this in its transaction, with the read-back call as the history source.
        """

    def describe(self, result: dict[str, Any]) -> str:
        """What a finished item changed, for the job page, in the active language."""
        return str(result.get("summary", ""))

    def finished(self, job: Any) -> None:
        """The job has just closed (inside job_finalize's transaction); nothing by default.

        For kinds whose records need a last word when the job ends, e.g. to record why the
        items that failed or were cancelled got no answer.
        """


@dataclass(frozen=True)
class PlannedChange:
    """One record of a job as its approver reads it: whose, how much, from what to what."""

    record: str
    customer: str = ""
    amount: Decimal | None = None
    current: str = ""
    new: str = ""


class PushKind(JobKind):
    """A write to an upstream, one definition for every path (see the module doc).

    `Request` is what staff asked for, in the kind's own terms (a target status, an item's
    changes with the reason and the override); the kind builds the payload from it and judges it.
    """

    # Fields of the target model a drift re-push may send back; empty: none.
    drift_fields: ClassVar[frozenset[str]] = frozenset()

    def target_model(self) -> type[Model]:
        from django.apps import apps

        return apps.get_model(self.target_type)

    def verdict(self, record: Model, request: Any) -> Verdict:
        """Will change / already so / blocked (with the reason staff read), from the rules and
        the mirror; no I/O. The preview, the API's 400, the approval page and the check just
        before sending all ask this."""
        raise NotImplementedError

    def change_filter(self, request: Any) -> Q:
        """`verdict(record, request).kind == CHANGE` as a database filter, for selections."""
        raise NotImplementedError(f"{self.kind} is not launched from a selection")

    def build(self, record: Model, request: Any) -> Payload:
        """The typed payload one item of this kind sends for `record`."""
        raise NotImplementedError

    def request_of(self, payload: Payload) -> Any:
        """The request a payload was built from: what the check just before sending judges."""
        raise NotImplementedError

    def amount(self, payload: Payload) -> Decimal:
        """What the push weighs for the approval thresholds (₺)."""
        return Decimal("0")

    def drift_request(self, record: Model, changes: dict[str, Any], *, reason: str = "") -> Any:
        """The request a drift re-push of `changes` ({field: expected}, as stored) makes for
        `record`, with the re-push's reason (a kind whose rules ask for one reads it)."""
        raise NotImplementedError(f"{self.kind} re-pushes no drift")

    def planned(
        self,
        records: list[Model],
        params: dict[str, Any],
        payloads: Mapping[int, dict[str, Any]] | None = None,
    ) -> list[PlannedChange]:
        """What the job does to each of `records` (loaded through `expand_queryset`), for the
        approval page: from its items' `payloads` by record pk where they are written (a single
        push, a drift re-push, a prepared bulk job), else from the bulk launch's `params`. A kind
        that says no more names the record."""
        return [PlannedChange(record=str(r)) for r in records]

    def drift_verdict(self, record: Model, request: Any) -> Verdict:
        """`verdict` as a drift re-push reports it: its reason is shown to whoever re-pushes,
        whatever they may see, so a kind whose reasons name people masks them here."""
        return self.verdict(record, request)


_registry: dict[str, JobKind] = {}


def register(handler_cls: type[JobKind]) -> type[JobKind]:
    _registry[handler_cls.kind] = handler_cls()
    return handler_cls


def kind_for(kind: str) -> JobKind:
    try:
        return _registry[kind]
    except KeyError:
        raise LookupError(f"no job handler registered for kind {kind!r}") from None


def kind_label(kind: str) -> str:
    """A job kind in the reader's language; an unknown kind (an old job's) as stored."""
    handler = _registry.get(kind)
    return str(handler.label) if handler is not None and handler.label else kind


def registered_kinds() -> list[str]:
    """Every kind of job there is (the admin's kind filters list them)."""
    return sorted(_registry)


def push_kind(kind: str) -> PushKind:
    found = kind_for(kind)
    if not isinstance(found, PushKind):
        raise LookupError(f"{kind!r} is not a push kind")
    return found


def push_kinds_for(model: type[Model]) -> list[PushKind]:
    """The push kinds that write `model`'s records (a drift re-push looks its kind up here)."""
    label = model._meta.label_lower
    return [k for k in _registry.values() if isinstance(k, PushKind) and k.target_type == label]
