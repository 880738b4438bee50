"""The product's URLs plus pages a later change might add, written with no masking of their
own: the central masking must cover them (tests/security/test_masking_fails_closed.py)."""

from django.http import HttpRequest, JsonResponse
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt
from rest_framework.decorators import api_view, permission_classes
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from subscriptions.models import Subscription


@csrf_exempt
def echo_customer(request: HttpRequest, pk: int) -> JsonResponse:
    sub = Subscription.objects.get(pk=pk)
    return JsonResponse({"name": sub.name_surname, "email": sub.end_user_email})


@api_view(["POST", "PUT"])
@permission_classes([IsAuthenticated])
def api_echo_customer(request, pk: int) -> Response:
    sub = Subscription.objects.get(pk=pk)
    return Response({"name": sub.name_surname, "gsm": sub.end_user_gsm})


urlpatterns = [
    path("new-page/<int:pk>/", echo_customer),
    path("api/new-route/<int:pk>/", api_echo_customer),
    path("", include("config.urls")),
]
