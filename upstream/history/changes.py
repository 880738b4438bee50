"""Field-level history of the mirrored records: every write path, every database.

Why not a library (docs/decisions/012-record-history.md): django-simple-history and
django-auditlog hang on model signals, which bulk_create, bulk_update and queryset.update never
send; django-pghistory records those through triggers, but on PostgreSQL only, and the product
runs on SQLite too. So the mirrored models use `HistoryQuerySet` (its `update`, which
`bulk_update` goes through, `bulk_create` and `delete`) and `HistoryModel` (`save`, `delete`):
each write reads the fields it touches before and after, and the difference becomes
RecordChange rows in the same transaction.

Who and why come from `history_source`, set around the write by the path that knows it: the
runner for a push (actor, reason, job, the item's call), the syncs and refreshes, drift
resolution. A write without one is recorded as "other" rather than skipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.db import DEFAULT_DB_ALIAS, connections, models, transaction
from django.utils import timezone

from upstream.calls.redaction import mask_value
from upstream.registry import personal_fields
from upstream.rows import (
    field_defaults,
    insert_fields,
    insert_prepared,
    insert_rows,
    insert_values,
    row_values,
)

# Local bookkeeping that is not the upstream's data.
UNTRACKED = frozenset({"id", "synced_at", "version"})
# Reads and writes of at most this many rows at a time (SQLite's variable limit, lock sizes).
CHUNK = 500


@dataclass(frozen=True)
class Source:
    kind: str
    actor_id: int | None = None
    reason: str = ""
    job_id: int | None = None
    call_id: int | None = None
    # (model label, pk as text) -> the call that changed that record, when one call per record.
    calls: Mapping[tuple[str, str], int] = field(default_factory=dict)


_current: ContextVar[Source | None] = ContextVar("history_source", default=None)


def current_source() -> Source | None:
    return _current.get()


@contextmanager
def history_source(
    kind: str,
    *,
    actor_id: int | None = None,
    reason: str = "",
    job_id: int | None = None,
    call_id: int | None = None,
    calls: Mapping[tuple[str, str], int] | None = None,
    keep_outer: bool = False,
) -> Iterator[Source]:
    """Attribute the mirror writes inside the block to this source.

    `keep_outer`: a sync run inside a push's apply (a read-back reconciling the mirror) keeps
    the push as the source.
    """
    outer = _current.get()
    if keep_outer and outer is not None:
        yield outer
        return
    source = Source(kind, actor_id, reason or "", job_id, call_id, dict(calls or {}))
    token = _current.set(source)
    try:
        yield source
    finally:
        _current.reset(token)


@contextmanager
def history_call(call_id: int | None) -> Iterator[None]:
    """Writes inside the block carry `call_id`, whichever record they touch.

    For a push's result that writes records beside its target (a subscription's payment
    records, a record it created, an invoice's totals): the source's per-target calls name only
    the target. Outside a source, or without a call, it changes nothing.
    """
    outer = _current.get()
    if outer is None or call_id is None:
        yield
        return
    token = _current.set(replace(outer, call_id=call_id, calls={}))
    try:
        yield
    finally:
        _current.reset(token)


@contextmanager
def history_calls(calls: Mapping[tuple[str, str], int]) -> Iterator[None]:
    """Writes inside the block carry, per record ((model label, pk as text) -> call), its call."""
    outer = _current.get()
    if outer is None:
        yield
        return
    token = _current.set(replace(outer, calls={**outer.calls, **calls}))
    try:
        yield
    finally:
        _current.reset(token)


def tracked_fields(model: type[models.Model]) -> list[models.Field]:
    skip = UNTRACKED | set(getattr(model, "history_exclude", ()))
    # A generated column (a stored fold of another) changes with its source, never by itself.
    return [
        f
        for f in model._meta.concrete_fields
        if f.name not in skip and not f.primary_key and not f.generated
    ]


def plain(value: Any) -> Any:
    """A value as JSON keeps it: Decimal as its string, dates ISO 8601."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def _label_field(model: type[models.Model]) -> str:
    return getattr(model, "history_label", "pk")


def _read(
    queryset: models.QuerySet, attnames: list[str], lock: bool = False
) -> dict[int, tuple[Any, ...]]:
    label = _label_field(queryset.model)
    rows = queryset.order_by().values_list("pk", label, *attnames)
    features = connections[queryset.db].features
    if lock and features.has_select_for_update:
        rows = rows.select_for_update(of=("self",) if features.has_select_for_update_of else ())
    return {row[0]: row[1:] for row in rows}


def _chunks(values: list[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(values), CHUNK):
        yield values[start : start + CHUNK]


def _field_names(model: type[models.Model], names: Iterable[str]) -> list[models.Field]:
    wanted = set(names)
    return [f for f in tracked_fields(model) if f.name in wanted or f.attname in wanted]


def _record(
    model: type[models.Model],
    using: str,
    entries: list[tuple[int, str, str, Any, Any]],
    labels: Mapping[int, Any],
) -> None:
    """Write RecordChange rows for (pk, action, field, old, new) entries, then look for drift."""
    if not entries:
        return
    from upstream.models import RecordChange

    source = _current.get() or Source(RecordChange.Source.OTHER)
    content_type = ContentType.objects.db_manager(using).get_for_model(model)
    label = model._meta.label_lower
    # Personal data is kept masked at rest, as the call log keeps it (KVKK): a customer's name
    # change is recorded as "Ze*** Ka**" → "Ze*** Yı***". Drift rules never track these fields.
    entries = [
        (pk, action, name, mask_change(label, name, old), mask_change(label, name, new))
        for pk, action, name, old, new in entries
    ]
    now = timezone.now()
    rows = [
        RecordChange(
            content_type=content_type,
            object_id=pk,
            action=action,
            field=name,
            old=old,
            new=new,
            source=source.kind,
            actor_id=source.actor_id,
            reason=source.reason,
            job_id=source.job_id,
            call_id=source.calls.get((label, str(pk)), source.call_id),
            at=now,
        )
        for pk, action, name, old, new in entries
    ]
    insert_rows(rows, new_ids=True, using=using)
    from upstream.history.drift import drift_close_restored, drift_detect

    drift_close_restored(model, rows, source)
    drift_detect(model, rows, labels, source)


def mask_change(label: str, field: str, value: Any) -> Any:
    """A history value as it is kept: a personal field's value masked; a whole-record snapshot
    (a create or a delete, `field` empty) with its personal fields masked. Idempotent."""
    personal = personal_fields(label)
    if not personal:
        return value
    if field:
        kind = personal.get(field)
        return mask_value(kind, value) if kind is not None else value
    if isinstance(value, dict):
        return {
            key: mask_value(personal[key], item) if key in personal else item
            for key, item in value.items()
        }
    return value


def _diff(
    fields: list[models.Field],
    before: Mapping[int, tuple[Any, ...]],
    after: Mapping[int, tuple[Any, ...]],
) -> list[tuple[int, str, str, Any, Any]]:
    entries = []
    for pk, old_row in before.items():
        new_row = after.get(pk)
        if new_row is None:
            continue
        for i, f in enumerate(fields, start=1):
            old, new = plain(old_row[i]), plain(new_row[i])
            if old != new:
                entries.append((pk, "update", f.name, old, new))
    return entries


def _snapshot(fields: list[models.Field], values: tuple[Any, ...]) -> dict[str, Any]:
    return {f.name: plain(v) for f, v in zip(fields, values, strict=True)}


def _comparable(f: models.Field, value: Any) -> Any:
    """A value as it reads back from the database: decimals at the field's places."""
    if isinstance(f, models.DecimalField) and isinstance(value, Decimal):
        value = value.quantize(Decimal(1).scaleb(-f.decimal_places))
    return plain(value)


def record_written(
    model: type[models.Model],
    names: list[str],
    before: Mapping[int, Sequence[Any]],
    after: Mapping[int, Sequence[Any]],
    *,
    labels: Mapping[int, Any] | None = None,
    using: str = DEFAULT_DB_ALIAS,
) -> int:
    """History of rows the caller wrote itself with raw SQL, for speed (Payofin's results).

    `before` holds each row's values of `names` as read in the writing transaction, `after`
    the values written, in the same order. The changes are inserted with one executemany, as
    the rows were: building a RecordChange instance per changed field (some thousands per
    flush) would cost the runner's thread what the raw write saved. A source that can find
    drift (a read) goes the ORM's way, drift detection included. Returns the changes written.
    """
    from upstream.history.drift import READ_SOURCES
    from upstream.models import RecordChange

    tracked = {f.name for f in tracked_fields(model)}
    fields = [(i, model._meta.get_field(n)) for i, n in enumerate(names) if n in tracked]
    entries = []
    for pk, old_row in before.items():
        new_row = after.get(pk)
        if new_row is None:
            continue
        for i, f in fields:
            if old_row[i] == new_row[i]:
                continue  # the same value (Decimal("0.00") == Decimal("0") too): no change
            old, new = _comparable(f, old_row[i]), _comparable(f, new_row[i])
            if old != new:
                entries.append((pk, "update", f.name, old, new))
    source = _current.get() or Source(RecordChange.Source.OTHER)
    if not entries:
        return 0
    if source.kind in READ_SOURCES:
        _record(model, using, entries, labels or {})
        return len(entries)
    _insert_changes(model, using, entries, source)
    return len(entries)


def _insert_changes(
    model: type[models.Model],
    using: str,
    entries: Sequence[tuple[int, str, str, Any, Any]],
    source: Source,
    calls: Sequence[int | None] | None = None,
) -> None:
    """INSERT RecordChange rows for (pk, action, field, old, new) entries with one lean write
    (upstream.rows): building a RecordChange instance per change (some thousands per flush)
    would cost the runner's thread what a lean write of the records saved. `calls[i]`: the call
    of entry i, where it is not the source's."""
    from upstream.models import RecordChange

    connection = connections[using]
    content_type = ContentType.objects.db_manager(using).get_for_model(model)
    label = model._meta.label_lower
    meta = RecordChange._meta
    written = ["content_type", "object_id", "action", "field", "old", "new", "source"]
    written += ["actor", "reason", "job", "call", "at"]
    columns = [meta.get_field(n).column for n in written]
    # The backend's own JSON adaptation, as JSONField's save does (SQL NULL for None), without
    # the field's layers around it: this runs for thousands of values per flush.
    adapt, encoder = connection.ops.adapt_json_value, meta.get_field("old").encoder
    at = meta.get_field("at").get_db_prep_save(timezone.now(), connection)
    kind = str(source.kind)

    def call_of(i: int, pk: int) -> int | None:
        call = calls[i] if calls is not None else None
        return call if call is not None else source.calls.get((label, str(pk)), source.call_id)

    rows = [
        (
            content_type.pk,
            pk,
            action,
            name,
            None if old is None else adapt(old, encoder),
            None if new is None else adapt(new, encoder),
            kind,
            source.actor_id,
            source.reason,
            source.job_id,
            call_of(i, pk),
            at,
        )
        for i, (pk, action, name, old, new) in enumerate(entries)
    ]
    insert_prepared(RecordChange, columns, rows, using=using)


def _given(f: models.Field, value: Any) -> Any:
    return plain(value)


def _stored(f: models.Field, value: Any) -> Any:
    """A value as it reads back from the database: aware datetimes in UTC (the connections'
    time zone), decimals at the field's places."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        value = value.astimezone(UTC)
    elif isinstance(f, models.DecimalField) and isinstance(value, int | float | str):
        value = Decimal(str(value))  # a default of 0 reads back as 0.00
    return _comparable(f, value)


def insert_created(
    model: type[models.Model],
    records: Sequence[Mapping[str, Any]],
    *,
    calls: Sequence[int | None] | None = None,
    stored_form: bool = False,
    using: str = DEFAULT_DB_ALIAS,
) -> list[int]:
    """New mirrored rows (their values by attname, a field left out at its default) inserted
    with one lean write each, rows and history alike; returns their ids, in order.

    The same rows and "create" history rows as `HistoryQuerySet.bulk_create` (the tracked
    fields' snapshot, personal data masked, the source's who and why; a create is never drift),
    for a sync's first fill of the mirror: a hundred thousand records, each one row and one
    history row, where the ORM's layers per value were most of the worker's time. `calls[i]`:
    the call that brought record i (the source's otherwise). `stored_form`: the snapshot's
    values as the database gives them back (datetimes in UTC, decimals at the field's places),
    as `HistoryModel.save` records a create; otherwise as given, as `bulk_create` records one.
    """
    from upstream.models import RecordChange

    if not records:
        return []
    fields = insert_fields(model)
    defaults = field_defaults(fields)
    rows = [row_values(fields, record, defaults) for record in records]
    position = {f.attname: i for i, f in enumerate(fields)}
    tracked = [(f, position[f.attname]) for f in tracked_fields(model)]
    form = _stored if stored_form else _given
    label = model._meta.label_lower
    source = _current.get()
    if source is None:
        # Outside a source a record's call is not kept either (as `history_call` does there).
        source, calls = Source(RecordChange.Source.OTHER), None
    with transaction.atomic(using=using, savepoint=False):
        ids = insert_values(model, fields, rows, new_ids=True, using=using)
        entries = [
            (
                pk,
                "create",
                "",
                None,
                mask_change(label, "", {f.name: form(f, row[i]) for f, i in tracked}),
            )
            for pk, row in zip(ids, rows, strict=True)
        ]
        _insert_changes(model, using, entries, source, calls)
    return ids


class HistoryQuerySet(models.QuerySet):
    """A mirrored model's queryset: its bulk writes keep the history too."""

    def update(self, **kwargs: Any) -> int:
        fields = _field_names(self.model, kwargs)
        if not fields:
            return super().update(**kwargs)
        attnames = [f.attname for f in fields]
        with transaction.atomic(using=self.db, savepoint=False):
            # The rows are locked while read (PostgreSQL), so the update writes exactly those.
            before = _read(self, attnames, lock=True)
            count = 0
            for chunk in _chunks(list(before)):
                count += super(HistoryQuerySet, self.filter(pk__in=chunk)).update(**kwargs)
            after: dict[int, tuple[Any, ...]] = {}
            base = self.model._base_manager.using(self.db)
            for chunk in _chunks(list(before)):
                after.update(_read(base.filter(pk__in=chunk), attnames))
            _record(
                self.model,
                self.db,
                _diff(fields, before, after),
                {pk: row[0] for pk, row in after.items()},
            )
        return count

    def bulk_create(self, objs: Iterable[models.Model], *args: Any, **kwargs: Any) -> list:
        with transaction.atomic(using=self.db, savepoint=False):
            created = super().bulk_create(objs, *args, **kwargs)
            fields = tracked_fields(self.model)
            label = _label_field(self.model)
            entries = [
                (
                    obj.pk,
                    "create",
                    "",
                    None,
                    _snapshot(fields, tuple(getattr(obj, f.attname) for f in fields)),
                )
                for obj in created
                if obj.pk is not None
            ]
            labels = {obj.pk: getattr(obj, label) for obj in created if obj.pk is not None}
            _record(self.model, self.db, entries, labels)
        return created

    def delete(self) -> tuple[int, dict[str, int]]:
        fields = tracked_fields(self.model)
        with transaction.atomic(using=self.db, savepoint=False):
            before = _read(self, [f.attname for f in fields], lock=True)
            result = super().delete()
            entries = [
                (pk, "delete", "", _snapshot(fields, row[1:]), None) for pk, row in before.items()
            ]
            _record(self.model, self.db, entries, {pk: row[0] for pk, row in before.items()})
        return result

    delete.alters_data = True
    delete.queryset_only = True


class HistoryModel(models.Model):
    """A mirrored record: `save` and `delete` of one instance keep the history too.

    Set `history_label` to the field that names the record to staff (drift report).
    """

    objects = HistoryQuerySet.as_manager()

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        model = type(self)
        using = kwargs.get("using") or self._state.db or "default"
        fields = tracked_fields(model)
        update_fields = kwargs.get("update_fields")
        if update_fields is not None:
            fields = _field_names(model, update_fields)
        attnames = [f.attname for f in fields]
        # A savepoint, as Django's own save leaves the caller's transaction usable when a
        # pre_save receiver refuses the write (security.personal refuses a masked row).
        with transaction.atomic(using=using):
            before: dict[int, tuple[Any, ...]] = {}
            if self.pk is not None and not self._state.adding and fields:
                before = _read(model._base_manager.using(using).filter(pk=self.pk), attnames)
            super().save(*args, **kwargs)
            label = getattr(self, _label_field(model))
            if not before and update_fields is None:
                # A new row (or one saved under a pk nothing had): its fields as created.
                all_fields = tracked_fields(model)
                snapshot = _read(
                    model._base_manager.using(using).filter(pk=self.pk),
                    [f.attname for f in all_fields],
                )
                created = [
                    (self.pk, "create", "", None, _snapshot(all_fields, row[1:]))
                    for row in snapshot.values()
                ]
                _record(model, using, created, {self.pk: label})
                return
            # Read back rather than trust the instance: the database's own form (Decimal
            # places, expressions) is what the next read compares against.
            after = _read(model._base_manager.using(using).filter(pk=self.pk), attnames)
            _record(model, using, _diff(fields, before, after), {self.pk: label})

    save.alters_data = True

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        model = type(self)
        using = kwargs.get("using") or self._state.db or "default"
        fields = tracked_fields(model)
        pk = self.pk
        with transaction.atomic(using=using, savepoint=False):
            before = _read(
                model._base_manager.using(using).filter(pk=pk), [f.attname for f in fields]
            )
            result = super().delete(*args, **kwargs)
            entries = [
                (p, "delete", "", _snapshot(fields, row[1:]), None) for p, row in before.items()
            ]
            _record(model, using, entries, {p: row[0] for p, row in before.items()})
        return result

    delete.alters_data = True
