"""Drift: changes an upstream made to a mirrored record that we did not expect.

Found while the mirror follows the upstream (a sync, a refresh, a read-back): the mirror takes
the upstream's value at once, and a change that is not the upstream's own lifecycle becomes an
entry staff accept (with a reason) or re-push (the expected value, through the normal push path
with its rules, reason and approvals). Kinds:

- reverted: a value we pushed and the upstream confirmed, later found otherwise;
- outside_change: a field only staff change, changed upstream (Paynet: amount, val_date, the
  split, a status other than Paynet's own charge outcome 0 → 3 / 0 → 4; WiseCP: an item's amount,
  total, quantity or invoice);
- missing: a record the upstream no longer lists.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from dataclasses import field as dc_field
from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, models, transaction
from django.db.models import CharField, Count, Exists, OuterRef, Q, Value
from django.db.models.functions import Cast, Concat
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from upstream.registry import Mirrored, mirrored

if TYPE_CHECKING:
    from upstream.history.changes import Source
    from upstream.models import Drift, Job, RecordChange

logger = logging.getLogger(__name__)

# Sources that bring the upstream's state into the mirror: only their changes can be drift.
READ_SOURCES = frozenset({"sync", "refresh", "call"})


def _rules(label: str) -> Mirrored | None:
    # What each vertical registered (upstream.registry): its fields only staff change, the
    # upstream's own lifecycle, and whether a record that vanishes upstream is drift.
    return mirrored(label)


def _is_lifecycle(rules: Mirrored | None, field: str, old: Any, new: Any) -> bool:
    return rules is not None and (old, new) in rules.lifecycle.get(field, ())


def drift_detect(
    model: type[models.Model],
    changes: list[RecordChange],
    labels: Mapping[int, Any],
    source: Source,
) -> list[Drift]:
    """Turn the changes an upstream read just wrote into drift entries (see the module doc)."""
    if source.kind not in READ_SOURCES or not changes:
        return []
    from upstream.models import Drift, RecordChange

    rules = _rules(model._meta.label_lower)
    staff_only = rules.staff_only if rules is not None else frozenset()
    vanishing = rules is not None and rules.vanishing_is_drift
    updates = [c for c in changes if c.action == RecordChange.Action.UPDATE]
    # Per (record, field) the latest earlier change: was it a push of ours?
    previous: dict[tuple[int, str], RecordChange] = {}
    if updates:
        earlier = (
            RecordChange.objects.filter(
                content_type=changes[0].content_type_id,
                object_id__in={c.object_id for c in updates},
                field__in={c.field for c in updates},
                action=RecordChange.Action.UPDATE,
            )
            .exclude(pk__in=[c.pk for c in changes if c.pk])
            .order_by("object_id", "field", "-at", "-id")
            .only("object_id", "field", "source", "new")
        )
        for row in earlier:
            previous.setdefault((row.object_id, row.field), row)
    found: list[tuple[RecordChange, str, Any, Any]] = []
    for change in changes:
        if change.action == RecordChange.Action.DELETE and vanishing:
            found.append((change, Drift.Kind.MISSING, labels.get(change.object_id), None))
            continue
        if change.action != RecordChange.Action.UPDATE:
            continue
        if _is_lifecycle(rules, change.field, change.old, change.new):
            continue
        last = previous.get((change.object_id, change.field))
        pushed = last is not None and last.source in RecordChange.PUSH_SOURCES
        if pushed and last.new == change.old:
            found.append((change, Drift.Kind.REVERTED, change.old, change.new))
        elif change.field in staff_only:
            found.append((change, Drift.Kind.OUTSIDE_CHANGE, change.old, change.new))
    return [
        _open(
            model,
            change.object_id,
            labels.get(change.object_id),
            change.field,
            expected,
            new,
            kind,
            change.at,
        )
        for change, kind, expected, new in found
    ]


def _same_value(a: Any, b: Any) -> bool:
    """Two history values alike: amounts as numbers ("5.0" is "5.00")."""
    if a == b:
        return True
    try:
        return Decimal(str(a)) == Decimal(str(b))
    except (ArithmeticError, ValueError, TypeError):
        return False


def drift_close_restored(
    model: type[models.Model], changes: list[RecordChange], source: Source
) -> int:
    """A push wrote a field back to what an open entry expected: the entry closes, re-pushed by
    that job. An item's re-push reads its invoice again, and the invoice's subtotal, tax and
    total drift closes with its items; no one has to accept what is already put right."""
    from upstream.models import Drift, RecordChange

    if source.kind not in RecordChange.PUSH_SOURCES or source.job_id is None:
        return 0
    written = {
        (c.object_id, c.field): c.new for c in changes if c.action == RecordChange.Action.UPDATE
    }
    if not written:
        return 0
    entries = Drift.objects.filter(
        content_type_id=changes[0].content_type_id,
        object_id__in={pk for pk, _field in written},
        field__in={name for _pk, name in written},
        state=Drift.State.OPEN,
    ).only("pk", "object_id", "field", "expected")
    restored = [
        e.pk
        for e in entries
        if (e.object_id, e.field) in written
        and _same_value(e.expected, written[(e.object_id, e.field)])
    ]
    if not restored:
        return 0
    return Drift.objects.filter(pk__in=restored, state=Drift.State.OPEN).update(
        state=Drift.State.REPUSHED,
        resolved_by_id=source.actor_id,
        resolved_at=timezone.now(),
        resolution_reason=source.reason,
        job_id=source.job_id,
    )


def drift_missing(
    model: type[models.Model], records: Iterable[tuple[int, Any]], *, at: Any = None
) -> list[Drift]:
    """Records a complete upstream read no longer lists, kept in the mirror (Paynet)."""
    at = at or timezone.now()
    return [
        _open(model, pk, record_label, "", str(record_label), None, "missing", at)
        for pk, record_label in records
    ]


def _open(
    model: type[models.Model],
    pk: int,
    record_label: Any,
    field: str,
    expected: Any,
    found: Any,
    kind: str,
    at: Any,
) -> Drift:
    """One open entry per record and field: seen again, it keeps what we expected first."""
    from upstream.models import Drift

    content_type = ContentType.objects.get_for_model(model)
    same = Drift.objects.filter(
        content_type=content_type, object_id=pk, field=field, state=Drift.State.OPEN
    )
    entry = same.first()
    if entry is None:
        try:
            # A savepoint: a read racing this one may open the entry first (the constraint
            # drift_one_open_per_field), and the caller's transaction must go on.
            with transaction.atomic():
                return Drift.objects.create(
                    service=rules.service if (rules := _rules(model._meta.label_lower)) else "",
                    content_type=content_type,
                    object_id=pk,
                    record_label=str(record_label if record_label is not None else pk)[:200],
                    field=field,
                    expected=expected,
                    found=found,
                    kind=kind,
                    first_seen_at=at,
                    last_seen_at=at,
                )
        except IntegrityError:
            entry = same.get()
    entry.found = found
    entry.last_seen_at = at
    entry.save(update_fields=["found", "last_seen_at"])
    return entry


def drift_list(*, service: str = "", kind: str = "", state: str = "") -> models.QuerySet[Drift]:
    from upstream.models import Drift

    queryset = Drift.objects.select_related("content_type", "resolved_by")
    if service:
        queryset = queryset.filter(service=service)
    if kind:
        queryset = queryset.filter(kind=kind)
    if state:
        queryset = queryset.filter(state=state)
    return queryset


def open_drift_ids(model: type[models.Model], pks: Iterable[int]) -> set[int]:
    """The records among `pks` with open drift (the push preview marks them)."""
    from upstream.models import Drift

    return set(
        Drift.objects.filter(
            content_type=ContentType.objects.get_for_model(model),
            object_id__in=list(pks),
            state=Drift.State.OPEN,
        ).values_list("object_id", flat=True)
    )


def open_drift_count(model: type[models.Model], records: models.QuerySet) -> int:
    """How many of the selected records have open drift (one query, however big the selection)."""
    from upstream.models import Drift

    return (
        Drift.objects.filter(
            content_type=ContentType.objects.get_for_model(model),
            state=Drift.State.OPEN,
            object_id__in=records.order_by().values("pk"),
        )
        .values("object_id")
        .distinct()
        .count()
    )


def drift_counts() -> dict[str, dict[str, int]]:
    """Open drift per upstream and kind (the dashboard)."""
    from upstream.models import Drift

    counts: dict[str, dict[str, int]] = {}
    rows = (
        Drift.objects.filter(state=Drift.State.OPEN)
        .values("service", "kind")
        .annotate(n=Count("id"))
        .order_by()
    )
    for row in rows:
        counts.setdefault(row["service"], {})[row["kind"]] = row["n"]
    return counts


def _require(actor: Any, reason: str) -> str:
    if actor is None or not actor.has_perm("upstream.resolve_drift"):
        raise PermissionDenied(_("You do not have permission to resolve drift."))
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": [_("A reason is required.")]})
    return reason


def drift_accept(*, drift: Drift, actor: Any, reason: str) -> Drift:
    """Acknowledge a drift entry: the mirror keeps what the upstream holds."""
    from upstream.models import Drift

    reason = _require(actor, reason)
    with transaction.atomic():
        updated = Drift.objects.filter(pk=drift.pk, state=Drift.State.OPEN).update(
            state=Drift.State.ACCEPTED,
            resolved_by=actor,
            resolved_at=timezone.now(),
            resolution_reason=reason,
        )
    if not updated:
        raise ValidationError({"state": [_("This drift entry is no longer open.")]})
    drift.refresh_from_db()
    return drift


class RepushResult:
    def __init__(self, drift: Drift, job: Job | None, accepted: bool) -> None:
        self.drift = drift
        self.job = job
        # True while the push waits (approval), runs or is being settled: the API's 202.
        self.accepted = accepted


@dataclass
class RepushLaunch:
    """What a re-push of a selection started: the entries resolved, the jobs, the refusals."""

    done: int = 0
    jobs: list[Job] = dc_field(default_factory=list)
    errors: list[str] = dc_field(default_factory=list)
    # Entry pk -> why it was not re-pushed (the single re-push raises it).
    refused: dict[int, str] = dc_field(default_factory=dict)
    # A push kind's permission was missing (the single re-push answers 403).
    forbidden: bool = False

    # Entries taken along with the asked ones (their record's other open fields): a refusal
    # of one of them is not reported, it stays open as it was.
    siblings: set[int] = dc_field(default_factory=set)

    def refuse(self, drift: Drift, reason: str) -> None:
        self.refused[drift.pk] = reason
        if drift.pk not in self.siblings:
            self.errors.append(f"{drift.record_label}: {reason}")


def _with_siblings(pks: Iterable[int]) -> tuple[list[int], set[int]]:
    """The asked entries and the other open entries of their records whose fields a push kind
    re-pushes: a record's drifted fields go back in one push (an item's unit price and total
    in one call, never a moment where the line is not quantity × price). Returns every pk and
    those added."""
    from upstream.models import Drift
    from upstream.pushes.kinds import push_kinds_for

    asked = list(dict.fromkeys(pks))
    records: dict[int, set[int]] = {}
    for content_type_id, object_id in Drift.objects.filter(pk__in=asked).values_list(
        "content_type_id", "object_id"
    ):
        records.setdefault(content_type_id, set()).add(object_id)
    asked_set, added = set(asked), []
    # One query per record type (a selection of thousands is a few types).
    for content_type_id, object_ids in records.items():
        model = ContentType.objects.get_for_id(content_type_id).model_class()
        if model is None:
            continue
        fields = {f for kind in push_kinds_for(model) for f in kind.drift_fields}
        others = Drift.objects.filter(
            content_type_id=content_type_id,
            object_id__in=object_ids,
            field__in=fields,
            state=Drift.State.OPEN,
        ).values_list("pk", flat=True)
        added += [pk for pk in others if pk not in asked_set]
    return asked + added, set(added)


def drift_repush(*, drift: Drift, actor: Any, reason: str) -> RepushResult:
    """Send one entry's `expected` back as a single push of its record's push kind (the same
    verdict, claim, approvals and in-doubt settling as any single push), in the request.

    The entry is taken first (open -> re-pushed, a conditional update), so a second re-push of
    it, a double click or a racing request, sends nothing. Raises ValidationError for an entry
    that cannot be re-pushed (no longer open, a field staff cannot push, a vanished record, the
    kind's verdict says no), PermissionDenied without the right, and lets the push's own errors
    rise: then the entry is open again.
    """
    from upstream.calls.errors import PushAccepted
    from upstream.models import Drift
    from upstream.pushes.single import push_single

    reason = _require(actor, reason)
    wanted, siblings = _with_siblings([drift.pk])
    taken = _take(wanted, actor, reason)
    if drift.pk not in taken:
        _give_back(taken)
        raise ValidationError({"state": [_("This drift entry is no longer open.")]})
    job = None
    sent: list[int] = []
    try:
        entries = Drift.objects.select_related("content_type").in_bulk(taken)
        drift = entries[drift.pk]
        launch = RepushLaunch(siblings=siblings)
        # The entry's record, with its other drifted fields, as one push of its kind.
        found = [
            (kind, push)
            for kind, pushes in _repushes(list(entries.values()), launch, reason).items()
            for push in pushes
            if drift in push.entries
        ]
        if drift.pk in launch.refused or not found:
            raise ValidationError({"field": [launch.refused.get(drift.pk, "")]})
        ((kind, push),) = found
        sent = [entry.pk for entry in push.entries]
        try:
            done = push_single(
                kind=kind.kind,
                target=push.record,
                payload=push.payload.to_json(),
                actor=actor,
                title=_repush_title(kind, 1),
                reason=reason,
                target_repr=drift.record_label,
                amount=push.amount,
            )
            job, accepted = done.job, False
        except PushAccepted as pending:
            # Waiting for approval or being settled: the entry is re-pushed, the job will tell.
            job, accepted = pending.job, True
    finally:
        _give_back([pk for pk in taken if job is None or pk not in sent])
    Drift.objects.filter(pk__in=sent).update(job=job)
    drift.refresh_from_db()
    return RepushResult(drift, job, accepted)


def _take(pks: list[int], actor: Any, reason: str) -> list[int]:
    """Mark the entries still open as re-pushed, before anything is sent; returns those taken.

    Row locks on PostgreSQL (SQLite serializes writers): of two racing re-pushes, the second
    finds the entries re-pushed and takes none.
    """
    from upstream.models import Drift

    with transaction.atomic():
        taken = list(
            Drift.objects.select_for_update()
            .filter(pk__in=pks, state=Drift.State.OPEN)
            .values_list("pk", flat=True)
        )
        Drift.objects.filter(pk__in=taken).update(
            state=Drift.State.REPUSHED,
            resolved_by=actor,
            resolved_at=timezone.now(),
            resolution_reason=reason,
            job=None,
        )
    return taken


def _give_back(pks: list[int]) -> None:
    """Entries taken for a push that did not start: open again, as they were."""
    from upstream.models import Drift

    _reopen(Drift.objects.filter(pk__in=pks, state=Drift.State.REPUSHED, job=None))


def _reopen(entries: models.QuerySet[Drift]) -> int:
    """Open these re-pushed entries again, one by one: an entry whose record and field have
    opened a newer entry meanwhile (a sync saw the drift again) stays closed, the newer one
    speaks for it (one open entry per record and field)."""
    from upstream.models import Drift

    reopened = 0
    for entry in entries.only("pk", "content_type_id", "object_id", "field"):
        twin = Drift.objects.filter(
            content_type_id=entry.content_type_id,
            object_id=entry.object_id,
            field=entry.field,
            state=Drift.State.OPEN,
        )
        try:
            with transaction.atomic():
                if twin.exists():
                    continue
                reopened += Drift.objects.filter(pk=entry.pk, state=Drift.State.REPUSHED).update(
                    state=Drift.State.OPEN,
                    resolved_by=None,
                    resolved_at=None,
                    resolution_reason="",
                    job=None,
                )
        except IntegrityError:
            continue  # a sync opened the twin in between
    return reopened


def drift_repushes_settle(*, window: timedelta = timedelta(days=7)) -> int:
    """The sweep's step: re-pushed entries whose push did not change the record are open again.

    A re-push is marked when it starts; its job may then be rejected, expire, be cancelled, fail
    or skip the record (changed since). And a single re-push whose web process died before it
    linked its job leaves the entry re-pushed with no job: open again after the inline lease.
    Returns how many entries were reopened.
    """
    from upstream.models import Drift, Job, JobItem, RecordChange
    from upstream.pushes.single import inline_lease

    now = timezone.now()
    applied = JobItem.objects.filter(
        job_id=OuterRef("job_id"),
        # The entry's own record: an item and an invoice may share a pk.
        target_type=Concat(
            OuterRef("content_type__app_label"), Value("."), OuterRef("content_type__model")
        ),
        target_id=Cast(OuterRef("object_id"), CharField()),
        outcome=JobItem.Outcome.OK,
    )
    # An entry its job put right beside its target (an invoice's totals, read back after its
    # items' re-push: drift_close_restored): the job wrote that field of that record.
    written = RecordChange.objects.filter(
        job_id=OuterRef("job_id"),
        content_type_id=OuterRef("content_type_id"),
        object_id=OuterRef("object_id"),
        field=OuterRef("field"),
    )
    repushed = Drift.objects.filter(state=Drift.State.REPUSHED, resolved_at__gte=now - window)
    # A job that succeeded without skipping changed every record it had: not looked at again.
    ended_short = Q(job__state__in=set(Job.FINISHED_STATES) - {Job.State.SUCCEEDED}) | Q(
        job__state=Job.State.SUCCEEDED, job__skipped__gt=0
    )
    unchanged = repushed.filter(ended_short).exclude(Exists(applied)).exclude(Exists(written))
    orphaned = repushed.filter(job=None, resolved_at__lt=now - inline_lease())
    return _reopen(unchanged) + _reopen(orphaned)


@dataclass(frozen=True)
class _Repush:
    record: models.Model
    payload: Any
    amount: Decimal
    entries: list[Drift]


def _repushes(
    drifts: Iterable[Drift], launch: RepushLaunch, reason: str
) -> dict[Any, list[_Repush]]:
    """Entries taken for a re-push (`_take`) as pushes of their records' kinds, one per record
    (two drifted fields of one record go in one push); refusals are noted on `launch`."""
    from upstream.models import Drift
    from upstream.pushes.kinds import push_kinds_for
    from upstream.pushes.verdicts import VerdictKind

    drifts = list(drifts)
    # The records, one query per model, not one per entry (a selection may hold thousands).
    wanted: dict[Any, set[int]] = {}
    for drift in drifts:
        if (model := drift.content_type.model_class()) is not None:
            wanted.setdefault(model, set()).add(drift.object_id)
    found = {model: model.objects.in_bulk(list(pks)) for model, pks in wanted.items()}
    pushed_since = _pushed_since(drifts)
    grouped: dict[Any, dict[int, tuple[models.Model, dict[str, Any], list[Drift]]]] = {}
    for drift in drifts:
        model = drift.content_type.model_class()
        record = found.get(model, {}).get(drift.object_id)
        if record is None or drift.kind == Drift.Kind.MISSING:
            launch.refuse(drift, _("A vanished record cannot be re-pushed."))
            continue
        if drift.pk in pushed_since:
            # Someone pushed this field on purpose after the drift was found: re-pushing the
            # older expected value would undo that push.
            launch.refuse(
                drift,
                _(
                    "This field was pushed again after the drift was found, so its expected "
                    "value is out of date; accept the entry instead."
                ),
            )
            continue
        # The record's push kind says which fields a re-push may send (its drift_fields).
        kind = next((k for k in push_kinds_for(model) if drift.field in k.drift_fields), None)
        if kind is None:
            launch.refuse(
                drift, _("This field cannot be pushed to the upstream; accept it instead.")
            )
            continue
        _record, changes, entries = grouped.setdefault(kind, {}).setdefault(
            record.pk, (record, {}, [])
        )
        changes[drift.field] = drift.expected
        entries.append(drift)
    pushes: dict[Any, list[_Repush]] = {}
    for kind, records in grouped.items():
        for record, changes, entries in records.values():
            try:
                request = kind.drift_request(record, changes, reason=reason)
                verdict = kind.drift_verdict(record, request)
                if verdict.kind != VerdictKind.CHANGE:
                    why = verdict.reason or _("The upstream already holds the expected value.")
                    raise ValidationError(str(why))
                payload = kind.build(record, request)
                amount = kind.amount(payload)
            except ValidationError as error:
                for drift in entries:
                    launch.refuse(drift, _error_text(error))
                continue
            except Exception as error:
                # An expected value the kind cannot turn into a push (stored long ago, in an
                # older shape): refused with the others going on, never a 500 for the selection.
                logger.exception("drift re-push of %s could not be prepared", record)
                for drift in entries:
                    launch.refuse(
                        drift,
                        _("The expected value cannot be sent (%(error)s); accept it instead.")
                        % {"error": type(error).__name__},
                    )
                continue
            pushes.setdefault(kind, []).append(_Repush(record, payload, amount, entries))
    return pushes


def _pushed_since(drifts: list[Drift]) -> set[int]:
    """The entries whose field a push changed after the entry was first seen (one query)."""
    from upstream.models import RecordChange

    if not drifts:
        return set()
    changes = RecordChange.objects.filter(
        source=RecordChange.Source.OPERATION,
        object_id__in={d.object_id for d in drifts},
        field__in={d.field for d in drifts},
        at__gt=min(d.first_seen_at for d in drifts),
    ).values_list("content_type_id", "object_id", "field", "at")
    latest: dict[tuple[int, int, str], Any] = {}
    for content_type_id, object_id, field, at in changes:
        key = (content_type_id, object_id, field)
        latest[key] = max(at, latest.get(key, at))
    return {
        d.pk
        for d in drifts
        if (at := latest.get((d.content_type_id, d.object_id, d.field))) is not None
        and at > d.first_seen_at
    }


def drift_repush_selection(*, drifts: Iterable[Drift], actor: Any, reason: str) -> RepushLaunch:
    """Re-push open entries as bulk pushes: one job per push kind, with the approvals of the
    whole selection, never a loop of single pushes in the request.

    Each record's push kind (upstream.pushes.kinds) says which fields a re-push may send and
    turns the expected values into its request; its verdict refuses what the rules refuse, as
    for any push. The entries are taken first (open -> re-pushed), so a double click or a
    racing request starts no second job; those whose push did not start are open again.
    """
    from upstream.models import Drift
    from upstream.pushes.jobs import NewItem, job_create

    reason = _require(actor, reason)
    asked = [d for d in drifts if d.state == Drift.State.OPEN]
    wanted, siblings = _with_siblings([d.pk for d in asked])
    launch = RepushLaunch(siblings=siblings)
    taken = _take(wanted, actor, reason)
    fresh = Drift.objects.select_related("content_type").in_bulk(taken)
    started: list[int] = []
    try:
        for kind, pushes in _repushes([fresh[pk] for pk in taken], launch, reason).items():
            entries = [drift for push in pushes for drift in push.entries]
            try:
                job = job_create(
                    kind=kind.kind,
                    title=_repush_title(kind, len(pushes)),
                    items=[
                        NewItem(
                            target=push.record,
                            payload=push.payload.to_json(),
                            target_repr=push.entries[0].record_label,
                        )
                        for push in pushes
                    ],
                    actor=actor,
                    reason=reason,
                    amount=sum((push.amount for push in pushes), Decimal("0")),
                )
            except (ValidationError, PermissionDenied) as error:
                for drift in entries:
                    launch.refuse(drift, _error_text(error))
                launch.forbidden |= isinstance(error, PermissionDenied)
                continue
            launch.jobs.append(job)
            ids = [d.pk for d in entries]
            launch.done += Drift.objects.filter(pk__in=ids).update(job=job)
            started += ids
    finally:
        _give_back([pk for pk in taken if pk not in started])
    return launch


def _repush_title(kind: Any, count: int) -> Any:
    from upstream.l10n.stored import text

    return text(
        gettext_noop("Re-push %(count)s drifted records: %(kind)s"), count=count, kind=kind.label
    )


def drift_resolve_many(
    *, drifts: Iterable[Drift], actor: Any, reason: str, repush: bool
) -> tuple[int, list[Job], list[str]]:
    """Accept or re-push many entries (the admin's bulk actions and the API's selection).

    A re-push is one bulk push per push kind (`drift_repush_selection`). Returns how many
    entries were resolved, the jobs started and the refusals, one line each.
    """
    from upstream.models import Drift

    reason = _require(actor, reason)
    if repush:
        launch = drift_repush_selection(drifts=drifts, actor=actor, reason=reason)
        return launch.done, launch.jobs, launch.errors
    done, errors = 0, []
    for drift in drifts:
        if drift.state != Drift.State.OPEN:
            continue
        try:
            drift_accept(drift=drift, actor=actor, reason=reason)
            done += 1
        except (ValidationError, PermissionDenied) as error:
            errors.append(f"{drift.record_label}: {_error_text(error)}")
    return done, [], errors


def _error_text(error: Exception) -> str:
    if isinstance(error, ValidationError):
        return " ".join(error.messages)
    return str(error)
