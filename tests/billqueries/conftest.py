"""Payofin fixtures: a fake transport for exact wire shapes, the synced catalogue, batches."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from billqueries.client import PayofinClient
from billqueries.models import BillQueryBatch, Institution
from billqueries.services import bill_query_batch_create
from billqueries.sync import payofin_sync
from tests.fakes import FakeTransport, fake_session

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "payofin"
API_KEY = "3f0126be-1111-4000-8000-testapikey00"
SECRET_KEY = "3f0126be-2222-4000-8000-testsecret00"


def load_fixture(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


@pytest.fixture
def fake_client() -> Callable[..., tuple[PayofinClient, FakeTransport]]:
    def make(*answers, recorder=None, **kwargs) -> tuple[PayofinClient, FakeTransport]:
        session, transport = fake_session(list(answers))
        client = PayofinClient(
            base_url="https://payofin.test",
            session=session,
            recorder=recorder,
            api_key=API_KEY,
            secret_key=SECRET_KEY,
            sleep=lambda seconds: None,
            **kwargs,
        )
        return client, transport

    return make


@pytest.fixture
def institutions(sandbox, db) -> dict[int, Institution]:
    """The sandbox's catalogue, synced over HTTP."""
    payofin_sync()
    return {i.soot_code: i for i in Institution.objects.all()}


@pytest.fixture
def run_batch(django_capture_on_commit_callbacks, operator) -> Callable[..., BillQueryBatch]:
    """Create a batch and run its job to the end (immediate task backend)."""

    def run(lines: list[dict[str, Any]], *, actor=None, source="api") -> BillQueryBatch:
        with django_capture_on_commit_callbacks(execute=True):
            batch = bill_query_batch_create(lines=lines, actor=actor or operator, source=source)
        batch.refresh_from_db()
        return batch

    return run


def line(soot_code: int, subscriber_no: str, additional_no: str = "") -> dict[str, Any]:
    return {"soot_code": soot_code, "subscriber_no": subscriber_no, "additional_no": additional_no}


def iski_numbers(n: int, start: int = 5_000_000_000) -> list[str]:
    """n distinct mask-valid İSKİ numbers (7-11 digits)."""
    return [str(start + i) for i in range(n)]
