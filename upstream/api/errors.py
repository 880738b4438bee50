"""One DRF handler for our errors: 400 bad input, 403 permission, 409 conflict, 429 too many
requests, 502 upstream, 503 while an upstream's circuit breaker is open, while the database is
away, or when our own code failed before anything was sent (`"sent": false`)."""

from __future__ import annotations

import logging
import math
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig, TooManyFieldsSent
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.utils import DatabaseError
from django.http import HttpRequest, HttpResponse, HttpResponsePermanentRedirect, JsonResponse
from django.urls import Resolver404, resolve
from django.utils.translation import gettext
from django.views import defaults
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from upstream.calls.errors import (
    PushAccepted,
    PushConflict,
    PushFailed,
    UpstreamError,
    UpstreamUnavailable,
)
from upstream.liveness.answers import outage_detail
from upstream.liveness.database import RETRY_AFTER_SECONDS, database_unavailable


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The record changed since it was read."
    default_code = "conflict"


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    from security.throttles import throttle_refused

    if isinstance(exc, DatabaseError) and database_unavailable(exc):
        # The database is away: nothing was done, and the same request can be sent again.
        return Response(
            {"detail": outage_detail(), "retry_after": RETRY_AFTER_SECONDS},
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    exc = throttle_refused(exc, context)
    if isinstance(exc, exceptions.Throttled):
        return _throttled(exc, context)
    if isinstance(exc, UpstreamUnavailable):
        # Before the ValidationError branch: this refusal is the upstream's state, not bad input.
        return Response(
            {"detail": exc.message, "retry_after": exc.retry_after},
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": str(exc.retry_after)},
        )
    if isinstance(exc, PushConflict):
        body: dict[str, Any] = {"detail": exc.message}
        if exc.current_version is not None:
            body["current_version"] = exc.current_version
        if exc.job is not None:
            body["job"] = {"id": exc.job.pk, "state": exc.job.state}
        return Response(body, status=status.HTTP_409_CONFLICT)
    if isinstance(exc, PushAccepted):
        job = exc.job
        return Response(
            {"detail": exc.message, "job": {"id": job.pk, "state": job.state}},
            status=status.HTTP_202_ACCEPTED,
        )
    if isinstance(exc, PushFailed):
        # Our fault, said plainly and with the job, never a 500: nothing was sent, so the change
        # can be sent again (with a new Idempotency-Key: this one answers this outcome).
        job = exc.job
        return Response(
            {"detail": exc.message, "sent": False, "job": {"id": job.pk, "state": job.state}},
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
        )
    if isinstance(exc, UpstreamError):
        return Response(
            {
                "detail": exc.message,
                "upstream": exc.upstream,
                "operation": exc.operation,
                "outcome": "in_doubt" if exc.in_doubt else exc.outcome,
                "status_code": exc.status_code,
                "upstream_code": exc.upstream_code,
                "upstream_message": exc.exchange.upstream_message if exc.exchange else "",
                "call_id": exc.call_id,
            },
            status=status.HTTP_502_BAD_GATEWAY,
        )
    if isinstance(exc, DjangoValidationError):
        if hasattr(exc, "error_dict"):
            extra = {
                ("non_field_errors" if k == "__all__" else k): v
                for k, v in exc.message_dict.items()
            }
            return Response(
                {"detail": " ".join(exc.messages), **extra}, status=status.HTTP_400_BAD_REQUEST
            )
        return Response({"detail": " ".join(exc.messages)}, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, TooManyFieldsSent | RequestDataTooBig):
        # A form body past DATA_UPLOAD_MAX_NUMBER_FIELDS / _MEMORY_SIZE: bad input, in JSON.
        return Response(
            {"detail": gettext("The request body is too large: send the list as JSON.")},
            status=status.HTTP_400_BAD_REQUEST,
        )
    if isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(response.data, dict) and "detail" not in response.data:
        response.data = {"detail": "Invalid input.", **response.data}
    elif response is not None and isinstance(response.data, list):
        response.data = {"detail": " ".join(str(x) for x in response.data)}
    return response


def _throttled(exc: exceptions.Throttled, context: dict[str, Any]) -> Response:
    """429 over the API's rate (security/throttles.py): when to come back, in the body and in
    Retry-After, like the 503 of an open breaker."""
    from security.log import event

    wait = max(1, math.ceil(exc.wait or 1))
    request = context.get("request")
    user = getattr(request, "user", None)
    event(
        "throttled",
        getattr(request, "_request", None),
        level=logging.WARNING,
        user=user.get_username() if user is not None and user.is_authenticated else None,
        retry_after=wait,
    )
    return Response(
        {
            "detail": gettext("Too many requests: try again in %(seconds)s seconds.")
            % {"seconds": wait},
            "retry_after": wait,
        },
        status=status.HTTP_429_TOO_MANY_REQUESTS,
        headers={"Retry-After": str(wait)},
    )


@csrf_exempt
def not_found(request: HttpRequest) -> HttpResponse:
    """Any /api/ URL no route matched (an unknown path, a malformed id): 404 JSON.

    Without it the admin's catch-all would answer, with a redirect to its login page or an HTML
    404. A path that only lacks its trailing slash is redirected, as Django's APPEND_SLASH does.
    """
    if settings.APPEND_SLASH and not request.path_info.endswith("/"):
        try:
            match = resolve(f"{request.path_info}/")
        except Resolver404:
            match = None
        if match is not None and match.func is not not_found:
            return HttpResponsePermanentRedirect(request.get_full_path(force_append_slash=True))
    return JsonResponse(
        {"detail": str(exceptions.NotFound.default_detail)}, status=status.HTTP_404_NOT_FOUND
    )


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: JSON under /api/ (clients parse every answer), Django's page elsewhere."""
    if request.path_info.startswith("/api/"):
        return JsonResponse(
            {"detail": str(exceptions.APIException.default_detail)},
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )
    return defaults.server_error(request)
