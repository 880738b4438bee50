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

from collections.abc import Sequence

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field, Model
from django.utils.functional import Promise

# Field types whose values the backend must adapt (JSON, aware datetimes, decimals); the others
# go as they are, as Django's own compiler would send them.
_ADAPTED = frozenset({"JSONField", "DateTimeField", "DateField", "DecimalField", "UUIDField"})


def insert_rows(objs: Sequence[Model], *, new_ids: bool, using: str = DEFAULT_DB_ALIAS) -> None:
    """INSERT `objs` (all of one model) as they are. With `new_ids` the database numbers the rows
    and each object gets its id; otherwise each object keeps the id it has (None: numbered, and
    not read back)."""
    if not objs:
        return
    connection = connections[using]
    model = type(objs[0])
    meta = model._meta
    numbered = new_ids or objs[0].pk is None  # the database draws the ids
    if numbered and new_ids and connection.vendor == "postgresql":
        _draw_ids(connection, model, objs, using)
        numbered = False
    fields: list[Field] = [
        f for f in meta.concrete_fields if not f.generated and not (f.primary_key and numbered)
    ]
    adapted = [f.get_internal_type() in _ADAPTED for f in fields]
    # auto_now(_add) fields take their time as bulk_create gives it: pre_save, on the object.
    stamped = [
        f for f in fields if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False)
    ]
    for obj in objs:
        for f in stamped:
            f.pre_save(obj, add=True)
    typed = list(zip(fields, adapted, strict=True))
    rows = [[_value(f, a, getattr(obj, f.attname), connection) for f, a in typed] for obj in objs]
    qn = connection.ops.quote_name
    columns = ", ".join(qn(f.column) for f in fields)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            with cursor.cursor.copy(f"COPY {qn(meta.db_table)} ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            return
        head = f"INSERT INTO {qn(meta.db_table)} ({columns}) VALUES "  # noqa: S608 (model's meta)
        mark = "(" + ", ".join(["%s"] * len(fields)) + ")"
        if not new_ids:
            cursor.executemany(head + mark, rows)
            return
        per = max(1, (connection.features.max_query_params or 65535) // len(fields))
        for start in range(0, len(rows), per):
            chunk = rows[start : start + per]
            cursor.execute(
                head + ", ".join([mark] * len(chunk)) + f" RETURNING {qn(meta.pk.column)}",
                [value for row in chunk for value in row],
            )
            # Ids are drawn in the order of VALUES; RETURNING's own order is not promised.
            ids = sorted(pk for (pk,) in cursor.fetchall())
            _number(objs[start : start + per], ids, using)


def _draw_ids(
    connection: BaseDatabaseWrapper, model: type[Model], objs: Sequence[Model], using: str
) -> None:
    """Take len(objs) ids from the table's sequence (identity or serial), in one statement."""
    meta = model._meta
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
            [connection.ops.quote_name(meta.db_table), meta.pk.column, len(objs)],
        )
        _number(objs, sorted(pk for (pk,) in cursor.fetchall()), using)


def _number(objs: Sequence[Model], ids: list[int], using: str) -> None:
    for obj, pk in zip(objs, ids, strict=True):
        obj.pk = pk
        obj._state.adding, obj._state.db = False, using


def _value(field: Field, adapt: bool, value: object, connection: BaseDatabaseWrapper) -> object:
    if adapt:
        return field.get_db_prep_save(value, connection)
    if isinstance(value, Promise):  # a lazy translation kept as a message
        return str(value)
    return value
