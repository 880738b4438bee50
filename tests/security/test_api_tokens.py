"""API tokens (django-rest-knox): hashed at rest, with an expiry that an idle token reaches and
none outlives, revocable, ended by a password change."""

from __future__ import annotations

import importlib
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.apps import apps
from django.core.management import call_command
from django.db import connection
from django.urls import reverse
from django.utils import timezone
from freezegun import freeze_time
from knox.models import AuthToken
from rest_framework.test import APIClient

from security.tokens import api_token_create, api_token_revoke

URL = "/api/jobs/"


def _api(token: str) -> APIClient:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return api


def test_a_token_works_and_is_stored_only_as_a_digest(operator) -> None:
    row, token = api_token_create(user=operator)
    assert _api(token).get(URL).status_code == 200
    stored = AuthToken.objects.values().get()
    assert token not in [str(v) for v in stored.values()], "never in clear"
    assert stored["digest"] != token and token.startswith(stored["token_key"])
    assert row.expiry is not None


def test_an_expired_token_is_refused(operator, settings) -> None:
    _, token = api_token_create(user=operator)
    with freeze_time(timezone.now() + timedelta(hours=settings.API_TOKEN_IDLE_HOURS + 1)):
        assert _api(token).get(URL).status_code == 403
    assert not AuthToken.objects.exists()


def test_use_moves_the_expiry_but_never_past_the_lifetime(operator, settings) -> None:
    start = timezone.now()
    _, token = api_token_create(user=operator)
    idle = timedelta(hours=settings.API_TOKEN_IDLE_HOURS)
    moment = start
    # Used every idle period minus an hour: it lives on until its lifetime is over.
    while moment < start + timedelta(days=settings.API_TOKEN_MAX_DAYS) - idle:
        moment += idle - timedelta(hours=1)
        with freeze_time(moment):
            assert _api(token).get(URL).status_code == 200, moment - start
    with freeze_time(start + timedelta(days=settings.API_TOKEN_MAX_DAYS, hours=1)):
        assert _api(token).get(URL).status_code == 403


def test_a_revoked_token_is_refused(operator) -> None:
    row, token = api_token_create(user=operator)
    api_token_revoke(token=row)
    assert _api(token).get(URL).status_code == 403


def test_a_password_change_ends_the_users_tokens(operator, viewer) -> None:
    _, token = api_token_create(user=operator)
    _, other = api_token_create(user=viewer)
    operator.set_password("a new one 123")
    operator.save()
    assert _api(token).get(URL).status_code == 403
    assert _api(other).get(URL).status_code == 200, "other users keep theirs"


def test_the_admin_makes_a_token_shown_once_and_revokes_it(admin_client, operator) -> None:
    response = admin_client.post(
        reverse("admin:knox_authtoken_add"), {"user": operator.pk}, follow=True
    )
    text = " ".join(str(m) for m in response.context["messages"])
    token = text.split(" is ", 1)[1].split(" ", 1)[0]
    assert _api(token).get(URL).status_code == 200
    row = AuthToken.objects.get()
    page = admin_client.get(reverse("admin:knox_authtoken_changelist")).content.decode()
    assert token not in page and row.token_key[:8] in page
    admin_client.post(reverse("admin:knox_authtoken_delete", args=[row.pk]), {"post": "yes"})
    assert _api(token).get(URL).status_code == 403


def test_the_command_makes_and_revokes(operator, capsys) -> None:
    call_command("api_token", "create", "operator")
    token = capsys.readouterr().out.strip()
    assert _api(token).get(URL).status_code == 200
    call_command("api_token", "revoke", "operator")
    assert _api(token).get(URL).status_code == 403


def test_clear_drf_tokens_become_hashed_ones_with_the_same_key(operator) -> None:
    key = "0123456789abcdef0123456789abcdef01234567"
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, created timestamp, "
            "user_id integer)"
        )
        cursor.execute(
            "INSERT INTO authtoken_token VALUES (%s, %s, %s)", [key, timezone.now(), operator.pk]
        )
    migration = importlib.import_module("security.migrations.0002_api_tokens_hashed")
    # The migration reads only the editor's connection (a real editor cannot open in a test's
    # transaction on SQLite).
    migration.hash_clear_tokens(apps, SimpleNamespace(connection=connection))
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM authtoken_token")
        assert cursor.fetchone()[0] == 0, "no key left in clear"
        cursor.execute("DROP TABLE authtoken_token")
    assert _api(key).get(URL).status_code == 200
    assert AuthToken.objects.get().expiry is not None


@pytest.mark.parametrize("header", ["Token", "Token a b", "Token " + "z" * 64])
def test_a_malformed_token_is_refused_not_a_500(db, header) -> None:
    api = APIClient(raise_request_exception=False)
    api.credentials(HTTP_AUTHORIZATION=header)
    assert api.get(URL).status_code == 403
