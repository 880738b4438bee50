"""API throttling: per user and per anonymous address, 429 with a JSON detail and Retry-After."""

from __future__ import annotations

import logging

import pytest
from django.conf import settings
from rest_framework.test import APIClient

URL = "/api/jobs/"


def test_the_default_rates() -> None:
    assert settings.API_THROTTLE_USER == "600/minute"
    assert settings.API_THROTTLE_ANON == "30/minute"
    classes = settings.REST_FRAMEWORK["DEFAULT_THROTTLE_CLASSES"]
    assert classes == [
        "security.throttles.AnonRateThrottle",
        "security.throttles.UserRateThrottle",
    ]


def test_anonymous_requests_over_the_default_rate_get_429(db, caplog) -> None:
    api = APIClient(REMOTE_ADDR="203.0.113.9")
    answers = [api.get(URL).status_code for _ in range(30)]
    assert set(answers) == {403}  # not signed in, but not throttled yet
    with caplog.at_level(logging.INFO, logger="backoffice.security"):
        response = api.get(URL)
    assert response.status_code == 429
    body = response.json()
    assert set(body) == {"detail", "retry_after"}
    assert 1 <= body["retry_after"] <= 60
    assert body["detail"] == f"Too many requests: try again in {body['retry_after']} seconds."
    assert response["Retry-After"] == str(body["retry_after"])
    assert response["Content-Type"] == "application/json"
    lines = [r.getMessage() for r in caplog.records if r.name == "backoffice.security"]
    assert any(
        line.startswith("throttled ") and "ip=203.0.113.9" in line and "user=-" in line
        for line in lines
    )
    # Another address is not held back.
    assert APIClient(REMOTE_ADDR="198.51.100.1").get(URL).status_code == 403


def test_a_user_over_the_rate_gets_429_and_others_go_on(settings, operator, viewer) -> None:
    # The rate is lowered here only to keep the test short (the default is above).
    settings.API_THROTTLE_USER = "5/minute"
    api = APIClient()
    api.force_authenticate(operator)
    assert [api.get(URL).status_code for _ in range(5)] == [200] * 5
    response = api.get(URL)
    assert response.status_code == 429
    assert response.json()["detail"].startswith("Too many requests: try again in ")
    other = APIClient()
    other.force_authenticate(viewer)
    assert other.get(URL).status_code == 200


def test_the_429_is_turkish_for_a_turkish_reader(settings, operator) -> None:
    settings.API_THROTTLE_USER = "1/minute"
    api = APIClient()
    api.force_authenticate(operator)
    api.cookies[settings.LANGUAGE_COOKIE_NAME] = "tr"
    api.get(URL)
    detail = api.get(URL).json()["detail"]
    assert detail.startswith("Çok fazla istek: ") and "saniye sonra yeniden deneyin" in detail


@pytest.mark.parametrize("rate", ["", None])
def test_an_empty_rate_turns_the_throttle_off(settings, operator, rate) -> None:
    settings.API_THROTTLE_USER = rate
    api = APIClient()
    api.force_authenticate(operator)
    assert {api.get(URL).status_code for _ in range(8)} == {200}


def test_guessing_tokens_is_slowed_down_like_any_anonymous_request(db) -> None:
    api = APIClient(REMOTE_ADDR="203.0.113.10")
    answers = []
    for n in range(31):
        api.credentials(HTTP_AUTHORIZATION=f"Token {n:040x}")
        answers.append(api.get(URL).status_code)
    assert answers[:30] == [403] * 30 and answers[30] == 429


PRODUCTION_ENV = {
    "DJANGO_SETTINGS_MODULE": "config.settings_production",
    "DJANGO_SECRET_KEY": "k" * 25 + "q" * 25 + "x1y2z3",
    "DJANGO_ALLOWED_HOSTS": "backoffice.example",
    "DATABASE_URL": "sqlite:////tmp/unused.sqlite3",
    "PAYNET_BASE_URL": "https://paynet.example",
    "PAYNET_SECRET_KEY": "k",
    "WISECP_API_URL": "https://wisecp.example/api/",
    "WISECP_API_KEY": "k",
    "PAYOFIN_BASE_URL": "https://payofin.example",
    "PAYOFIN_API_KEY": "k",
    "PAYOFIN_SECRET_KEY": "k",
}


def _production_cache(**env: str) -> tuple[int, str]:
    """Load production settings in a fresh interpreter: (exit code, the cache backend or error)."""
    import os
    import subprocess
    import sys

    code = "from django.conf import settings; print(settings.CACHES['default']['BACKEND'])"
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CACHE_URL"))}
    keep.pop("WEB_CONCURRENCY", None)
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**keep, **PRODUCTION_ENV, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    return done.returncode, (done.stdout + done.stderr).strip().splitlines()[-1]


def test_production_counts_in_the_database_cache_by_default() -> None:
    assert _production_cache() == (0, "django.core.cache.backends.db.DatabaseCache")


@pytest.mark.parametrize("processes", ["", "3"])
def test_production_refuses_a_per_process_cache_with_several_processes(processes) -> None:
    env = {"CACHE_URL": "locmemcache://"}
    if processes:
        env["WEB_CONCURRENCY"] = processes
    code, said = _production_cache(**env)
    assert code != 0 and "per-process cache" in said


def test_production_takes_a_per_process_cache_for_exactly_one_process() -> None:
    code, said = _production_cache(CACHE_URL="locmemcache://", WEB_CONCURRENCY="1")
    assert (code, said) == (0, "django.core.cache.backends.locmem.LocMemCache")


@pytest.fixture
def shared_cache(settings, db):
    """The database cache, as production has it: what one process counts, the others see."""
    from django.core.cache import caches
    from django.core.management import call_command

    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "test_throttle_cache",
        }
    }
    call_command("createcachetable", verbosity=0)
    yield caches["default"]
    caches["default"].clear()


def test_the_counts_are_shared_by_every_process(shared_cache, settings, operator) -> None:
    from django.core.cache.backends.db import DatabaseCache

    settings.API_THROTTLE_USER = "3/minute"
    api = APIClient()
    api.force_authenticate(operator)
    assert [api.get(URL).status_code for _ in range(3)] == [200] * 3
    # Another process: a cache object of its own on the same table sees the three requests.
    other = DatabaseCache("test_throttle_cache", {})
    assert len(other.get(f"throttle_user_{operator.pk}")) == 3
    assert api.get(URL).status_code == 429


def test_a_burst_of_wrong_tokens_is_throttled_by_address(shared_cache, settings, operator):
    from security.tokens import api_token_create

    settings.API_THROTTLE_ANON = ""  # only the refused-token count is at work here
    settings.API_THROTTLE_BAD_TOKEN = "10/minute"
    _, good = api_token_create(user=operator)
    guesser = APIClient(REMOTE_ADDR="203.0.113.20")
    answers = []
    for n in range(60):
        guesser.credentials(HTTP_AUTHORIZATION=f"Token {n:064x}")
        answers.append(guesser.get(URL).status_code)
    assert answers[:10] == [403] * 10 and set(answers[10:]) == {429}
    # A right token from that address waits too; from another address it works.
    guesser.credentials(HTTP_AUTHORIZATION=f"Token {good}")
    assert guesser.get(URL).status_code == 429
    elsewhere = APIClient(REMOTE_ADDR="198.51.100.4")
    elsewhere.credentials(HTTP_AUTHORIZATION=f"Token {good}")
    assert elsewhere.get(URL).status_code == 200
