from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class BillingConfig(AppConfig):
    name = "billing"
    verbose_name = _("WiseCP billing")

    def ready(self) -> None:
        """Register what WiseCP brings to the shared layer (upstream.registry)."""
        from upstream import registry
        from upstream.calls.redaction import Kind

        from . import personal, pushes, sync  # noqa: F401  pushes registers its kinds
        from .models import Invoice, InvoiceItem

        registry.register_upstream(
            "wisecp", base_url_setting="WISECP_API_URL", sync=sync.wisecp_sync
        )
        registry.register_mirrored(Invoice, service="wisecp", personal={"full_name": Kind.NAME})
        registry.register_mirrored(
            InvoiceItem,
            service="wisecp",
            # Money fields only staff change: a change seen in WiseCP is drift.
            staff_only=frozenset({"amount", "total", "quantity", "invoice"}),
            vanishing_is_drift=True,
        )
        # Money changes on closed invoices: granted to named people, not to every operator.
        registry.hold_back_permission("billing.override_closed_invoice")
        registry.register_remask("job titles renamed", personal.remask_move_titles)
