from rest_framework.routers import DefaultRouter


class Router(DefaultRouter):
    """The API's router: an `{id}` in a URL is 1 to 19 digits.

    A malformed id ("abc", "1.5", 20 digits) then matches no route and gets the JSON 404 of
    config/urls.py, instead of reaching a view whose lookup fails on it. 19 digits is the length
    of the largest 64-bit id; a value up to that length but too large for the column is a plain
    miss (Django answers an empty result for out-of-range integer lookups), also a 404.
    upstream.api.schema keeps these ids integers in the OpenAPI schema. A viewset keyed by
    something else sets its own `lookup_value_regex`.
    """

    integer_lookup_fields = ("pk", "id")
    integer_lookup_regex = "[0-9]{1,19}"

    def get_lookup_regex(self, viewset, lookup_prefix: str = "") -> str:
        lookup_field = getattr(viewset, "lookup_field", "pk")
        own_regex = hasattr(viewset, "lookup_value_regex")
        if lookup_field in self.integer_lookup_fields and not own_regex:
            lookup_url_kwarg = getattr(viewset, "lookup_url_kwarg", None) or lookup_field
            return f"(?P<{lookup_prefix}{lookup_url_kwarg}>{self.integer_lookup_regex})"
        return super().get_lookup_regex(viewset, lookup_prefix)
