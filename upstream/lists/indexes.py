"""Indexes for the big lists, and how a migration builds them without stopping writes.

- TrigramIndex: what a substring search ("içinde geçen") needs on PostgreSQL. Django's
  `icontains` there is `UPPER(col::text) LIKE UPPER('%x%')`, so the index is a GIN trigram index
  on UPPER(col) (the pg_trgm extension: TrigramExtension in the migration). Other databases get
  a plain index on UPPER(col) of the same name, so the schema has the same shape everywhere.
- AddIndexConcurrentlyOnPostgres: builds an index with CREATE INDEX CONCURRENTLY on PostgreSQL,
  which does not block writes to a table of a million rows while it builds (the migration must
  say `atomic = False`); a plain AddIndex elsewhere (SQLite in development and tests).
- RemoveIndexConcurrentlyOnPostgres: its opposite, DROP INDEX CONCURRENTLY on PostgreSQL (e.g. an
  index replaced by one on another expression); a plain RemoveIndex elsewhere.
- DropFieldIndexConcurrentlyOnPostgres: turns a field's `db_index` off once a composite index
  that starts with the field covers it; on PostgreSQL the index is dropped CONCURRENTLY, so no
  lock that stops reads and writes is queued behind a long query.
"""

from __future__ import annotations

from typing import Any

from django.contrib.postgres.indexes import GinIndex, OpClass
from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db import models
from django.db.migrations.operations import AddIndex, AlterField, RemoveIndex


class TrigramIndex(models.Index):
    """A GIN trigram index on PostgreSQL (expressions, e.g. Upper("name")); plain elsewhere."""

    def create_sql(self, model, schema_editor, using: str = "", **kwargs: Any):
        if schema_editor.connection.vendor == "postgresql":
            trigram = GinIndex(
                *(OpClass(expression, name="gin_trgm_ops") for expression in self.expressions),
                name=self.name,
            )
            return trigram.create_sql(model, schema_editor, **kwargs)
        return super().create_sql(model, schema_editor, using=using, **kwargs)


class AddIndexConcurrentlyOnPostgres(AddIndex):
    """AddIndex, built CONCURRENTLY on PostgreSQL (the migration must be `atomic = False`)."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state) -> None:
        if schema_editor.connection.vendor != "postgresql":
            return super().database_forwards(app_label, schema_editor, from_state, to_state)
        # A concurrent build that was interrupted leaves an invalid index of the same name.
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(
                "SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                "WHERE c.relname = %s AND NOT i.indisvalid",
                [self.index.name],
            )
            invalid = cursor.fetchone() is not None
        if invalid:
            schema_editor.execute(
                f"DROP INDEX CONCURRENTLY IF EXISTS {schema_editor.quote_name(self.index.name)}"
            )
        concurrent = AddIndexConcurrently(self.model_name, self.index)
        return concurrent.database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state) -> None:
        if schema_editor.connection.vendor != "postgresql":
            return super().database_backwards(app_label, schema_editor, from_state, to_state)
        concurrent = AddIndexConcurrently(self.model_name, self.index)
        return concurrent.database_backwards(app_label, schema_editor, from_state, to_state)

    def describe(self) -> str:
        return f"{super().describe()} (concurrently on PostgreSQL)"


class RemoveIndexConcurrentlyOnPostgres(RemoveIndex):
    """RemoveIndex, dropped CONCURRENTLY on PostgreSQL (the migration must be `atomic = False`)."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state) -> None:
        if schema_editor.connection.vendor != "postgresql":
            return super().database_forwards(app_label, schema_editor, from_state, to_state)
        concurrent = RemoveIndexConcurrently(self.model_name, self.name)
        return concurrent.database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state) -> None:
        if schema_editor.connection.vendor != "postgresql":
            return super().database_backwards(app_label, schema_editor, from_state, to_state)
        concurrent = RemoveIndexConcurrently(self.model_name, self.name)
        return concurrent.database_backwards(app_label, schema_editor, from_state, to_state)

    def describe(self) -> str:
        return f"{super().describe()} (concurrently on PostgreSQL)"


class DropFieldIndexConcurrentlyOnPostgres(AlterField):
    """AlterField to the same field without `db_index`; on PostgreSQL its index (and the `_like`
    index of a text field) is dropped CONCURRENTLY (the migration must be `atomic = False`)."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state) -> None:
        if schema_editor.connection.vendor != "postgresql":
            return super().database_forwards(app_label, schema_editor, from_state, to_state)
        model = from_state.apps.get_model(app_label, self.model_name)
        if not self.allow_migrate_model(schema_editor.connection.alias, model):
            return None
        column = model._meta.get_field(self.name).column
        # The same lookup AlterField makes for a db_index turned off: the single-column b-tree
        # indexes of the column that are not Meta.indexes.
        names = schema_editor._constraint_names(
            model,
            [column],
            index=True,
            type_=models.Index.suffix,
            exclude={index.name for index in model._meta.indexes},
        )
        for name in names:
            schema_editor.execute(
                f"DROP INDEX CONCURRENTLY IF EXISTS {schema_editor.quote_name(name)}"
            )
        return None

    def describe(self) -> str:
        return f"Drop the index of {self.model_name}.{self.name} (a composite index covers it)"
