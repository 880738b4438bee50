"""The sandbox's own count of requests in flight per upstream (`/_sandbox/inflight`): what the
tests of the shared concurrency caps read (decision 018)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from sandbox.server import SandboxHTTPServer, start_in_thread


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxHTTPServer]:
    server = start_in_thread(port=0, seed=1, latency_ms=500)
    yield server
    server.shutdown()
    server.server_close()


def inflight(server: SandboxHTTPServer) -> dict:
    return requests.get(f"{server.url}/_sandbox/inflight", timeout=5).json()


def test_counts_requests_served_at_once_per_upstream_and_forgets_the_most_on_reset(server):
    from django.conf import settings

    headers = {"Authorization": f"Basic {settings.PAYNET_SECRET_KEY}"}
    url = f"{server.url}/paynet/v1/subscription/list"

    def call(_: int) -> int:
        return requests.post(url, json={}, headers=headers, timeout=5).status_code

    with ThreadPoolExecutor(max_workers=5) as pool:
        statuses = list(pool.map(call, range(5)))
    assert all(status < 500 for status in statuses)
    counts = inflight(server)
    assert counts["paynet"] == {"current": 0, "max": 5}
    assert "wisecp" not in counts

    requests.delete(f"{server.url}/_sandbox/inflight", timeout=5)
    assert inflight(server).get("paynet", {"max": 0})["max"] == 0
    call(0)
    assert inflight(server)["paynet"]["max"] == 1
    requests.post(f"{server.url}/_sandbox/reset", json={}, timeout=5)
    assert inflight(server).get("paynet", {"max": 0})["max"] == 0
