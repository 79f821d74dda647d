from __future__ import annotations

from django.contrib.auth import authenticate
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import selectors, services


class TokenRequestSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=1024, trim_whitespace=False, style={"input_type": "password"})
    organization = serializers.SlugField(required=False, help_text="Organization slug; default: your first.")
    name = serializers.CharField(required=False, max_length=100, default="API token")


@extend_schema(
    tags=["auth"],
    request=TokenRequestSerializer,
    responses={
        201: inline_serializer(
            "TokenCreated",
            fields={
                "id": serializers.UUIDField(),
                "token": serializers.CharField(help_text="Shown once; send as `Authorization: Bearer <token>`."),
                "name": serializers.CharField(),
                "organization": serializers.SlugField(),
                "created_at": serializers.DateTimeField(),
            },
        )
    },
    auth=[],
    summary="Exchange a username and password for a personal API token",
)
class TokenView(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []

    def get_authenticate_header(self, request) -> str:
        # Wrong credentials are a 401, which needs a challenge header.
        return 'Bearer realm="api"'

    def post(self, request):
        serializer = TokenRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        user = authenticate(request, username=data["username"], password=data["password"])
        if user is None:
            raise AuthenticationFailed("Invalid username or password.")
        membership = selectors.membership_for(user=user)
        if "organization" in data:
            membership = selectors.membership_for_slug(user=user, slug=data["organization"])
        if membership is None:
            raise AuthenticationFailed("You are not a member of that organization.")
        token, raw = services.api_token_create(user=user, organization=membership.organization, name=data["name"])
        return Response(
            {
                "id": token.id,
                "token": raw,
                "name": token.name,
                "organization": membership.organization.slug,
                "created_at": token.created_at,
            },
            status=status.HTTP_201_CREATED,
        )
