"""The shared client's pure rules (upstream/calls/client.py), tested rule by rule."""

from __future__ import annotations

from typing import Any

from upstream.calls.client import Exchange, retry_delay
from upstream.calls.errors import (
    UpstreamAuthError,
    UpstreamError,
    UpstreamRejectedError,
    UpstreamResponseError,
    UpstreamTransportError,
)

# --- retry_delay, rule by rule -------------------------------------------------------------


def _exchange(status: int | None = None) -> Exchange:
    return Exchange(
        service="paynet",
        operation="op",
        method="POST",
        url="u",
        request_headers={},
        request_body=None,
        status_code=status,
    )


def delay(
    error: UpstreamError,
    *,
    attempt: int = 1,
    idempotent: bool = True,
    mutating: bool = False,
    **kw: Any,
) -> Any:
    options = {
        "attempt": attempt,
        "max_attempts": 3,
        "idempotent": idempotent,
        "mutating": mutating,
        "base": 0.5,
        "cap": 8.0,
        "rng": lambda low, high: high,  # the top of the jitter window
        **kw,
    }
    return retry_delay(error, **options)


def server_error(status: int = 500) -> UpstreamResponseError:
    return UpstreamResponseError("x", exchange=_exchange(status))


def test_retry_delay_never_retries_a_clear_rejection():
    assert delay(UpstreamRejectedError("no", exchange=_exchange(400))) is None


def test_retry_delay_never_retries_an_auth_error():
    assert delay(UpstreamAuthError("no", exchange=_exchange(401))) is None


def test_retry_delay_gives_up_when_attempts_are_spent():
    assert delay(server_error(), attempt=3) is None
    assert delay(server_error(), attempt=2) is not None


def test_retry_delay_retries_5xx_only_when_the_operation_is_idempotent():
    assert delay(server_error(503), idempotent=True, mutating=True) == 0.5
    assert delay(server_error(503), idempotent=False, mutating=True) is None


def test_retry_delay_retries_an_unreadable_200_of_a_read_but_never_of_a_write():
    assert delay(server_error(200), mutating=False) == 0.5
    # The write may have been applied: it is settled by reading back, not resent.
    assert delay(server_error(200), idempotent=True, mutating=True) is None


def test_retry_delay_retries_a_request_that_never_left_even_if_not_idempotent():
    error = UpstreamTransportError("refused", sent=False)
    assert delay(error, idempotent=False) == 0.5
    assert delay(error, idempotent=False, mutating=True) == 0.5


def test_retry_delay_retries_a_sent_read_but_never_a_sent_write():
    error = UpstreamTransportError("timeout", sent=True)
    assert delay(error, mutating=False) == 0.5
    assert delay(error, idempotent=True, mutating=True) is None
    assert delay(error, idempotent=False, mutating=True) is None


def test_retry_delay_honours_retry_after_even_for_a_create():
    error = UpstreamResponseError("slow down", exchange=_exchange(429), retry_after=3)
    assert delay(error, idempotent=False, mutating=True) == 3


def test_retry_delay_gives_up_when_retry_after_exceeds_the_cap():
    error = UpstreamResponseError("slow down", exchange=_exchange(429), retry_after=30)
    assert delay(error) is None


def test_retry_delay_backoff_doubles_per_attempt_and_is_capped():
    error = UpstreamTransportError("refused", sent=False)
    tops = [delay(error, attempt=n, max_attempts=10, cap=3.0) for n in range(1, 6)]
    assert tops == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_retry_delay_jitter_draws_from_zero_to_the_window():
    seen: list[tuple[float, float]] = []

    def rng(low: float, high: float) -> float:
        seen.append((low, high))
        return 0.123

    assert delay(server_error(), attempt=2, rng=rng) == 0.123
    assert seen == [(0, 1.0)]


def test_retry_delay_ignores_errors_it_does_not_know():
    assert delay(UpstreamError("?")) is None


# --- the pooled session reads the environment once, for the upstream's URL ------------------


def test_pooled_session_keeps_the_environments_proxy_and_no_proxy(monkeypatch):
    from upstream.calls import client

    monkeypatch.setattr(client, "_sessions", {})
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "api.paynet.example")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/our-ca.pem")
    proxied = client.pooled_session("wisecp", 4, "https://panel.example.com/api")
    direct = client.pooled_session("paynet", 4, "https://api.paynet.example/v1")

    assert proxied.proxies.get("https") == "http://proxy.example:3128"
    assert direct.proxies.get("https") is None  # NO_PROXY names its host
    assert proxied.verify == direct.verify == "/etc/our-ca.pem"
    # Read once: a later change of the environment does not reach a running process's session.
    monkeypatch.setenv("HTTPS_PROXY", "http://other.example:1")
    assert client.pooled_session("wisecp", 4, "https://panel.example.com/api") is proxied
    prepared = proxied.merge_environment_settings(
        "https://panel.example.com/api", {}, None, None, None
    )
    assert prepared["proxies"]["https"] == "http://proxy.example:3128"
