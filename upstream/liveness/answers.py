"""What the web answers while the database is away, and `/healthz`.

An outage surfaces wherever the first query runs: a view, DRF's authentication, a middleware
reading the session. Django turns each into a 500 (its handler500, or the debug page) and sends
`got_request_exception` first; the receiver below notes the outage on the request, and the
outermost middleware swaps that 500 for a 503 that says the request can be retried: JSON with
`Retry-After` under /api/, a page in the admin's look elsewhere. Neither answer touches the
database (no session, no user, no context processors).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

from django.core.signals import got_request_exception
from django.db.utils import DatabaseError
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from upstream.liveness.database import (
    RETRY_AFTER_SECONDS,
    database_reachable,
    database_unavailable,
    unapplied_migrations,
)

_NOTED = "_backoffice_database_unavailable"


@receiver(got_request_exception, dispatch_uid="backoffice-database-unavailable")
def _note_outage(sender: Any, request: HttpRequest | None = None, **kwargs: Any) -> None:
    # Sent from inside Django's except block: the exception is the one being handled.
    error = sys.exc_info()[1]
    if request is not None and error is not None and database_unavailable(error):
        setattr(request, _NOTED, True)


class DatabaseUnavailableMiddleware:
    """Outermost: a request that failed because the database is away gets a 503, not a 500."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if getattr(request, _NOTED, False):
            return outage_response(request)
        return response


def outage_detail() -> str:
    return _("The database is unavailable; nothing was done. Try again in %(seconds)s seconds.") % {
        "seconds": RETRY_AFTER_SECONDS
    }


def wants_json(request: HttpRequest) -> bool:
    return request.path_info.startswith(("/api/", "/healthz"))


def outage_response(request: HttpRequest) -> HttpResponse:
    """503 with Retry-After: JSON for the API (clients parse every answer), a page elsewhere."""
    if wants_json(request):
        response: HttpResponse = JsonResponse(
            {"detail": outage_detail(), "retry_after": RETRY_AFTER_SECONDS}, status=503
        )
    else:
        from upstream.console.context_processors import upstream_modes

        context = {
            "title": _("The database is unavailable"),
            "site_header": _("Finance back office"),
            "site_title": _("Finance back office"),
            "has_permission": False,
            "is_nav_sidebar_enabled": False,
            "retry_after": RETRY_AFTER_SECONDS,
            # A GET is safe to repeat by itself; a form is not sent again without a person.
            "refresh": request.method in ("GET", "HEAD"),
            "path": request.get_full_path(),
            **upstream_modes(request),
        }
        # No request: no context processor may read the session or the user.
        response = HttpResponse(render_to_string("503.html", context), status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    response["Cache-Control"] = "no-store"
    return response


# Migrations do not change under a running process: once all are applied, that is believed for
# a minute, so a probe every few seconds costs one round trip, not a read of every migration.
_MIGRATIONS_BELIEVED_FOR = 60.0
_migrations_ok_at: float | None = None


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """For an orchestrator or a load balancer: 200 when the database answers and every
    migration is applied, else 503 (with Retry-After) saying which."""
    global _migrations_ok_at
    body: dict[str, Any] = {"status": "ok", "database": "ok", "migrations": "ok"}
    if not database_reachable():
        body.update(status="unavailable", database="unavailable", migrations="unknown")
    elif _migrations_ok_at is None or time.monotonic() - _migrations_ok_at > (
        _MIGRATIONS_BELIEVED_FOR
    ):
        try:
            pending = unapplied_migrations()
        except DatabaseError:
            pending = None
        if pending is None:
            body.update(status="unavailable", database="unavailable", migrations="unknown")
        elif pending:
            body.update(status="unavailable", migrations="pending", unapplied=len(pending))
        else:
            _migrations_ok_at = time.monotonic()
    if body["status"] == "ok":
        return JsonResponse(body)
    response = JsonResponse(body, status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response
