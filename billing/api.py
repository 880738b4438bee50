from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from upstream.api.errors import Conflict
from upstream.api.idempotency import idempotent
from upstream.api.permissions import IsStaff
from upstream.api.timeline import TimelineMixin
from upstream.lists.queries import related_count

from . import services
from .models import Invoice, InvoiceItem
from .serializers import InvoiceItemPatchSerializer, InvoiceItemSerializer, InvoiceSerializer


class InvoiceViewSet(TimelineMixin, viewsets.ReadOnlyModelViewSet):
    queryset = Invoice.objects.annotate(item_count=related_count(InvoiceItem, "invoice")).order_by(
        "-wisecp_id"
    )
    serializer_class = InvoiceSerializer
    filterset_fields = ["wisecp_id", "status", "currency", "user_id"]


class InvoiceItemViewSet(
    TimelineMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    queryset = InvoiceItem.objects.order_by("-wisecp_id")
    serializer_class = InvoiceItemSerializer
    filterset_fields = ["wisecp_id", "invoice", "order_id", "tax_exempt"]
    http_method_names = ["get", "patch", "head", "options"]

    def get_permissions(self):
        if self.action == "partial_update":
            # The service checks billing.push_invoiceitem itself, as in the admin.
            return [IsStaff()]
        return super().get_permissions()

    @extend_schema(request=InvoiceItemPatchSerializer, responses=InvoiceItemSerializer)
    @idempotent
    def partial_update(self, request: Request, pk: str | None = None) -> Response:
        """Push `UpdateInvoiceItem` with the changed fields; 200 with the item as WiseCP returned
        it; 400 without a `reason` for a money change; 409 when `version` is not the current
        one, another save is in flight, or the invoice is closed and no override was allowed."""
        item = get_object_or_404(InvoiceItem.objects.select_related("invoice"), pk=pk)
        serializer = InvoiceItemPatchSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        expected_version = data.pop("version", item.version)
        reason, override = data.pop("reason", ""), data.pop("override", False)
        try:
            updated = services.invoice_item_update(
                item=item,
                changes=data,
                expected_version=expected_version,
                actor=request.user,
                reason=reason,
                override=override,
                idempotency_key=request.headers.get("Idempotency-Key", ""),
            )
        except services.ConflictError as error:
            raise Conflict(str(error)) from error
        return Response(InvoiceItemSerializer(updated).data)


def register_routes(router) -> None:
    router.register("invoices", InvoiceViewSet)
    router.register("invoice-items", InvoiceItemViewSet)
