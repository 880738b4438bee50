from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class BillingConfig(AppConfig):
    name = "billing"
    verbose_name = _("WiseCP billing")

    def ready(self) -> None:
        from . import pushes  # noqa: F401  registers the push kinds
