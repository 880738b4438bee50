"""Counting long lists (upstream.lists.counting): exact while cheap, else the estimate.

The estimate comes from PostgreSQL; elsewhere `planner_estimate` is replaced with a fake one
that says "a million rows, expensive", which is what a big table looks like to the paginator.
"""

from __future__ import annotations

import re

import pytest
from django.core.paginator import EmptyPage
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tests.conftest import require_postgres
from upstream.lists import counting as pagination
from upstream.lists.counting import Estimate, EstimatedCountPaginator, planner_estimate, rounded
from upstream.models import UpstreamCall

CALLS = "/api/upstream-calls/"


def calls(count: int, **fields) -> list[UpstreamCall]:
    now = timezone.now()
    return UpstreamCall.objects.bulk_create(
        UpstreamCall(
            service=fields.get("service", "paynet"),
            operation=fields.get("operation", "invoice_status_update"),
            method="POST",
            url="http://x/",
            outcome=fields.get("outcome", "ok"),
            created_at=now,
        )
        for _ in range(count)
    )


@pytest.fixture
def a_million(monkeypatch) -> Estimate:
    """Every list looks like a million rows that would be expensive to count."""
    estimate = Estimate(rows=1_003_457, cost=1e9)
    monkeypatch.setattr(pagination, "planner_estimate", lambda queryset: estimate)
    return estimate


def counts_of(queries, table: str) -> list[str]:
    return [q["sql"] for q in queries if "COUNT(" in q["sql"] and f'"{table}"' in q["sql"]]


def test_estimates_are_rounded_to_two_significant_digits():
    assert rounded(1_003_457) == 1_000_000
    assert rounded(237_419) == 240_000
    assert rounded(56) == 56
    assert rounded(0) == 0


@pytest.mark.django_db
def test_a_cheap_list_is_counted_exactly():
    calls(7)
    paginator = EstimatedCountPaginator(UpstreamCall.objects.order_by("-id"), 5)
    with CaptureQueriesContext(connection) as queries:
        assert paginator.count == 7
    assert not paginator.count_is_estimate
    assert counts_of(queries, "upstream_upstreamcall")
    assert list(paginator.page(2)) == list(UpstreamCall.objects.order_by("-id")[5:])
    with pytest.raises(EmptyPage):
        paginator.page(3)


@pytest.mark.django_db
def test_an_expensive_list_gives_the_estimate_without_counting(a_million):
    calls(12)
    paginator = EstimatedCountPaginator(UpstreamCall.objects.order_by("-id"), 5)
    with CaptureQueriesContext(connection) as queries:
        assert paginator.count == 1_000_000
    assert paginator.count_is_estimate
    assert not counts_of(queries, "upstream_upstreamcall")
    page = paginator.page(1)
    assert len(page) == 5 and page.has_next()
    assert paginator.count_is_estimate


@pytest.mark.django_db
def test_the_last_page_of_an_estimated_list_makes_the_count_exact(a_million):
    made = calls(12)
    paginator = EstimatedCountPaginator(UpstreamCall.objects.order_by("id"), 5)
    assert paginator.count == 1_000_000
    page = paginator.page(3)
    assert [c.pk for c in page] == [c.pk for c in made[10:]]
    assert not page.has_next() and page.has_previous()
    assert paginator.count == 12 and not paginator.count_is_estimate
    assert paginator.num_pages == 3


@pytest.mark.django_db
def test_pages_past_a_too_small_estimate_are_still_served(monkeypatch):
    monkeypatch.setattr(pagination, "planner_estimate", lambda qs: Estimate(rows=3, cost=1e9))
    made = calls(12)
    paginator = EstimatedCountPaginator(UpstreamCall.objects.order_by("id"), 5)
    assert paginator.count == 3
    page = paginator.page(2)
    assert [c.pk for c in page] == [c.pk for c in made[5:10]]
    assert page.has_next()
    assert paginator.count == 11 and paginator.count_is_estimate  # at least one more page


@pytest.mark.django_db
def test_a_page_past_the_end_of_an_estimated_list_is_empty(a_million):
    calls(3)
    paginator = EstimatedCountPaginator(UpstreamCall.objects.order_by("id"), 5)
    with pytest.raises(EmptyPage):
        paginator.page(4)
    with pytest.raises(EmptyPage):
        paginator.page(0)


@pytest.mark.django_db
def test_the_admins_page_past_the_end_is_the_last_page(a_million):
    made = calls(12)
    # Page 4 of "about 1,000,000" lies in the estimate's first half but past the 12 rows.
    paginator = EstimatedCountPaginator(
        UpstreamCall.objects.order_by("id"), 5, past_end_is_last=True
    )
    page = paginator.page(4)
    assert [c.pk for c in page] == [c.pk for c in made[10:]]
    assert page.number == 3 and paginator.served_number == 3 and not page.has_next()
    assert paginator.count == 12 and not paginator.count_is_estimate
    # An exact list too (Django's Paginator would raise EmptyPage); page 0 is still refused.
    exact = EstimatedCountPaginator(UpstreamCall.objects.order_by("id"), 5, past_end_is_last=True)
    exact.__dict__["count"] = 12
    assert exact.page(9).number == 3
    with pytest.raises(EmptyPage):
        exact.page(0)


@pytest.mark.django_db
def test_a_capped_count_stops_at_the_cap_and_says_more_than():
    calls(8)
    capped = EstimatedCountPaginator(UpstreamCall.objects.order_by("id"), 3, count_cap=5)
    assert capped.count == 5 and capped.count_is_estimate and capped.count_is_lower_bound
    with CaptureQueriesContext(connection) as queries:
        assert len(capped.page(2)) == 3
    assert "LIMIT 4" in queries[-1]["sql"]  # one row ahead: is there a next page?
    assert capped.page(2).has_next()
    within = EstimatedCountPaginator(UpstreamCall.objects.order_by("id"), 3, count_cap=8)
    assert within.count == 8 and not within.count_is_estimate


@pytest.mark.django_db
def test_a_deep_page_reads_its_ids_first(monkeypatch):
    monkeypatch.setattr(pagination, "DEEP_OFFSET", 4)
    made = calls(12)
    paginator = EstimatedCountPaginator(UpstreamCall.objects.order_by("-id"), 4)
    with CaptureQueriesContext(connection) as queries:
        page = paginator.page(2)
    assert [c.pk for c in page] == [c.pk for c in reversed(made[4:8])]
    ids, rows = queries[-2]["sql"], queries[-1]["sql"]
    assert re.match(r'SELECT "upstream_upstreamcall"\."id"( AS "pk")? FROM', ids)
    assert "OFFSET 4" in ids
    assert '"upstream_upstreamcall"."id" IN (' in rows and "OFFSET" not in rows


@pytest.mark.django_db
def test_the_api_says_whether_its_count_is_estimated(api_viewer, a_million):
    calls(3)
    with CaptureQueriesContext(connection) as queries:
        body = api_viewer.get(CALLS, {"page_size": 2}).json()
    assert body["count"] == 1_000_000 and body["count_is_estimate"] is True
    assert body["next"] and len(body["results"]) == 2
    assert not counts_of(queries, "upstream_upstreamcall")
    last = api_viewer.get(CALLS, {"page_size": 2, "page": 2}).json()
    assert last["count"] == 3 and last["count_is_estimate"] is False and last["next"] is None
    assert api_viewer.get(CALLS, {"page_size": 2, "page": 3}).status_code == 404


@pytest.mark.django_db
def test_the_api_counts_a_cheap_list_exactly(api_viewer):
    calls(3)
    body = api_viewer.get(CALLS).json()
    assert body["count"] == 3 and body["count_is_estimate"] is False


def test_the_api_schema_documents_count_is_estimate(api_viewer):
    schema = api_viewer.get("/api/schema/", {"format": "json"}).json()
    page = schema["components"]["schemas"]["PaginatedUpstreamCallList"]
    assert page["properties"]["count_is_estimate"]["type"] == "boolean"
    assert "count_is_estimate" in page["required"]


# PostgreSQL: the real estimates ------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db
def test_postgres_estimates_a_whole_table_from_reltuples(settings):
    require_postgres()
    calls(300)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE upstream_upstreamcall")
    estimate = planner_estimate(UpstreamCall.objects.all())
    assert estimate.rows == 300 and estimate.cost > 0
    settings.LIST_COUNT_BUDGET = 0
    paginator = EstimatedCountPaginator(UpstreamCall.objects.order_by("-created_at", "-id"), 50)
    with CaptureQueriesContext(connection) as queries:
        assert paginator.count == 300 and paginator.count_is_estimate
    assert "reltuples" in queries[0]["sql"]
    assert not counts_of(queries, "upstream_upstreamcall")


@pytest.mark.django_db
def test_an_empty_queryset_counts_nothing_without_asking_the_database():
    assert EstimatedCountPaginator(UpstreamCall.objects.none(), 5).count == 0
    if connection.vendor == "postgresql":
        assert planner_estimate(UpstreamCall.objects.none()) == Estimate(0, 0.0)


@pytest.mark.postgres
@pytest.mark.django_db
def test_postgres_estimates_a_filtered_list_with_explain(settings):
    require_postgres()
    calls(200, outcome="ok")
    calls(20, outcome="failed")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE upstream_upstreamcall")
    failed = UpstreamCall.objects.filter(outcome="failed")
    with CaptureQueriesContext(connection) as queries:
        estimate = planner_estimate(failed)
    assert queries[0]["sql"].startswith("EXPLAIN")
    assert 10 <= estimate.rows <= 40
    settings.LIST_COUNT_BUDGET = 1e9
    assert EstimatedCountPaginator(failed.order_by("id"), 5).count == 20  # cheap: counted
    settings.LIST_COUNT_BUDGET = 0
    estimated = EstimatedCountPaginator(failed.order_by("id"), 5)
    assert estimated.count == rounded(estimate.rows) and estimated.count_is_estimate


# Deep pages (decision 019): the second half of a list is read from its other end ---------------


def walk(paginator: EstimatedCountPaginator) -> list[int]:
    ids: list[int] = []
    number = 1
    while True:
        page = paginator.page(number)
        ids += [row.pk for row in page]
        if not page.has_next():
            return ids
        number += 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    "ordering",
    [("-id",), ("id",), ("-created_at", "-id"), ("created_at", "id"), ("outcome", "-id")],
)
def test_every_page_in_order_with_no_gap_or_overlap(monkeypatch, ordering):
    monkeypatch.setattr(pagination, "DEEP_OFFSET", 4)
    made = calls(13)
    # Ties on created_at and outcome: the id breaks them, in either direction.
    for i, call in enumerate(made):
        call.created_at = call.created_at.replace(microsecond=0) if i % 3 else call.created_at
        call.outcome = "ok" if i % 2 else "failed"
    UpstreamCall.objects.bulk_update(made, ["created_at", "outcome"])
    expected = list(UpstreamCall.objects.order_by(*ordering).values_list("pk", flat=True))
    paginator = EstimatedCountPaginator(UpstreamCall.objects.order_by(*ordering), 4)
    assert walk(paginator) == expected


@pytest.mark.django_db
def test_the_last_page_is_read_from_the_other_end_without_a_large_offset(monkeypatch):
    monkeypatch.setattr(pagination, "DEEP_OFFSET", 4)
    made = calls(22)
    paginator = EstimatedCountPaginator(UpstreamCall.objects.order_by("-created_at", "-id"), 5)
    assert paginator.count == 22
    with CaptureQueriesContext(connection) as queries:
        page = paginator.page(5)
    assert [c.pk for c in page] == [c.pk for c in reversed(made[:2])]
    (sql,) = [q["sql"] for q in queries]
    # The order reversed, no offset at all: the two oldest rows are the first two from the end.
    assert re.search(r'ORDER BY .*"created_at" ASC, .*"id" ASC', sql)
    assert "LIMIT 2" in sql and "OFFSET" not in sql
    page4 = paginator.page(4)
    assert [c.pk for c in page4] == [c.pk for c in reversed(made[2:7])]


@pytest.mark.django_db
def test_the_last_page_of_an_estimated_list_is_counted_then_read_from_the_end(
    monkeypatch, a_million
):
    monkeypatch.setattr(pagination, "DEEP_OFFSET", 4)
    made = calls(12)
    paginator = EstimatedCountPaginator(UpstreamCall.objects.order_by("id"), 5)
    assert paginator.count == 1_000_000 and paginator.count_is_estimate
    # The estimate's "last page" link lands past the real end: it shows the real last page,
    # and now the total is exact.
    last = paginator.page(200_000)
    assert [c.pk for c in last] == [c.pk for c in made[10:]]
    assert last.number == 3 and not last.has_next()
    assert paginator.count == 12 and not paginator.count_is_estimate
    # A page no link offered (past the estimate) is past the end, as before.
    beyond = EstimatedCountPaginator(UpstreamCall.objects.order_by("id"), 5)
    with pytest.raises(EmptyPage):
        beyond.page(200_001)
    paginator = EstimatedCountPaginator(UpstreamCall.objects.order_by("id"), 4)
    paginator.count  # noqa: B018 - the estimate
    paginator.__dict__["count"] = 8  # an estimate short of the end: page 3 is past it
    paginator.count_is_estimate = True
    with CaptureQueriesContext(connection) as queries:
        page = paginator.page(3)
    assert [c.pk for c in page] == [c.pk for c in made[8:12]]
    assert not page.has_next() and paginator.count == 12 and not paginator.count_is_estimate
    count, rows = (q["sql"] for q in queries)
    assert "COUNT(" in count
    # From the end: the last four rows are the first four backwards.
    assert "LIMIT 4" in rows and "OFFSET" not in rows


@pytest.mark.django_db
def test_an_order_with_ties_is_not_read_backwards(monkeypatch):
    monkeypatch.setattr(pagination, "DEEP_OFFSET", 4)
    calls(12)
    paginator = EstimatedCountPaginator(UpstreamCall.objects.order_by("outcome"), 5)
    with CaptureQueriesContext(connection) as queries:
        paginator.page(3)
    assert "OFFSET 10" in queries[-2]["sql"]  # ids first, in the list's own order


def test_total_order_knows_unique_keys_and_constraints():
    from billqueries.models import BillQueryLine
    from upstream.lists.counting import total_order
    from upstream.models import JobItem

    assert total_order(UpstreamCall.objects.order_by("-created_at", "-id"))
    assert total_order(UpstreamCall.objects.all())  # Meta.ordering ends in -id
    assert not total_order(UpstreamCall.objects.order_by("created_at"))
    assert total_order(JobItem.objects.order_by("-job_id", "-position"))
    assert total_order(BillQueryLine.objects.order_by("-batch_id", "position"))
    assert not total_order(JobItem.objects.order_by("-job_id"))
    assert not total_order(UpstreamCall.objects.order_by("?"))
