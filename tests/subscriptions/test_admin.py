"""The Paynet admin through Django's test client: lists, filters, actions, pages, call log."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime
from decimal import Decimal
from html.parser import HTMLParser
from zoneinfo import ZoneInfo

import pytest
from django.contrib import admin
from django.contrib.messages import get_messages
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext as _

from subscriptions import services
from subscriptions.models import InvoiceStatus, Subscription, SubscriptionInvoice
from subscriptions.pushes import INVOICE_STATUS, StatusRequest
from subscriptions.services import subscription_invoice_set_status_bulk
from tests.subscriptions.helpers import a_record, a_subscription
from upstream.calls.breaker import breaker_trip
from upstream.calls.errors import PushConflict, PushInDoubt
from upstream.models import Job, JobItem, UpstreamCall
from upstream.pushes import bulk
from upstream.pushes.verdicts import VerdictKind

S = InvoiceStatus
ISTANBUL = ZoneInfo("Europe/Istanbul")
INVOICES = reverse("admin:subscriptions_subscriptioninvoice_changelist")
SUBSCRIPTIONS = reverse("admin:subscriptions_subscription_changelist")


def job_url(job: Job) -> str:
    return reverse("admin:upstream_job_change", args=[job.pk])


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


class _FormState(HTMLParser):
    """What a browser posts back from the form with the given id: hidden inputs and selections."""

    def __init__(self, form_id: str) -> None:
        super().__init__()
        self.form_id, self.inside, self.select, self.fields = form_id, False, None, []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form" and attrs.get("id") == self.form_id:
            self.inside = True
        elif not self.inside:
            return
        elif tag == "input" and attrs.get("type") == "hidden":
            self.fields.append((attrs["name"], attrs.get("value", "")))
        elif tag == "select":
            self.select = attrs["name"]
        elif tag == "option" and self.select and "selected" in attrs:
            self.fields.append((self.select, attrs.get("value", "")))

    def handle_endtag(self, tag):
        if tag == "form":
            self.inside = False
        elif tag == "select":
            self.select = None


def post_back(client, url, response, form_id, **fields):
    """Submit the confirmation page as a browser would: its hidden fields plus the given ones."""
    parser = _FormState(form_id)
    parser.feed(response.content.decode())
    assert parser.fields, f"no form #{form_id} on the page"
    data: dict[str, list[str]] = {}
    for name, value in parser.fields:
        if name != "csrfmiddlewaretoken":
            data.setdefault(name, []).append(value)
    for name, value in fields.items():
        data[name] = [str(value)]
    return client.post(url, data)


def changelist_ids(response) -> set[int]:
    return {obj.pk for obj in response.context["cl"].queryset}


# --- changelists ---------------------------------------------------------------------------


def test_payment_record_filters_each_narrow_the_list(mirror, operator_client):
    record = a_record(S.WAITING, subscription__is_fixed_price=False)
    sub = record.subscription
    day = f"{record.val_date.astimezone(ISTANBUL):%d.%m.%Y}"
    cases = {
        "status__exact=4": SubscriptionInvoice.objects.filter(status=4),
        "subscription__is_fixed_price__exact=0": SubscriptionInvoice.objects.filter(
            subscription__is_fixed_price=False
        ),
        "subscription__is_fixed_price__exact=1": SubscriptionInvoice.objects.filter(
            subscription__is_fixed_price=True
        ),
        f"val_date__range_from={day}&val_date__range_to={day}": SubscriptionInvoice.objects.filter(
            val_date__date=record.val_date.astimezone(ISTANBUL).date()
        ),
        f"subscription_ref={sub.reference_no}": sub.invoices.all(),
        f"q={record.invoice_no}": SubscriptionInvoice.objects.filter(pk=record.pk),
        f"q={record.invoice_id}": SubscriptionInvoice.objects.filter(pk=record.pk),
        f"q={sub.name_surname.split()[-1]}": SubscriptionInvoice.objects.filter(
            subscription__name_surname__icontains=sub.name_surname.split()[-1]
        ),
        f"status__exact=0&subscription_ref={sub.reference_no}": sub.invoices.filter(status=0),
    }
    for query, expected in cases.items():
        response = operator_client.get(f"{INVOICES}?{query}")
        assert response.status_code == 200, query
        assert changelist_ids(response) == set(expected.values_list("pk", flat=True)), query
        assert 0 < len(changelist_ids(response)) < SubscriptionInvoice.objects.count(), query


def test_val_date_range_is_inclusive_of_both_days(mirror, operator_client):
    response = operator_client.get(
        f"{INVOICES}?val_date__range_from=01.01.2000&val_date__range_to=31.12.2099"
    )
    assert response.context["cl"].result_count == SubscriptionInvoice.objects.count()


def test_a_date_that_is_not_dd_mm_yyyy_is_reported_not_a_crash(mirror, operator_client):
    response = operator_client.get(f"{INVOICES}?val_date__range_from=yesterday")
    # Said on the page (not Django's silent redirect to the whole list, "?e=1").
    assert response.status_code == 200
    assert [str(m) for m in response.context["messages"]] == [
        "“yesterday” is not a date (charge date): enter dates as dd.mm.yyyy. "
        "The list is not filtered by it."
    ]


def test_subscription_filters_and_search(mirror, operator_client):
    sub = a_subscription(fixed=False)
    cases = {
        "is_fixed_price__exact=0": Subscription.objects.filter(is_fixed_price=False),
        "is_fixed_price__exact=1": Subscription.objects.filter(is_fixed_price=True),
        "interval__exact=2": Subscription.objects.filter(interval=2),
        "status__exact=5": Subscription.objects.filter(status=5),
        f"q={sub.reference_no}": Subscription.objects.filter(pk=sub.pk),
        f"q={sub.subscription_id}": Subscription.objects.filter(pk=sub.pk),
        f"q={sub.end_user_email}": Subscription.objects.filter(pk=sub.pk),
    }
    for query, expected in cases.items():
        response = operator_client.get(f"{SUBSCRIPTIONS}?{query}")
        assert response.status_code == 200, query
        assert changelist_ids(response) == set(expected.values_list("pk", flat=True)), query
        assert changelist_ids(response), query


def test_subscription_page_lists_its_records_and_offers_create_for_variable_price(
    mirror, operator_client
):
    variable, fixed = a_subscription(fixed=False), a_subscription(fixed=True)

    page = operator_client.get(
        reverse("admin:subscriptions_subscription_change", args=[variable.pk])
    )
    other = operator_client.get(reverse("admin:subscriptions_subscription_change", args=[fixed.pk]))

    assert page.status_code == other.status_code == 200
    assert b'id="create-invoice-link"' in page.content
    assert b'id="create-invoice-link"' not in other.content
    assert variable.invoices.first().invoice_no.encode() in page.content


def test_the_create_form_of_a_fixed_price_subscription_is_refused_before_it_opens(
    mirror, operator_client
):
    fixed = a_subscription(fixed=True)
    url = reverse("admin:subscriptions_subscription_create_invoice", args=[fixed.pk])

    response = operator_client.get(url, follow=True)

    assert response.redirect_chain == [
        (reverse("admin:subscriptions_subscription_change", args=[fixed.pk]), 302)
    ]
    assert [str(m) for m in response.context["messages"]] == [
        "Payment records can only be created for variable-price subscriptions."
    ]
    assert b'name="amount"' not in response.content


def _make_rows(count: int, start: int) -> None:
    for n in range(start, start + count):
        sub = Subscription.objects.create(
            subscription_id=f"sub-{n}", reference_no=f"9{n:07d}", name_surname=f"Ad Soyad {n}"
        )
        SubscriptionInvoice.objects.create(
            subscription=sub,
            invoice_id=str(1000 + n),
            invoice_no=f"114{n:05d}",
            val_date=datetime(2025, 1, 1, 7, tzinfo=UTC),
            amount=Decimal("100.50"),
            status=n % 6 if n % 6 != 1 else 0,
        )


@pytest.mark.parametrize(
    ("model", "url"), [(SubscriptionInvoice, INVOICES), (Subscription, SUBSCRIPTIONS)]
)
def test_changelist_query_count_does_not_grow_with_rows(
    db, operator_client, monkeypatch, model, url
):
    monkeypatch.setattr(admin.site._registry[model], "list_per_page", 500)
    _make_rows(20, 0)
    operator_client.get(url)  # warm caches (content types, permissions)
    with CaptureQueriesContext(connection) as small:
        assert operator_client.get(url).context["cl"].result_count == 20
    _make_rows(180, 20)
    with CaptureQueriesContext(connection) as large:
        response = operator_client.get(url)
    assert response.context["cl"].result_count == 200
    assert len(response.context["cl"].result_list) == 200
    assert len(large) == len(small), [q["sql"] for q in large.captured_queries]


# --- "Change status…" ----------------------------------------------------------------------


def action_post(ids, action="change_status", **extra):
    return {
        "action": action,
        "index": "0",
        "select_across": "0",
        "_selected_action": [str(i) for i in ids],
        **extra,
    }


def sample_ids(n: int = 40) -> list[int]:
    return list(SubscriptionInvoice.objects.order_by("pk").values_list("pk", flat=True)[:n])


def test_change_status_asks_first_then_previews_then_needs_a_reason(
    mirror, operator_client, django_capture_on_commit_callbacks
):
    ids = sample_ids()
    records = SubscriptionInvoice.objects.filter(pk__in=ids)

    first = operator_client.post(INVOICES, action_post(ids))

    assert first.status_code == 200
    assert "admin/subscriptions/confirm_status.html" in [t.name for t in first.templates]
    assert first.context["selection_count"] == len(ids)
    assert first.context["preview"] is None
    assert not Job.objects.exists() and mirror.ledger("paynet") == []

    preview = post_back(
        operator_client, INVOICES, first, "status-confirm", step="preview", status=5
    )

    counts = {"change": 0, "same": 0, "blocked": 0}
    total = Decimal("0")
    for record in records:
        kind = INVOICE_STATUS.verdict(record, StatusRequest(S.CANCEL)).kind
        counts[kind] += 1
        total += record.amount if kind == VerdictKind.CHANGE else 0
    html = preview.content.decode()
    for kind, n in counts.items():
        assert f'id="count-{kind}">{n}<' in html
    assert f'id="change-total">₺\xa0{total:,.2f}<' in html
    assert "can no longer change" in html  # the blocked reason is shown
    assert not Job.objects.exists()

    no_reason = post_back(operator_client, INVOICES, preview, "status-confirm", step="confirm")

    assert no_reason.status_code == 200
    assert "Give a reason for the change." in no_reason.content.decode()
    assert not Job.objects.exists() and mirror.ledger("paynet") == []

    with django_capture_on_commit_callbacks(execute=True):
        done = post_back(
            operator_client, INVOICES, no_reason, "status-confirm", step="confirm", reason="iade"
        )

    job = Job.objects.get()
    assert done.status_code == 302 and done.url == job_url(job)
    job.refresh_from_db()
    assert job.state == Job.State.SUCCEEDED
    assert job.total == counts["change"] and job.reason == "iade"
    assert len(mirror.ledger("paynet", "invoice_status_update")) == counts["change"]


def test_preview_of_a_selection_where_nothing_can_change_offers_no_confirm(mirror, operator_client):
    charged = SubscriptionInvoice.objects.filter(status=S.DONE_SUCCEED).order_by("pk")[:5]
    first = operator_client.post(INVOICES, action_post([r.pk for r in charged]))

    preview = post_back(
        operator_client, INVOICES, first, "status-confirm", step="preview", status=5
    )

    html = preview.content.decode()
    assert 'id="count-blocked">5<' in html and 'id="count-change">0<' in html
    assert 'id="confirm-button"' not in html
    assert "Nothing would change" in html


def test_select_all_covers_the_whole_filtered_result_not_just_the_page(
    mirror, operator_client, django_capture_on_commit_callbacks, settings
):
    settings.APPROVAL_MIN_ITEMS = 10_000  # this test is about the selection, not the approval
    settings.APPROVAL_MIN_AMOUNT = 10**9
    waiting = set(SubscriptionInvoice.objects.filter(status=S.WAITING).values_list("pk", flat=True))
    url = f"{INVOICES}?status__exact=0"
    page = operator_client.get(url)
    on_page = [obj.pk for obj in page.context["cl"].result_list]
    assert len(on_page) < len(waiting), "needs more waiting records than one page holds"

    # The browser posts the page's boxes plus select_across=1 when "Select all N" is clicked.
    first = operator_client.post(url, action_post(on_page, select_across="1"))
    assert first.context["selection_count"] == len(waiting)
    preview = post_back(operator_client, url, first, "status-confirm", step="preview", status=5)
    assert preview.context["preview"].will_change == len(waiting)
    with django_capture_on_commit_callbacks(execute=True):
        done = post_back(
            operator_client, url, preview, "status-confirm", step="confirm", reason="all"
        )

    assert done.status_code == 302
    job = Job.objects.get()
    assert {int(pk) for pk in job.items.values_list("target_id", flat=True)} == waiting
    assert job.total > len(on_page)
    assert not SubscriptionInvoice.objects.filter(status=S.WAITING).exists()


def test_viewer_does_not_get_the_push_actions(mirror, viewer_client):
    page = viewer_client.get(INVOICES)
    actions = [name for name, _ in page.context["action_form"].fields["action"].choices]
    assert "change_status" not in actions
    assert "export_csv" in actions
    subs = viewer_client.get(SUBSCRIPTIONS)
    sub_actions = [name for name, _ in subs.context["action_form"].fields["action"].choices]
    assert "change_all_invoices_status" not in sub_actions

    forced = viewer_client.post(
        INVOICES, action_post(sample_ids(5), step="confirm", status=5, reason="x")
    )

    assert forced.status_code == 302
    assert not Job.objects.exists()
    assert mirror.ledger("paynet") == []


def test_viewer_gets_403_on_the_create_invoice_page(mirror, viewer_client):
    sub = a_subscription(fixed=False)
    url = reverse("admin:subscriptions_subscription_create_invoice", args=[sub.pk])
    assert viewer_client.get(url).status_code == 403
    assert (
        viewer_client.post(
            url, {"step": "confirm", "val_date_0": "01.02.2030", "amount": "1", "reason": "x"}
        ).status_code
        == 403
    )
    assert mirror.ledger("paynet") == []


# --- "Create payment record" ---------------------------------------------------------------


def create_url(sub: Subscription) -> str:
    return reverse("admin:subscriptions_subscription_create_invoice", args=[sub.pk])


def create_form(client, sub: Subscription, **fields) -> dict[str, str]:
    """The form as first shown (with its one-time key), filled in like a clerk would."""
    page = client.get(create_url(sub))
    key = re.search(r'name="idempotency_key" value="([0-9a-f]+)"', page.content.decode())
    data = {
        "val_date_0": "15.01.2030",
        "val_date_1": "10:00",
        "amount": "288.98",
        "agent_amount": "",
        "company_amount": "",
        "invoice_no": "",
        "reason": "Ocak faturası",
        "idempotency_key": key.group(1),
    }
    return {**data, **fields}


def preview_of(client, sub: Subscription, **fields):
    return client.post(create_url(sub), {**create_form(client, sub, **fields), "step": "preview"})


def test_create_form_has_the_admin_date_pickers_and_a_one_time_key(mirror, operator_client):
    sub = a_subscription(fixed=False)

    first = operator_client.get(create_url(sub)).content.decode()
    second = operator_client.get(create_url(sub)).content.decode()

    assert 'class="vDateField"' in first and 'class="vTimeField"' in first
    assert "admin/js/admin/DateTimeShortcuts.js" in first and "admin/js/calendar.js" in first
    assert reverse("admin:jsi18n") in first and "admin/js/core.js" in first
    keys = [
        re.search(r'name="idempotency_key" value="([0-9a-f]{32})"', html).group(1)
        for html in (first, second)
    ]
    assert keys[0] != keys[1]  # a fresh key each time the form is first shown
    assert 'name="reason"' in first and 'name="allow_duplicate"' not in first


def test_create_preview_shows_what_will_be_sent_and_sends_nothing(mirror, operator_client):
    sub = a_subscription(fixed=False)

    preview = preview_of(
        operator_client, sub, amount="1288.98", agent_amount="29.26", company_amount="1259.72"
    )

    html = preview.content.decode()
    assert preview.status_code == 200 and preview.context["preview"] is not None
    assert 'id="preview-amount" class="money">₺\xa01,288.98<' in html
    assert 'id="preview-agent-amount" class="money">₺\xa029.26<' in html
    assert 'id="preview-company-amount" class="money">₺\xa01,259.72<' in html
    assert 'id="preview-val-date">15.01.2030 10:00<' in html
    assert "The charge date is not in the past" in html
    assert "The agent and company shares add up to the amount" in html
    assert 'id="create-invoice-confirm"' in html and 'id="duplicate-warning"' not in html
    assert not UpstreamCall.objects.exists() and mirror.ledger("paynet") == []


def test_create_confirm_sends_once_and_goes_to_the_new_record(mirror, operator_client):
    sub = a_subscription(fixed=False)
    before = sub.invoices.count()
    preview = preview_of(operator_client, sub, agent_amount="29.26", company_amount="259.72")

    done = post_back(
        operator_client, create_url(sub), preview, "create-invoice-confirm-form", step="confirm"
    )

    (write,) = mirror.ledger("paynet", "create_invoice")
    created = sub.invoices.get(invoice_no=write["invoice_no"])
    assert done.status_code == 302
    assert done.url == reverse("admin:subscriptions_subscriptioninvoice_change", args=[created.pk])
    assert messages_of(done) == [f"Payment record {created.invoice_no} created at Paynet."]
    assert write["request"]["val_date"] == "15.01.2030 10:00:00"
    assert (write["request"]["amount"], write["request"]["agent_amount"]) == (28898, 2926)
    assert created.invoice_id == str(write["invoice_id"])
    assert sub.invoices.count() == before + 1

    # The same confirmation posted again (a double click) carries the same one-time token: it
    # is answered as the first was, and nothing is sent again.
    again = post_back(
        operator_client, create_url(sub), preview, "create-invoice-confirm-form", step="confirm"
    )

    assert again.status_code == 302 and again.url == done.url
    assert len(mirror.ledger("paynet", "create_invoice")) == 1
    assert sub.invoices.count() == before + 1


@pytest.mark.parametrize(
    ("typed", "shown"), [("2.500,00", "₺\xa02.500,00"), ("2500.00", "₺\xa02.500,00")]
)
def test_create_reads_turkish_and_plain_amounts(mirror, operator_client, settings, typed, shown):
    operator_client.cookies[settings.LANGUAGE_COOKIE_NAME] = "tr"
    sub = a_subscription(fixed=False)

    preview = preview_of(operator_client, sub, amount=typed, agent_amount="34,56")

    assert preview.context["preview"].amount == Decimal("2500.00")
    assert f'id="preview-amount" class="money">{shown}<' in preview.content.decode()
    done = post_back(
        operator_client, create_url(sub), preview, "create-invoice-confirm-form", step="confirm"
    )
    assert done.status_code == 302
    (write,) = mirror.ledger("paynet", "create_invoice")
    assert (write["request"]["amount"], write["request"]["agent_amount"]) == (250000, 3456)
    created = sub.invoices.get(invoice_no=write["invoice_no"])
    assert created.company_amount == Decimal("2465.44")


def test_create_refused_by_paynet_says_so_and_keeps_the_form(mirror, operator_client):
    sub = a_subscription(fixed=False)
    preview = preview_of(operator_client, sub, amount="10", invoice_no="95550001")
    mirror.faults({"kind": "reject", "operation": "create_invoice", "message": "Bayi bloke"})
    before = SubscriptionInvoice.objects.count()

    response = post_back(
        operator_client, create_url(sub), preview, "create-invoice-confirm-form", step="confirm"
    )

    assert response.status_code == 200
    assert messages_of(response) == ["Paynet refused: Bayi bloke (code 1)."]
    html = response.content.decode()
    assert 'id="create-invoice-form"' in html and 'value="95550001"' in html
    key = preview.context["form"].cleaned_data["idempotency_key"]
    assert f'name="idempotency_key" value="{key}"' in html  # the same operation when sent again
    assert SubscriptionInvoice.objects.count() == before


def test_create_preview_puts_rule_errors_on_their_fields(mirror, operator_client):
    sub = a_subscription(fixed=False)

    response = preview_of(
        operator_client,
        sub,
        amount="100",
        agent_amount="30",
        company_amount="60",
        invoice_no=sub.invoices.first().invoice_no,
        val_date_0="01.01.2020",
    )

    form = response.context["form"]
    assert response.context["preview"] is None
    assert "already has a payment record" in form.errors["invoice_no"][0]
    assert "in the past" in form.errors["val_date"][0]
    assert "must add up" in form.non_field_errors()[0]
    assert 'id="create-invoice-confirm"' not in response.content.decode()
    assert mirror.ledger("paynet") == []


def test_a_posted_create_on_a_fixed_price_subscription_is_refused_too(mirror, operator_client):
    sub = a_subscription(fixed=True)
    data = {"val_date_0": "15.01.2030", "val_date_1": "10:00", "amount": "288.98", "reason": "x"}
    for step in ("preview", "confirm"):
        response = operator_client.post(create_url(sub), {**data, "step": step})
        assert response.status_code == 302
        assert response.url == reverse("admin:subscriptions_subscription_change", args=[sub.pk])
    assert mirror.ledger("paynet") == []


def test_create_needs_a_reason(mirror, operator_client):
    response = preview_of(operator_client, a_subscription(fixed=False), reason="  ")

    assert response.context["form"].errors["reason"]
    assert response.context["preview"] is None


def test_create_of_a_same_day_same_amount_record_needs_create_anyway(mirror, operator_client):
    sub = a_subscription(fixed=False)
    existing = sub.invoices.order_by("pk").first()
    SubscriptionInvoice.objects.filter(pk=existing.pk).update(
        val_date=datetime(2030, 1, 15, 5, tzinfo=UTC)  # 08:00 in Istanbul, the same day
    )
    preview = preview_of(operator_client, sub, amount=str(existing.amount))

    html = preview.content.decode()
    assert 'id="duplicate-warning"' in html and existing.invoice_no in html
    assert 'name="allow_duplicate"' in html

    refused = post_back(
        operator_client, create_url(sub), preview, "create-invoice-confirm-form", step="confirm"
    )

    assert refused.status_code == 200
    assert refused.context["preview"] is not None  # still the confirmation page
    assert refused.context["form"].errors["allow_duplicate"]
    assert mirror.ledger("paynet") == []

    done = post_back(
        operator_client,
        create_url(sub),
        refused,
        "create-invoice-confirm-form",
        step="confirm",
        allow_duplicate="on",
    )

    assert done.status_code == 302
    assert len(mirror.ledger("paynet", "create_invoice")) == 1


def test_create_in_doubt_is_a_warning_with_the_job_not_a_failure(
    mirror, operator, operator_client, monkeypatch
):
    sub = a_subscription(fixed=False)
    job = Job.objects.create(kind="paynet.create_invoice", title="create", created_by=operator)

    def in_doubt(**kwargs):
        raise PushInDoubt("no answer", job=job)

    monkeypatch.setattr(services, "subscription_invoice_create", in_doubt)
    preview = preview_of(operator_client, sub)

    response = post_back(
        operator_client, create_url(sub), preview, "create-invoice-confirm-form", step="confirm"
    )

    assert response.status_code == 302
    (message,) = list(get_messages(response.wsgi_request))
    assert message.level_tag == "warning"
    assert "no answer" in str(message) and "job #" in str(message)
    assert f'href="{job_url(job)}"' in str(message)
    assert "try again" not in str(message)


def test_create_conflict_is_an_error_message(mirror, operator_client, monkeypatch):
    sub = a_subscription(fixed=False)

    def conflict(**kwargs):
        raise PushConflict("Another push of this record is in flight.")

    monkeypatch.setattr(services, "subscription_invoice_create", conflict)
    preview = preview_of(operator_client, sub)

    response = post_back(
        operator_client, create_url(sub), preview, "create-invoice-confirm-form", step="confirm"
    )

    assert response.status_code == 200
    assert messages_of(response) == ["Another push of this record is in flight."]


# --- "Change status of all payment records…" ------------------------------------------------


def test_change_all_invoices_status_previews_verdicts_and_totals_then_queues(
    mirror, operator_client, django_capture_on_commit_callbacks
):
    sub = a_subscription(fixed=True)
    before = dict(sub.invoices.values_list("invoice_no", "status"))
    first = operator_client.post(
        SUBSCRIPTIONS, action_post([sub.pk], action="change_all_invoices_status")
    )
    assert first.status_code == 200
    assert sub.reference_no in first.content.decode()
    assert 'id="confirm-button"' not in first.content.decode()
    assert not Job.objects.exists()

    preview = post_back(
        operator_client, SUBSCRIPTIONS, first, "status-all-confirm", step="preview", status=4
    )

    html = preview.content.decode()
    counts = {"change": 0, "same": 0, "blocked": 0}
    total = Decimal("0")
    for record in sub.invoices.all():
        kind = INVOICE_STATUS.verdict(record, StatusRequest(S.DONE_UNSUCCEED)).kind
        counts[kind] += 1
        total += record.amount if kind == VerdictKind.CHANGE else 0
        row = html.split(f"<td>{record.invoice_no}</td>")[1].split("</tr>")[0]
        assert {"change": "Will change", "same": "Already in that status", "blocked": "Blocked"}[
            kind
        ] in row
    assert counts["change"] and counts["blocked"], "the fixture should mix verdicts"
    for kind, n in counts.items():
        assert f'id="count-{kind}">{n}<' in html
    assert f'id="change-total">₺\xa0{total:,.2f}<' in html
    assert "can no longer change" in html
    assert not Job.objects.exists() and mirror.ledger("paynet") == []

    missing = post_back(
        operator_client, SUBSCRIPTIONS, preview, "status-all-confirm", step="confirm"
    )
    assert "Give a reason for the change." in missing.content.decode()
    assert not Job.objects.exists()

    with django_capture_on_commit_callbacks(execute=True):
        done = post_back(
            operator_client,
            SUBSCRIPTIONS,
            missing,
            "status-all-confirm",
            step="confirm",
            reason="kapanış",
        )

    job = Job.objects.get()
    assert done.status_code == 302 and done.url == job_url(job)
    job.refresh_from_db()
    assert job.state == Job.State.SUCCEEDED
    expected = {no for no, st in before.items() if INVOICE_STATUS.judge(st, 4).kind == "change"}
    item = job.items.get()
    assert {c["invoice_no"] for c in item.result["changed"]} == expected
    page = operator_client.get(job_url(job))
    for no in expected:
        label = S(before[no]).label
        assert f"{no}: {label} → Not charged" in page.content.decode()


# --- "Change status…" on a payment record's page ---------------------------------------------


def record_url(record: SubscriptionInvoice) -> str:
    return reverse("admin:subscriptions_subscriptioninvoice_change", args=[record.pk])


def record_status_url(record: SubscriptionInvoice) -> str:
    return reverse("admin:subscriptions_subscriptioninvoice_change_status", args=[record.pk])


def record_status_preview(client, record: SubscriptionInvoice, status: int, reason: str = "iade"):
    page = client.get(record_status_url(record))
    key = re.search(r'name="idempotency_key" value="([0-9a-f]{32})"', page.content.decode())
    return client.post(
        record_status_url(record),
        {"step": "preview", "status": status, "reason": reason, "idempotency_key": key.group(1)},
    )


def test_record_page_offers_change_status_to_operators_only(mirror, operator_client, viewer):
    record = a_record(S.WAITING)

    as_operator = operator_client.get(record_url(record)).content.decode()
    operator_client.force_login(viewer)  # the same browser, now a viewer
    as_viewer = operator_client.get(record_url(record))

    assert f'href="{record_status_url(record)}" id="change-status-link"' in as_operator
    assert as_viewer.status_code == 200
    assert 'id="change-status-link"' not in as_viewer.content.decode()
    assert operator_client.get(record_status_url(record)).status_code == 403
    assert mirror.ledger("paynet") == []


def test_record_status_preview_shows_verdict_and_amount_and_sends_nothing(mirror, operator_client):
    record = a_record(S.WAITING)

    preview = record_status_preview(operator_client, record, S.CANCEL)

    html = preview.content.decode()
    assert preview.status_code == 200
    assert 'id="record-verdict" class="verdict-change">Will change' in html
    assert f'id="change-total" class="money">₺\xa0{record.amount:,.2f}<' in html
    assert 'id="confirm-button"' in html
    assert not UpstreamCall.objects.exists() and mirror.ledger("paynet") == []


def test_record_status_confirm_pushes_once_and_returns_to_the_record(mirror, operator_client):
    record = a_record(S.WAITING)
    preview = record_status_preview(operator_client, record, S.CANCEL)

    done = post_back(
        operator_client, record_status_url(record), preview, "record-status-form", step="confirm"
    )

    assert done.status_code == 302 and done.url == record_url(record)
    shown = f"Payment record {record.invoice_no} is now “Cancelled” at Paynet."
    assert messages_of(done) == [shown]
    (write,) = mirror.ledger("paynet", "invoice_status_update")
    assert write["invoice_no"] == record.invoice_no
    record.refresh_from_db()
    assert record.status == S.CANCEL
    assert UpstreamCall.objects.filter(operation="invoice_status_update").count() == 1


def test_record_status_blocked_transition_shows_an_error_and_sends_nothing(mirror, operator_client):
    record = a_record(S.DONE_SUCCEED)

    preview = record_status_preview(operator_client, record, S.CANCEL)

    html = preview.content.decode()
    assert 'class="verdict-blocked"' in html and "can no longer change" in html
    assert 'id="confirm-button"' not in html

    # Posted anyway (or the record changed after the preview): the service refuses.
    forced = post_back(
        operator_client, record_status_url(record), preview, "record-status-form", step="confirm"
    )

    assert forced.status_code == 200
    (message,) = list(get_messages(forced.wsgi_request))
    assert message.level_tag == "error" and "can no longer change" in str(message)
    assert mirror.ledger("paynet") == [] and not UpstreamCall.objects.exists()


def test_record_status_needs_a_reason(mirror, operator_client):
    record = a_record(S.WAITING)

    response = record_status_preview(operator_client, record, S.CANCEL, reason="")

    assert response.context["form"].errors["reason"]
    assert response.context["preview"] is None


def test_record_status_refused_by_paynet_is_an_error_message(mirror, operator_client):
    record = a_record(S.WAITING)
    preview = record_status_preview(operator_client, record, S.CANCEL)
    mirror.faults({"kind": "reject", "operation": "invoice_status_update", "message": "Kilitli"})

    response = post_back(
        operator_client, record_status_url(record), preview, "record-status-form", step="confirm"
    )

    assert response.status_code == 200
    # Read back at once: the message says what Paynet holds (here still what the mirror had).
    assert messages_of(response) == [
        f"Paynet refused: Kilitli (code 1). Paynet holds payment record {record.invoice_no} "
        "in “Waiting”."
    ]
    record.refresh_from_db()
    assert record.status == S.WAITING


# --- while Paynet's circuit breaker is open ------------------------------------------------


def test_open_breaker_is_an_error_message_on_the_record_page_and_nothing_is_sent(
    mirror, operator_client
):
    record = a_record(S.WAITING)
    preview = record_status_preview(operator_client, record, S.CANCEL)
    breaker_trip("paynet")

    response = post_back(
        operator_client, record_status_url(record), preview, "record-status-form", step="confirm"
    )

    assert response.status_code == 200
    (message,) = list(get_messages(response.wsgi_request))
    assert message.level_tag == "error" and "Paynet is unavailable" in str(message)
    assert mirror.ledger("paynet") == [] and not UpstreamCall.objects.exists()
    record.refresh_from_db()
    assert record.status == S.WAITING


def test_open_breaker_is_an_error_message_on_the_bulk_confirmation_and_no_job_starts(
    mirror, operator_client
):
    ids = sample_ids(10)
    first = operator_client.post(INVOICES, action_post(ids))
    preview = post_back(
        operator_client, INVOICES, first, "status-confirm", step="preview", status=5
    )
    breaker_trip("paynet")

    response = post_back(
        operator_client, INVOICES, preview, "status-confirm", step="confirm", reason="iade"
    )

    assert response.status_code == 200
    assert "Paynet is unavailable" in " ".join(messages_of(response))
    assert not Job.objects.exists() and mirror.ledger("paynet") == []


# --- the job page --------------------------------------------------------------------------


def partly_failed_job(sandbox, operator, capture) -> tuple[Job, SubscriptionInvoice]:
    ids = SubscriptionInvoice.objects.filter(status=S.WAITING).order_by("pk")[:6]
    records = SubscriptionInvoice.objects.filter(pk__in=[r.pk for r in ids])
    target = records.order_by("pk").first()
    sandbox.faults(
        {"kind": "reject", "match": {"invoice_no": target.invoice_no}, "message": "Kayıt kilitli"}
    )
    with capture(execute=True):
        job = subscription_invoice_set_status_bulk(
            records=records, status=S.CANCEL, actor=operator, reason="x"
        )
    job.refresh_from_db()
    return job, target


def test_job_page_shows_counts_failures_and_retries_them(
    mirror, operator, operator_client, django_capture_on_commit_callbacks
):
    job, target = partly_failed_job(mirror, operator, django_capture_on_commit_callbacks)

    page = operator_client.get(job_url(job))

    html = page.content.decode()
    assert page.status_code == 200
    assert 'id="job-total">6<' in html
    assert 'id="job-succeeded" class="ok">5<' in html
    assert 'id="job-failed" class="err">1<' in html
    assert 'data-state="partially_failed"' in html
    failures = html.split('id="job-failures"')[1].split("</table>")[0]
    assert target.invoice_no in failures and "Kayıt kilitli" in failures
    assert 'id="job-retry"' in html and "Retry 1 failed item" in html
    assert 'id="job-cancel"' not in html  # finished jobs cannot be cancelled

    mirror.faults()
    with django_capture_on_commit_callbacks(execute=True):
        retried = operator_client.post(
            reverse("admin:upstream_job_retry", args=[job.pk]), {"confirm": "yes"}
        )

    assert retried.status_code == 302 and retried.url == job_url(job)
    job.refresh_from_db()
    assert (job.state, job.succeeded, job.failed) == (Job.State.SUCCEEDED, 6, 0)
    target.refresh_from_db()
    assert target.status == S.CANCEL


def test_viewer_sees_the_job_but_not_its_buttons(
    mirror, operator, viewer_client, django_capture_on_commit_callbacks
):
    job, _ = partly_failed_job(mirror, operator, django_capture_on_commit_callbacks)

    html = viewer_client.get(job_url(job)).content.decode()
    refused = viewer_client.post(reverse("admin:upstream_job_retry", args=[job.pk]))

    assert "Kayıt kilitli" in html and 'id="job-retry"' not in html
    assert refused.status_code == 302
    job.refresh_from_db()
    assert job.state == Job.State.PARTIALLY_FAILED


def test_queued_job_can_be_cancelled_from_its_page(mirror, operator, operator_client):
    # Not run: on_commit callbacks are not executed, so the job stays queued.
    job = subscription_invoice_set_status_bulk(
        records=SubscriptionInvoice.objects.filter(status=S.WAITING),
        status=S.CANCEL,
        actor=operator,
        reason="x",
    )
    html = operator_client.get(job_url(job)).content.decode()
    assert 'id="job-cancel"' in html

    response = operator_client.post(
        reverse("admin:upstream_job_cancel", args=[job.pk]), {"confirm": "yes"}
    )

    assert response.status_code == 302
    job.refresh_from_db()
    assert job.state == Job.State.CANCELLED
    assert job.cancelled == job.total
    assert not job.items.exclude(outcome=JobItem.Outcome.CANCELLED).exists()
    assert mirror.ledger("paynet") == []


def test_progress_json_reports_the_counts(
    mirror, operator, operator_client, django_capture_on_commit_callbacks
):
    job, _ = partly_failed_job(mirror, operator, django_capture_on_commit_callbacks)

    data = operator_client.get(reverse("admin:upstream_job_progress", args=[job.pk])).json()

    assert data == {
        "id": job.pk,
        "state": "partially_failed",
        "state_label": "Partially failed",
        "total": 6,
        "done": 6,
        "succeeded": 5,
        "failed": 1,
        "cancelled": 0,
        "skipped": 0,
        "processed": 6,
        "prepared": 6,
        "preparing": False,
        "percent": 100,
        "finished": True,
        "paused": "",
    }


# --- CSV export ----------------------------------------------------------------------------


def test_csv_export_is_turkish_excel_friendly(db, operator_client, settings):
    sub = Subscription.objects.create(
        subscription_id="s-1", reference_no="90000600", name_surname="Şule Öztürk"
    )
    record = SubscriptionInvoice.objects.create(
        subscription=sub,
        invoice_id="120",
        invoice_no="11400556",
        val_date=datetime(2025, 3, 10, 7, 30, tzinfo=UTC),  # 10:30 in Istanbul
        amount=Decimal("1234.56"),
        agent_amount=Decimal("34.56"),
        company_amount=Decimal("1200.00"),
        status=S.WAITING,
    )

    operator_client.cookies[settings.LANGUAGE_COOKIE_NAME] = "tr"
    response = operator_client.post(INVOICES, action_post([record.pk], action="export_csv"))

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="')
    raw = b"".join(response.streaming_content).decode("utf-8")
    assert raw.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(raw.lstrip("\ufeff")), delimiter=";"))
    assert len(rows) == 2
    row = dict(zip(rows[0], rows[1], strict=True))
    assert rows[1][:2] == ["11400556", "120"]
    assert "90000600" in rows[1] and "Şule Öztürk" in rows[1]
    assert "1.234,56" in rows[1] and "34,56" in rows[1] and "1.200,00" in rows[1]
    assert any(re.fullmatch(r"10\.03\.2025( 10:30)?", v) for v in row.values())
    with translation.override("tr"):
        assert row[str(_("invoice no"))] == "11400556"
        assert str(S.WAITING.label) in rows[1]
        assert str(S.WAITING.label) != "Waiting"  # the Turkish label, not the English one


def test_csv_header_names_each_column_including_related_ones(db, operator_client):
    sub = Subscription.objects.create(subscription_id="s-1", reference_no="9", name_surname="A")
    record = SubscriptionInvoice.objects.create(
        subscription=sub, invoice_id="1", invoice_no="2", amount=Decimal("1"), status=0
    )

    response = operator_client.post(INVOICES, action_post([record.pk], action="export_csv"))

    raw = b"".join(response.streaming_content).decode("utf-8")
    header = next(csv.reader(io.StringIO(raw.lstrip("\ufeff")), delimiter=";"))
    assert len(header) == len(set(header)), header
    assert "reference no" in header and "name surname" in header


def test_csv_export_of_a_filtered_select_all(mirror, operator_client):
    url = f"{INVOICES}?status__exact=4"
    page = operator_client.get(url)
    on_page = [obj.pk for obj in page.context["cl"].result_list]

    response = operator_client.post(
        url, action_post(on_page[:1], action="export_csv", select_across="1")
    )

    raw = b"".join(response.streaming_content).decode("utf-8")
    rows = list(csv.reader(io.StringIO(raw.lstrip("\ufeff")), delimiter=";"))
    assert len(rows) - 1 == SubscriptionInvoice.objects.filter(status=4).count()


# --- the call log --------------------------------------------------------------------------


def a_recorded_call(sandbox, operator) -> UpstreamCall:
    from subscriptions.services import subscription_invoice_set_status

    subscription_invoice_set_status(
        record=a_record(S.WAITING), status=S.CANCEL, actor=operator, reason="test"
    )
    return UpstreamCall.objects.get()


def test_call_log_is_read_only_even_for_a_superuser(mirror, operator, admin_client):
    call = a_recorded_call(mirror, operator)
    change = reverse("admin:upstream_upstreamcall_change", args=[call.pk])

    assert admin_client.get(reverse("admin:upstream_upstreamcall_add")).status_code == 403
    assert admin_client.post(change, {"operation": "x"}).status_code == 403
    delete = reverse("admin:upstream_upstreamcall_delete", args=[call.pk])
    assert admin_client.get(delete).status_code == 403
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    listing = admin_client.get(reverse("admin:upstream_upstreamcall_changelist"))
    actions = [name for name, _ in listing.context["action_form"].fields["action"].choices]
    assert "delete_selected" not in actions
    call.refresh_from_db()
    assert call.operation == "invoice_status_update"


def test_call_detail_shows_pretty_json_with_secrets_hidden(
    mirror, operator, admin_client, settings
):
    call = a_recorded_call(mirror, operator)
    # A row written by older code that still held secrets must not show them either.
    UpstreamCall.objects.filter(pk=call.pk).update(
        request={**call.request, "ApiKey": "leaked-key"},
        request_headers={"Authorization": f"Basic {settings.PAYNET_SECRET_KEY}"},
    )

    page = admin_client.get(reverse("admin:upstream_upstreamcall_change", args=[call.pk]))

    html = page.content.decode()
    assert page.status_code == 200
    assert settings.PAYNET_SECRET_KEY not in html and "leaked-key" not in html
    assert "&quot;Authorization&quot;: &quot;***&quot;" in html
    assert "&quot;ApiKey&quot;: &quot;***&quot;" in html
    assert '<pre class="json">{\n  &quot;' in html  # indented, one key per line
    assert "Başarılı Islem" in html  # the response, as Paynet sent it
    assert 'name="_save"' not in html


# --- refresh from Paynet -------------------------------------------------------------------


def test_refresh_runs_as_a_job_that_lists_per_record_what_changed(
    mirror, operator_client, django_capture_on_commit_callbacks
):
    record = a_record(S.WAITING)
    mirror.command("paynet", command="set_status", invoice_no=record.invoice_no, status=S.CANCEL)

    with django_capture_on_commit_callbacks(execute=True):
        response = operator_client.post(
            SUBSCRIPTIONS, action_post([record.subscription_id], action="refresh_from_paynet")
        )

    record.refresh_from_db()
    assert record.status == S.CANCEL
    job = Job.objects.get(kind="paynet.refresh")
    assert response.status_code == 302
    assert response.url == reverse("admin:upstream_job_change", args=[job.pk])
    assert (job.state, job.succeeded, job.created_by.username) == ("succeeded", 1, "operator")
    (item,) = job.items.all()
    assert item.result["updated"] == 1
    assert item.result["records"] == [
        {
            "record": record.invoice_no,
            "model": "subscriptions.subscriptioninvoice",
            "changes": [{"field": "status", "old": S.WAITING, "new": S.CANCEL}],
        }
    ]
    page = operator_client.get(response.url).content.decode()
    assert f"{record.invoice_no}: status Waiting → Cancelled" in page


def test_refresh_with_paynet_unreachable_fails_its_items_and_changes_nothing(
    mirror, operator_client, settings, django_capture_on_commit_callbacks
):
    settings.PAYNET_BASE_URL = "http://127.0.0.1:9/paynet"  # nothing listens on the discard port
    # One subscription: its retries stay under the breaker's threshold, so the item fails.
    ids = list(Subscription.objects.order_by("pk").values_list("pk", flat=True)[:1])
    before = list(SubscriptionInvoice.objects.order_by("pk").values_list("status", flat=True))

    with django_capture_on_commit_callbacks(execute=True):
        operator_client.post(SUBSCRIPTIONS, action_post(ids, action="refresh_from_paynet"))

    job = Job.objects.get(kind="paynet.refresh")
    (item,) = job.items.all()
    assert (job.state, item.outcome) == ("failed", "failed")
    assert "could not be reached" in item.message
    after = list(SubscriptionInvoice.objects.order_by("pk").values_list("status", flat=True))
    assert after == before


def test_a_refresh_failure_names_the_subscription_masked_without_the_permission(
    mirror, viewer, client, settings
):
    # Someone granted the refresh but not security.view_personal_data sees names masked: the
    # refresh runs as a job, whose page every viewer reads.
    from django.contrib.auth.models import Permission

    from security.personal import masked_str
    from upstream.models import Job
    from upstream.pushes.bulk import prepare_job

    viewer.user_permissions.add(Permission.objects.get(codename="sync_subscription"))
    client.force_login(viewer)
    settings.PAYNET_BASE_URL = "http://127.0.0.1:9/paynet"
    sub = Subscription.objects.exclude(name_surname="").order_by("pk").first()

    response = client.post(
        SUBSCRIPTIONS, action_post([sub.pk], action="refresh_from_paynet"), follow=True
    )

    job = Job.objects.get()
    # The refresh is launched from a frozen selection: the worker writes its items.
    prepare_job(job.pk)
    item = job.items.get()
    assert item.target_repr == masked_str(sub) and sub.name_surname not in item.target_repr
    assert sub.name_surname not in response.content.decode()

    bulk.run_job(job.pk)
    item.refresh_from_db()
    assert item.outcome == "failed" and sub.name_surname not in item.display_message
    page = client.get(reverse("admin:upstream_job_change", args=[job.pk])).content.decode()
    assert masked_str(sub) in page and sub.name_surname not in page


def test_change_all_records_status_from_the_subscriptions_own_page(
    mirror, operator_client, viewer, django_capture_on_commit_callbacks
):
    sub = a_subscription(fixed=True)
    page = operator_client.get(reverse("admin:subscriptions_subscription_change", args=[sub.pk]))
    url = reverse("admin:subscriptions_subscription_status_all", args=[sub.pk])
    assert f'href="{url}" id="status-all-link"' in page.content.decode()
    viewer_client = Client()
    viewer_client.force_login(viewer)
    assert viewer_client.get(url).status_code == 403

    first = operator_client.get(url)
    assert first.status_code == 200 and sub.reference_no in first.content.decode()
    preview = post_back(operator_client, url, first, "status-all-confirm", step="preview", status=4)
    assert 'id="count-change"' in preview.content.decode() and not Job.objects.exists()
    with django_capture_on_commit_callbacks(execute=True):
        done = post_back(
            operator_client, url, preview, "status-all-confirm", step="confirm", reason="kapanış"
        )
    job = Job.objects.get()
    assert done.status_code == 302 and done.url == job_url(job)
