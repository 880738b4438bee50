from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class BillqueriesConfig(AppConfig):
    name = "billqueries"
    verbose_name = _("Payofin bill queries")

    def ready(self) -> None:
        """Register what Payofin brings to the shared layer (upstream.registry)."""
        from upstream import registry

        from . import dashboard, jobs, sync  # noqa: F401  jobs registers the job kind
        from .models import BillQueryLine

        registry.register_upstream(
            "payofin", base_url_setting="PAYOFIN_BASE_URL", sync=sync.payofin_sync
        )
        # Bill lines are Payofin's answers, kept as they came: no drift rules.
        registry.register_mirrored(BillQueryLine, service="payofin")
        registry.register_chart(
            "bill-lines",
            permission="billqueries.view_billqueryline",
            draw=dashboard.bill_lines_per_day,
        )
