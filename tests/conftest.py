"""Shared fixtures: a real sandbox over HTTP, users with the two staff groups, helpers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime
from urllib.parse import quote

import pytest
import requests
from django.conf import settings
from django.contrib.auth.models import Group

from sandbox.paynet import ISTANBUL
from sandbox.server import SandboxHTTPServer, start_in_thread
from upstream.groups import APPROVERS, OPERATORS, VIEWERS, groups_ensure


class SandboxControl:
    """Drives the sandbox's control endpoints: faults, latency, ledger, reset."""

    def __init__(self, server: SandboxHTTPServer) -> None:
        self.server = server
        self.url = server.url
        self.http = requests.Session()

    def reset(self, seed: int = 1) -> None:
        self.http.post(f"{self.url}/_sandbox/reset", json={"seed": seed}).raise_for_status()
        self.latency(0)

    def faults(self, *rules: dict) -> None:
        self.http.post(
            f"{self.url}/_sandbox/faults", json={"rules": list(rules)}
        ).raise_for_status()

    def latency(self, ms: float) -> None:
        self.http.post(f"{self.url}/_sandbox/latency", json={"latency_ms": ms}).raise_for_status()

    def ledger(self, service: str | None = None, operation: str | None = None) -> list[dict]:
        params = {k: v for k, v in (("service", service), ("operation", operation)) if v}
        response = self.http.get(f"{self.url}/_sandbox/ledger", params=params)
        response.raise_for_status()
        return response.json()

    def requests(self, service: str | None = None, operation: str | None = None) -> list[dict]:
        """Every upstream request the sandbox received (reads and failures too), with `at`."""
        params = {k: v for k, v in (("service", service), ("operation", operation)) if v}
        response = self.http.get(f"{self.url}/_sandbox/requests", params=params)
        response.raise_for_status()
        return response.json()

    def inflight(self, service: str) -> dict:
        """{"current", "max"}: requests to `service` being served now, and the most at once."""
        response = self.http.get(f"{self.url}/_sandbox/inflight")
        response.raise_for_status()
        return response.json().get(service, {"current": 0, "max": 0})

    def state(self, service: str) -> dict:
        return self.http.get(f"{self.url}/_sandbox/state/{service}").json()

    def wisecp_delete_item(self, item_id: int) -> None:
        """Someone else deletes an item at WiseCP; the product itself never deletes one."""
        response = self.http.delete(
            f"{self.url}/wisecp/api/Billing/DeleteInvoiceItem/{item_id}",
            headers={"Apikey": settings.WISECP_API_KEY, "Content-Type": "application/json"},
        )
        response.raise_for_status()

    def tamper(self, service: str, **data) -> dict:
        """Change a record at the upstream behind the product's back (its panel, its admin)."""
        response = self.http.post(f"{self.url}/_sandbox/tamper", json={"service": service, **data})
        response.raise_for_status()
        return response.json()

    def command(self, service: str, **data) -> dict:
        response = self.http.post(f"{self.url}/_sandbox/state/{service}", json=data)
        response.raise_for_status()
        return response.json()


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[SandboxHTTPServer]:
    # One day for the whole run: a reset after midnight must give the state tests cached before it.
    server = start_in_thread(port=0, seed=1, day=datetime.now(ISTANBUL).date())
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def sandbox(sandbox_server: SandboxHTTPServer, settings) -> SandboxControl:
    """A freshly reset sandbox, with every upstream setting pointed at it."""
    control = SandboxControl(sandbox_server)
    control.reset()
    settings.SANDBOX_URL = sandbox_server.url
    settings.PAYNET_BASE_URL = f"{sandbox_server.url}/paynet"
    settings.WISECP_API_URL = f"{sandbox_server.url}/wisecp/api/"
    settings.PAYOFIN_BASE_URL = f"{sandbox_server.url}/payofin"
    return control


@pytest.fixture
def groups(db) -> None:
    groups_ensure()


@pytest.fixture
def operator(groups, django_user_model):
    user = django_user_model.objects.create_user("operator", password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name=OPERATORS))
    return user


@pytest.fixture
def viewer(groups, django_user_model):
    user = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name=VIEWERS))
    return user


@pytest.fixture
def approver(groups, django_user_model):
    user = django_user_model.objects.create_user("approver", password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name=APPROVERS))
    return user


@pytest.fixture
def operator_client(client, operator):
    client.force_login(operator)
    return client


@pytest.fixture
def viewer_client(client, viewer):
    client.force_login(viewer)
    return client


@pytest.fixture
def api_operator(operator):
    from rest_framework.test import APIClient

    api = APIClient()
    api.force_authenticate(operator)
    return api


@pytest.fixture
def api_viewer(viewer):
    from rest_framework.test import APIClient

    api = APIClient()
    api.force_authenticate(viewer)
    return api


@pytest.fixture
def queued_tasks(settings) -> list:
    """Tasks are enqueued and never run (django_tasks' dummy backend); returns what was queued.

    django_tasks builds its backends again when TASKS changes, so this one holds from here on.
    """
    from django_tasks import task_backends

    settings.TASKS = {"default": {"BACKEND": "django_tasks.backends.dummy.DummyBackend"}}
    return task_backends["default"].results


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_or_skip(available: bool, what: str) -> None:
    """A missing service fails loudly in CI and skips with a reason on a laptop."""
    if available:
        return
    if in_ci():
        pytest.fail(f"{what} is required in CI but is not available")
    pytest.skip(f"{what} is not available on this machine")


def require_postgres() -> None:
    """PostgreSQL-only behaviour: the SQLite pass skips it, the PostgreSQL pass runs it.

    .ci/run runs the suite a second time on PostgreSQL and fails when PostgreSQL is unreachable,
    so these tests cannot silently stay skipped in CI.
    """
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: runs in the DATABASE_URL=postgres://... pass of .ci/run")


def database_url() -> str:
    """The test database as a DATABASE_URL, for a worker process started by a test."""
    from django.db import connection

    db = connection.settings_dict
    if connection.vendor == "sqlite":
        name = str(db["NAME"])
        assert name and ":memory:" not in name and "mode=memory" not in name, (
            "a worker process needs a file database; see config/settings_test.py"
        )
        return f"sqlite:///{name}"
    if connection.vendor == "postgresql":
        user = quote(db["USER"] or "", safe="")
        password = quote(str(db["PASSWORD"] or ""), safe="")
        credentials = f"{user}:{password}@" if user else ""
        host, port = db["HOST"] or "127.0.0.1", db["PORT"] or 5432
        return f"postgres://{credentials}{host}:{port}/{db['NAME']}"
    raise NotImplementedError(f"no DATABASE_URL for {connection.vendor}")


def worker_env(sandbox_url: str, **overrides: str) -> dict[str, str]:
    """Environment for a real `manage.py` process on the test database and the sandbox."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PYTEST") and k != "DJANGO_ALLOW_ASYNC_UNSAFE"
    }
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DATABASE_URL": database_url(),
            "TASKS_BACKEND": "database",
            "SANDBOX_URL": sandbox_url,
            "PAYNET_BASE_URL": f"{sandbox_url}/paynet",
            "WISECP_API_URL": f"{sandbox_url}/wisecp/api/",
            "PAYOFIN_BASE_URL": f"{sandbox_url}/payofin",
            "UPSTREAM_READ_TIMEOUT": "5",
            "UPSTREAM_BACKOFF_BASE": "0.01",
            "UPSTREAM_BACKOFF_CAP": "0.05",
            "DJANGO_LOG_LEVEL": "WARNING",
            **overrides,
        }
    )
    return env


def hold_claim(obj, *, holder: str = "another-push", seconds: float = 30):
    """Claim `obj`'s upstream record as another push would (upstream.pushes.claims)."""
    from datetime import timedelta

    from django.utils import timezone

    from upstream.models import RecordClaim

    return RecordClaim.objects.create(
        target_type=obj._meta.label_lower,
        target_id=str(obj.pk),
        holder=holder,
        until=timezone.now() + timedelta(seconds=seconds),
    )


@pytest.fixture(autouse=True)
def _fresh_cache():
    """The dashboard caches whole-table totals for a minute: no test sees another's."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture(autouse=True)
def _language_restored() -> Iterator[None]:
    """A request in Turkish leaves Turkish active in the thread (LocaleMiddleware activates it and
    nothing deactivates it): the next test would read its messages in Turkish."""
    from django.utils import translation

    language = translation.get_language()
    yield
    if language:
        translation.activate(language)
    else:
        translation.deactivate()
