from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class SecurityConfig(AppConfig):
    """At the door: login lockout (django-axes), idle sessions, the security log, API throttling,
    and who may see customers' personal data unmasked (docs/decisions/011-personal-data.md)."""

    name = "security"
    verbose_name = _("Security")

    def ready(self) -> None:
        from . import personal, signals

        signals.connect()
        personal.connect()
