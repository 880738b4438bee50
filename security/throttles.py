"""API throttling: requests per user (signed in or with a token) and per address (anonymous),
rates from API_THROTTLE_USER and API_THROTTLE_ANON ("600/minute"; empty: no limit), read on
every request. Over the rate the API answers 429 {"detail", "retry_after"} with Retry-After
(upstream.api.errors). Refused tokens are counted per address too (API_THROTTLE_BAD_TOKEN,
RefusedTokenThrottle, security/auth.py). Counts live in Django's cache (CACHE_URL), which must
be shared by every web process: production settings default to the database cache and refuse a
per-process one when more than one process serves (WEB_CONCURRENCY)."""

from __future__ import annotations

from django.conf import settings
from rest_framework import exceptions, throttling
from rest_framework.request import Request

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


class RefusedTokenThrottle(throttling.SimpleRateThrottle):
    """Refused tokens per address (API_THROTTLE_BAD_TOKEN): counted when a token is refused,
    checked before any token from the address is looked at (security/auth.py)."""

    scope = "refused_token"

    def get_rate(self) -> str | None:
        return getattr(settings, "API_THROTTLE_BAD_TOKEN", "") or None

    def get_cache_key(self, request: Request, view: object = None) -> str:
        return self.cache_format % {"scope": self.scope, "ident": client_ip(request) or "-"}

    def _history(self, request: Request) -> list[float]:
        self.key = self.get_cache_key(request)
        self.now = self.timer()
        history = [t for t in self.cache.get(self.key, []) if t > self.now - self.duration]
        self.history = history
        return history

    def blocked_for(self, request: Request) -> float | None:
        """Seconds the address must wait, or None when its tokens are looked at."""
        if self.rate is None:
            return None
        history = self._history(request)
        if len(history) < self.num_requests:
            return None
        # Until the oldest refusal in the window leaves it.
        return max(1.0, self.duration - (self.now - history[-1]))

    def note_refused(self, request: Request) -> None:
        if self.rate is None:
            return
        history = self._history(request)
        history.insert(0, self.now)
        self.cache.set(self.key, history, self.duration)
