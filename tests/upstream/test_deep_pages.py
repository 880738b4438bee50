"""Deep pages and common words (issue 20, decision 019): the last page of a list is read from its
other end, a common word walks the list's indexed order instead of sorting every match, and the
pages still meet without a gap or an overlap. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import re

import pytest
from django.contrib import admin
from django.db import connection
from django.test.utils import CaptureQueriesContext

from billing.models import Invoice, InvoiceItem
from tests.upstream.test_big_lists import BIG_LISTS, invoices, job_items, listed, page_query
from upstream.admin import lists as admin_lists
from upstream.lists import counting
from upstream.models import JobItem

pytestmark = pytest.mark.django_db

OFFSET = re.compile(r"OFFSET (\d+)")


def offsets(queries) -> list[int]:
    return [int(n) for q in queries for n in OFFSET.findall(q["sql"])]


def every_page(client, url: str, params: dict | None = None) -> tuple[list, list[int]]:
    """Every row of the list page by page (?p=1, 2, ...), and the largest OFFSET each sent."""
    rows, largest = [], []
    first = client.get(url, params or {})
    pages = first.context["cl"].paginator.num_pages
    for number in range(1, pages + 1):
        with CaptureQueriesContext(connection) as queries:
            response = client.get(url, {**(params or {}), "p": number})
        assert response.status_code == 200
        rows += listed(response)
        largest.append(max(offsets(queries), default=0))
    return rows, largest


@pytest.mark.parametrize("name", ["job items", "invoice items", "payment records", "call log"])
def test_admin_pages_meet_without_gap_or_overlap_and_the_last_is_read_from_the_end(
    admin_client, monkeypatch, name
):
    monkeypatch.setattr(counting, "DEEP_OFFSET", 10)
    # Counted exactly: PostgreSQL's statistics of a table other tests filled may still say
    # "thousands of rows" (an estimate is the next test's subject).
    monkeypatch.setattr(counting, "planner_estimate", lambda qs: None)
    big = BIG_LISTS[name]
    monkeypatch.setattr(admin.site._registry[big.model], "list_per_page", 7)
    big.make(40, 0)
    whole = admin_client.get(big.url, {"p": 1}).context["cl"]
    expected = list(whole.queryset.values_list("pk", flat=True))
    rows, largest = every_page(admin_client, big.url)
    assert [row.pk for row in rows] == expected
    # The last page (rows 35-39) and the one before it read from the end: a small OFFSET.
    assert largest[-1] == 0 and largest[-2] <= 7, largest


def test_the_job_item_list_last_page_seeks_on_the_job_position_key(admin_client, monkeypatch):
    monkeypatch.setattr(counting, "DEEP_OFFSET", 10)
    monkeypatch.setattr(admin.site._registry[JobItem], "list_per_page", 7)
    job_items(40, 0)
    url = BIG_LISTS["job items"].url
    with CaptureQueriesContext(connection) as queries:
        last = listed(admin_client.get(url, {"p": 6}))
    assert [i.pk for i in last] == list(
        JobItem.objects.order_by("-job_id", "-position").values_list("pk", flat=True)[35:]
    )
    sql = page_query(queries, "upstream_jobitem")
    order = r'ORDER BY "upstream_jobitem"."job_id" ASC, "upstream_jobitem"."position" ASC'
    assert re.search(order, sql)
    assert "OFFSET" not in sql


def test_a_last_page_link_beyond_an_estimate_still_shows_the_last_rows(admin_client, monkeypatch):
    # "about 50": the list's links go to page 8 at 7 a page; the real list is 40 rows.
    monkeypatch.setattr(
        counting, "planner_estimate", lambda qs: counting.Estimate(rows=50, cost=1e9)
    )
    monkeypatch.setattr(counting, "DEEP_OFFSET", 10)
    monkeypatch.setattr(admin.site._registry[InvoiceItem], "list_per_page", 7)
    invoices(40, 0)
    url = BIG_LISTS["invoice items"].url
    first = admin_client.get(url)
    assert first.context["cl"].count_is_estimate
    last = admin_client.get(url, {"p": 6})
    assert [i.wisecp_id for i in listed(last)] == [5, 4, 3, 2, 1]
    assert last.context["cl"].result_count == 40 and not last.context["cl"].count_is_estimate
    assert "about" not in last.content.decode().split('class="paginator"')[-1]
    # The estimate's own last link (page 8 of "about 50") is the real last page.
    beyond = admin_client.get(url, {"p": 8})
    assert beyond.status_code == 200
    assert [i.wisecp_id for i in listed(beyond)] == [5, 4, 3, 2, 1]


@pytest.mark.parametrize("number", [7, 15, 16, 1000])
def test_a_page_past_the_real_end_of_an_estimate_is_the_last_real_page(
    admin_client, monkeypatch, number
):
    # "about 100": the links go up to page 15 at 7 a page, but the list ends at 40 rows (page
    # 6). Page 7 (rows 42-48) is past the real end while still in the estimate's first half,
    # where pages are not read from the other end; 16 and 1000 are past the estimate's pages.
    monkeypatch.setattr(
        counting, "planner_estimate", lambda qs: counting.Estimate(rows=100, cost=1e9)
    )
    monkeypatch.setattr(counting, "DEEP_OFFSET", 10)
    monkeypatch.setattr(admin.site._registry[InvoiceItem], "list_per_page", 7)
    invoices(40, 0)
    response = admin_client.get(BIG_LISTS["invoice items"].url, {"p": number})
    assert response.status_code == 200  # not a redirect to ?e=1
    cl = response.context["cl"]
    assert [i.wisecp_id for i in listed(response)] == [5, 4, 3, 2, 1]
    assert cl.page_num == 6 and cl.result_count == 40 and not cl.count_is_estimate


def test_the_apis_last_page_of_an_estimated_list(api_viewer, monkeypatch):
    monkeypatch.setattr(
        counting, "planner_estimate", lambda qs: counting.Estimate(rows=50, cost=1e9)
    )
    monkeypatch.setattr(counting, "DEEP_OFFSET", 10)
    invoices(40, 0)
    with CaptureQueriesContext(connection) as queries:
        body = api_viewer.get("/api/invoice-items/", {"page": "last", "page_size": 7}).json()
    assert [i["wisecp_id"] for i in body["results"]] == [5, 4, 3, 2, 1]
    assert body["count"] == 40 and body["count_is_estimate"] is False and body["next"] is None
    assert max(offsets(queries), default=0) == 0


# A common word walks the list's order; a rare one sorts its matches -------------------------------


def test_a_common_word_walks_the_lists_index_instead_of_sorting_every_match(
    admin_client, monkeypatch
):
    monkeypatch.setattr(admin_lists, "SEARCH_COUNT_MAX", 5)
    monkeypatch.setattr(admin.site._registry[InvoiceItem], "list_per_page", 4)
    invoices(12, 0)
    url = BIG_LISTS["invoice items"].url
    with CaptureQueriesContext(connection) as queries:
        page = admin_client.get(url, {"q": "HOSTİNG"})  # Turkish capitals: folded as before
    cl = page.context["cl"]
    assert [i.wisecp_id for i in listed(page)] == [12, 11, 10, 9]
    assert cl.result_count == 5 and cl.count_is_lower_bound
    sql = page_query(queries, "billing_invoiceitem")
    assert 'ORDER BY "billing_invoiceitem"."wisecp_id" DESC' in sql  # the index's own order
    assert "COALESCE(" not in sql.split("ORDER BY")[1]
    if connection.vendor == "postgresql":  # the page read walking the wisecp_id index
        steering = [q["sql"] for q in queries if q["sql"].startswith("SET LOCAL")]
        assert "SET LOCAL enable_bitmapscan = off" in steering
        assert "SET LOCAL enable_bitmapscan TO DEFAULT" in steering
    # Counted once, up to the cap: the choice and the total are the same query.
    capped = [
        q["sql"] for q in queries if "COUNT(" in q["sql"] and "billing_invoiceitem" in q["sql"]
    ]
    assert len(capped) == 1 and "LIMIT 6" in capped[0]
    assert "more than 5" in page.content.decode()


def test_a_rare_word_still_sorts_its_matches(admin_client, monkeypatch):
    monkeypatch.setattr(admin_lists, "SEARCH_COUNT_MAX", 5)
    invoices(12, 0)
    InvoiceItem.objects.filter(wisecp_id__in=[3, 9]).update(description="Yedekleme alanı")
    with CaptureQueriesContext(connection) as queries:
        page = admin_client.get(BIG_LISTS["invoice items"].url, {"q": "yedekleme"})
    assert [i.wisecp_id for i in listed(page)] == [9, 3]
    sql = page_query(queries, "billing_invoiceitem")
    assert 'ORDER BY COALESCE("billing_invoiceitem"."wisecp_id", ' in sql
    assert not any(q["sql"].startswith("SET LOCAL") for q in queries)
    assert page.context["cl"].result_count == 2 and not page.context["cl"].count_is_estimate


def test_a_number_is_still_matched_exactly_when_words_are_common(admin_client, monkeypatch):
    monkeypatch.setattr(admin_lists, "SEARCH_COUNT_MAX", 5)
    invoices(12, 0)
    found = listed(admin_client.get(BIG_LISTS["invoice items"].url, {"q": "7"}))
    assert [i.wisecp_id for i in found] == [7]


def test_a_common_words_pages_meet(admin_client, monkeypatch):
    monkeypatch.setattr(admin_lists, "SEARCH_COUNT_MAX", 5)
    monkeypatch.setattr(admin.site._registry[InvoiceItem], "list_per_page", 4)
    invoices(14, 0)
    InvoiceItem.objects.filter(wisecp_id__in=[2, 5, 11]).update(description="Alan adı")
    url = BIG_LISTS["invoice items"].url
    rows = []
    for number in (1, 2, 3):
        rows += listed(admin_client.get(url, {"q": "hosting", "p": number}))
    assert [i.wisecp_id for i in rows] == [14, 13, 12, 10, 9, 8, 7, 6, 4, 3, 1]


# A due-date range: few rows are sorted, many walk the order ------------------------------------


def test_a_narrow_due_date_range_is_read_through_its_index_and_sorted(admin_client, monkeypatch):
    monkeypatch.setattr(admin_lists, "SEARCH_COUNT_MAX", 5)
    invoices(20, 0)  # due dates T0 + wisecp_id % 5 days
    url = BIG_LISTS["invoice items"].url
    day = {"due_date__range_from": "02.01.2025", "due_date__range_to": "02.01.2025"}
    with CaptureQueriesContext(connection) as queries:
        page = admin_client.get(url, day)
    assert [i.wisecp_id for i in listed(page)] == [16, 11, 6, 1]
    assert page.context["cl"].result_count == 4 and not page.context["cl"].count_is_estimate
    sql = page_query(queries, "billing_invoiceitem")
    assert 'ORDER BY COALESCE("billing_invoiceitem"."wisecp_id", ' in sql
    wide = {"due_date__range_from": "01.01.2025", "due_date__range_to": "05.01.2025"}
    # Over the cap, and the planner expects a large share of the table (or cannot say: SQLite).
    many = counting.Estimate(admin_lists.SORT_FILTERED_MAX + 1, 0.0)
    monkeypatch.setattr(admin_lists, "planner_estimate", lambda queryset: many)
    with CaptureQueriesContext(connection) as queries:
        page = admin_client.get(url, wide)
    assert [i.wisecp_id for i in listed(page)] == list(range(20, 0, -1))
    sql = page_query(queries, "billing_invoiceitem")
    assert 'ORDER BY "billing_invoiceitem"."wisecp_id" DESC' in sql


def test_a_range_over_the_count_cap_is_still_sorted_while_the_planner_expects_few(
    admin_client, monkeypatch
):
    """A month of a million invoice items (76,000) is more than the count's cap but a small
    share of the table: the walk would read most of the table to fill a page, the sort reads
    the month through its index."""
    monkeypatch.setattr(admin_lists, "SEARCH_COUNT_MAX", 5)
    invoices(20, 0)
    url = BIG_LISTS["invoice items"].url
    wide = {"due_date__range_from": "01.01.2025", "due_date__range_to": "05.01.2025"}
    asked = []

    def estimate(queryset):
        asked.append(queryset.model)
        return counting.Estimate(admin_lists.SORT_FILTERED_MAX, 0.0)

    monkeypatch.setattr(admin_lists, "planner_estimate", estimate)
    with CaptureQueriesContext(connection) as queries:
        page = admin_client.get(url, wide, follow=True)

    assert asked and asked[0] is InvoiceItem
    assert [i.wisecp_id for i in listed(page)] == list(range(20, 0, -1))
    sql = page_query(queries, "billing_invoiceitem")
    assert 'ORDER BY COALESCE("billing_invoiceitem"."wisecp_id", ' in sql
    monkeypatch.setattr(admin_lists, "planner_estimate", lambda queryset: None)  # SQLite
    with CaptureQueriesContext(connection) as queries:
        admin_client.get(url, wide)
    assert 'ORDER BY "billing_invoiceitem"."wisecp_id" DESC' in page_query(
        queries, "billing_invoiceitem"
    )


def test_the_invoice_list_sorts_a_narrow_due_date_range_too(admin_client, monkeypatch):
    monkeypatch.setattr(admin_lists, "SEARCH_COUNT_MAX", 5)
    invoices(20, 0)
    made = list(Invoice.objects.all())
    for invoice in made:
        invoice.due_date = InvoiceItem.objects.get(invoice=invoice).due_date
    Invoice.objects.bulk_update(made, ["due_date"])
    day = {"due_date__range_from": "02.01.2025", "due_date__range_to": "02.01.2025"}
    with CaptureQueriesContext(connection) as queries:
        page = admin_client.get(BIG_LISTS["invoices"].url, day)
    assert [i.wisecp_id for i in listed(page)] == [16, 11, 6, 1]
    assert page.context["cl"].result_count == 4
    assert 'ORDER BY COALESCE("billing_invoice"."created_at_upstream", ' in page_query(
        queries, "billing_invoice"
    )
