"""Is the database away? Telling an outage from a bug, and probing it."""

from __future__ import annotations

import contextlib

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.utils import DatabaseError, InterfaceError, OperationalError

# What a client is told to wait before it retries while the database is away (seconds).
RETRY_AFTER_SECONDS = 10

# SQLite raises OperationalError for bugs too ("no such table"): only these mean "come back".
_SQLITE_TRANSIENT = ("database is locked", "unable to open database file", "disk i/o error")


def database_unavailable(error: BaseException) -> bool:
    """True when `error` says the database cannot be reached or used right now (refused or
    dropped connection, server shutting down, a locked SQLite file): retrying later can succeed.
    A bug (a missing table, bad SQL) is not an outage, and stays an error."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, InterfaceError):
            return True
        if isinstance(error, OperationalError):
            vendor = _vendor_of(error)
            if vendor == "sqlite":
                return any(part in str(error).lower() for part in _SQLITE_TRANSIENT)
            return True
        error = error.__cause__ or error.__context__
    return False


def _vendor_of(error: BaseException) -> str:
    module = type(error.__cause__ or error).__module__
    if module.startswith("sqlite3"):
        return "sqlite"
    return connections[DEFAULT_DB_ALIAS].vendor


def database_reachable(alias: str = DEFAULT_DB_ALIAS) -> bool:
    """One round trip on the connection (opened again if it was dropped); never raises."""
    connection = connections[alias]
    try:
        connection.close_if_unusable_or_obsolete()
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError:
        drop_connection(alias)
        return False
    return True


def drop_connection(alias: str = DEFAULT_DB_ALIAS) -> None:
    """Forget a connection the server dropped, so the next query opens a new one."""
    connection = connections[alias]
    with contextlib.suppress(DatabaseError):
        connection.close()
    # A broken connection may refuse even its close: make sure the next use reconnects.
    connection.connection = None


def unapplied_migrations(alias: str = DEFAULT_DB_ALIAS) -> list[str]:
    """Migrations the code has and the database has not applied (`app.name`)."""
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connections[alias])
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    return [f"{migration.app_label}.{migration.name}" for migration, _backwards in plan]
