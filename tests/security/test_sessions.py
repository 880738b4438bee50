"""Sessions: an idle session ends after SESSION_IDLE_SECONDS (each request moves the deadline),
a password change ends the user's other sessions, and logins, logouts, failed logins and
refused requests go to the security log."""

from __future__ import annotations

import logging
import time

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse

from security import middleware

INDEX = reverse("admin:index")
LOGIN = reverse("admin:login")


@pytest.fixture
def clock(monkeypatch):
    """The idle timeout's clock, moved by hand."""

    class Clock:
        now = time.time()

        def __call__(self) -> float:
            return self.now

        def advance(self, seconds: float) -> None:
            self.now += seconds

    fake = Clock()
    monkeypatch.setattr(middleware, "clock", fake)
    return fake


def security_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "backoffice.security"]


def test_the_default_idle_time_is_thirty_minutes() -> None:
    assert settings.SESSION_IDLE_SECONDS == 1800


def test_an_idle_session_ends(operator_client, clock, caplog) -> None:
    assert operator_client.get(INDEX).status_code == 200
    clock.advance(settings.SESSION_IDLE_SECONDS + 1)
    with caplog.at_level(logging.INFO, logger="backoffice.security"):
        response = operator_client.get(INDEX)
    assert response.status_code == 302 and response.url.startswith(LOGIN)
    assert "_auth_user_id" not in operator_client.session
    assert any(
        line.startswith("logout ") and "user=operator" in line and "reason=idle" in line
        for line in security_lines(caplog)
    )


def test_each_request_moves_the_deadline(operator_client, clock) -> None:
    idle = settings.SESSION_IDLE_SECONDS
    assert operator_client.get(INDEX).status_code == 200
    for _ in range(3):
        clock.advance(idle - 10)
        assert operator_client.get(INDEX).status_code == 200
    clock.advance(idle + 1)
    assert operator_client.get(INDEX).status_code == 302


def test_a_page_polling_by_itself_keeps_no_session_alive(operator_client, clock) -> None:
    idle = settings.SESSION_IDLE_SECONDS
    operator_client.get(INDEX)
    for _ in range(3):
        clock.advance(idle / 2)
        operator_client.get("/upstream/job/1/progress.json")
    assert operator_client.get(INDEX).status_code == 302


def test_the_idle_time_comes_from_the_setting(settings, operator_client, clock) -> None:
    settings.SESSION_IDLE_SECONDS = 120
    operator_client.get(INDEX)
    clock.advance(121)
    assert operator_client.get(INDEX).status_code == 302


def test_zero_turns_the_idle_timeout_off(settings, operator_client, clock) -> None:
    settings.SESSION_IDLE_SECONDS = 0
    operator_client.get(INDEX)
    clock.advance(30 * 24 * 3600)
    assert operator_client.get(INDEX).status_code == 200


def test_a_password_change_ends_the_users_other_sessions(operator, caplog) -> None:
    here, elsewhere = Client(), Client()
    here.force_login(operator)
    elsewhere.force_login(operator)
    assert elsewhere.get(INDEX).status_code == 200
    with caplog.at_level(logging.INFO, logger="backoffice.security"):
        response = here.post(
            reverse("admin:password_change"),
            {
                "old_password": "pw",
                "new_password1": "Kis-Tatili-2026!",
                "new_password2": "Kis-Tatili-2026!",
            },
        )
    assert response.status_code == 302
    # Django keeps the session that changed it (update_session_auth_hash) ...
    assert here.get(INDEX).status_code == 200
    # ... and every other session of the user fails its auth hash at its next request.
    response = elsewhere.get(INDEX)
    assert response.status_code == 302 and response.url.startswith(LOGIN)
    assert any(line == "password_changed user=operator" for line in security_lines(caplog)), (
        security_lines(caplog)
    )


def test_a_password_set_by_an_administrator_ends_the_users_sessions(viewer, django_user_model):
    admin = django_user_model.objects.create_superuser("root", password="pw")
    staff, their = Client(), Client()
    staff.force_login(admin)
    their.force_login(viewer)
    assert their.get(INDEX).status_code == 200
    response = staff.post(
        reverse("admin:auth_user_password_change", args=[viewer.pk]),
        {
            "password1": "Yeni-Parola-2026!",
            "password2": "Yeni-Parola-2026!",
            "usable_password": "true",
        },
    )
    assert response.status_code == 302
    assert their.get(INDEX).status_code == 302
    assert staff.get(INDEX).status_code == 200


def test_logins_and_logouts_are_logged(operator, caplog) -> None:
    browser = Client(REMOTE_ADDR="192.0.2.44")
    with caplog.at_level(logging.INFO, logger="backoffice.security"):
        browser.post(LOGIN, {"username": "operator", "password": "pw", "next": "/"})
        browser.post(reverse("admin:logout"))
    lines = security_lines(caplog)
    assert "login ip=192.0.2.44 path=/login/ user=operator" in lines
    assert "logout ip=192.0.2.44 path=/logout/ user=operator reason=user" in lines


def test_a_failed_login_is_logged_without_the_password(operator, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="backoffice.security"):
        Client().post(LOGIN, {"username": "operator", "password": "Secret-123", "next": "/"})
    lines = security_lines(caplog)
    assert len(lines) == 1
    assert lines[0].startswith("login_failed ip=127.0.0.1 path=/login/ user=operator failures=1")
    assert "Secret-123" not in lines[0]


def test_a_crafted_username_cannot_forge_a_log_line(db, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="backoffice.security"):
        Client().post(LOGIN, {"username": "x\nlogin user=admin", "password": "p", "next": "/"})
    (line,) = security_lines(caplog)
    assert "\n" not in line and 'user="x\\nlogin user=admin"' in line


def test_refused_requests_are_logged(viewer_client, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="backoffice.security"):
        assert viewer_client.get("/auth/user/").status_code == 403
        assert Client().get("/api/jobs/").status_code == 403
    lines = security_lines(caplog)
    assert "forbidden ip=127.0.0.1 path=/auth/user/ status=403 method=GET user=viewer" in lines
    assert "forbidden ip=127.0.0.1 path=/api/jobs/ status=403 method=GET user=-" in lines


def test_a_refused_api_token_user_is_named(django_user_model, caplog) -> None:
    from rest_framework.test import APIClient

    from security.tokens import api_token_create

    clerk = django_user_model.objects.create_user("clerk", password="pw", is_staff=True)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {api_token_create(user=clerk)[1]}")
    with caplog.at_level(logging.INFO, logger="backoffice.security"):
        assert api.get("/api/jobs/").status_code == 403  # staff, without upstream.view_job
        assert api.get("/api/jobs/999999/").status_code == 403
    lines = [line for line in security_lines(caplog) if line.startswith("forbidden")]
    assert lines == [
        "forbidden ip=127.0.0.1 path=/api/jobs/ status=403 method=GET user=clerk",
        "forbidden ip=127.0.0.1 path=/api/jobs/999999/ status=403 method=GET user=clerk",
    ]


def test_the_proxys_address_is_not_taken_for_the_clients(settings, operator, caplog) -> None:
    settings.TRUSTED_PROXY_COUNT = 1
    browser = Client(REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="1.2.3.4, 198.51.100.7")
    with caplog.at_level(logging.INFO, logger="backoffice.security"):
        browser.post(LOGIN, {"username": "operator", "password": "wrong", "next": "/"})
    # The proxy appended the client it saw; what the client wrote before it is not trusted.
    assert "ip=198.51.100.7" in security_lines(caplog)[0]


def test_the_login_page_says_an_idle_session_ended_and_leads_back(operator_client, clock) -> None:
    page = reverse("admin:upstream_job_changelist")
    assert operator_client.get(page).status_code == 200
    clock.advance(settings.SESSION_IDLE_SECONDS + 1)
    response = operator_client.get(page)
    assert response.status_code == 302 and response.url == f"{LOGIN}?next={page}"
    operator_client.cookies["django_language"] = "en"
    login = operator_client.get(response.url).content.decode()
    assert 'id="session-ended-note"' in login
    assert "Your session ended after 30 minutes without activity." in login
    # Said once: a later visit to the login page is a plain login page.
    assert 'id="session-ended-note"' not in operator_client.get(LOGIN).content.decode()


def test_a_page_can_ask_how_long_its_session_has_left_without_keeping_it_alive(
    operator_client, clock
) -> None:
    idle = settings.SESSION_IDLE_SECONDS
    page = operator_client.get(INDEX).content.decode()
    assert f'id="session-timer" data-idle="{idle}"' in page
    status = reverse("session-status")
    clock.advance(idle - 100)
    assert 99 <= operator_client.get(status).json()["remaining"] <= 100
    # "Stay signed in" moves the deadline as any request would.
    assert operator_client.post(reverse("session-keepalive")).json()["remaining"] >= idle - 1
    clock.advance(idle + 1)
    assert operator_client.get(status).json() == {"remaining": 0}
    assert operator_client.get(INDEX).status_code == 302
