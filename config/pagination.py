from __future__ import annotations

from rest_framework.exceptions import ValidationError
from rest_framework.pagination import PageNumberPagination


class Pagination(PageNumberPagination):
    page_size = 20
    page_size_query_param = "page_size"
    max_page_size = 100

    def get_page_size(self, request):
        raw = request.query_params.get(self.page_size_query_param)
        if raw not in (None, "") and not raw.lstrip("-").isdigit():
            # DRF would quietly fall back to the default; a caller asking for "abc" should hear why.
            message = f"Must be a whole number; at most {self.max_page_size} are returned."
            raise ValidationError({self.page_size_query_param: [message]})
        return super().get_page_size(request)
