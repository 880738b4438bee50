"""The one list of secrets that never reach the call log, a page, a log line or an exception."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

REDACTED = "***"
# Compared case-insensitively, with "-" and "_" ignored: Authorization, Apikey, ApiKey, SecretKey.
SECRET_NAMES = frozenset(
    {"authorization", "apikey", "secretkey", "password", "token", "secret", "cookie", "xapikey"}
)


def _is_secret(name: str) -> bool:
    return name.replace("-", "").replace("_", "").lower() in SECRET_NAMES


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {k: (REDACTED if _is_secret(k) else v) for k, v in headers.items()}


def redact(data: Any) -> Any:
    """A copy of a JSON-like value with every secret-named key's value replaced."""
    if isinstance(data, Mapping):
        return {k: (REDACTED if _is_secret(str(k)) else redact(v)) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [redact(v) for v in data]
    return data
