from collections.abc import Callable

from django.http import HttpRequest, HttpResponse


class TurkishUnlessChosen:
    """The team works in Turkish: ignore the browser's language, keep the one a user picked.

    Runs before LocaleMiddleware, which then uses the language cookie (the switch in the admin
    header) or falls back to LANGUAGE_CODE.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.META.pop("HTTP_ACCEPT_LANGUAGE", None)
        return self.get_response(request)
