"""Test settings: the suite's defaults on top of the environment-driven settings."""

import os

os.environ.setdefault("TASKS_BACKEND", "immediate")

from .settings import *  # noqa: F403

# Fast hashing; tests never store real passwords.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
UPSTREAM_BACKOFF_BASE = 0.01
UPSTREAM_BACKOFF_CAP = 0.05
UPSTREAM_READ_TIMEOUT = float(os.environ.get("UPSTREAM_READ_TIMEOUT", "2"))
LANGUAGE_CODE = "en"
