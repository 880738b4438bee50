from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class SecurityConfig(AppConfig):
    """At the door: login lockout (django-axes), idle sessions, the security log, API throttling,
    and who may see customers' personal data unmasked (docs/decisions/011-personal-data.md)."""

    # This module holds another AppConfig (ApiTokensConfig): say which one "security" uses.
    default = True
    name = "security"
    verbose_name = _("Security")

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from . import personal, signals

        signals.connect()
        personal.connect()
        post_migrate.connect(_cache_table, sender=self)


class ApiTokensConfig(AppConfig):
    """django-rest-knox (API tokens, hashed at rest) with a name staff read in their language."""

    default = False
    name = "knox"
    label = "knox"
    verbose_name = _("API tokens")
    default_auto_field = "django.db.models.AutoField"

    def ready(self) -> None:
        # Its model's names are English only ("auth token"): the admin shows ours.
        model = self.get_model("AuthToken")
        model._meta.verbose_name = _("API token")
        model._meta.verbose_name_plural = _("API tokens")


def _cache_table(sender: AppConfig, using: str = "default", **kwargs: object) -> None:
    """`migrate` also makes the database cache's table (production's default cache, where the
    API throttles count): no separate `createcachetable` step to forget."""
    from django.core.management import call_command

    call_command("createcachetable", database=using, verbosity=0)
