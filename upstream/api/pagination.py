from rest_framework.exceptions import ValidationError
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response

from upstream.lists.counting import EstimatedCountPaginator


class Pagination(PageNumberPagination):
    """Page numbers, as DRF's; `count` is exact unless counting a long list would be slow.

    On PostgreSQL a list whose COUNT(*) would exceed settings.LIST_COUNT_BUDGET (an unfiltered
    call log of a million rows) gives the planner's estimate, rounded, as `count`, with
    `count_is_estimate: true`; `next` is exact either way (upstream.lists.counting).
    """

    page_size_query_param = "page_size"
    max_page_size = 500
    django_paginator_class = EstimatedCountPaginator

    def get_page_number(self, request, paginator):
        """A `page` that is no whole number from 1 up is bad input (400), not DRF's 404; a page
        past the last one stays a 404. A bad `page_size` falls back to the default, as in DRF."""
        page_number = super().get_page_number(request, paginator)
        if page_number in self.last_page_strings:
            return page_number
        try:
            number = int(page_number)
        except (TypeError, ValueError):
            raise ValidationError({"page": [paginator.error_messages["invalid_page"]]}) from None
        if number < 1:
            raise ValidationError({"page": [paginator.error_messages["min_page"]]})
        return number

    def get_paginated_response(self, data):
        paginator = self.page.paginator
        return Response(
            {
                "count": paginator.count,
                "count_is_estimate": paginator.count_is_estimate,
                "next": self.get_next_link(),
                "previous": self.get_previous_link(),
                "results": data,
            }
        )

    def get_paginated_response_schema(self, schema):
        response = super().get_paginated_response_schema(schema)
        response["required"] = [*response["required"], "count_is_estimate"]
        response["properties"]["count_is_estimate"] = {
            "type": "boolean",
            "example": False,
            "description": "True when `count` is PostgreSQL's estimate: counting exactly would "
            "have been slow. `next` is exact either way.",
        }
        return response
