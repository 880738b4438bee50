"""The group and user pages name permissions in the reader's language, not as stored."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

pytestmark = pytest.mark.django_db


def _page(admin_client, language: str) -> str:
    admin_client.cookies["django_language"] = language
    group = Group.objects.create(name="readers")
    url = reverse("admin:auth_group_change", args=[group.pk])
    return admin_client.get(url).content.decode()


def test_permissions_are_named_in_turkish_on_a_turkish_page(
    admin_client, django_assert_max_num_queries
):
    with django_assert_max_num_queries(30):  # labels from the loaded content types
        page = _page(admin_client, "tr")
    assert "ödeme kaydı ekleyebilir" in page
    assert "Can add" not in page and "Can change" not in page and "Can view" not in page
    # Ours, from their Meta names in the catalogue.
    assert "Can push invoice item changes to WiseCP" not in page
    assert "Can see customers" not in page


def test_permissions_keep_their_english_names_on_an_english_page(admin_client):
    page = _page(admin_client, "en")
    assert "Can add payment record" in page
    assert "Can push invoice item changes to WiseCP" in page
