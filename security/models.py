from django.db import models
from django.utils.translation import gettext_lazy as _


class PersonalData(models.Model):
    """No table: the holder of the permission to see customers' personal data unmasked
    (`security.view_personal_data`, security/personal.py)."""

    class Meta:
        managed = False
        default_permissions = ()
        verbose_name = _("personal data")
        verbose_name_plural = _("personal data")
        permissions = [
            (
                "view_personal_data",
                _("Can see customers' names, e-mails and phone numbers unmasked"),
            ),
        ]

    def __str__(self) -> str:
        return str(self._meta.verbose_name)
