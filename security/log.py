"""The security log: one line per event on the `backoffice.security` logger (LOGGING in
config/settings.py), as `event key=value ...` so lines can be grepped and parsed.

Events: `login`, `login_failed`, `lockout`, `logout` (with `reason=idle` when the session
expired), `password_changed`, `forbidden` (a 403 answer), `unauthorized` (a 401 answer),
`throttled` (an API 429). A password never reaches it.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from django.conf import settings
from django.http import HttpRequest

logger = logging.getLogger("backoffice.security")

_PLAIN = re.compile(r"[\w.@:/+-]*")


def client_ip(request: HttpRequest | None) -> str | None:
    """The client's address: REMOTE_ADDR, or behind TRUSTED_PROXY_COUNT reverse proxies the
    address the outermost one saw (X-Forwarded-For, counted from the right, so a client cannot
    choose it). Also django-axes's AXES_CLIENT_IP_CALLABLE."""
    if request is None:
        return None
    remote = request.META.get("REMOTE_ADDR") or None
    proxies = getattr(settings, "TRUSTED_PROXY_COUNT", 0)
    if proxies > 0:
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
        if len(hops) >= proxies:
            return hops[-proxies]
    return remote


def _value(value: Any) -> str:
    text = "-" if value is None or value == "" else str(value)
    # Quoted when it is not a plain token: a crafted username cannot forge a second line.
    return text if _PLAIN.fullmatch(text) else json.dumps(text, ensure_ascii=False)


def event(name: str, request: HttpRequest | None = None, *, level: int = logging.INFO, **fields):
    """Log one security event; `request` adds the client's address and the path."""
    parts = [name]
    if request is not None:
        fields = {"ip": client_ip(request), "path": request.path, **fields}
    parts.extend(f"{key}={_value(value)}" for key, value in fields.items())
    logger.log(level, " ".join(parts))
