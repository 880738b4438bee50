from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class BillqueriesConfig(AppConfig):
    name = "billqueries"
    verbose_name = _("Payofin bill queries")

    def ready(self) -> None:
        from . import jobs  # noqa: F401  registers the job kind
