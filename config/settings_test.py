"""Test settings: the suite's defaults on top of the environment-driven settings."""

import os
import tempfile
from pathlib import Path

os.environ.setdefault("TASKS_BACKEND", "immediate")

from .settings import *  # noqa: F403

# Fast hashing; tests never store real passwords.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
UPSTREAM_BACKOFF_BASE = 0.01
UPSTREAM_BACKOFF_CAP = 0.05
UPSTREAM_READ_TIMEOUT = float(os.environ.get("UPSTREAM_READ_TIMEOUT", "2"))
LANGUAGE_CODE = "en"

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    # The end-to-end tests run a real `db_worker` process against the test database, and an
    # in-memory SQLite database is private to one process: use a file, one per pytest process.
    DATABASES["default"].setdefault("TEST", {}).setdefault(  # noqa: F405
        "NAME",
        str(Path(tempfile.gettempdir()) / f"backoffice-test-{os.getpid()}.sqlite3"),
    )
else:
    # Live-server request threads would otherwise keep their connections open past the session,
    # and PostgreSQL refuses to drop a test database that still has sessions.
    DATABASES["default"]["CONN_MAX_AGE"] = 0  # noqa: F405
