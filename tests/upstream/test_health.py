"""Upstream health from the call log and the breaker: upstream_health() and GET /api/upstreams/."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from upstream.calls.breaker import breaker_trip
from upstream.calls.health import upstream_health
from upstream.models import UpstreamCall

URL = "/api/upstreams/"
FIELDS = {"service", "mode", "breaker", "last_success_at", "error_rate", "p95_ms", "in_doubt"}


def call(service: str, outcome: str, *, ms: int = 100, ago: timedelta = timedelta(minutes=1)):
    return UpstreamCall(
        service=service,
        operation="op",
        method="POST",
        url="http://x",
        outcome=outcome,
        duration_ms=ms,
        created_at=timezone.now() - ago,
    )


@pytest.fixture
def calls(db):
    rows = [call("paynet", "ok", ms=ms) for ms in range(10, 1810, 100)]  # 18 answers, 10..1710 ms
    rows += [call("paynet", "rejected", ms=5), call("paynet", "failed", ms=3000)]
    rows += [call("paynet", "in_doubt", ms=15000), call("paynet", "pending", ms=0)]
    # Outside the window: neither counted nor timed, but still the last success of WiseCP.
    rows += [call("paynet", "failed", ago=timedelta(minutes=16)) for _ in range(5)]
    rows += [call("wisecp", "ok", ago=timedelta(hours=3))]
    # Stamped after now (a clock ahead elsewhere): not in the last 15 minutes either.
    rows += [call("paynet", "failed", ago=-timedelta(minutes=5)) for _ in range(3)]
    UpstreamCall.objects.bulk_create(rows)


def test_health_counts_the_last_15_minutes_of_the_call_log(calls, django_assert_max_num_queries):
    with django_assert_max_num_queries(7):
        health = {h.service: h for h in upstream_health()}

    paynet = health["paynet"]
    assert paynet.calls == 21  # 18 ok, 1 refused, 1 failed, 1 in doubt; the pending one not yet
    assert paynet.error_rate == round(2 / 21, 4)
    assert paynet.p95_ms == 3000  # the 20th of 21 durations, smallest first
    assert paynet.in_doubt == 1
    assert paynet.last_success_at is not None
    assert timezone.now() - paynet.last_success_at < timedelta(minutes=2)
    wisecp = health["wisecp"]
    assert (wisecp.calls, wisecp.error_rate, wisecp.p95_ms, wisecp.in_doubt) == (0, None, None, 0)
    assert timezone.now() - wisecp.last_success_at > timedelta(hours=2)
    assert health["payofin"].last_success_at is None
    assert {h.breaker for h in health.values()} == {"closed"}


def test_api_lists_each_upstream_with_its_mode_breaker_and_health(
    calls, api_viewer, settings, sandbox
):
    settings.SANDBOX_URL = sandbox.url
    settings.WISECP_API_URL = "https://billing.example.com/api/"
    breaker_trip("paynet")

    response = api_viewer.get(URL)

    assert response.status_code == 200
    rows = {row["service"]: row for row in response.json()["results"]}
    assert list(rows) == ["paynet", "wisecp", "payofin"]
    for row in rows.values():
        assert set(row) >= FIELDS
    paynet = rows["paynet"]
    assert (paynet["mode"], paynet["breaker"], paynet["in_doubt"], paynet["p95_ms"]) == (
        "sandbox",
        "open",
        1,
        3000,
    )
    assert paynet["error_rate"] == pytest.approx(2 / 21, abs=1e-4)
    assert 0 < paynet["retry_after"] <= 60 and paynet["last_success_at"]
    assert (rows["wisecp"]["mode"], rows["wisecp"]["breaker"]) == ("live", "closed")
    assert (rows["payofin"]["mode"], rows["payofin"]["last_success_at"]) == ("sandbox", None)


def test_open_breaker_past_its_cooldown_is_shown_half_open(db, api_viewer, settings):
    settings.BREAKER_COOLDOWN_SECONDS = 0
    breaker_trip("wisecp")

    rows = {row["service"]: row for row in api_viewer.get(URL).json()["results"]}

    assert (rows["wisecp"]["breaker"], rows["wisecp"]["retry_after"]) == ("half_open", 0)


def test_only_staff_who_may_view_the_call_log_read_it(db, client, django_user_model):
    assert client.get(URL).status_code == 403
    staff = django_user_model.objects.create_user("nobody", password="pw", is_staff=True)
    client.force_login(staff)
    assert client.get(URL).status_code == 403
