"""Every list filter of every changelist has its own heading in both languages."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.sites import all_sites
from django.contrib.admin.utils import get_fields_from_path
from django.utils import translation

from upstream.l10n.headings import HEADINGS, filter_heading, heading_key


def _titles() -> list[tuple[str, object]]:
    found = []
    for site in all_sites:
        for model, model_admin in site._registry.items():
            for spec in model_admin.list_filter:
                if isinstance(spec, type) and issubclass(spec, admin.SimpleListFilter):
                    title = spec.title
                else:
                    path, cls = spec if isinstance(spec, (list, tuple)) else (spec, None)
                    title = get_fields_from_path(model, path)[-1].verbose_name
                    # A filter class may name itself (the items' "invoice status").
                    if isinstance(cls, type) and getattr(cls, "title", None):
                        title = cls.title
                found.append((f"{model._meta.label} {spec!r}", title))
    return found


def test_every_list_filter_has_a_heading_in_both_languages():
    titles = _titles()
    assert len(titles) > 40  # every changelist's filters, Django's and django-axes' too
    missing = [where for where, title in titles if heading_key(title) not in HEADINGS]
    assert missing == []
    for where, title in titles:
        with translation.override("en"):
            english = filter_heading(title)
        with translation.override("tr"):
            turkish = filter_heading(title)
        assert english.startswith("By "), where
        assert turkish.endswith(" göre") and not turkish.startswith("By "), where
        assert turkish[0].isupper(), where


def test_the_dative_is_the_words_own():
    with translation.override("tr"):
        assert filter_heading("status") == "Duruma göre"
        assert filter_heading("charge date") == "Çekim tarihine göre"
        assert filter_heading("institution") == "Kuruma göre"
        # A title without a heading is shown bare, never half-Turkish.
        assert filter_heading("something new") == "Something new"


def test_the_items_list_names_its_invoices_status_as_such(admin_client, db):
    from django.urls import reverse

    admin_client.cookies["django_language"] = "tr"
    page = admin_client.get(reverse("admin:billing_invoiceitem_changelist")).content.decode()
    assert "<summary>Fatura durumuna göre</summary>" in page
    assert "<summary>Duruma göre</summary>" not in page  # an item has no status of its own
    admin_client.cookies["django_language"] = "en"
    page = admin_client.get(reverse("admin:billing_invoiceitem_changelist")).content.decode()
    assert "<summary>By invoice status</summary>" in page
