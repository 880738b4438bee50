"""Idle sessions end; refused requests (401, 403) are logged; the Permissions-Policy header."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable

from django.conf import settings
from django.contrib.auth import logout
from django.http import HttpRequest, HttpResponse

from .log import event
from .signals import IDLE_EXPIRED

# Where a session keeps the moment of its user's last request (seconds since the epoch).
LAST_SEEN = "security_last_seen"
# Requests a page makes by itself (a job's progress, polled every second; the session's own
# status, asked before warning of its end) keep no session alive.
PASSIVE = re.compile(r"/progress\.json$|^/session/status\.json$")
# Set in the fresh session of a request the idle timeout logged out: the login page says why.
IDLE_ENDED = "security_idle_ended"

clock: Callable[[], float] = time.time


def note_activity(session) -> None:
    session[LAST_SEEN] = int(clock())


class IdleSessionTimeout:
    """A session unused for SESSION_IDLE_SECONDS ends (sliding expiry): its next request is
    logged out (and logged) and goes on as anonymous, so the admin asks for a login again.

    Each request by the user moves the deadline; the moment is written at most once a minute
    (or a tenth of the idle time, if shorter), so pages do not write the session every time.
    SESSION_COOKIE_AGE stays the absolute limit of a session, however busy.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        idle = getattr(settings, "SESSION_IDLE_SECONDS", 0)
        if idle and hasattr(request, "session") and request.user.is_authenticated:
            now = clock()
            last = request.session.get(LAST_SEEN)
            if isinstance(last, int | float) and now - last > idle:
                setattr(request, IDLE_EXPIRED, True)
                logout(request)  # logged as `logout reason=idle` (security/signals.py)
                request.session[IDLE_ENDED] = True
            elif not PASSIVE.search(request.path) and (
                last is None or now - last >= min(60, idle / 10)
            ):
                note_activity(request.session)
        return self.get_response(request)


class RefusalLog:
    """Every 401 and 403 answer, the admin's and the API's, in the security log: who, from where,
    what. Lockouts and failed logins are logged where they happen (security/signals.py)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if response.status_code in (401, 403):
            user = getattr(request, "user", None)
            event(
                "forbidden" if response.status_code == 403 else "unauthorized",
                request,
                level=logging.WARNING,
                status=response.status_code,
                method=request.method,
                user=user.get_username() if user is not None and user.is_authenticated else None,
            )
        return response


class PermissionsPolicy:
    """Every answer carries PERMISSIONS_POLICY (camera, microphone, geolocation, payment ...
    off): Django sets Referrer-Policy itself (SECURE_REFERRER_POLICY), not this one."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        policy = getattr(settings, "PERMISSIONS_POLICY", "")
        if policy and "Permissions-Policy" not in response:
            response["Permissions-Policy"] = policy
        return response
