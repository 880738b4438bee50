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
