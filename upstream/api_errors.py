"""One DRF handler for our errors: 400 bad input, 403 permission, 409 conflict, 502 upstream."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from .errors import PushConflict, PushInDoubt, UpstreamError


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The record changed since it was read."
    default_code = "conflict"


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, PushConflict):
        body: dict[str, Any] = {"detail": exc.message}
        if exc.current_version is not None:
            body["current_version"] = exc.current_version
        return Response(body, status=status.HTTP_409_CONFLICT)
    if isinstance(exc, PushInDoubt):
        job = exc.job
        return Response(
            {"detail": exc.message, "job": {"id": job.pk, "state": job.state}},
            status=status.HTTP_202_ACCEPTED,
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
    if isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(response.data, dict) and "detail" not in response.data:
        response.data = {"detail": "Invalid input.", **response.data}
    elif response is not None and isinstance(response.data, list):
        response.data = {"detail": " ".join(str(x) for x in response.data)}
    return response
