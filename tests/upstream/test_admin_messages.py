"""What the admin says when something goes wrong: a failed save, a bad filter, a forged action."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

pytestmark = pytest.mark.django_db


def test_a_failed_save_names_the_record_as_saved(admin_client) -> None:
    group = Group.objects.create(name="Muhasebe")
    Group.objects.create(name="Taken")
    response = admin_client.post(
        reverse("admin:auth_group_change", args=[group.pk]), {"name": "Taken"}
    )
    assert response.status_code == 200 and response.context["adminform"].form.errors
    html = response.content.decode()
    assert "<title>Error: Muhasebe |" in html
    breadcrumbs = html.split('<div class="breadcrumbs">', 1)[1].split("</div>", 1)[0]
    assert "Muhasebe" in breadcrumbs and "Taken" not in breadcrumbs
    assert 'value="Taken"' in html  # the input keeps what was typed, to correct it


def test_a_bad_date_in_a_list_filter_says_so(admin_client, settings) -> None:
    from django.utils import timezone

    from upstream.models import UpstreamCall

    settings.LANGUAGE_CODE = "tr"
    UpstreamCall.objects.create(
        service="paynet", operation="x", method="POST", url="u", created_at=timezone.now()
    )
    url = reverse("admin:upstream_upstreamcall_changelist")
    response = admin_client.get(url, {"created_at__range_from": "2027-13-45"})
    # Not Django's silent redirect to the unfiltered list ("?e=1").
    assert response.status_code == 200
    texts = [str(m) for m in response.context["messages"]]
    assert texts == [
        "“2027-13-45” bir tarih değil (oluşturulma): tarihleri gg.aa.yyyy olarak girin. "
        "Liste buna göre süzülmedi."
    ]
    assert 'value="2027-13-45"' in response.content.decode()  # left there to correct
    good = admin_client.get(url, {"created_at__range_from": "01.01.2020"})
    assert not list(good.context["messages"])


def test_a_forged_action_post_is_refused_by_name(viewer_client, settings) -> None:
    from django.utils import timezone

    from upstream.models import UpstreamCall

    settings.LANGUAGE_CODE = "tr"
    call = UpstreamCall.objects.create(
        service="paynet", operation="x", method="POST", url="u", created_at=timezone.now()
    )
    # A viewer may export (view) but the list offers no push: forge one.
    response = viewer_client.post(
        reverse("admin:subscriptions_subscriptioninvoice_changelist"),
        {"action": "change_status", "_selected_action": [call.pk]},
        follow=True,
    )
    texts = [str(m) for m in response.context["messages"]]
    assert texts == ["“change_status” eylemi bu listede size açık değil; hiçbir şey yapılmadı."]
    assert "Seçilen eylem yok." not in response.content.decode()


def test_the_403_page_is_turkish_in_the_admins_frame_with_a_way_back(
    viewer_client, settings
) -> None:
    from django.utils import timezone

    from billing.models import Invoice, InvoiceItem

    settings.LANGUAGE_CODE = "tr"
    invoice = Invoice.objects.create(wisecp_id=1, number="1", status="unpaid")
    item = InvoiceItem.objects.create(
        wisecp_id=2, invoice=invoice, description="d", amount=1, total=1, due_date=timezone.now()
    )
    listing = reverse("admin:billing_invoiceitem_changelist")
    response = viewer_client.get(
        reverse("admin:billing_invoiceitem_edit", args=[item.pk]),
        HTTP_REFERER=f"http://testserver{listing}",
    )
    assert response.status_code == 403
    html = response.content.decode()
    assert "Bu sayfayı açamazsınız" in html
    assert "Forbidden" not in html
    assert 'id="forbidden-home" href="/"' in html
    assert f'id="forbidden-back" href="http://testserver{listing}"' in html
    assert 'id="user-tools"' in html  # the admin's frame: who is logged in, log out
    forged = viewer_client.get(
        reverse("admin:billing_invoiceitem_edit", args=[item.pk]),
        HTTP_REFERER="https://evil.example/",
    )
    assert 'id="forbidden-back"' not in forged.content.decode()
