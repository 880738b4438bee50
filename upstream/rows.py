"""Lean row inserts for the tables that grow by thousands of rows a minute: calls, history rows,
job items.

`bulk_create` builds every value through its compiler's per-field layers and, on PostgreSQL
(Django 5.2), sends each column as an array for UNNEST, which psycopg quotes in Python, string
by string. For the runner's and the sync's own rows that was the largest part of their CPU.
`insert_rows` writes the same rows (every concrete field but generated ones, no signals either
way, as `bulk_create`) with the cheapest statement each database has: on PostgreSQL one COPY
(the ids, when the caller needs them, drawn from the table's sequence first), about a quarter of
`bulk_create`'s CPU for 5,000 job items; on SQLite executemany, or INSERT ... RETURNING per chunk
when the ids are needed. COPY is not seen by Django's query log nor by CaptureQueriesContext.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from functools import partial
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections, models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field, Model
from django.utils import timezone
from django.utils.functional import Promise

# Field types whose values the backend must adapt (JSON, aware datetimes, decimals); the others
# go as they are, as Django's own compiler would send them.
_ADAPTED = frozenset({"JSONField", "DateTimeField", "DateField", "DecimalField", "UUIDField"})
# Values the field gives psycopg as they are (an aware datetime, a finite Decimal): the
# field's layers skipped on PostgreSQL only (SQLite's adapters turn them into text).
_AS_IS_ON_POSTGRES = {
    "DecimalField": frozenset({Decimal, type(None)}),
    "DateTimeField": frozenset({datetime, type(None)}),
}


def insert_rows(objs: Sequence[Model], *, new_ids: bool, using: str = DEFAULT_DB_ALIAS) -> None:
    """INSERT `objs` (all of one model) as they are. With `new_ids` the database numbers the rows
    and each object gets its id; otherwise each object keeps the id it has (None: numbered, and
    not read back)."""
    if not objs:
        return
    connection = connections[using]
    model = type(objs[0])
    numbered = new_ids or objs[0].pk is None  # the database draws the ids
    if not new_ids and any((obj.pk is None) != numbered for obj in objs):
        raise ValueError("insert_rows: either every row carries its id or none does")
    fields = insert_fields(model, with_pk=not numbered)
    adapted = [_plain_types(f, connection) for f in fields]
    # auto_now(_add) fields take their time as bulk_create gives it: pre_save, on the object.
    stamped = [
        f for f in fields if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False)
    ]
    for obj in objs:
        for f in stamped:
            f.pre_save(obj, add=True)
    typed = list(zip(fields, adapted, strict=True))
    rows = [[_value(f, a, getattr(obj, f.attname), connection) for f, a in typed] for obj in objs]
    ids = insert_prepared(model, [f.column for f in fields], rows, new_ids=new_ids, using=using)
    if new_ids:
        _number(objs, ids, using)


def _number(objs: Sequence[Model], ids: list[int], using: str) -> None:
    for obj, pk in zip(objs, ids, strict=True):
        obj.pk = pk
        obj._state.adding, obj._state.db = False, using


def _plain_types(field: Field, connection: BaseDatabaseWrapper) -> frozenset[type]:
    """The value types `field` takes as they are; any other value goes through the field, as
    bulk_create sends it (True in a text field is "True", a lazy translation its text, an
    integer given as "7" the number 7), never to the driver as it is."""
    kind = field.get_internal_type()
    if connection.vendor == "postgresql" and kind in _AS_IS_ON_POSTGRES:
        # Django hands these to psycopg unchanged; a sync writes a few hundred thousand.
        return _AS_IS_ON_POSTGRES[kind]
    if kind in _ADAPTED:
        return frozenset()
    target = field.target_field if field.is_relation else field
    if isinstance(target, models.BooleanField):
        return frozenset({bool, type(None)})
    if isinstance(target, models.IntegerField | models.AutoField):
        return frozenset({int, type(None)})
    if isinstance(target, models.CharField | models.TextField):
        return frozenset({str, type(None)})
    return frozenset()


def _value(
    field: Field, plain: frozenset[type], value: object, connection: BaseDatabaseWrapper
) -> object:
    kind = type(value)
    if kind in plain and (
        # Naive (no offset): the field warns and makes it aware in the current time zone.
        (kind is not datetime or value.utcoffset() is not None)
        and (kind is not Decimal or value.is_finite())  # NaN: the field refuses it
    ):
        return value
    if isinstance(value, Promise):  # a lazy translation kept as a message
        value = str(value)
    return field.get_db_prep_save(value, connection)


# --- Rows as values (no model instances) ----------------------------------------------------


def insert_fields(model: type[models.Model], *, with_pk: bool = False) -> list[models.Field]:
    """The columns an INSERT of `model` writes: every concrete field but a generated one (and
    the primary key unless `with_pk`)."""
    return [
        f for f in model._meta.concrete_fields if not f.generated and (with_pk or not f.primary_key)
    ]


def row_values(
    fields: Sequence[models.Field],
    values: Mapping[str, Any],
    defaults: Mapping[str, Callable[[], Any]],
) -> list[Any]:
    """One row in `fields`' order from `values` (by attname), a field left out at its default,
    drawn for this row."""
    return [values[f.attname] if f.attname in values else defaults[f.attname]() for f in fields]


def field_defaults(fields: Sequence[models.Field]) -> dict[str, Callable[[], Any]]:
    """Each field's default as a new instance would get it ("" for a text field without one,
    None for another; an `auto_now` field the time): a callable per field, called per row, so
    a `default=dict` or `uuid4` is never one value shared by every row."""
    defaults: dict[str, Callable[[], Any]] = {}
    for f in fields:
        if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False):
            defaults[f.attname] = timezone.now
        elif f.has_default() and callable(f.default):
            defaults[f.attname] = f.default
        else:
            defaults[f.attname] = partial(lambda value: value, f.get_default())
    return defaults


def insert_values(
    model: type[models.Model],
    fields: Sequence[models.Field],
    rows: Sequence[Sequence[Any]],
    *,
    new_ids: bool,
    using: str = DEFAULT_DB_ALIAS,
) -> list[Any]:
    """INSERT `rows` (each its values in `fields`' order, as model attributes hold them): as
    `insert_rows`, for a caller that has values rather than model instances (a sync's first
    fill builds none: a hundred thousand records).

    With `new_ids` the database numbers the rows and their ids are returned in the rows' order;
    otherwise no ids.
    """
    if not rows:
        return []
    connection = connections[using]
    typed = [(f, _plain_types(f, connection)) for f in fields]
    prepared = [
        [_value(f, plain, value, connection) for (f, plain), value in zip(typed, row, strict=True)]
        for row in rows
    ]
    return insert_prepared(
        model, [f.column for f in fields], prepared, new_ids=new_ids, using=using
    )


def insert_prepared(
    model: type[models.Model],
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    new_ids: bool = False,
    using: str = DEFAULT_DB_ALIAS,
) -> list[Any]:
    """INSERT rows whose values the backend takes as they are (adapted by the caller) into
    `columns` of `model`'s table; with `new_ids` their new ids, in the rows' order.

    PostgreSQL: one COPY (ids drawn from the table's sequence first). psycopg binds values in
    the client, and parsing a statement of thousands of placeholders was a fifth of the worker's
    time; COPY has none. Elsewhere one INSERT … RETURNING per chunk of rows (no ids: one
    executemany).
    """
    if not rows:
        return []
    connection = connections[using]
    meta = model._meta
    qn = connection.ops.quote_name
    if connection.vendor == "postgresql":
        return _copy(connection, meta, columns, rows, new_ids)
    head = "INSERT INTO {} ({}) VALUES ".format(  # noqa: S608 (names from the model's meta)
        qn(meta.db_table), ", ".join(qn(c) for c in columns)
    )
    mark = "(" + ", ".join(["%s"] * len(columns)) + ")"
    with connection.cursor() as cursor:
        if not new_ids:
            cursor.executemany(head + mark, rows)
            return []
        ids: list[Any] = []
        per = max(1, (connection.features.max_query_params or 65535) // len(columns))
        for start in range(0, len(rows), per):
            chunk = rows[start : start + per]
            cursor.execute(
                head + ", ".join([mark] * len(chunk)) + f" RETURNING {qn(meta.pk.column)}",
                [value for row in chunk for value in row],
            )
            # Ids are drawn in the order of VALUES; RETURNING's own order is not promised.
            ids += sorted(pk for (pk,) in cursor.fetchall())
    return ids


def _copy(
    connection: Any,
    meta: Any,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    new_ids: bool,
) -> list[Any]:
    qn = connection.ops.quote_name
    columns = list(columns)
    with connection.cursor() as cursor:
        ids: list[Any] = []
        if new_ids:
            # The ids the database would have drawn, drawn first (an identity column takes a
            # given value): the rows' own, in order, whoever else inserts meanwhile.
            cursor.execute(
                "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
                [meta.db_table, meta.pk.column, len(rows)],
            )
            ids = sorted(pk for (pk,) in cursor.fetchall())
            columns = [meta.pk.column, *columns]
            rows = [[pk, *row] for pk, row in zip(ids, rows, strict=True)]
        sql = "COPY {} ({}) FROM STDIN".format(qn(meta.db_table), ", ".join(qn(c) for c in columns))
        # The driver's own cursor (COPY has no DB-API form); its errors as Django's.
        with connection.wrap_database_errors, cursor.cursor.copy(sql) as copy:
            for row in rows:
                copy.write_row(row)
    return ids
