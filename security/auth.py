"""API token authentication (django-rest-knox) that an address guessing tokens cannot go on with.

Once an address has sent API_THROTTLE_BAD_TOKEN refused tokens (wrong, expired, revoked), every
token it sends is answered 429 before it is looked at, a right one too, until the window has
passed: a guess that happens to be right does not get in. Counted in the shared cache
(CACHE_URL), so every web process sees the same count.
"""

from __future__ import annotations

from drf_spectacular.contrib.knox_auth_token import KnoxTokenScheme
from knox.auth import TokenAuthentication as KnoxTokenAuthentication
from rest_framework import exceptions
from rest_framework.authentication import get_authorization_header
from rest_framework.request import Request

from .throttles import RefusedTokenThrottle


class TokenAuthentication(KnoxTokenAuthentication):
    def authenticate(self, request: Request):
        header = get_authorization_header(request).split()
        if not header or header[0].lower() != self.authenticate_header(request).encode().lower():
            return None  # not a token: another scheme, or none
        throttle = RefusedTokenThrottle()
        wait = throttle.blocked_for(request)
        if wait is not None:
            raise exceptions.Throttled(wait)
        try:
            return super().authenticate(request)
        except exceptions.AuthenticationFailed:
            throttle.note_refused(request)
            raise


class TokenScheme(KnoxTokenScheme):
    """The OpenAPI schema's security scheme: `Authorization: Token <key>`, as knox's."""

    target_class = "security.auth.TokenAuthentication"
    name = "tokenAuth"
