"""API throttling: requests per user (signed in or with a token) and per address (anonymous),
rates from API_THROTTLE_USER and API_THROTTLE_ANON ("600/minute"; empty: no limit), read on
every request. Over the rate the API answers 429 {"detail", "retry_after"} with Retry-After
(upstream.api.errors). Counts live in Django's cache (CACHE_URL): one shared cache for every
web process, or each counts its own."""

from __future__ import annotations

from django.conf import settings
from rest_framework import exceptions, throttling

from .log import client_ip


class UserRateThrottle(throttling.UserRateThrottle):
    def get_rate(self) -> str | None:
        return getattr(settings, "API_THROTTLE_USER", "") or None

    def get_ident(self, request) -> str:
        # The client's address as the security log and the lockout see it (TRUSTED_PROXY_COUNT).
        return client_ip(request) or super().get_ident(request)


class AnonRateThrottle(throttling.AnonRateThrottle):
    def get_rate(self) -> str | None:
        return getattr(settings, "API_THROTTLE_ANON", "") or None

    def get_ident(self, request) -> str:
        return client_ip(request) or super().get_ident(request)


def throttle_refused(exc: Exception, context: dict) -> Exception:
    """An anonymous request the API refuses (no or a wrong token, no session) counts against
    the anonymous rate too: DRF checks throttles only after authentication and permissions
    passed, so without this, guessing tokens would never be slowed down. Returns `exc`, or
    Throttled once the address is over the rate."""
    refused = (exceptions.NotAuthenticated, exceptions.AuthenticationFailed)
    request, view = context.get("request"), context.get("view")
    if request is None or view is None:
        return exc
    anonymous = not getattr(getattr(request, "user", None), "is_authenticated", False)
    if not (
        isinstance(exc, refused) or (anonymous and isinstance(exc, exceptions.PermissionDenied))
    ):
        return exc
    throttle = AnonRateThrottle()
    if throttle.allow_request(request, view):
        return exc
    return exceptions.Throttled(throttle.wait())
