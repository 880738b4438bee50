"""What a locked-out login gets (django-axes's AXES_LOCKOUT_CALLABLE): a page in the admin's
look, in the reader's language, saying what happened and for how long; JSON under /api/."""

from __future__ import annotations

import math
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse
from django.utils.translation import gettext as _

STATUS = 429


def cooloff_seconds() -> int:
    cooloff = settings.AXES_COOLOFF_TIME
    return int(cooloff.total_seconds()) if cooloff else 0


def lockout_response(
    request: HttpRequest, original_response: HttpResponse | None = None, credentials: Any = None
) -> HttpResponse:
    seconds = cooloff_seconds()
    minutes = max(1, math.ceil(seconds / 60))
    message = _(
        "After %(limit)s wrong passwords, logging in with this user name from this address is "
        "blocked for %(minutes)s minutes. Wait, then try again; a wrong password in the meantime "
        "starts the wait again."
    ) % {"limit": settings.AXES_FAILURE_LIMIT, "minutes": minutes}
    headers = {"Retry-After": str(seconds)} if seconds else {}
    if request.path_info.startswith("/api/"):
        return JsonResponse(
            {"detail": message, "retry_after": seconds}, status=STATUS, headers=headers
        )
    response = TemplateResponse(
        request,
        "security/locked_out.html",
        {
            "title": _("Too many failed logins"),
            "message": message,
            "minutes": minutes,
            "site_header": _("Finance back office"),
        },
        status=STATUS,
        headers=headers,
    )
    return response.render()
