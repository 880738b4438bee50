"""KVKK: customers' names, e-mails and phone numbers in the mirror are shown unmasked only with
`security.view_personal_data` (operators and approvers by default, not viewers): in admin lists,
record pages, CSV exports and the API. Without it they are masked."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from billing.models import Invoice, InvoiceItem
from security.personal import PERM_PERSONAL_DATA, masking, sees_personal_data
from subscriptions.models import Subscription, SubscriptionInvoice
from upstream.groups import APPROVERS, OPERATORS, VIEWERS

NAME, EMAIL, GSM = "Zeynep Kaya", "zeynep.kaya@example.com", "5321234567"
MASKED = ("Ze*** Ka**", "z***@example.com", "532***4567")
CUSTOMER = "Mehmet Öztürk"
CUSTOMER_MASKED = "Me*** Öz***"


@pytest.fixture
def records(db):
    sub = Subscription.objects.create(
        subscription_id="0f6f1c1e-0000-4000-8000-000000000001",
        reference_no="90000600",
        name_surname=NAME,
        end_user_email=EMAIL,
        end_user_gsm=GSM,
        is_fixed_price=False,
    )
    record = SubscriptionInvoice.objects.create(
        subscription=sub,
        invoice_id="120",
        invoice_no="11400556",
        amount=Decimal("288.98"),
        status=0,
    )
    invoice = Invoice.objects.create(
        wisecp_id=367, number="#367", status="unpaid", full_name=CUSTOMER, user_id=2
    )
    item = InvoiceItem.objects.create(
        wisecp_id=572, invoice=invoice, description="Hosting", amount=Decimal(100), total=100
    )
    return sub, record, invoice, item


def _admin_pages(sub, record, invoice, item) -> dict[str, tuple[str, ...]]:
    """Each page, and the personal values it shows unmasked to a reader with the permission."""
    return {
        reverse("admin:subscriptions_subscription_changelist"): (NAME,),
        reverse("admin:subscriptions_subscription_change", args=[sub.pk]): (NAME, EMAIL, GSM),
        reverse("admin:subscriptions_subscriptioninvoice_changelist"): (NAME,),
        reverse("admin:subscriptions_subscriptioninvoice_change", args=[record.pk]): (NAME,),
        reverse("admin:billing_invoice_changelist"): (CUSTOMER,),
        reverse("admin:billing_invoice_change", args=[invoice.pk]): (CUSTOMER,),
        reverse("admin:billing_invoiceitem_changelist"): (CUSTOMER,),
        reverse("admin:billing_invoiceitem_change", args=[item.pk]): (CUSTOMER,),
    }


def test_the_groups(operator, approver, viewer) -> None:
    assert Group.objects.get(name=OPERATORS).permissions.filter(codename="view_personal_data")
    assert Group.objects.get(name=APPROVERS).permissions.filter(codename="view_personal_data")
    assert not Group.objects.get(name=VIEWERS).permissions.filter(codename="view_personal_data")
    assert operator.has_perm(PERM_PERSONAL_DATA) and approver.has_perm(PERM_PERSONAL_DATA)
    assert not sees_personal_data(viewer)


def test_viewers_see_personal_data_masked_on_every_admin_page(records, viewer_client) -> None:
    for url, values in _admin_pages(*records).items():
        response = viewer_client.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        for raw in (NAME, EMAIL, GSM, CUSTOMER):
            assert raw not in html, (url, raw)
        expected = {NAME: MASKED[0], EMAIL: MASKED[1], GSM: MASKED[2], CUSTOMER: CUSTOMER_MASKED}
        for value in values:
            assert expected[value] in html, (url, value)


def test_operators_see_personal_data_unmasked(records, operator_client) -> None:
    for url, values in _admin_pages(*records).items():
        html = operator_client.get(url).content.decode()
        for value in values:
            assert value in html, (url, value)
        assert MASKED[0] not in html and CUSTOMER_MASKED not in html


def test_search_still_finds_by_the_real_value(records, viewer_client) -> None:
    # Searching needs the value already known; the list then shows it masked.
    url = reverse("admin:subscriptions_subscription_changelist")
    html = viewer_client.get(url, {"q": EMAIL}).content.decode()
    shown = html.replace(f'value="{EMAIL}"', "")  # the search box echoes what was typed
    assert "90000600" in html and MASKED[0] in html and EMAIL not in shown


def _export(client, model: str, pk: int) -> str:
    response = client.post(
        reverse(f"admin:{model}_changelist"),
        {"action": "export_csv", "index": "0", "_selected_action": [str(pk)]},
    )
    assert response.status_code == 200
    return b"".join(response.streaming_content).decode("utf-8-sig")


@pytest.mark.parametrize(
    ("model", "index", "raw", "masked"),
    [
        ("subscriptions_subscription", 0, (NAME, EMAIL, GSM), MASKED),
        ("subscriptions_subscriptioninvoice", 1, (NAME,), MASKED[:1]),
        ("billing_invoice", 2, (CUSTOMER,), (CUSTOMER_MASKED,)),
        ("billing_invoiceitem", 3, (CUSTOMER,), (CUSTOMER_MASKED,)),
    ],
)
def test_csv_exports(records, viewer_client, operator, model, index, raw, masked) -> None:
    pk = records[index].pk
    text = _export(viewer_client, model, pk)
    assert not [value for value in raw if value in text]
    assert all(value in text for value in masked)
    viewer_client.force_login(operator)
    text = _export(viewer_client, model, pk)
    assert all(value in text for value in raw)


@pytest.mark.parametrize(
    ("url", "field", "raw", "masked"),
    [
        ("/api/subscriptions/", "name_surname", NAME, MASKED[0]),
        ("/api/invoices/", "full_name", CUSTOMER, CUSTOMER_MASKED),
    ],
)
def test_the_api(records, api_viewer, api_operator, url, field, raw, masked) -> None:
    for path in (url, f"{url}{records[0 if 'subscriptions' in url else 2].pk}/"):
        body = api_viewer.get(path).json()
        row = body["results"][0] if "results" in body else body
        assert row[field] == masked
        body = api_operator.get(path).json()
        row = body["results"][0] if "results" in body else body
        assert row[field] == raw


def test_a_token_without_the_permission_gets_masked_data(records, viewer) -> None:
    from security.tokens import api_token_create

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {api_token_create(user=viewer)[1]}")
    row = api.get("/api/subscriptions/").json()["results"][0]
    assert row["name_surname"] == MASKED[0]


def test_granting_the_permission_to_a_viewer_unmasks(records, viewer, client) -> None:
    from django.contrib.auth.models import Permission

    viewer.user_permissions.add(Permission.objects.get(codename="view_personal_data"))
    client.force_login(viewer)
    html = client.get(reverse("admin:subscriptions_subscription_changelist")).content.decode()
    assert NAME in html


def test_a_masked_row_is_never_saved(records, viewer) -> None:
    with masking(viewer):
        sub = Subscription.objects.get(pk=records[0].pk)
    assert sub.name_surname == MASKED[0]
    sub.status = 5
    with pytest.raises(RuntimeError, match="masked"):
        sub.save()
    assert Subscription.objects.get(pk=sub.pk).name_surname == NAME


def test_rows_read_outside_a_page_are_real(records, viewer) -> None:
    # Services, syncs and pushes read the mirror as it is, whoever asked.
    assert Subscription.objects.get(pk=records[0].pk).name_surname == NAME
    with masking(viewer):
        pass
    assert Subscription.objects.get(pk=records[0].pk).end_user_email == EMAIL


def test_a_job_names_its_subscriptions_masked(records, operator, queued_tasks) -> None:
    # Job pages, job exports and the call log's targets are read by every viewer.
    from subscriptions import services
    from upstream.models import JobItem
    from upstream.pushes.bulk import prepare_job

    job = services.subscription_set_status_all(
        subscriptions=Subscription.objects.filter(pk=records[0].pk),
        status=5,
        actor=operator,
        reason="KVKK test",
    )
    prepare_job(job.pk)
    items = list(JobItem.objects.filter(job=job))
    assert [item.target_repr for item in items] == [f"90000600 {MASKED[0]}"]


def test_a_bulk_move_names_its_target_invoices_customer_masked(
    records, operator, queued_tasks
) -> None:
    # The job's title and parameters are on the job list, its page and /api/jobs/ for viewers.
    from billing.services import invoice_item_bulk_update

    _sub, _record, _invoice, item = records
    target = Invoice.objects.create(
        wisecp_id=368, number="#368", status="unpaid", full_name=CUSTOMER, user_id=2
    )
    job = invoice_item_bulk_update(
        items=InvoiceItem.objects.filter(pk=item.pk),
        action="move",
        value=target.pk,
        actor=operator,
        reason="KVKK test",
    )
    assert CUSTOMER not in job.title and CUSTOMER not in str(job.params)
    assert CUSTOMER_MASKED in job.title


@pytest.mark.parametrize(
    ("model", "param", "part", "whole"),
    [
        ("subscriptions_subscription", "q", "Zeyn", NAME),
        ("subscriptions_subscriptioninvoice", "q", "Zeyn", NAME),
        ("billing_invoice", "q", "Mehm", CUSTOMER),
        ("billing_invoice", "customer", "Meh", CUSTOMER),
        ("billing_invoiceitem", "q", "Mehm", CUSTOMER),
        ("billing_invoiceitem", "customer", "Meh", CUSTOMER),
    ],
)
def test_without_the_permission_a_name_is_found_only_whole(
    records, viewer_client, operator, model, param, part, whole
) -> None:
    # A substring search would spell a masked name out: "Zey" matches, "Zeyn" matches, ...
    url = reverse(f"admin:{model}_changelist")

    def found(term: str) -> bool:
        return viewer_client.get(url, {param: term}).context["cl"].result_count > 0

    assert not found(part)
    assert found(whole)
    if param == "q":  # the search box says so
        help_text = viewer_client.get(url).context["cl"].search_help_text
        assert "a name is found by the whole name only" in help_text
    viewer_client.force_login(operator)
    assert found(part)


def test_a_post_that_runs_no_action_shows_the_list_masked_too(records, viewer_client) -> None:
    # Django's changelist renders the list for a POST without an action, and the history page
    # answers a POST like a GET: masked like the GET pages.
    sub, record, invoice, item = records
    pages = {
        reverse("admin:subscriptions_subscription_changelist"): (NAME,),
        reverse("admin:subscriptions_subscriptioninvoice_changelist"): (NAME,),
        reverse("admin:billing_invoice_changelist"): (CUSTOMER,),
        reverse("admin:billing_invoiceitem_changelist"): (CUSTOMER,),
        reverse("admin:subscriptions_subscription_history", args=[sub.pk]): (NAME,),
        reverse("admin:subscriptions_subscriptioninvoice_history", args=[record.pk]): (),
        reverse("admin:billing_invoice_history", args=[invoice.pk]): (),
        reverse("admin:billing_invoiceitem_history", args=[item.pk]): (),
    }
    for url in pages:
        response = viewer_client.post(url, {})
        html = response.content.decode()
        assert not [raw for raw in (NAME, EMAIL, GSM, CUSTOMER) if raw in html], url
    html = viewer_client.post(reverse("admin:subscriptions_subscription_changelist")).content
    assert MASKED[0] in html.decode()


@pytest.mark.parametrize("method", ["OPTIONS", "TRACE", "PUT", "PATCH", "DELETE", "PROPFIND"])
def test_an_admin_page_asked_with_another_method_is_masked(records, viewer_client, method) -> None:
    # The admin's views answer any method but POST as a GET: they show the page, masked alike.
    sub = records[0]
    for url in (
        reverse("admin:subscriptions_subscription_change", args=[sub.pk]),
        reverse("admin:subscriptions_subscription_changelist"),
    ):
        response = viewer_client.generic(method, url)
        html = response.content.decode()
        assert not [raw for raw in (NAME, EMAIL, GSM) if raw in html], (method, url)


def test_a_name_change_is_kept_masked_in_the_history_for_everyone(records, viewer, operator):
    """The history keeps personal data masked at rest, as the call log does (issue 19): the
    timeline shows the change masked to every reader; the record's own page still shows its
    current name to those allowed."""
    from upstream.models import RecordChange

    sub = records[0]
    # A sync renamed the customer: the history keeps both names, masked.
    Subscription.objects.filter(pk=sub.pk).update(name_surname="Zeynep Demir")
    change = RecordChange.objects.get(object_id=sub.pk, field="name_surname")
    assert (change.old, change.new) == (MASKED[0], "Ze*** De***")
    url = f"/api/subscriptions/{sub.pk}/timeline/"
    page = reverse("admin:subscriptions_subscription_change", args=[sub.pk])

    for user, shown in ((viewer, False), (operator, True)):
        api = APIClient()
        api.force_authenticate(user)
        events = api.get(url).json()
        (event,) = [e for e in events if e["changes"]]
        assert event["changes"] == [
            {"field": "name_surname", "old": MASKED[0], "new": "Ze*** De***"}
        ]
        client = Client()
        client.force_login(user)
        html = client.get(page).content.decode()
        assert ("Zeynep Demir" in html) is shown  # the mirror's current name
        assert NAME not in html  # the old one is only in the history, masked


def test_operators_read_names_in_job_items_viewers_read_them_masked(operator, viewer, db):
    from django.test import Client
    from django.urls import reverse
    from django.utils import timezone

    from security.personal import masked_str
    from subscriptions.models import Subscription
    from upstream.models import Job, JobItem

    sub = Subscription.objects.create(
        subscription_id="s-1",
        reference_no="90000001",
        name_surname="Zeynep Kaya",
        created_date=timezone.now(),
    )
    job = Job.objects.create(kind="paynet.subscription_status_all", title="t", total=1)
    JobItem.objects.create(
        job=job,
        position=1,
        target_type="subscriptions.subscription",
        target_id=str(sub.pk),
        target_repr=masked_str(sub),
        state="done",
        outcome="failed",
    )
    for user, sees in ((operator, True), (viewer, False)):
        client = Client()
        client.force_login(user)
        listed = client.get(reverse("admin:upstream_jobitem_changelist")).content.decode()
        page = client.get(reverse("admin:upstream_job_change", args=[job.pk])).content.decode()
        for html in (listed, page):
            assert ("Zeynep Kaya" in html) is sees, (user, html[:0])


def test_a_job_title_names_the_customer_as_each_reader_may_see_it(operator, viewer, db):
    from django.test import Client
    from django.urls import reverse
    from django.utils import timezone
    from django.utils.translation import gettext_noop

    from security.personal import masked_str
    from subscriptions.models import Subscription
    from upstream.l10n.stored import record_param, text, to_json
    from upstream.models import Job

    sub = Subscription.objects.create(
        subscription_id="s-2",
        reference_no="90000002",
        name_surname="Zeynep Kaya",
        created_date=timezone.now(),
    )
    title = text(
        gettext_noop("Create payment record %(no)s for %(subscription)s"),
        no="11400001",
        subscription=record_param(sub, masked_str(sub)),
    )
    assert "Zeynep Kaya" not in title  # the stored column stays masked
    job = Job.objects.create(
        kind="paynet.create_invoice", title=title, title_text=to_json(title), total=1
    )
    for user, sees in ((operator, True), (viewer, False)):
        client = Client()
        client.force_login(user)
        page = client.get(reverse("admin:upstream_job_change", args=[job.pk])).content.decode()
        assert ("Zeynep Kaya" in page) is sees, user
