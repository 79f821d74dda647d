from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import ANY_MEMBER
from agents.serializers import ToolInfoSerializer
from config.openapi import ApiSchema
from integrations import tools


@extend_schema(tags=["catalog"], responses=ToolInfoSerializer(many=True), summary="Tools agents can use")
class ToolListView(APIView):
    schema = ApiSchema()
    role_perms = {"get": ANY_MEMBER}

    def get(self, request):
        return Response([tool.as_dict() for tool in tools.all_tools()])
