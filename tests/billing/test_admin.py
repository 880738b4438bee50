"""The WiseCP admin through Django's test client: lists, the edit view that pushes, bulk jobs."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from decimal import Decimal
from html.parser import HTMLParser

import pytest
from django.contrib.auth.models import Permission, User
from django.contrib.messages import get_messages
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from billing import services
from billing.client import WiseCPClient
from billing.models import Invoice, InvoiceItem
from billing.sync import wisecp_sync
from tests.conftest import hold_claim
from upstream.calls.errors import PushInDoubt
from upstream.models import Job, JobItem, UpstreamCall

from .conftest import (
    ITEM_ID,
    PAID_INVOICE_ID,
    PAID_ITEM_ID,
    SOURCE_INVOICE_ID,
    TARGET_INVOICE_ID,
    item_puts,
    mirror_of,
    upstream_invoice,
    upstream_item,
)

INVOICES = reverse("admin:billing_invoice_changelist")
ITEMS = reverse("admin:billing_invoiceitem_changelist")


def change_url(item: InvoiceItem) -> str:
    return reverse("admin:billing_invoiceitem_change", args=[item.pk])


def logged_in(user) -> Client:
    """A second browser: pytest-django's `client` is one object shared by every fixture."""
    browser = Client()
    browser.force_login(user)
    return browser


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


class _Form(HTMLParser):
    """What a browser would post from the form with the given id (inputs, textareas, selects)."""

    def __init__(self, form_id: str) -> None:
        super().__init__()
        self.form_id, self.inside = form_id, False
        self.select: str | None = None
        self.textarea: str | None = None
        self.fields: list[tuple[str, str]] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form" and attrs.get("id") == self.form_id:
            self.inside = True
        if not self.inside or ("name" not in attrs and tag != "option"):
            return
        if tag == "input" and attrs.get("type") not in ("submit", "button"):
            if attrs.get("type") == "checkbox" and "checked" not in attrs:
                return
            self.fields.append((attrs["name"], attrs.get("value") or ""))
        elif tag == "textarea":
            self.textarea = attrs["name"]
            self.fields.append((attrs["name"], ""))
        elif tag == "select":
            self.select = attrs["name"]
        elif tag == "option" and self.select and "selected" in attrs:
            self.fields.append((self.select, attrs.get("value", "")))

    def handle_data(self, data):
        if self.textarea:
            name, value = self.fields[-1]
            self.fields[-1] = (name, value + data)

    def handle_endtag(self, tag):
        if tag == "form":
            self.inside = False
        elif tag == "select":
            self.select = None
        elif tag == "textarea":
            self.textarea = None


def form_data(response, form_id: str, **overrides) -> dict[str, list[str]]:
    parser = _Form(form_id)
    parser.feed(response.content.decode())
    assert parser.fields, f"no form #{form_id} on the page"
    data: dict[str, list[str]] = {}
    for name, value in parser.fields:
        if name != "csrfmiddlewaretoken":
            data.setdefault(name, []).append(value.removeprefix("\n"))
    for name, value in overrides.items():
        if value is None:
            data.pop(name, None)
        else:
            data[name] = [str(value)]
    return data


# Lists -----------------------------------------------------------------------------------------


def test_changelists_render_for_a_viewer(viewer_client, synced) -> None:
    invoices = viewer_client.get(INVOICES)
    assert invoices.status_code == 200
    assert invoices.context["cl"].result_count == Invoice.objects.count()
    newest = Invoice.objects.order_by("-created_at_upstream").first()
    assert newest.number in invoices.content.decode()
    assert "₺" in invoices.content.decode()
    items = viewer_client.get(ITEMS)
    assert items.status_code == 200
    assert "Kurumsal E-posta" in items.content.decode()
    # Viewers get no push actions.
    assert "set_due_date" not in items.content.decode()
    assert "refresh_from_wisecp" not in invoices.content.decode()


def test_operators_get_the_actions(operator_client, synced) -> None:
    items = operator_client.get(ITEMS).content.decode()
    for action in ("set_due_date", "move_to_invoice", "renumber_sequence", "export_csv"):
        assert f'value="{action}"' in items
    assert 'value="refresh_from_wisecp"' in operator_client.get(INVOICES).content.decode()


def _listed(response) -> set:
    return {obj.pk for obj in response.context["cl"].result_list}


def test_invoice_search_and_filters(viewer_client, synced) -> None:
    inv = Invoice.objects.get(wisecp_id=SOURCE_INVOICE_ID)
    # A viewer sees names masked, so finds a customer by the whole name (tests/security).
    by_customer = viewer_client.get(INVOICES, {"q": inv.full_name})
    assert inv.pk in _listed(by_customer)
    # Item descriptions are searched in the item list, which shows each item's invoice.
    by_item_text = viewer_client.get(ITEMS, {"q": "Kurumsal E-posta"})
    assert inv.pk in {item.invoice_id for item in by_item_text.context["cl"].result_list}
    by_user = viewer_client.get(INVOICES, {"customer": str(inv.user_id)})
    assert _listed(by_user) == set(
        Invoice.objects.filter(user_id=inv.user_id).values_list("pk", flat=True)
    )
    paid = viewer_client.get(INVOICES, {"status__exact": "paid", "all": ""})
    assert _listed(paid) == set(Invoice.objects.filter(status="paid").values_list("pk", flat=True))
    eur = viewer_client.get(INVOICES, {"currency": "EUR"})
    assert _listed(eur) == set(Invoice.objects.filter(currency="EUR").values_list("pk", flat=True))
    in_2023 = viewer_client.get(
        INVOICES,
        {
            "created_at_upstream__range_from": "01.01.2023",
            "created_at_upstream__range_to": "31.12.2023",
        },
    )
    assert _listed(in_2023) and all(
        Invoice.objects.get(pk=pk).created_at_upstream.year == 2023 for pk in _listed(in_2023)
    )
    due = viewer_client.get(INVOICES, {"due_date__range_from": "01.01.2099"})
    assert _listed(due) == set()


def test_item_search_and_filters(viewer_client, synced) -> None:
    item = InvoiceItem.objects.get(wisecp_id=ITEM_ID)
    assert _listed(viewer_client.get(ITEMS, {"q": "#302"})) == {
        i.pk for i in item.invoice.items.all()
    }
    assert _listed(viewer_client.get(ITEMS, {"invoice_number": "302"})) == {
        i.pk for i in item.invoice.items.all()
    }
    assert item.pk in _listed(viewer_client.get(ITEMS, {"customer": item.invoice.full_name}))
    exempt = viewer_client.get(ITEMS, {"tax_exempt__exact": "1"})
    assert _listed(exempt) == set(
        InvoiceItem.objects.filter(tax_exempt=True).values_list("pk", flat=True)
    )
    status = viewer_client.get(ITEMS, {"invoice__status__exact": "paid", "all": ""})
    assert _listed(status) == set(
        InvoiceItem.objects.filter(invoice__status="paid").values_list("pk", flat=True)
    )


def test_invoice_page_lists_items_with_change_links(operator_client, synced) -> None:
    invoice = Invoice.objects.get(wisecp_id=SOURCE_INVOICE_ID)
    page = operator_client.get(reverse("admin:billing_invoice_change", args=[invoice.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    for item in invoice.items.all():
        assert change_url(item) in html
    assert 'name="_save"' not in html  # the invoice itself is read-only


def test_csv_export(operator_client, synced) -> None:
    items = InvoiceItem.objects.filter(invoice__wisecp_id=SOURCE_INVOICE_ID)
    response = operator_client.post(
        ITEMS,
        {"action": "export_csv", "_selected_action": [str(i.pk) for i in items], "index": 0},
    )
    assert response.status_code == 200
    text = b"".join(response.streaming_content).decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text), delimiter=";"))
    assert len(rows) == 1 + items.count()
    assert "#302" in rows[1]


def _make_rows(n: int) -> None:
    invoices = Invoice.objects.bulk_create(
        Invoice(
            wisecp_id=10_000 + i,
            number=f"#{10_000 + i}",
            status="unpaid",
            currency="TRY" if i % 2 else "EUR",
            total=Decimal("10.00"),
            full_name=f"Müşteri {i}",
        )
        for i in range(n)
    )
    InvoiceItem.objects.bulk_create(
        InvoiceItem(
            wisecp_id=50_000 + i,
            invoice=invoices[i],
            sequence=1,
            description=f"Kalem {i}",
            amount=Decimal("10.00"),
            total=Decimal("10.00"),
        )
        for i in range(n)
    )


@pytest.mark.parametrize("url", [INVOICES, ITEMS])
def test_changelist_queries_do_not_grow_with_rows(operator_client, url) -> None:
    counts = []
    for n in (20, 200):
        InvoiceItem.objects.all().delete()
        Invoice.objects.all().delete()
        _make_rows(n)
        operator_client.get(url)  # warm the session and permission caches
        with CaptureQueriesContext(connection) as queries:
            response = operator_client.get(url)
        assert response.status_code == 200
        counts.append(len(queries))
    assert counts[0] == counts[1], counts


# The item page is the mirror; "Edit at WiseCP…" previews, then pushes ------------------------


def edit_url(item: InvoiceItem) -> str:
    return reverse("admin:billing_invoiceitem_edit", args=[item.pk])


def with_override(user):
    user.user_permissions.add(
        Permission.objects.get(
            codename="override_closed_invoice", content_type__app_label="billing"
        )
    )
    return User.objects.get(pk=user.pk)  # a fresh instance: no cached permissions


def _preview(client, item, **overrides):
    page = client.get(edit_url(item))
    return client.post(
        edit_url(item), form_data(page, "item-edit-form", step="preview", **overrides)
    )


def test_item_page_is_a_read_only_mirror_with_an_edit_link(operator_client, viewer, item):
    page = operator_client.get(change_url(item)).content.decode()
    assert 'name="_save"' not in page
    assert 'id="edit-at-wisecp"' in page
    assert edit_url(item) in page

    read_only = logged_in(viewer).get(change_url(item)).content.decode()
    assert 'name="_save"' not in read_only
    assert 'id="edit-at-wisecp"' not in read_only


def test_edit_form_shows_the_fields_version_and_a_one_time_key(operator_client, item) -> None:
    response = operator_client.get(edit_url(item))

    assert response.status_code == 200
    html = response.content.decode()
    fields = dict(
        (name, values[0]) for name, values in form_data(response, "item-edit-form").items()
    )
    assert fields["version"] == "1"
    assert len(fields["idempotency_key"]) == 32
    assert {"description", "quantity", "amount", "total", "sequence", "order_id"} <= set(fields)
    assert {"due_date_0", "due_date_1", "invoice", "reason"} <= set(fields)
    assert "override" not in html  # only for holders of the override permission
    # The target invoice is picked by number through the admin's autocomplete.
    assert 'class="admin-autocomplete' in html and 'data-model-name="invoiceitem"' in html
    assert "admin/js/calendar.js" in html and "admin/js/autocomplete.js" in html
    assert (
        operator_client.get(edit_url(item)).context["form"]["idempotency_key"].value()
        != (fields["idempotency_key"])
    )


def test_the_invoice_autocomplete_finds_invoices_by_number(operator_client, item) -> None:
    response = operator_client.get(
        reverse("admin:autocomplete"),
        {
            "term": "#358",
            "app_label": "billing",
            "model_name": "invoiceitem",
            "field_name": "invoice",
        },
    )
    assert response.status_code == 200
    target = Invoice.objects.get(wisecp_id=TARGET_INVOICE_ID)
    assert {"id": str(target.pk), "text": "#358"} in response.json()["results"]


def test_preview_shows_old_new_and_totals_and_sends_nothing(operator_client, sandbox, item) -> None:
    before = mirror_of(item)

    response = _preview(operator_client, item, quantity=2, amount="120.00", reason="Fiyat")

    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="item-confirm-form"' in html
    rows = {row["name"]: (row["old"], row["new"]) for row in response.context["preview"]["rows"]}
    assert rows["quantity"] == ("1", "2")
    assert rows["amount"] == ("₺\xa01,199.00", "₺\xa0120.00")
    assert rows["total"] == ("₺\xa01,199.00", "₺\xa0240.00")  # quantity × unit price
    assert response.context["preview"]["total"] == "₺\xa0240.00"
    [invoice] = response.context["preview"]["invoices"]
    # #302: the other item 149.90 + this one 240.00 = 389.90, 18 % tax 70.18.
    assert invoice["rows"] == [
        ("Subtotal", "₺\xa01,348.90", "₺\xa0389.90"),
        ("Tax", "₺\xa0242.80", "₺\xa070.18"),
        ("Total", "₺\xa01,591.70", "₺\xa0460.08"),
    ]
    assert item_puts(sandbox) == []
    assert not UpstreamCall.objects.exists()
    assert mirror_of(item) == before


def test_preview_of_a_move_shows_both_invoices(
    operator_client, sandbox, item, target_invoice
) -> None:
    response = _preview(operator_client, item, invoice=target_invoice.pk, reason="Birleştirme")

    source, target = response.context["preview"]["invoices"]
    assert (source["invoice"].wisecp_id, target["invoice"].wisecp_id) == (302, 358)
    assert source["rows"][0] == ("Subtotal", "₺\xa01,348.90", "₺\xa0149.90")
    assert target["rows"][0] == ("Subtotal", "₺\xa0520.00", "₺\xa01,719.00")
    assert item_puts(sandbox) == []


def test_confirm_pushes_once_and_shows_the_mirror(operator_client, sandbox, item) -> None:
    preview = _preview(operator_client, item, description="Yeni açıklama", quantity=2, reason="x")

    response = operator_client.post(
        edit_url(item), form_data(preview, "item-confirm-form", step="confirm")
    )

    assert response.status_code == 302
    assert response.url == change_url(item)
    assert any("Sent to WiseCP: description, quantity, total" in m for m in messages_of(response))
    [put] = item_puts(sandbox)
    assert put["request"] == {"description": "Yeni açıklama", "quantity": 2, "total": 2398.0}
    fresh = InvoiceItem.objects.get(pk=item.pk)
    assert (fresh.description, fresh.quantity, fresh.total, fresh.version) == (
        "Yeni açıklama",
        2,
        Decimal("2398.00"),
        2,
    )
    assert upstream_item(sandbox, ITEM_ID)["total"] == 2398


def test_turkish_money_input_is_accepted(operator_client, sandbox, item) -> None:
    operator_client.cookies["django_language"] = "tr"
    page = operator_client.get(edit_url(item))
    assert form_data(page, "item-edit-form")["amount"] == ["1.199,00"]

    preview = operator_client.post(
        edit_url(item),
        form_data(page, "item-edit-form", amount="2.500,00", reason="Zam", step="preview"),
    )
    operator_client.post(edit_url(item), form_data(preview, "item-confirm-form", step="confirm"))

    assert item_puts(sandbox)[0]["request"] == {"amount": 2500.0, "total": 2500.0}
    plain = _preview(
        operator_client, InvoiceItem.objects.get(pk=item.pk), amount="2600.00", reason="x"
    )
    assert ("₺\xa02.500,00", "₺\xa02.600,00") in [
        (r["old"], r["new"]) for r in plain.context["preview"]["rows"]
    ]


def test_money_change_without_a_reason_is_a_form_error(operator_client, sandbox, item) -> None:
    response = _preview(operator_client, item, amount="100.00", reason="")

    assert response.status_code == 200
    assert "reason" in response.context["form"].errors
    assert response.context["preview"] is None
    # A change that moves no money needs none.
    assert _preview(operator_client, item, description="x", reason="").context["preview"]
    assert item_puts(sandbox) == []


def test_move_to_another_customers_invoice_is_a_form_error(operator_client, sandbox, item):
    other = Invoice.objects.get(wisecp_id=310)  # TRY, unpaid, Burak Öztürk
    response = _preview(operator_client, item, invoice=other.pk, reason="x")

    assert "another customer's invoice" in response.context["form"].errors["invoice"][0]
    assert item_puts(sandbox) == []


def test_closed_invoice_needs_the_override(operator, sandbox, synced) -> None:
    paid_item = InvoiceItem.objects.get(wisecp_id=PAID_ITEM_ID)
    browser = logged_in(operator)
    refused = _preview(browser, paid_item, amount="10.00", reason="İade düzeltmesi")
    assert "is closed (Paid)" in str(refused.context["form"].non_field_errors())
    assert "override" not in refused.context["form"].fields

    browser = logged_in(with_override(operator))
    page = browser.get(edit_url(paid_item))
    assert 'name="override"' in page.content.decode()
    preview = browser.post(
        edit_url(paid_item),
        form_data(
            page, "item-edit-form", amount="10.00", reason="İade", override="on", step="preview"
        ),
    )
    assert preview.context["preview"] is not None
    done = browser.post(
        edit_url(paid_item), form_data(preview, "item-confirm-form", step="confirm")
    )

    assert done.status_code == 302
    assert item_puts(sandbox)[0]["request"] == {"amount": 10.0, "total": 10.0}


def test_stale_version_is_refused_with_a_clear_message(operator_client, sandbox, item) -> None:
    page = operator_client.get(edit_url(item))
    InvoiceItem.objects.filter(pk=item.pk).update(version=2)  # someone else saved meanwhile

    response = operator_client.post(
        edit_url(item), form_data(page, "item-edit-form", description="x", step="preview")
    )
    assert "changed since you opened it" in response.content.decode()
    assert response.context["preview"] is None

    confirmed = operator_client.post(
        edit_url(item), form_data(page, "item-edit-form", description="x", step="confirm")
    )
    assert confirmed.status_code == 200
    assert any("changed since you opened it" in m for m in messages_of(confirmed))
    assert item_puts(sandbox) == []


def test_refusal_by_wisecp_is_shown_and_saves_nothing(operator_client, sandbox, item) -> None:
    sandbox.faults(
        {
            "kind": "reject",
            "service": "wisecp",
            "operation": "UpdateInvoiceItem",
            "message": "Bu fatura kilitli",
        }
    )
    before = mirror_of(item)
    preview = _preview(operator_client, item, description="x")

    response = operator_client.post(
        edit_url(item), form_data(preview, "item-confirm-form", step="confirm")
    )

    assert response.status_code == 200
    assert any("WiseCP refused: Bu fatura kilitli." in m for m in messages_of(response))
    # Read back at once: the message says what WiseCP holds; the mirror already held it.
    assert any("WiseCP holds invoice" in m for m in messages_of(response))
    assert mirror_of(item) == before
    assert UpstreamCall.objects.get(operation="UpdateInvoiceItem").outcome == "rejected"
    # The heading and the breadcrumb name the item as saved, not as it was typed.
    html = response.content.decode()
    saved = f"{item.description[:20]}"
    assert f"<h1>Edit at WiseCP: {saved}" in html
    assert "Edit at WiseCP: x (#" not in html and f">x (#{item.wisecp_id})<" not in html


def test_server_error_is_shown(operator_client, sandbox, item) -> None:
    sandbox.faults(
        {"kind": "status", "status": 502, "service": "wisecp", "operation": "UpdateInvoiceItem"}
    )
    before = mirror_of(item)
    preview = _preview(operator_client, item, description="x")

    response = operator_client.post(
        edit_url(item), form_data(preview, "item-confirm-form", step="confirm"), follow=True
    )

    # A 5xx after a write may have landed: in doubt, being checked, never a failure to retry.
    assert response.status_code == 200
    assert any("server error (HTTP 502)" in m for m in messages_of(response))
    assert any("being checked" in m for m in messages_of(response))
    assert mirror_of(item) == before


def test_in_doubt_is_a_warning_with_the_job(operator_client, item, monkeypatch) -> None:
    # Settling in the background is another branch's work; the admin only has to say so.
    job = Job.objects.create(kind="wisecp.invoice_item_update", title="x", total=1)
    sent = {}

    def in_doubt(**kwargs):
        sent.update(kwargs)
        raise PushInDoubt("in doubt", job=job)

    monkeypatch.setattr(services, "invoice_item_update", in_doubt)
    preview = _preview(operator_client, item, description="x")
    data = form_data(preview, "item-confirm-form", step="confirm")

    response = operator_client.post(edit_url(item), data)

    assert response.status_code == 302
    [message] = get_messages(response.wsgi_request)
    assert message.level_tag == "warning"
    assert "in doubt" in str(message) and "job #" in str(message)
    assert reverse("admin:upstream_job_change", args=[job.pk]) in str(message)
    assert sent["idempotency_key"] == data["idempotency_key"][0]
    assert sent["reason"] == ""


def test_unchanged_form_sends_nothing(operator_client, sandbox, item) -> None:
    response = _preview(operator_client, item)
    assert "Nothing changed" in response.content.decode()
    assert item_puts(sandbox) == []


def test_invalid_values_are_form_errors(operator_client, sandbox, item) -> None:
    response = _preview(operator_client, item, quantity=0)
    assert "quantity" in response.context["form"].errors
    assert item_puts(sandbox) == []


def test_viewer_gets_403(operator_client, viewer, sandbox, item) -> None:
    preview = _preview(operator_client, item, description="x")
    browser = logged_in(viewer)
    assert browser.get(edit_url(item)).status_code == 403
    data = form_data(preview, "item-confirm-form", step="confirm")
    assert browser.post(edit_url(item), data).status_code == 403
    assert item_puts(sandbox) == []


def test_refresh_action_runs_a_job_listing_what_changed(
    operator_client, sandbox, synced, django_capture_on_commit_callbacks
) -> None:
    WiseCPClient().update_invoice_item(ITEM_ID, {"description": "WiseCP'de değişti"})
    invoice = Invoice.objects.get(wisecp_id=SOURCE_INVOICE_ID)

    with django_capture_on_commit_callbacks(execute=True):
        response = operator_client.post(
            INVOICES,
            {"action": "refresh_from_wisecp", "_selected_action": [invoice.pk], "index": 0},
        )

    job = Job.objects.get(kind="wisecp.refresh")
    assert response.url == reverse("admin:upstream_job_change", args=[job.pk])
    assert InvoiceItem.objects.get(wisecp_id=ITEM_ID).description == "WiseCP'de değişti"
    (item,) = job.items.all()
    changed = [r for r in item.result["records"] if r["record"] == str(ITEM_ID)]
    assert changed[0]["changes"][0]["new"] == "WiseCP'de değişti"
    assert UpstreamCall.objects.get().actor.username == "operator"


# Bulk actions ----------------------------------------------------------------------------------


def _start(client, action: str, items) -> object:
    response = client.post(
        ITEMS, {"action": action, "_selected_action": [str(i.pk) for i in items], "index": 0}
    )
    assert response.status_code == 200
    return response


def _verdicts(response) -> dict[int, str]:
    preview = response.context["preview"]
    return {row.item.pk: row.kind.value for row in preview.rows}


def test_set_due_date_confirms_then_runs_a_job(
    operator_client, sandbox, synced, django_capture_on_commit_callbacks
) -> None:
    a, b, c = InvoiceItem.objects.filter(due_date__isnull=False).order_by("wisecp_id")[:3]
    InvoiceItem.objects.filter(pk=b.pk).update(
        due_date=timezone.make_aware(timezone.datetime(2025, 6, 30, 23, 59, 59))
    )
    hold_claim(c, seconds=60)
    first = _start(operator_client, "set_due_date", [a, b, c])
    assert 'name="due_date_0"' in first.content.decode()
    assert first.context["preview"] is None

    preview = operator_client.post(
        ITEMS,
        form_data(
            first, "bulk-confirm", due_date_0="30.06.2025", due_date_1="23:59:59", step="preview"
        ),
    )

    assert _verdicts(preview) == {a.pk: "change", b.pk: "same", c.pk: "blocked"}
    html = preview.content.decode()
    assert 'class="verdict-blocked"' in html and "Another save is in progress." in html
    assert 'id="count-change">1<' in html
    assert item_puts(sandbox) == []  # nothing sent before the confirmation

    with django_capture_on_commit_callbacks(execute=True):
        done = operator_client.post(
            ITEMS, form_data(preview, "bulk-confirm", step="confirm", reason="Vade uzatımı")
        )

    job = Job.objects.get()
    assert done.status_code == 302
    assert done.url == reverse("admin:upstream_job_change", args=[job.pk])
    assert (job.state, job.total, job.succeeded, job.reason) == ("succeeded", 1, 1, "Vade uzatımı")
    [put] = item_puts(sandbox)
    assert (put["item_id"], put["request"]) == (a.wisecp_id, {"due_date": "2025-06-30 23:59:59"})
    assert InvoiceItem.objects.get(pk=a.pk).version == a.version + 1
    page = operator_client.get(done.url).content.decode()
    assert "→" in page  # the per-row result summary
    call = UpstreamCall.objects.get(operation="UpdateInvoiceItem")
    assert (call.job_id, call.request_headers["Apikey"]) == (job.pk, "***")


def test_confirm_without_reason_creates_no_job(operator_client, sandbox, item) -> None:
    # A move moves money: without a reason nothing is queued (the single edit's rule too).
    first = _start(operator_client, "move_to_invoice", [item])
    preview = operator_client.post(
        ITEMS, form_data(first, "bulk-confirm", target="#358", step="preview")
    )
    response = operator_client.post(
        ITEMS, form_data(preview, "bulk-confirm", step="confirm", reason="")
    )
    assert response.status_code == 200
    assert "reason" in response.context["form"].errors
    assert not Job.objects.exists()


def test_a_bulk_change_that_moves_no_money_needs_no_reason(
    operator_client, sandbox, synced, django_capture_on_commit_callbacks
) -> None:
    # The same rule as the single edit: a reason for money changes, none for the rest.
    items = list(InvoiceItem.objects.filter(invoice__wisecp_id=SOURCE_INVOICE_ID))
    first = _start(operator_client, "set_due_date", items)
    preview = operator_client.post(
        ITEMS,
        form_data(
            first, "bulk-confirm", due_date_0="01.10.2031", due_date_1="12:00:00", step="preview"
        ),
    )
    with django_capture_on_commit_callbacks(execute=True):
        done = operator_client.post(
            ITEMS, form_data(preview, "bulk-confirm", step="confirm", reason="")
        )

    job = Job.objects.get()
    assert done.status_code == 302
    assert (job.state, job.succeeded, job.reason) == ("succeeded", 2, "")


def test_move_confirms_blocks_other_currencies_and_refreshes_totals(
    operator_client, sandbox, synced, django_capture_on_commit_callbacks
) -> None:
    source_items = list(InvoiceItem.objects.filter(invoice__wisecp_id=SOURCE_INVOICE_ID))
    euro_item = InvoiceItem.objects.filter(invoice__currency="EUR").first()
    first = _start(operator_client, "move_to_invoice", [*source_items, euro_item])

    preview = operator_client.post(
        ITEMS, form_data(first, "bulk-confirm", target="#358", step="preview")
    )
    verdicts = _verdicts(preview)
    assert [verdicts[i.pk] for i in source_items] == ["change", "change"]
    assert verdicts[euro_item.pk] == "blocked"
    assert "items carry no currency" in preview.content.decode()

    with django_capture_on_commit_callbacks(execute=True):
        operator_client.post(
            ITEMS, form_data(preview, "bulk-confirm", step="confirm", reason="Birleştirme")
        )

    job = Job.objects.get()
    assert (job.state, job.succeeded) == ("succeeded", 2)
    assert {p["request"]["owner_id"] for p in item_puts(sandbox)} == {TARGET_INVOICE_ID}
    for item in source_items:
        assert InvoiceItem.objects.get(pk=item.pk).invoice.wisecp_id == TARGET_INVOICE_ID
    for invoice_id in (SOURCE_INVOICE_ID, TARGET_INVOICE_ID):
        upstream = upstream_invoice(sandbox, invoice_id)
        mirrored = Invoice.objects.get(wisecp_id=invoice_id)
        assert mirrored.total == Decimal(str(upstream["total"])).quantize(Decimal("0.01"))
    assert Invoice.objects.get(wisecp_id=SOURCE_INVOICE_ID).total == Decimal("0.00")


def test_renumber_renumbers_whole_invoices(
    operator_client, sandbox, synced, django_capture_on_commit_callbacks
) -> None:
    # Take the first item off #306 (sequences 1, 2, 3) so it has a gap: 2, 3.
    WiseCPClient().update_invoice_item(1511, {"owner_id": SOURCE_INVOICE_ID})
    wisecp_sync()
    remaining = list(InvoiceItem.objects.filter(invoice__wisecp_id=PAID_INVOICE_ID))
    assert sorted(i.sequence for i in remaining) == [2, 3]

    first = _start(operator_client, "renumber_sequence", remaining[:1])  # one is enough
    assert set(_verdicts(first)) >= {i.pk for i in remaining}
    assert "1, 2, 3" in first.content.decode()

    with django_capture_on_commit_callbacks(execute=True):
        operator_client.post(
            ITEMS, form_data(first, "bulk-confirm", step="confirm", reason="Sıra düzeltme")
        )

    assert Job.objects.get().state == "succeeded"
    numbers = dict(
        InvoiceItem.objects.filter(invoice__wisecp_id=PAID_INVOICE_ID).values_list(
            "wisecp_id", "sequence"
        )
    )
    assert numbers == {1512: 1, 1513: 2}
    renumbered = [p for p in item_puts(sandbox) if "sequence" in p["request"]]
    assert sorted(p["request"]["sequence"] for p in renumbered) == [1, 2]


def test_failed_item_is_reported_and_retried(
    operator_client, sandbox, synced, django_capture_on_commit_callbacks
) -> None:
    items = list(InvoiceItem.objects.filter(invoice__wisecp_id=PAID_INVOICE_ID))
    sandbox.faults(
        {
            "kind": "reject",
            "service": "wisecp",
            "operation": "UpdateInvoiceItem",
            "match": {"id": 1512},
            "times": 1,
            "message": "Kalem şu an düzenlenemez",
        }
    )
    first = _start(operator_client, "set_due_date", items)
    preview = operator_client.post(
        ITEMS,
        form_data(
            first, "bulk-confirm", due_date_0="01.09.2025", due_date_1="12:00:00", step="preview"
        ),
    )
    with django_capture_on_commit_callbacks(execute=True):
        operator_client.post(
            ITEMS, form_data(preview, "bulk-confirm", step="confirm", reason="Toplu vade")
        )

    job = Job.objects.get()
    assert (job.state, job.succeeded, job.failed) == ("partially_failed", 2, 1)
    failed = JobItem.objects.get(job=job, outcome="rejected")
    assert "Kalem şu an düzenlenemez" in failed.message
    assert (
        InvoiceItem.objects.get(wisecp_id=1512).due_date
        != InvoiceItem.objects.get(wisecp_id=1511).due_date
    )
    page = operator_client.get(reverse("admin:upstream_job_change", args=[job.pk]))
    assert "Kalem şu an düzenlenemez" in page.content.decode()

    with django_capture_on_commit_callbacks(execute=True):
        operator_client.post(reverse("admin:upstream_job_retry", args=[job.pk]), {"confirm": "yes"})

    job.refresh_from_db()
    assert (job.state, job.succeeded, job.failed) == ("succeeded", 3, 0)
    due_dates = set(
        InvoiceItem.objects.filter(wisecp_id__in=[i.wisecp_id for i in items]).values_list(
            "due_date", flat=True
        )
    )
    assert len(due_dates) == 1


def test_in_doubt_job_item_is_read_back_not_resent(
    operator_client, sandbox, synced, django_capture_on_commit_callbacks, monkeypatch
) -> None:
    item = InvoiceItem.objects.get(wisecp_id=ITEM_ID)
    sandbox.faults(
        {
            "kind": "drop",
            "apply": True,
            "times": 1,
            "service": "wisecp",
            "operation": "UpdateInvoiceItem",
        }
    )
    monkeypatch.setattr("upstream.pushes.runner.send.IN_DOUBT_PAUSE", timedelta(0))
    first = _start(operator_client, "set_due_date", [item])
    preview = operator_client.post(
        ITEMS,
        form_data(
            first, "bulk-confirm", due_date_0="15.07.2025", due_date_1="10:00:00", step="preview"
        ),
    )
    with django_capture_on_commit_callbacks(execute=True):
        operator_client.post(
            ITEMS, form_data(preview, "bulk-confirm", step="confirm", reason="Vade")
        )

    job = Job.objects.get()
    assert job.state == "succeeded"
    job_item = JobItem.objects.get(job=job, target_id=str(item.pk))
    assert "reading back" in job_item.message
    assert len(item_puts(sandbox)) == 1  # applied once, confirmed by GetInvoice, never resent
    assert InvoiceItem.objects.get(pk=item.pk).version == item.version + 1
    outcomes = list(
        UpstreamCall.objects.filter(job=job).order_by("id").values_list("operation", "outcome")
    )
    assert outcomes == [("UpdateInvoiceItem", "in_doubt"), ("GetInvoice", "ok")]


def test_select_across_works(operator_client, sandbox, synced) -> None:
    items = InvoiceItem.objects.filter(invoice__wisecp_id=SOURCE_INVOICE_ID)
    url = f"{ITEMS}?invoice_number=302"
    response = operator_client.post(
        url,
        {
            "action": "renumber_sequence",
            "_selected_action": [str(items.first().pk)],
            "select_across": "1",
            "index": 0,
        },
    )
    assert response.status_code == 200
    again = operator_client.post(url, form_data(response, "bulk-confirm", step="preview"))
    assert again.status_code == 200
    assert set(_verdicts(again)) == {i.pk for i in items}


def test_a_double_clicked_confirm_saves_once_and_reports_success_twice(
    operator_client, sandbox, item
) -> None:
    preview = _preview(operator_client, item, description="Çift tık", reason="x")
    data = form_data(preview, "item-confirm-form", step="confirm")

    first = operator_client.post(edit_url(item), data)
    again = operator_client.post(edit_url(item), data, follow=True)

    assert first.status_code == 302
    assert again.status_code == 200
    assert not any("changed since you opened it" in m for m in messages_of(again))
    assert len(item_puts(sandbox)) == 1


def test_a_forged_target_invoice_is_a_form_error_not_a_crash(operator_client, item) -> None:
    response = _preview(operator_client, item, invoice="abc", reason="x")

    assert response.status_code == 200
    assert "invoice" in response.context["form"].errors


def test_a_bulk_move_offers_the_override_to_whoever_may_override(
    operator, sandbox, synced, django_capture_on_commit_callbacks
) -> None:
    # 1622 sits on #354, paid; #358 is the same customer's, open.
    paid_item = InvoiceItem.objects.get(wisecp_id=1622)
    browser = logged_in(operator)
    first = _start(browser, "move_to_invoice", [paid_item])
    assert 'name="override"' not in first.content.decode()
    refused = browser.post(ITEMS, form_data(first, "bulk-confirm", target="#358", step="preview"))
    assert _verdicts(refused) == {paid_item.pk: "blocked"}
    assert "#354 is closed (Paid)" in refused.content.decode()

    browser = logged_in(with_override(operator))
    first = _start(browser, "move_to_invoice", [paid_item])
    assert 'name="override"' in first.content.decode()
    preview = browser.post(
        ITEMS, form_data(first, "bulk-confirm", target="#358", override="on", step="preview")
    )
    assert _verdicts(preview) == {paid_item.pk: "change"}
    assert "its money changes by override" in preview.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        # A checked box posts "on" (the form parser reads no value from it).
        browser.post(
            ITEMS,
            form_data(preview, "bulk-confirm", step="confirm", reason="İade", override="on"),
        )

    job = Job.objects.get()
    assert (job.state, job.succeeded, job.reason) == ("succeeded", 1, "İade")
    assert item_puts(sandbox)[0]["request"] == {"owner_id": TARGET_INVOICE_ID}


def test_a_change_on_a_closed_invoice_that_moves_no_money_says_so(
    operator_client, sandbox, synced
) -> None:
    paid_item = InvoiceItem.objects.get(wisecp_id=PAID_ITEM_ID)

    single = _preview(operator_client, paid_item, description="Açıklama")
    first = _start(operator_client, "set_due_date", [paid_item])
    bulk = operator_client.post(
        ITEMS,
        form_data(
            first, "bulk-confirm", due_date_0="01.10.2031", due_date_1="12:00:00", step="preview"
        ),
    )

    note = "Invoice #306 is closed (Paid); this change moves no money, so it needs no override."
    assert single.context["preview"]["note"] == note
    assert note in single.content.decode()
    assert _verdicts(bulk) == {paid_item.pk: "change"}
    assert bulk.context["preview"].notes == {note: 1}
    assert item_puts(sandbox) == []


def test_a_bulk_move_preview_shows_the_invoices_totals_and_the_targets_status(
    operator_client, sandbox, synced
) -> None:
    from billing import rules

    items = list(InvoiceItem.objects.filter(invoice__wisecp_id=SOURCE_INVOICE_ID))
    source, target = items[0].invoice, Invoice.objects.get(wisecp_id=TARGET_INVOICE_ID)
    first = _start(operator_client, "move_to_invoice", items)
    operator_client.cookies["django_language"] = "en"
    preview = operator_client.post(
        ITEMS, form_data(first, "bulk-confirm", target="#358", step="preview")
    )
    shown = preview.context["preview"]
    estimates = {e.invoice.pk: e for e in shown.invoices}
    moved = {i.pk for i in items}
    assert estimates[source.pk].after == rules.totals_after_move(source, leaving=moved, arriving=[])
    assert estimates[target.pk].after == rules.totals_after_move(
        target, leaving=set(), arriving=items
    )
    assert estimates[target.pk].effect == sum(
        (estimates[target.pk].after.total - target.total,), Decimal(0)
    )
    html = preview.content.decode()
    assert 'id="bulk-invoices"' in html and 'id="bulk-target"' in html
    assert target.get_status_display() in html.split('id="bulk-target"')[1].split("</p>")[0]


def test_a_bulk_due_date_preview_flags_items_of_closed_invoices(operator_client, synced) -> None:
    paid = InvoiceItem.objects.filter(invoice__status="paid").select_related("invoice").first()
    first = _start(operator_client, "set_due_date", [paid])
    preview = operator_client.post(
        ITEMS,
        form_data(
            first, "bulk-confirm", due_date_0="01.10.2031", due_date_1="12:00:00", step="preview"
        ),
    )
    [row] = preview.context["preview"].rows
    assert row.closed
    html = preview.content.decode()
    row_html = html.split(f'data-item="{paid.pk}"')[1].split("</tr>")[0]
    assert "badge-closed" in row_html
    # A due date moves no money: each invoice's total stays as it is.
    assert all(e.effect == 0 for e in preview.context["preview"].invoices)
