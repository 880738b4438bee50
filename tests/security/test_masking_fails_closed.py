"""Masking fails closed: a reader without security.view_personal_data gets personal data masked
whatever the method, view or path, from the one middleware; no view has to opt in."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from security.personal import is_masking, unmasked
from security.tokens import api_token_create
from subscriptions.models import Subscription

NAME, EMAIL, GSM = "Zeynep Kaya", "zeynep.kaya@example.com", "5321234567"

pytestmark = pytest.mark.urls("tests.security.masking_urls")


@pytest.fixture
def sub(db) -> Subscription:
    return Subscription.objects.create(
        subscription_id="0f6f1c1e-0000-4000-8000-00000000b001",
        reference_no="90000800",
        name_surname=NAME,
        end_user_email=EMAIL,
        end_user_gsm=GSM,
        is_fixed_price=False,
    )


@pytest.mark.parametrize("method", ["get", "post", "put", "patch", "delete", "options"])
def test_a_new_page_is_masked_for_a_viewer_whatever_the_method(sub, viewer_client, method):
    body = getattr(viewer_client, method)(f"/new-page/{sub.pk}/").json()
    assert body == {"name": "Ze*** Ka**", "email": "z***@example.com"}


def test_a_new_page_is_clear_for_an_operator(sub, operator_client) -> None:
    assert operator_client.post(f"/new-page/{sub.pk}/").json()["name"] == NAME


@pytest.mark.parametrize("method", ["post", "put"])
def test_a_new_api_route_with_a_token_is_masked_for_a_viewer(sub, viewer, operator, method):
    for user, name in ((viewer, "Ze*** Ka**"), (operator, NAME)):
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=f"Token {api_token_create(user=user)[1]}")
        response = getattr(api, method)(f"/api/new-route/{sub.pk}/")
        assert response.json()["name"] == name, (user, response.content)


def test_anonymous_requests_are_masked_too(sub, client) -> None:
    assert client.post(f"/new-page/{sub.pk}/").json()["name"] == "Ze*** Ka**"


def test_unmasked_lets_a_write_back_read_rows_as_they_are(sub, viewer, rf) -> None:
    from security.personal import PersonalDataMasking

    request = rf.post("/")
    request.user = viewer

    def view(request):
        assert is_masking()
        with unmasked():
            assert Subscription.objects.get(pk=sub.pk).name_surname == NAME
        return None

    PersonalDataMasking(view)(request)
