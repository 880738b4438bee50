"""Every changelist on a big table (issue 8): a constant number of queries, no count of the
whole table, no SELECT DISTINCT for a filter, what the search box matches, and that filters,
search and sorting still find the right rows.

Big tables look big here through a fake planner estimate ("a million rows, expensive to count");
tests/upstream/test_pagination.py covers the real one on PostgreSQL.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib import admin
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import translation

from billing.models import Invoice, InvoiceItem
from billqueries.models import BillDebt, BillQueryBatch, BillQueryLine, Institution
from subscriptions.models import Subscription, SubscriptionInvoice
from upstream.admin import lists as admin_lists
from upstream.lists import counting as pagination
from upstream.lists.counting import Estimate
from upstream.models import Job, JobItem, UpstreamCall

T0 = datetime(2025, 1, 1, 7, tzinfo=UTC)


# Rows ------------------------------------------------------------------------------------------


def payment_records(count: int, start: int) -> None:
    subscriptions = Subscription.objects.bulk_create(
        Subscription(
            subscription_id=f"sub-{n}",
            reference_no=f"9{n:07d}",
            name_surname=f"Ad Soyad{n}",
            created_date=T0 + timedelta(minutes=n),
        )
        for n in range(start, start + count)
    )
    SubscriptionInvoice.objects.bulk_create(
        SubscriptionInvoice(
            subscription=sub,
            invoice_id=str(1000 + n),
            invoice_no=f"114{n:05d}",
            val_date=T0 + timedelta(days=n % 3),
            amount=Decimal("100.50") + n % 4,
            status=(0, 3, 4, 5)[n % 4],
        )
        for n, sub in enumerate(subscriptions, start)
    )


def invoices(count: int, start: int) -> None:
    made = Invoice.objects.bulk_create(
        Invoice(
            wisecp_id=n,
            number=f"#{n}",
            status=("paid", "unpaid")[n % 2],
            currency=("TRY", "EUR")[n % 2],
            created_at_upstream=T0 + timedelta(hours=n),
            full_name=f"Müşteri Adı{n}",
        )
        for n in range(start + 1, start + count + 1)
    )
    InvoiceItem.objects.bulk_create(
        InvoiceItem(
            wisecp_id=invoice.wisecp_id,
            invoice=invoice,
            description=f"Web Hosting {invoice.wisecp_id}",
            amount=Decimal(10),
            total=Decimal(10),
            tax_exempt=invoice.wisecp_id % 3 == 0,
            order_id=invoice.wisecp_id,
            due_date=T0 + timedelta(days=invoice.wisecp_id % 5),
        )
        for invoice in made
    )


def bill_lines(count: int, start: int) -> None:
    institution, _ = Institution.objects.get_or_create(soot_code=1, defaults={"name": "İSKİ"})
    batches = BillQueryBatch.objects.bulk_create(
        BillQueryBatch(source="typed", filename=f"liste{n}.csv")
        for n in range(start, start + count)
    )
    lines = BillQueryLine.objects.bulk_create(
        BillQueryLine(
            batch=batch,
            position=1,
            institution=institution,
            soot_code=1,
            subscriber_no=f"{n:010d}",
            firm_ref_no=f"F{n}",
            outcome=("found", "no_debt")[n % 2],
        )
        for n, batch in enumerate(batches, start)
    )
    BillDebt.objects.bulk_create(
        BillDebt(
            line=line,
            invoice_query_id=line.pk,
            subscriber_no=line.subscriber_no,
            invoice_no=f"FTR{line.firm_ref_no}",
            invoice_amount=Decimal(1),
            total_amount=Decimal(1),
            soot_code=1,
        )
        for line in lines
    )


def job_items(count: int, start: int) -> None:
    jobs = Job.objects.bulk_create(
        Job(
            kind=("paynet.invoice_status", "wisecp.invoice_item_update")[n % 2],
            title=f"Job {n} ödeme kaydı",
            reason=f"talep TKT-{n}",
            inline=n % 2 == 0,
        )
        for n in range(start, start + count)
    )
    JobItem.objects.bulk_create(
        JobItem(
            job=job,
            position=0,
            target_type="subscriptions.subscriptioninvoice",
            target_id=str(1000 + n),
            target_repr=f"114{n:05d}",
            outcome=("ok", "failed")[n % 2],
            in_doubt=n % 5 == 0,
            finished_at=T0 + timedelta(minutes=n % 7),
        )
        for n, job in enumerate(jobs, start)
    )


def upstream_calls(count: int, start: int) -> None:
    UpstreamCall.objects.bulk_create(
        UpstreamCall(
            service="paynet",
            operation=("invoice_status_update", "invoice_list")[n % 2],
            method="POST",
            url="http://x/",
            request={"pad": "x" * 1000},
            response={"pad": "y" * 1000},
            upstream_code=("0", "E7")[n % 2],
            outcome=("ok", "rejected")[n % 2],
            created_at=T0 + timedelta(minutes=n),
            target_type="subscriptions.subscriptioninvoice",
            target_id=str(1000 + n),
            target_repr=f"114{n:05d}",
        )
        for n in range(start, start + count)
    )


@dataclass(frozen=True)
class BigList:
    model: type
    make: Callable[[int, int], None]

    @property
    def url(self) -> str:
        opts = self.model._meta
        return reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")

    @property
    def table(self) -> str:
        return self.model._meta.db_table


BIG_LISTS = {
    "payment records": BigList(SubscriptionInvoice, payment_records),
    "subscriptions": BigList(Subscription, payment_records),
    "invoices": BigList(Invoice, invoices),
    "invoice items": BigList(InvoiceItem, invoices),
    "bill query lines": BigList(BillQueryLine, bill_lines),
    "bill query batches": BigList(BillQueryBatch, bill_lines),
    "jobs": BigList(Job, job_items),
    "job items": BigList(JobItem, job_items),
    "call log": BigList(UpstreamCall, upstream_calls),
}


@pytest.fixture
def a_million(monkeypatch) -> None:
    """Every list looks like a million rows that would be expensive to count."""
    monkeypatch.setattr(
        pagination, "planner_estimate", lambda queryset: Estimate(rows=1_000_000, cost=1e9)
    )


def whole_table_reads(queries, table: str) -> list[str]:
    """COUNTs and DISTINCTs that read all of `table`: no WHERE anywhere in the statement."""
    return [
        q["sql"]
        for q in queries
        if f'"{table}"' in q["sql"]
        and re.search(r"\bCOUNT\(|\bDISTINCT\b", q["sql"])
        and " WHERE " not in q["sql"]
    ]


def listed(response) -> list:
    return list(response.context["cl"].result_list)


# Every big list ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", BIG_LISTS)
def test_a_page_costs_the_same_queries_at_20_and_200_rows_and_never_counts_the_table(
    admin_client, monkeypatch, a_million, name
):
    big = BIG_LISTS[name]
    model_admin = admin.site._registry[big.model]
    monkeypatch.setattr(model_admin, "list_per_page", 500)
    big.make(20, 0)
    admin_client.get(big.url)  # warm caches (content types, permissions, session)
    with CaptureQueriesContext(connection) as small:
        response = admin_client.get(big.url)
    assert response.status_code == 200 and len(listed(response)) == 20
    big.make(180, 20)
    with CaptureQueriesContext(connection) as large:
        response = admin_client.get(big.url)
    assert len(listed(response)) == 200
    assert response.context["cl"].result_count == 200  # the short last page made it exact
    assert len(large) == len(small), [q["sql"] for q in large.captured_queries]
    assert not whole_table_reads(large, big.table)
    assert model_admin.date_hierarchy is None
    assert model_admin.show_full_result_count is False


@pytest.mark.parametrize("name", BIG_LISTS)
def test_a_big_list_shows_its_estimated_total(admin_client, monkeypatch, a_million, name):
    big = BIG_LISTS[name]
    monkeypatch.setattr(admin.site._registry[big.model], "list_per_page", 10)
    big.make(20, 0)
    page = admin_client.get(big.url)
    assert page.context["cl"].count_is_estimate
    assert "about 1,000,000 " in page.content.decode()
    admin_client.cookies["django_language"] = "tr"
    assert "yaklaşık 1.000.000 " in admin_client.get(big.url).content.decode()


@pytest.mark.parametrize("name", BIG_LISTS)
def test_each_search_box_says_what_it_matches_in_both_languages(admin_client, name):
    big = BIG_LISTS[name]
    model_admin = admin.site._registry[big.model]
    with translation.override("en"):
        english = str(model_admin.search_help_text)
    assert "exact match" in english
    with translation.override("tr"):
        assert "tam eşleşme" in str(model_admin.search_help_text)
    page = admin_client.get(big.url).content.decode()
    assert f'id="searchbar_helptext">{english}' in page


def test_a_search_counts_up_to_the_cap_and_says_more_than(admin_client, monkeypatch):
    monkeypatch.setattr(admin_lists, "SEARCH_COUNT_MAX", 5)
    job_items(12, 0)
    url = BIG_LISTS["job items"].url
    page = admin_client.get(url, {"q": "114"})
    assert page.context["cl"].result_count == 5 and page.context["cl"].count_is_lower_bound
    assert "more than 5 job items" in page.content.decode()
    one = admin_client.get(url, {"q": "11400003"})
    assert one.context["cl"].result_count == 1 and not one.context["cl"].count_is_estimate


# Exact search is a plain "=" ---------------------------------------------------------------------


def page_query(queries, table: str) -> str:
    """The statement that read the page's rows (the one selecting the table's id and more)."""
    return next(
        q["sql"] for q in reversed(queries) if q["sql"].startswith(f'SELECT "{table}"."id", ')
    )


def test_payment_records_match_an_invoice_no_with_a_plain_equals(admin_client):
    payment_records(5, 0)
    with CaptureQueriesContext(connection) as queries:
        found = listed(admin_client.get(BIG_LISTS["payment records"].url, {"q": "11400003"}))
    assert [r.invoice_no for r in found] == ["11400003"]
    sql = page_query(queries, "subscriptions_subscriptioninvoice")
    assert '"subscriptions_subscriptioninvoice"."invoice_no" = \'11400003\'' in sql
    assert "UPPER(" not in sql and "JOIN" not in sql.split(" WHERE ")[1]
    # A number is not looked for inside names; a word is, in the subscription's first.
    assert not any("LIKE" in q["sql"] for q in queries)
    with CaptureQueriesContext(connection) as queries:
        admin_client.get(BIG_LISTS["payment records"].url, {"q": "soyad3"})
    assert any(
        'FROM "subscriptions_subscription"' in q["sql"] and "LIKE" in q["sql"] for q in queries
    )


@pytest.mark.parametrize(
    ("name", "term", "column"),
    [
        ("call log", "7", '"upstream_upstreamcall"."id" = 7'),
        ("call log", "E7", '"upstream_upstreamcall"."upstream_code" = \'E7\''),
        ("job items", "3", '"upstream_jobitem"."job_id" = '),
        ("bill query lines", "0000000004", '"billqueries_billqueryline"."subscriber_no" = '),
        ("subscriptions", "90000002", '"subscriptions_subscription"."reference_no" = '),
        ("invoice items", "4", '"billing_invoiceitem"."wisecp_id" = 4'),
    ],
)
def test_exact_searches_compile_to_an_indexed_equals_not_upper(admin_client, name, term, column):
    big = BIG_LISTS[name]
    big.make(10, 0)
    with CaptureQueriesContext(connection) as queries:
        admin_client.get(big.url, {"q": term})
    sql = page_query(queries, big.table)
    assert column in sql
    assert not re.search(r"UPPER\([^)]*\) = UPPER", sql)


def test_a_number_is_not_searched_in_a_whole_number_column_it_cannot_be(admin_client):
    upstream_calls(3, 0)
    url = BIG_LISTS["call log"].url
    assert admin_client.get(url, {"q": "99999999999999999999999"}).status_code == 200
    assert listed(admin_client.get(url, {"q": "not-a-number"})) == []


def test_words_shorter_than_three_letters_are_not_searched_as_substrings(admin_client):
    payment_records(3, 0)
    url = BIG_LISTS["payment records"].url
    assert listed(admin_client.get(url, {"q": "Ad"})) == []
    assert len(listed(admin_client.get(url, {"q": "Soyad1"}))) == 1


def test_a_substring_search_sorts_its_matches_instead_of_walking_the_index(admin_client):
    invoices(6, 0)
    with CaptureQueriesContext(connection) as queries:
        found = listed(admin_client.get(BIG_LISTS["invoice items"].url, {"q": "hosting"}))
    assert [i.wisecp_id for i in found] == [6, 5, 4, 3, 2, 1]
    sql = page_query(queries, "billing_invoiceitem")
    assert 'ORDER BY COALESCE("billing_invoiceitem"."wisecp_id", ' in sql
    assert "JOIN" not in sql  # the invoices are read for the page only


def test_many_related_matches_are_looked_up_per_row(admin_client, monkeypatch):
    monkeypatch.setattr(admin_lists, "RELATED_IDS_MAX", 2)
    payment_records(6, 0)
    with CaptureQueriesContext(connection) as queries:
        found = listed(admin_client.get(BIG_LISTS["payment records"].url, {"q": "Soyad"}))
    assert len(found) == 6
    assert "EXISTS(" in page_query(queries, "subscriptions_subscriptioninvoice")


# Each list still filters, searches and sorts right -----------------------------------------------


def test_payment_records_filter_search_and_sort(admin_client):
    payment_records(8, 0)
    url = BIG_LISTS["payment records"].url
    by_amount = listed(admin_client.get(url, {"o": "5"}))  # the amount column
    assert [r.amount for r in by_amount] == sorted(r.amount for r in by_amount)
    # Ties broken by id in the column's direction, so one (amount, id) index serves both.
    assert [r.pk for r in by_amount] == list(
        SubscriptionInvoice.objects.order_by("amount", "pk").values_list("pk", flat=True)
    )
    descending = listed(admin_client.get(url, {"o": "-5"}))
    assert [r.pk for r in descending] == list(
        SubscriptionInvoice.objects.order_by("-amount", "-pk").values_list("pk", flat=True)
    )
    assert {r.status for r in listed(admin_client.get(url, {"status__exact": "4"}))} == {4}
    by_name = listed(admin_client.get(url, {"q": "soyad3"}))
    assert [r.invoice_no for r in by_name] == ["11400003"]
    by_reference = listed(admin_client.get(url, {"q": "90000005"}))
    assert [r.invoice_no for r in by_reference] == ["11400005"]
    assert listed(admin_client.get(url, {"q": "1140000"})) == []  # exact, not a prefix


def test_a_column_outside_sortable_by_is_not_sorted_even_by_hand(admin_client):
    payment_records(4, 0)
    url = BIG_LISTS["payment records"].url
    customer = admin.site._registry[SubscriptionInvoice].list_display.index("customer") + 1
    by_hand = listed(admin_client.get(url, {"o": str(customer)}))
    assert [r.pk for r in by_hand] == list(
        SubscriptionInvoice.objects.order_by("-val_date", "-pk").values_list("pk", flat=True)
    )
    assert "o=" + str(customer) not in admin_client.get(url).content.decode()


def test_subscriptions_filter_by_status_from_paynets_table(admin_client):
    payment_records(3, 0)
    Subscription.objects.filter(reference_no="90000001").update(status=5)
    url = BIG_LISTS["subscriptions"].url
    page = admin_client.get(url, {"status__exact": "5"})
    assert [s.reference_no for s in listed(page)] == ["90000001"]
    assert "Cancelled" in page.content.decode()  # the choice comes from InvoiceStatus
    counted = {s.reference_no: s.invoice_total for s in listed(admin_client.get(url))}
    assert counted == {"90000000": 1, "90000001": 1, "90000002": 1}


def test_invoices_and_items_search_and_filter(admin_client):
    invoices(6, 0)
    url = BIG_LISTS["invoices"].url
    assert [i.wisecp_id for i in listed(admin_client.get(url, {"q": "#4"}))] == [4]
    assert [i.wisecp_id for i in listed(admin_client.get(url, {"q": "4"}))] == [4]
    assert [i.wisecp_id for i in listed(admin_client.get(url, {"q": "adı5"}))] == [5]
    assert {i.currency for i in listed(admin_client.get(url, {"currency": "EUR"}))} == {"EUR"}
    assert {i.item_total for i in listed(admin_client.get(url))} == {1}
    items = BIG_LISTS["invoice items"].url
    assert [i.wisecp_id for i in listed(admin_client.get(items, {"q": "#3"}))] == [3]
    eur = listed(admin_client.get(items, {"invoice__currency": "EUR"}))
    assert {i.invoice.currency for i in eur} == {"EUR"}
    exempt = listed(admin_client.get(items, {"tax_exempt__exact": "1"}))
    assert sorted(i.wisecp_id for i in exempt) == [3, 6]
    by_due = listed(admin_client.get(items, {"o": "-8"}))  # the due date column
    assert [i.due_date for i in by_due] == sorted((i.due_date for i in by_due), reverse=True)


def test_bill_query_lines_and_batches_search_and_filter(admin_client):
    bill_lines(4, 0)
    lines = BIG_LISTS["bill query lines"].url
    by_bill = listed(admin_client.get(lines, {"q": "FTRF2"}))
    assert [ln.firm_ref_no for ln in by_bill] == ["F2"]
    by_batch = listed(admin_client.get(lines, {"q": str(by_bill[0].batch_id)}))
    assert [ln.firm_ref_no for ln in by_batch] == ["F2"]
    newest_first = [ln.batch_id for ln in listed(admin_client.get(lines))]
    assert newest_first == sorted(newest_first, reverse=True)
    institution = Institution.objects.get()
    page = admin_client.get(lines, {"institution__id__exact": str(institution.pk)})
    assert len(listed(page)) == 4 and "İSKİ" in page.content.decode()
    batches = BIG_LISTS["bill query batches"].url
    assert len(listed(admin_client.get(batches, {"q": "liste3"}))) == 1
    today = datetime.now().strftime("%d.%m.%Y")
    assert len(listed(admin_client.get(batches, {"created_at__range_from": today}))) == 4


def test_jobs_and_job_items_filter_search_and_sort(admin_client):
    job_items(6, 0)
    jobs = BIG_LISTS["jobs"].url
    by_reason = listed(admin_client.get(jobs, {"q": "tkt-4"}))
    assert [j.title for j in by_reason] == ["Job 4 ödeme kaydı"]
    kinds = admin_client.get(jobs, {"kind": "wisecp.invoice_item_update"})
    assert {j.kind for j in listed(kinds)} == {"wisecp.invoice_item_update"}
    assert "paynet.create_invoice" in kinds.content.decode()  # every registered kind is offered
    items = BIG_LISTS["job items"].url
    newest = listed(admin_client.get(items))
    assert [i.job_id for i in newest] == sorted((i.job_id for i in newest), reverse=True)
    assert {i.outcome for i in listed(admin_client.get(items, {"outcome__exact": "failed"}))} == {
        "failed"
    }
    assert {i.in_doubt for i in listed(admin_client.get(items, {"in_doubt__exact": "1"}))} == {True}
    by_kind = listed(admin_client.get(items, {"job__kind": "paynet.invoice_status"}))
    assert {i.job.kind for i in by_kind} == {"paynet.invoice_status"}
    finished = listed(admin_client.get(items, {"o": "8"}))
    assert [i.finished_at for i in finished] == sorted(i.finished_at for i in finished)
    assert [i.target_repr for i in listed(admin_client.get(items, {"q": "1140000"}))] == [
        f"114{n:05d}" for n in (5, 4, 3, 2, 1, 0)
    ]
    job = Job.objects.get(title="Job 2 ödeme kaydı")
    assert [i.job_id for i in listed(admin_client.get(items, {"q": str(job.pk)}))] == [job.pk]


def test_the_call_log_filters_and_searches_without_reading_bodies(admin_client):
    upstream_calls(6, 0)
    url = BIG_LISTS["call log"].url
    page = admin_client.get(url, {"operation": "invoice_list"})
    assert {c.operation for c in listed(page)} == {"invoice_list"}
    for offered in ("create_invoice", "UpdateInvoiceItem", "multipleinvoicequery"):
        assert f"operation={offered}" in page.content.decode()
    call = UpstreamCall.objects.get(target_id="1004")
    by_target_id = listed(admin_client.get(url, {"q": "1004"}))
    assert [c.pk for c in by_target_id] == [call.pk]
    assert [c.pk for c in listed(admin_client.get(url, {"q": str(call.pk)}))] == [call.pk]
    assert len(listed(admin_client.get(url, {"q": "E7"}))) == 3
    by_target = listed(admin_client.get(url, {"q": "11400004"}))
    assert [c.pk for c in by_target] == [call.pk]
    assert len(listed(admin_client.get(url, {"q": "114"}))) == 6  # target: starts with
    assert listed(admin_client.get(url, {"q": "xxxx"})) == []  # never the bodies
    deferred = listed(admin_client.get(url))[0].get_deferred_fields()
    assert {"request", "response", "request_headers"} <= deferred
    window = {"created_at__range_from": "01.01.2025", "created_at__range_to": "01.01.2025"}
    assert len(listed(admin_client.get(url, window))) == 6


def test_the_search_ignores_surrounding_spaces_and_an_empty_term_lists_everything(admin_client):
    upstream_calls(3, 0)
    url = BIG_LISTS["call log"].url
    assert len(listed(admin_client.get(url, {"q": "   "}))) == 3
    assert len(listed(admin_client.get(url, {"q": "  11400001 "}))) == 1
