"""Is an upstream the local sandbox or the real (live) service? Read from its base URL."""

from __future__ import annotations

from typing import Literal

from django.conf import settings

from upstream.registry import upstream, upstreams


def upstream_mode(service: str) -> Literal["sandbox", "live"]:
    """ "sandbox" when the service's base URL points at SANDBOX_URL, "live" otherwise."""
    base = str(getattr(settings, upstream(service).base_url_setting, "") or "")
    sandbox = str(settings.SANDBOX_URL).rstrip("/")
    return "sandbox" if base.startswith(sandbox + "/") or base == sandbox else "live"


def upstream_modes() -> dict[str, str]:
    return {service: upstream_mode(service) for service in upstreams()}
