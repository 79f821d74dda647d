"""One error envelope for the whole API: {"error", "message", "details", "request_id"}."""

from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

logger = logging.getLogger(__name__)


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"
    default_detail = "The request conflicts with the current state."


def envelope(request, *, code: str, message: str, details: dict | None = None) -> dict:
    return {
        "error": code,
        "message": message,
        "details": details or {},
        "request_id": getattr(request, "request_id", None),
    }


def _flatten(detail) -> dict:
    if isinstance(detail, dict):
        return {key: _flatten_value(value) for key, value in detail.items()}
    if isinstance(detail, list):
        return {"non_field_errors": _flatten_value(detail)}
    return {}


def _flatten_value(value):
    if isinstance(value, dict):
        return {key: _flatten_value(inner) for key, inner in value.items()}
    if isinstance(value, list):
        return [_flatten_value(inner) for inner in value]
    return str(value)


def api_exception_handler(exc, context):
    request = context.get("request")
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        # Role checks raise Django's PermissionDenied (accounts.roles.Denied) in views and services
        # alike; keep their message and details.
        converted = exceptions.PermissionDenied(str(exc) or None)
        converted.message = getattr(exc, "message", None)
        converted.details = getattr(exc, "details", None)
        exc = converted
    response = exception_handler(exc, context)
    if response is None:
        logger.exception("unhandled API error", exc_info=exc)
        return Response(
            envelope(request, code="internal_error", message="Internal server error."),
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )
    if isinstance(exc, exceptions.ValidationError):
        body = envelope(request, code="validation_error", message="Invalid input.", details=_flatten(exc.detail))
    else:
        detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
        codes = exc.get_codes() if isinstance(exc, exceptions.APIException) else "error"
        code = codes if isinstance(codes, str) else getattr(exc, "default_code", "error")
        message = str(detail) if not isinstance(detail, (dict, list)) else "Request failed."
        details = _flatten(detail) if isinstance(detail, (dict, list)) else {}
        # An exception may carry its own human message and structured details.
        message = getattr(exc, "message", None) or message
        details = getattr(exc, "details", None) or details
        body = envelope(request, code=code, message=message, details=details)
        if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
            body["retry_after"] = int(exc.wait)
    response.data = body
    return response


def _is_api(request) -> bool:
    return request.path.startswith(("/api/", "/hooks/"))


def handler404(request, exception=None):
    if _is_api(request):
        return JsonResponse(envelope(request, code="not_found", message="Not found."), status=404)
    from django.views.defaults import page_not_found

    return page_not_found(request, exception)


def handler500(request):
    if _is_api(request):
        return JsonResponse(envelope(request, code="internal_error", message="Internal server error."), status=500)
    from django.views.defaults import server_error

    return server_error(request)
