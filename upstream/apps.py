from django.apps import AppConfig
from django.db.models.signals import post_migrate
from django.utils.translation import gettext_lazy as _
from django_tasks_db.apps import TasksAppConfig


class UpstreamConfig(AppConfig):
    # This module holds another AppConfig (TasksDbConfig): say which one "upstream" uses.
    default = True
    name = "upstream"
    verbose_name = _("Upstream calls and jobs")

    def ready(self) -> None:
        post_migrate.connect(_ensure_groups, sender=self)
        from upstream.admin.saved import install

        install()


class TasksDbConfig(TasksAppConfig):
    """django_tasks_db with a name staff can read in their language (its own is English only)."""

    default = False
    verbose_name = _("Task queue")


def _ensure_groups(sender: AppConfig, **kwargs) -> None:
    from upstream.groups import groups_ensure

    groups_ensure(using=kwargs.get("using", "default"))
