"""Login lockout (django-axes): 5 failures for one username from one address lock that pair for
15 minutes, even against the right password; other users and addresses go on. The settings
are the product's defaults, not raised for tests."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from security.lockout import lockout_response

LOGIN = reverse("admin:login")
ATTACKER = "203.0.113.7"


def attempt(client: Client, username: str, password: str):
    return client.post(LOGIN, {"username": username, "password": password, "next": "/"})


def fail(client: Client, username: str, times: int) -> None:
    """`times` wrong passwords: the login form again, with its error, until the fifth, which
    locks the pair out at once."""
    for n in range(1, times + 1):
        response = attempt(client, username, "wrong-password")
        assert response.status_code == (200 if n < settings.AXES_FAILURE_LIMIT else 429)


@pytest.fixture
def attacker() -> Client:
    return Client(REMOTE_ADDR=ATTACKER)


def test_the_defaults_are_five_failures_and_fifteen_minutes() -> None:
    assert settings.AXES_ENABLED is True
    assert settings.AXES_FAILURE_LIMIT == 5
    assert settings.AXES_COOLOFF_TIME.total_seconds() == 15 * 60
    assert settings.AXES_LOCKOUT_PARAMETERS == [["username", "ip_address"]]


def test_four_failures_still_let_the_right_password_in(attacker, operator) -> None:
    fail(attacker, "operator", 4)
    response = attempt(attacker, "operator", "pw")
    assert response.status_code == 302 and response.url == "/"
    # A success clears the count: four more failures do not lock.
    attacker.logout()
    fail(attacker, "operator", 4)
    assert attempt(attacker, "operator", "pw").status_code == 302


def test_five_failures_lock_out_even_the_right_password(attacker, operator) -> None:
    fail(attacker, "operator", 5)
    response = attempt(attacker, "operator", "pw")
    assert response.status_code == 429
    assert response["Retry-After"] == "900"
    assert "_auth_user_id" not in attacker.session
    page = response.content.decode()
    # The admin's frame (its stylesheet and header) with a message that says what to do.
    assert 'id="site-name"' in page and "admin/css/base.css" in page
    assert "Too many failed logins" in page
    assert "blocked for 15 minutes" in page and "After 5 wrong passwords" in page
    assert f'href="{LOGIN}"' in page


def test_the_locked_out_page_is_turkish_for_a_turkish_reader(attacker, operator) -> None:
    attacker.cookies[settings.LANGUAGE_COOKIE_NAME] = "tr"
    fail(attacker, "operator", 5)
    page = attempt(attacker, "operator", "pw").content.decode()
    assert "Çok fazla başarısız giriş" in page
    assert "15 dakika boyunca kapalı" in page and "Giriş sayfasına dön" in page
    assert "Too many" not in page


def test_another_user_from_the_same_address_is_not_locked(attacker, operator, viewer) -> None:
    fail(attacker, "operator", 5)
    assert attempt(attacker, "operator", "pw").status_code == 429
    assert attempt(attacker, "viewer", "pw").status_code == 302


def test_the_same_user_from_another_address_is_not_locked(attacker, operator) -> None:
    fail(attacker, "operator", 5)
    assert attempt(attacker, "operator", "pw").status_code == 429
    office = Client(REMOTE_ADDR="198.51.100.20")
    assert attempt(office, "operator", "pw").status_code == 302


def test_an_unknown_username_is_locked_the_same(attacker, db) -> None:
    # Nothing tells an attacker which usernames exist.
    fail(attacker, "nobody", 5)
    assert attempt(attacker, "nobody", "whatever").status_code == 429


def test_after_the_cooloff_the_right_password_gets_in(attacker, operator) -> None:
    fail(attacker, "operator", 5)
    assert attempt(attacker, "operator", "pw").status_code == 429
    # 15 minutes after the last attempt (the locked one counts too) the pair is free again.
    last = timezone.now() - timedelta(minutes=15, seconds=5)
    AccessAttempt.objects.update(attempt_time=last)
    assert attempt(attacker, "operator", "pw").status_code == 302


def test_within_the_cooloff_it_stays_locked(attacker, operator) -> None:
    fail(attacker, "operator", 5)
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=14))
    assert attempt(attacker, "operator", "pw").status_code == 429


def test_failures_and_the_lockout_are_logged(attacker, operator, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="backoffice.security"):
        fail(attacker, "operator", 5)
        attempt(attacker, "operator", "pw")
    lines = [r.getMessage() for r in caplog.records if r.name == "backoffice.security"]
    failed = [line for line in lines if line.startswith("login_failed ")]
    assert len(failed) == 6
    assert f"ip={ATTACKER}" in failed[0] and "user=operator" in failed[0]
    assert "failures=1" in failed[0] and "failures=5" in failed[4]
    lockouts = [line for line in lines if line.startswith("lockout ")]
    assert lockouts and "user=operator" in lockouts[0] and f"ip={ATTACKER}" in lockouts[0]
    assert "cooloff_minutes=15" in lockouts[0] and "failures=5" in lockouts[0]
    assert "wrong-password" not in " ".join(lines)
    assert not any(line.startswith("login ") for line in lines)


def test_an_api_path_gets_the_lockout_as_json(rf) -> None:
    response = lockout_response(rf.post("/api/jobs/"))
    assert response.status_code == 429 and response["Retry-After"] == "900"
    body = json.loads(response.content)
    assert body["retry_after"] == 900 and "15 minutes" in body["detail"]


def test_the_login_page_says_how_many_tries_are_left_and_offers_both_languages(
    attacker, operator
) -> None:
    attacker.cookies["django_language"] = "en"
    page = attacker.get(LOGIN).content.decode()
    assert 'id="language-switch"' in page and 'id="attempts-left"' not in page
    first = attempt(attacker, "operator", "wrong-password").content.decode()
    assert "4 tries left before this user name is locked out" in first
    for _n in range(2):
        attempt(attacker, "operator", "wrong-password")
    fourth = attempt(attacker, "operator", "wrong-password").content.decode()
    assert "One more wrong password locks this user name out" in fourth
