from django.apps import AppConfig
from django.db.models.signals import post_migrate
from django.utils.translation import gettext_lazy as _


class UpstreamConfig(AppConfig):
    name = "upstream"
    verbose_name = _("Upstream calls and jobs")

    def ready(self) -> None:
        post_migrate.connect(_ensure_groups, sender=self)
        from .admin_saved import install

        install()


def _ensure_groups(sender: AppConfig, **kwargs) -> None:
    from .groups import groups_ensure

    groups_ensure(using=kwargs.get("using", "default"))
