"""The OpenAPI document's error responses and rate-limit headers.

Every API error answers with the envelope of config/errors.py; drf-spectacular documents only the
success responses, so clients (and the Schemathesis run in tests/test_schemathesis.py) would meet
400/401/403/404/429 answers the document never mentions. `ApiSchema` adds each error an operation
can actually produce, with the envelope as its body, unless the view documents that code itself.

Every response of every operation also documents the X-RateLimit-* headers config/ratelimit.py
sets, and 429 documents `retry_after` and Retry-After. The headers are optional in the document:
the limiter leaves them out when it can't reach Redis (it fails open) or is switched off.

Views opt in with `schema = ApiSchema()`; setting REST_FRAMEWORK["DEFAULT_SCHEMA_CLASS"] to
"config.openapi.ApiSchema" would cover every view at once.
"""

from __future__ import annotations

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers


class ErrorEnvelopeSerializer(serializers.Serializer):
    error = serializers.CharField(help_text="Machine-readable reason, e.g. validation_error, not_found, "
                                            "bad_signature.")
    message = serializers.CharField()
    details = serializers.DictField()
    request_id = serializers.CharField(allow_null=True)


class RateLimitedSerializer(ErrorEnvelopeSerializer):
    retry_after = serializers.IntegerField(
        required=False, min_value=1,
        help_text="Whole seconds until one request will be accepted (also in the Retry-After header). Absent "
        "when a monthly quota, not the rate limit, refused the request (error `quota_exceeded`).",
    )


def _integer_header(description: str) -> dict:
    return {"schema": {"type": "integer", "minimum": 0}, "description": description}


RATE_LIMIT_HEADERS = {
    "X-RateLimit-Limit": _integer_header("Requests per minute allowed to this caller (API key, user or address)."),
    "X-RateLimit-Remaining": _integer_header("Requests that may be sent right now without a 429 (at most the "
                                             "burst)."),
    "X-RateLimit-Reset": _integer_header("Seconds (a delta, not a timestamp) until the allowance is full again."),
}
RETRY_AFTER_HEADER = {
    "Retry-After": _integer_header("Seconds until one request will be accepted; sent with rate-limit refusals."),
}

ERRORS = {
    "400": "Invalid input: `details` maps each field or query parameter to its problems.",
    "401": "Missing, invalid, expired or revoked credentials.",
    "403": "Signed in, but not allowed: no membership in an organization, or a role or key scope that "
    "doesn't cover this.",
    "404": "No such object in your organization (objects of other organizations are not found either), "
    "or no such page.",
    "415": "The body is not JSON (send `Content-Type: application/json`).",
    "429": "Too many requests (retry after `Retry-After` seconds), or a monthly quota is used up.",
}


class ApiSchema(AutoSchema):
    def map_parsers(self):
        # The API speaks JSON (README, clients, the webhook). DRF's form parsers still accept a form
        # post, with form rules ("" means "not sent"), but that is not the documented contract.
        parsers = super().map_parsers()
        return [media_type for media_type in parsers if "json" in media_type] or parsers

    def _get_parameters(self):
        parameters = super()._get_parameters()
        for parameter in parameters:
            # The views read an empty optional query parameter as an absent one (no filter, the
            # default page); say so, rather than let "" look like a malformed value.
            if parameter["in"] == "query" and not parameter.get("required"):
                parameter["allowEmptyValue"] = True
        return parameters

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction=direction)
        if direction != "response":
            return responses
        for code in self._error_codes():
            if code not in responses:
                body = RateLimitedSerializer if code == "429" else ErrorEnvelopeSerializer
                error = OpenApiResponse(body, description=ERRORS[code])
                responses[code] = self._get_response_for_code(error, code, direction=direction)
        for code, response in responses.items():
            headers = response.setdefault("headers", {})
            for name, header in {**RATE_LIMIT_HEADERS, **(RETRY_AFTER_HEADER if code == "429" else {})}.items():
                headers.setdefault(name, dict(header))
        return responses

    def _error_codes(self) -> list[str]:
        parameters = self._get_parameters()
        codes = []
        has_body = self.method in ("POST", "PUT", "PATCH") and self.get_request_serializer() is not None
        if has_body or any(p["in"] in ("query", "header") for p in parameters):
            codes.append("400")
        if has_body:
            codes.append("415")
        requirements = self.get_auth()
        if requirements and {} not in requirements:
            codes += ["401", "403"]
        # Path ids name objects; paginated lists answer 404 for a page past the end (DRF's pagination).
        if any(p["in"] == "path" for p in parameters) or any(p["name"] == "page" for p in parameters):
            codes.append("404")
        codes.append("429")  # config/ratelimit.py limits every /api/ path and the webhooks
        return codes
