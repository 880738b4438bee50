"""Lean INSERTs: many rows of one model, as they are, without the ORM compiler's layers.

`bulk_create` prepares every value through some layers of the compiler (pre_save, prepare,
quote, placeholder per field and row); for the writes that run by the thousand a minute (the
call log, a sync's first fill of the mirror with its history rows, a listing's job items) those
layers were most of the runner's own time. These write the same rows: every concrete field
(a generated column is the database's), no signals either way, as `bulk_create` does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections, models

# Field types whose values the backend must adapt (JSON, aware datetimes); the others go as they
# are, as Django's own compiler would send them (SQLite adapts Decimal and date itself).
_ADAPTED = frozenset({"JSONField", "DateTimeField"})


def insert_fields(model: type[models.Model], *, with_pk: bool = False) -> list[models.Field]:
    """The columns an INSERT of `model` writes: every concrete field but a generated one (and
    the primary key unless `with_pk`)."""
    return [
        f for f in model._meta.concrete_fields if not f.generated and (with_pk or not f.primary_key)
    ]


def row_values(
    fields: Sequence[models.Field], values: Mapping[str, Any], defaults: Mapping[str, Any]
) -> list[Any]:
    """One row in `fields`' order from `values` (by attname), a field left out at its default."""
    return [values[f.attname] if f.attname in values else defaults[f.attname] for f in fields]


def field_defaults(fields: Sequence[models.Field]) -> dict[str, Any]:
    """Each field's default, as a new instance would hold it ("" for a text field without one,
    None for another)."""
    return {f.attname: f.get_default() for f in fields}


def insert_rows(
    model: type[models.Model],
    fields: Sequence[models.Field],
    rows: Sequence[Sequence[Any]],
    *,
    new_ids: bool,
    using: str = DEFAULT_DB_ALIAS,
) -> list[Any]:
    """INSERT `rows` (each its values in `fields`' order, as model attributes hold them).

    With `new_ids` the database numbers the rows and their ids are returned in the rows' order;
    otherwise no ids.
    """
    if not rows:
        return []
    connection = connections[using]
    adapted = [(i, f) for i, f in enumerate(fields) if f.get_internal_type() in _ADAPTED]
    prepared: list[list[Any]] = []
    for row in rows:
        values = list(row)
        for i, f in adapted:
            values[i] = f.get_db_prep_save(values[i], connection)
        prepared.append(values)
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
