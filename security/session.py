"""The idle timeout as the browser sees it: how long the session has left, and "stay signed in".

A page warns before its session ends (static/backoffice/session.js asks `session_status`, which
keeps no session alive) and `session_keepalive` moves the deadline as any request would. The
login page after an idle end says why (`idle_note`).
"""

from __future__ import annotations

import math
from typing import Any

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_GET, require_POST

from . import middleware
from .middleware import IDLE_ENDED, LAST_SEEN, note_activity


def _remaining(request: HttpRequest) -> int:
    """Seconds before the session ends for want of activity (0: it has ended)."""
    idle = getattr(settings, "SESSION_IDLE_SECONDS", 0)
    if not request.user.is_authenticated:
        return 0
    last = request.session.get(LAST_SEEN)
    if not idle or not isinstance(last, int | float):
        return idle
    left = last + idle - middleware.clock()
    # 0 only once the middleware ends it (idle strictly exceeded); until then at least 1.
    return 0 if left < 0 else max(1, math.ceil(left))


@require_GET
def session_status(request: HttpRequest) -> JsonResponse:
    # 200 even when signed out: the page asks, and then says the session ended.
    return JsonResponse({"remaining": _remaining(request)})


@require_POST
def session_keepalive(request: HttpRequest) -> JsonResponse:
    if request.user.is_authenticated:
        note_activity(request.session)
    return JsonResponse({"remaining": _remaining(request)})


def idle_note(request: HttpRequest) -> dict[str, Any]:
    """Context: the note the login page shows once after an idle end, and the idle settings."""
    context: dict[str, Any] = {"session_idle_seconds": getattr(settings, "SESSION_IDLE_SECONDS", 0)}
    session = getattr(request, "session", None)
    user = getattr(request, "user", None)
    signed_out = session is not None and user is not None and not user.is_authenticated
    if signed_out and session.pop(IDLE_ENDED, False):
        minutes = max(1, context["session_idle_seconds"] // 60)
        context["session_ended_note"] = _(
            "Your session ended after %(minutes)s minutes without activity. Sign in again to "
            "go back to the page you were on; what you had typed there is kept in this browser."
        ) % {"minutes": minutes}
    return context


def login_attempts(request: HttpRequest) -> dict[str, Any]:
    """Context: after a wrong password, how many tries are left before the lockout (django-axes
    counts them per user name and address; the fifth locks the pair out)."""
    failures = getattr(request, "axes_failures_since_start", None)
    limit = getattr(settings, "AXES_FAILURE_LIMIT", 0)
    if not failures or not limit or failures >= limit:
        return {}
    left = limit - failures
    minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
    return {
        "attempts_left_note": ngettext(
            "One more wrong password locks this user name out from this address for "
            "%(minutes)s minutes.",
            "%(count)s tries left before this user name is locked out from this address for "
            "%(minutes)s minutes.",
            left,
        )
        % {"count": left, "minutes": minutes}
    }
