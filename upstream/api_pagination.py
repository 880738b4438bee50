from rest_framework.exceptions import ValidationError
from rest_framework.pagination import PageNumberPagination


class Pagination(PageNumberPagination):
    page_size_query_param = "page_size"
    max_page_size = 500

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
