from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class SubscriptionsConfig(AppConfig):
    name = "subscriptions"
    verbose_name = _("Paynet subscriptions")

    def ready(self) -> None:
        from . import pushes  # noqa: F401  registers the push kinds
