from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class SubscriptionsConfig(AppConfig):
    name = "subscriptions"
    verbose_name = _("Paynet subscriptions")

    def ready(self) -> None:
        """Register what Paynet brings to the shared layer (upstream.registry)."""
        from upstream import registry
        from upstream.calls.redaction import Kind

        from . import dashboard, personal, pushes, sync  # noqa: F401  pushes registers its kinds
        from .models import InvoiceStatus, Subscription, SubscriptionInvoice

        registry.register_upstream(
            "paynet", base_url_setting="PAYNET_BASE_URL", sync=sync.paynet_sync
        )
        registry.register_mirrored(
            Subscription,
            service="paynet",
            personal={
                "name_surname": Kind.NAME,
                "end_user_email": Kind.EMAIL,
                "end_user_gsm": Kind.PHONE,
            },
        )
        registry.register_mirrored(
            SubscriptionInvoice,
            service="paynet",
            # Fields only staff change (a change seen at Paynet is drift), except Paynet's own
            # charge outcome: 0 → 3 (charged) or 0 → 4 (not charged) is its lifecycle.
            staff_only=frozenset(
                {"amount", "val_date", "agent_amount", "company_amount", "status"}
            ),
            lifecycle={
                "status": frozenset(
                    {
                        (InvoiceStatus.WAITING, InvoiceStatus.DONE_SUCCEED),
                        (InvoiceStatus.WAITING, InvoiceStatus.DONE_UNSUCCEED),
                    }
                )
            },
            vanishing_is_drift=True,
        )
        registry.register_total(dashboard.RECORDS_BY_STATUS, dashboard.records_by_status_rows)
        registry.register_chart(
            "records",
            permission="subscriptions.view_subscriptioninvoice",
            draw=dashboard.records_by_status,
        )
        registry.register_remask("job items and calls renamed", personal.remask_job_targets)
