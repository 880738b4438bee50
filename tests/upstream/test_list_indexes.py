"""The lists' indexes (upstream.lists.indexes and the list_indexes migrations): they exist on every
database; on PostgreSQL the searches use them, the trigram ones are GIN, and the migration
operations build and drop them CONCURRENTLY."""

from __future__ import annotations

import pytest
from django.apps import apps
from django.db import IntegrityError, connection, models
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.operations import AlterField
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from billing.models import Invoice, InvoiceItem
from subscriptions.models import Subscription, SubscriptionInvoice
from tests.conftest import require_postgres
from upstream.admin.lists import contains, exact, search_q
from upstream.lists.indexes import (
    AddIndexConcurrentlyOnPostgres,
    DropFieldIndexConcurrentlyOnPostgres,
    TrigramIndex,
)
from upstream.models import JobItem, UpstreamCall

LIST_APPS = ("subscriptions", "billing", "billqueries", "upstream")


def index_columns(model) -> dict[str, list[str]]:
    with connection.cursor() as cursor:
        found = connection.introspection.get_constraints(cursor, model._meta.db_table)
    return {name: info["columns"] for name, info in found.items() if info["index"]}


def plan(queryset) -> str:
    """EXPLAIN of the queryset with sequential scans priced out: which index would serve it."""
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
    return queryset.explain()


@pytest.mark.django_db
def test_every_declared_index_exists():
    for app in LIST_APPS:
        for model in apps.get_app_config(app).get_models():
            present = index_columns(model)
            for index in model._meta.indexes:
                assert index.name in present, (model, index.name)


@pytest.mark.django_db
def test_a_single_column_index_a_composite_covers_is_gone():
    for model, column in (
        (SubscriptionInvoice, "val_date"),
        (SubscriptionInvoice, "status"),
        (Invoice, "created_at_upstream"),
        (Invoice, "currency"),
        (InvoiceItem, "due_date"),
        (UpstreamCall, "created_at"),
        (JobItem, "job_id"),  # the (job, position) constraint serves it (decision 019)
    ):
        assert [column] not in index_columns(model).values(), (model, column)


@pytest.mark.postgres
@pytest.mark.django_db
def test_trigram_indexes_are_gin_on_the_folded_column():
    require_postgres()
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname, indexdef FROM pg_indexes WHERE indexname LIKE '%%_trgm'")
        found = dict(cursor.fetchall())
    declared = {
        index.name
        for app in LIST_APPS
        for model in apps.get_app_config(app).get_models()
        for index in model._meta.indexes
        if isinstance(index, TrigramIndex)
    }
    assert declared and declared <= set(found)
    for name in declared:
        assert "USING gin (" in found[name] and "gin_trgm_ops" in found[name], found[name]
        # Folded: TRANSLATE on the column, or the column that stores it folded (issue 20).
        assert "(translate(" in found[name] or "_folded gin_trgm_ops" in found[name], found[name]
    assert "description_folded gin_trgm_ops" in found["item_descr_folded_trgm"]


@pytest.mark.postgres
@pytest.mark.django_db
def test_an_item_description_search_compares_the_stored_fold_on_its_trigram_index():
    """Issue 20: the recheck of a common word's matches reads the stored column; TRANSLATE per
    row was most of the capped count (about 500 ms for 10,000 rows)."""
    require_postgres()
    search = search_q(InvoiceItem, [contains("description")], "HOSTİNG")
    rows = InvoiceItem.objects.filter(search.q).order_by()
    sql = str(rows.query).lower()
    assert "description_folded" in sql and "translate(" not in sql
    assert "item_descr_folded_trgm" in plan(rows)


@pytest.mark.postgres
@pytest.mark.django_db
def test_a_substring_search_uses_the_trigram_index():
    require_postgres()
    search = search_q(Subscription, [contains("name_surname")], "YILMAZ")
    assert "sub_name_fold_trgm" in plan(Subscription.objects.filter(search.q).order_by())


@pytest.mark.postgres
@pytest.mark.django_db
def test_a_bill_query_batch_file_name_search_uses_its_trigram_index():
    """Issue 20: a rare file name among 20,000 batches folded every name (33 ms and growing)."""
    from billqueries.models import BillQueryBatch

    require_postgres()
    search = search_q(BillQueryBatch, [contains("filename")], "BORÇLAR-12")
    assert "batch_filename_fold_trgm" in plan(BillQueryBatch.objects.filter(search.q).order_by())


@pytest.mark.postgres
@pytest.mark.django_db
def test_an_exact_search_uses_a_btree_index_with_a_plain_equals():
    require_postgres()
    search = search_q(SubscriptionInvoice, [exact("invoice_no")], "11400505")
    explained = plan(SubscriptionInvoice.objects.filter(search.q).order_by())
    assert "Index" in explained and "invoice_no" in explained
    assert "upper(" not in explained


@pytest.mark.postgres
@pytest.mark.django_db
def test_a_status_filter_walks_its_composite_index_in_the_lists_order():
    require_postgres()
    records = SubscriptionInvoice.objects.filter(status=4).order_by("-val_date", "-id")[:50]
    assert "subinv_status_val_date_idx" in plan(records)


@pytest.mark.postgres
@pytest.mark.django_db
def test_a_jobs_items_are_read_in_position_order_from_the_job_position_index():
    require_postgres()
    last = JobItem.objects.filter(job_id=7).order_by("-position")[:50]
    with connection.cursor() as cursor:
        # On an empty table a bitmap scan and a sort of its "17 rows" cost the same: ask for the
        # ordered walk the index gives at any size.
        cursor.execute("SET LOCAL enable_bitmapscan = off")
    explained = plan(last)
    assert "jobitem_unique_position" in explained and "Sort" not in explained
    listed = JobItem.objects.order_by("job_id", "position")[:50]  # the list's last page
    assert "jobitem_unique_position" in plan(listed)


@pytest.mark.postgres
@pytest.mark.django_db
def test_the_dashboards_lines_per_day_read_the_queried_at_index():
    require_postgres()
    from billqueries.dashboard import bill_lines_per_day

    with CaptureQueriesContext(connection) as queries:
        bill_lines_per_day(timezone.now())
    (sql,) = [q["sql"] for q in queries if "billqueries_billqueryline" in q["sql"]]
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"EXPLAIN {sql}")
        explained = "\n".join(row[0] for row in cursor.fetchall())
    assert "line_queried_outcome_idx" in explained


@pytest.fixture
def project_state():
    return MigrationLoader(connection).project_state()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_an_index_is_built_concurrently_replacing_an_interrupted_build(project_state):
    require_postgres()
    index = models.Index(fields=["attempt"], name="test_call_attempt_idx")
    operation = AddIndexConcurrentlyOnPostgres("upstreamcall", index)
    after = project_state.clone()
    operation.state_forwards("upstream", after)
    UpstreamCall.objects.bulk_create(
        UpstreamCall(service="paynet", operation="list", url="x", created_at=timezone.now())
        for _ in range(2)
    )
    # A concurrent build that fails leaves an invalid index behind, under the same name.
    with connection.cursor() as cursor, pytest.raises(IntegrityError):
        cursor.execute(
            "CREATE UNIQUE INDEX CONCURRENTLY test_call_attempt_idx"
            " ON upstream_upstreamcall (attempt)"
        )
    try:
        with (
            connection.schema_editor(atomic=False) as editor,
            CaptureQueriesContext(connection) as queries,
        ):
            operation.database_forwards("upstream", editor, project_state, after)
        statements = [q["sql"] for q in queries]
        assert any(s.startswith("DROP INDEX CONCURRENTLY") for s in statements), statements
        assert any(s.startswith("CREATE INDEX CONCURRENTLY") for s in statements), statements
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT i.indisvalid, i.indisunique FROM pg_index i"
                " JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = %s",
                ["test_call_attempt_idx"],
            )
            assert cursor.fetchall() == [(True, False)]
        with connection.schema_editor(atomic=False) as editor:
            operation.database_backwards("upstream", editor, after, project_state)
        assert "test_call_attempt_idx" not in index_columns(UpstreamCall)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP INDEX IF EXISTS test_call_attempt_idx")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_covered_field_index_is_dropped_concurrently(project_state):
    require_postgres()
    indexed = models.PositiveSmallIntegerField(default=1, db_index=True, verbose_name="attempt")
    plain = models.PositiveSmallIntegerField(default=1, verbose_name="attempt")
    add = AlterField("upstreamcall", "attempt", indexed)
    with_index = project_state.clone()
    add.state_forwards("upstream", with_index)
    with connection.schema_editor() as editor:
        add.database_forwards("upstream", editor, project_state, with_index)
    try:
        assert ["attempt"] in index_columns(UpstreamCall).values()
        drop = DropFieldIndexConcurrentlyOnPostgres("upstreamcall", "attempt", plain)
        without = with_index.clone()
        drop.state_forwards("upstream", without)
        with (
            connection.schema_editor(atomic=False) as editor,
            CaptureQueriesContext(connection) as queries,
        ):
            drop.database_forwards("upstream", editor, with_index, without)
        assert [q["sql"] for q in queries if "DROP INDEX" in q["sql"]] == [
            q["sql"] for q in queries if q["sql"].startswith("DROP INDEX CONCURRENTLY IF EXISTS")
        ]
        assert ["attempt"] not in index_columns(UpstreamCall).values()
    finally:
        with connection.schema_editor() as editor:
            for name, columns in index_columns(UpstreamCall).items():
                if columns == ["attempt"]:
                    editor.execute(f"DROP INDEX IF EXISTS {editor.quote_name(name)}")
