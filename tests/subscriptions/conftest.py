"""Fixtures for the Paynet app tests."""

from __future__ import annotations

import pytest

from subscriptions.sync import paynet_sync


@pytest.fixture
def mirror(sandbox, db):
    """The sandbox's ~40 subscriptions and ~600 records, mirrored; returns the sandbox control."""
    paynet_sync()
    return sandbox
